"""Typed records that flow one way through the pipeline: walker -> workers -> queue -> sinks.

Records are small slotted dataclasses because the parent process builds one per file and
that cost is on the hot path of a 100,000-file scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Expected:
    """A path and the digest a checksum file says it has (one line of a sums file)."""

    path: str
    algo: str
    digest: str
    line: int  #: line number in the checksum file, for messages
    source: int = 0  #: which checksum file of the run (the same file may be named twice)
    label: str | None = None  #: algorithm tag named in the verdict (a file listed per algorithm)


@dataclass(slots=True)
class FileRecord:
    """The outcome for one path: a digest, or an error message, never both.

    Not frozen on purpose: the parent builds one per file, and a frozen dataclass costs six
    times as much to construct (3.3 us against 0.5 us, measured); treat it as immutable.

    ``path`` is a ``str`` decoded with surrogateescape (``os.fsdecode``), so names that are not
    valid UTF-8 keep their exact bytes (``os.fsencode(record.path)``).
    ``mtime_ns`` is the file's modification time in integer nanoseconds since the epoch.
    """

    path: str
    root: str
    size: int | None
    mtime_ns: int | None
    digest: str | None
    error: str | None = None
    #: For ``check``: the checksum-file line this record verifies.
    expected: Expected | None = None
    #: With several algorithms (``-a sha256,xxh3``): the digests after the first, in order.
    extra: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class CacheCounts:
    """What the hash cache did in one run (``cache_store.CacheSession``): the summary line,
    the audit's report and ``--metrics`` show it."""

    path: str = ""
    #: Files whose digest came from the cache (stat matched, not re-read this run).
    trusted: int = 0
    #: Files the cache had and matched, read again in full by ``--verify-budget``/-max-age.
    verified: int = 0
    #: Files read because the cache had no valid entry (new, changed, racy).
    hashed: int = 0
    #: Bytes read by ``hashed`` and ``verified`` files.
    read_bytes: int = 0
    #: Verified files whose content no longer matched their cached digest.
    mismatched: int = 0
    #: The oldest full read behind a digest trusted this run (ns since the epoch).
    stalest_ns: int | None = None
    #: False when the cache could not be used after all (a warning said why).
    available: bool = True


@dataclass(slots=True)
class Summary:
    """Counters for one run; the exit policy lives in ``exit_codes.exit_code_for``."""

    files: int = 0
    bytes: int = 0
    errors: int = 0
    elapsed: float = 0.0
    #: The first few error records, listed again after the summary line when their
    #: warnings scrolled out of sight (``cli.errors_scrolled_away``).
    first_errors: list[FileRecord] = field(default_factory=list)
    #: Records counted before the first error record: the data lines printed after its
    #: warning are the ones after it.
    before_first_error: int = 0
    #: Mount points of pseudo filesystems the walk did not enter, with their type (not
    #: errors: skipping them is the policy, and does not change the exit status).
    skipped_mounts: list[str] = field(default_factory=list)
    #: What the hash cache did (None: the run had no ``--cache``).
    cache: CacheCounts | None = None

    #: How many error records the summary lists.
    LISTED_ERRORS = 10

    def add_chunk(self, files: int, nbytes: int, errors: list[tuple[str, str]]) -> None:
        """Count one chunk of records: ``files`` of them, ``nbytes`` hashed, ``errors``
        the (path, message) of its error records (the first few are kept to list again)."""
        if errors:
            if not self.errors:
                self.before_first_error = self.files
            self.errors += len(errors)
            room = self.LISTED_ERRORS - len(self.first_errors)
            for path, message in errors[: max(room, 0)]:
                self.first_errors.append(FileRecord(path, "", None, None, None, message))
        self.files += files
        self.bytes += nbytes

    def add(self, record: FileRecord) -> None:
        self.files += 1
        if record.error is None:
            self.bytes += record.size or 0
        else:
            if not self.errors:
                self.before_first_error = self.files - 1
            self.errors += 1
            if len(self.first_errors) < self.LISTED_ERRORS:
                self.first_errors.append(record)
