"""``parhash check``: verify checksum files (sha256sum -c, b3sum --check) through the pipeline.

Lines stream from the checksum files into the same batcher, pool and writer thread as a
scan; each record comes back with the ``Expected`` line it verifies. Output and exit status
follow GNU coreutils: ``name: OK`` / ``name: FAILED`` / ``name: FAILED open or read`` on
stdout, counts of problems as ``WARNING:`` lines on stderr, exit 1 when anything failed.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from parhash import hashdeep
from parhash.algorithms import get_algorithm
from parhash.exit_codes import ExitCode, FatalError
from parhash.model import Expected, FileRecord, Summary
from parhash.output import err, sanitize
from parhash.sources import Source, stdin_file_record
from parhash.sums import (
    XXHSUM_LENGTHS,
    BadLine,
    ChecksumLine,
    algorithm_for_length,
    algorithm_from_name,
    parse_line,
    tag_algorithm,
)

MISSING = "No such file or directory"


@dataclass
class CheckOptions:
    """How to read checksum files and what to print."""

    algo: str | None = None  #: -a: the algorithm of untagged lines
    quiet: bool = False  #: print failures only
    status: bool = False  #: print nothing; the exit status says it all
    strict: bool = False  #: improperly formatted lines make the exit status 1
    warn: bool = False  #: warn about each improperly formatted line
    ignore_missing: bool = False  #: a listed file that does not exist is not a failure
    zero: bool = False  #: records end in NUL


@dataclass
class SumsFileState:
    """Per checksum file: counts that decide its end-of-run messages."""

    name: str
    formatted: int = 0
    malformed: int = 0
    verified: int = 0
    failed: int = 0  #: digests that did not match
    #: The algorithm untagged lines were given only because xxhsum reads their length so
    #: (16 hex digits: XXH64); a failure then gets a hint about older parhash output.
    assumed: str | None = None


@dataclass
class CheckReport:
    """Counters of a check run and the exit policy (coreutils semantics) in one place."""

    options: CheckOptions
    ok: int = 0
    mismatched: int = 0
    unreadable: int = 0
    #: Checksum files that could not be opened: reported when met, exit 1 at the end, the
    #: others verified (as ``sha256sum -c a nosuch b``).
    unopened: int = 0
    #: stdin is one of the checksum files: no ``-`` line can read it.
    stdin_sums: bool = False
    files: list[SumsFileState] = field(default_factory=list)

    @property
    def return_code(self) -> ExitCode:
        """1 if a checksum did not match, a file or checksum file could not be read, a
        checksum file had no usable line (or, with --ignore-missing, verified nothing), or
        --strict saw a bad line; else 0."""
        if self.mismatched or self.unreadable or self.unopened:
            return ExitCode.FILE_ERRORS
        if self.options.strict and any(state.malformed for state in self.files):
            return ExitCode.FILE_ERRORS
        for state in self.files:
            if not state.formatted:
                return ExitCode.FILE_ERRORS
            if self.options.ignore_missing and not state.verified:
                return ExitCode.FILE_ERRORS
        return ExitCode.OK

    def final_messages(self) -> list[str]:
        out = []
        for state in self.files:
            if not state.formatted:
                out.append(f"{sanitize(state.name)}: no properly formatted checksum lines found")
            elif self.options.ignore_missing and not state.verified:
                out.append(f"{sanitize(state.name)}: no file was verified")
        if self.options.status:
            return out
        # coreutils counts bad lines only of files that had a good one; a file with none
        # got its own message above.
        malformed = sum(state.malformed for state in self.files if state.formatted)
        problems = (
            (malformed, "line is", "lines are", "improperly formatted"),
            (self.unreadable, "listed file", "listed files", "could not be read"),
            (self.mismatched, "computed checksum", "computed checksums", "did NOT match"),
        )
        for n, one, many, what in problems:
            if n:
                out.append(f"WARNING: {n} {one if n == 1 else many} {what}")
        out.extend(
            f"{sanitize(state.name)}: untagged {_hex_length(state.assumed)}-digit digests were "
            f"read as {state.assumed} (as xxhsum does); name the algorithm with -a if they are "
            "another's (parhash 0.1.0 wrote xxh3 lines untagged: -a xxh3)"
            for state in self.files
            if state.assumed and state.failed
        )
        return out


def _hex_length(algo: str) -> int:
    return get_algorithm(algo).hex_length


def open_sums_file(name: str, report: CheckReport) -> BinaryIO | None:
    """Open a checksum file (``-`` is stdin); None if it cannot be, after saying why on
    stderr: sha256sum -c goes on with the other files and exits 1 at the end."""
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as exc:
        report.unopened += 1
        err(f"parhash: {sanitize(name)}: {exc.strerror or exc}")
        return None


#: Longest checksum record kept, in bytes: far beyond any real line (a path can be longer
#: than PATH_MAX, but not by this much), and small enough that a file without a single
#: terminator (a 1 GB image given by mistake) is skipped as one bad line in bounded memory.
MAX_RECORD = 1 << 20

#: Bytes read at a time from a NUL-separated (-z) checksum file.
READ_SIZE = 1 << 16


def _lines(stream: BinaryIO, zero: bool) -> Iterator[tuple[int, str | None]]:
    """Numbered records without their terminator, streamed in bounded memory; a record
    longer than ``MAX_RECORD`` is ``None`` (a bad line). A ``\\r`` before the newline is kept
    (``_parse`` drops it)."""
    records = _nul_records(stream) if zero else _newline_records(stream)
    for number, raw in enumerate(records, 1):
        yield number, None if raw is None else raw.decode("utf-8", "surrogateescape")


def _newline_records(stream: BinaryIO) -> Iterator[bytes | None]:
    while raw := stream.readline(MAX_RECORD + 1):
        if raw.endswith(b"\n"):
            yield raw[:-1]
        elif len(raw) <= MAX_RECORD:
            yield raw  # the last line, without a newline
        else:
            while (rest := stream.readline(MAX_RECORD)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the overlong line without keeping it
            yield None


def _nul_records(stream: BinaryIO) -> Iterator[bytes | None]:
    """Split on NUL chunk by chunk (there is no readline for NUL); ``pending`` holds the
    start of a record that continues in the next chunk, at most ``MAX_RECORD`` bytes."""
    read = getattr(stream, "read1", stream.read)
    pending = b""
    overlong = False
    while chunk := read(READ_SIZE):
        parts = chunk.split(b"\0")
        tail = parts.pop()
        for part in parts:
            record = pending + part
            yield None if overlong or len(record) > MAX_RECORD else record
            pending, overlong = b"", False
        if not overlong:
            pending += tail
            if len(pending) > MAX_RECORD:
                pending, overlong = b"", True
    if overlong:
        yield None
    elif pending:
        yield pending


#: Lines read ahead while looking for the first untagged line (a file of only tagged lines
#: needs no default algorithm; past this many, the first untagged line decides).
LOOKAHEAD_LINES = 10_000
#: ... or past this many bytes of them, so that the look-ahead stays small even when every
#: line is close to ``MAX_RECORD`` (10,000 of those would be 10 GB).
LOOKAHEAD_BYTES = 16 << 20


def default_algorithm(
    name: str, lines: Iterator[tuple[int, str]], options: CheckOptions
) -> tuple[str | None, Iterator[tuple[int, str]]]:
    """The algorithm for untagged lines, and the lines (none lost to the look-ahead).

    -a, else the file's name, else the digest length of the first untagged line when exactly
    one algorithm has that length. Ambiguity is a fatal error, never a guess (xxh3 and xxh64
    both have 16 hex digits, sha256 and blake3 both 64). Works on stdin: lines read ahead
    are handed back in front of the rest.
    """
    if options.algo:
        return options.algo, lines
    hinted = algorithm_from_name(name)
    ahead: list[tuple[int, str | None]] = []
    found: str | None = None
    size = 0
    for number, text in lines:
        ahead.append((number, text))
        parsed = _try_parse(text)
        if parsed is not None and parsed.tag_algo is None:
            found = _untagged_algorithm(len(parsed.digest), hinted, name)
            break
        size += len(text or "")
        if len(ahead) >= LOOKAHEAD_LINES or size >= LOOKAHEAD_BYTES:
            found = hinted
            break
    return found, itertools.chain(ahead, lines)


def _untagged_algorithm(length: int, hinted: str | None, name: str) -> str:
    """The name's algorithm if it agrees with the digest length (``x.b2`` with 64 digits is
    BLAKE2b-256, as ``b2sum -c`` infers ``-l`` from the length), else the length's."""
    if hinted is not None and get_algorithm(hinted).hex_length == length:
        return hinted  # the name agrees with the digests: trust it
    if hinted == "blake2b" and (truncated := _blake2b_of_length(length)) is not None:
        return truncated
    return algorithm_for_length(length, name, like_xxhsum=True)


def _blake2b_of_length(length: int) -> str | None:
    """The BLAKE2b-N whose digests have ``length`` hex digits (N a multiple of 8 below 512,
    as ``b2sum -l`` takes), which ``b2sum -c`` infers from the digest; None for 128 digits
    (plain blake2b) or a length b2sum never writes."""
    if length % 2 == 0 and 0 < length < 128:
        return f"blake2b-{length * 4}"
    return None


def _try_parse(text: str | None) -> ChecksumLine | None:
    if not text or text.startswith("#"):
        return None
    try:
        return _parse(text)
    except BadLine:
        return None


#: The two plain kinds of line, as ``parse_line`` reads them: ``hex  name`` / ``hex *name``
#: (the first space ends the digest) and ``TAG (name) = hex`` (the first `` (`` ends the
#: tag, the last ``) = `` the name). One match instead of ``parse_line``'s character-by-
#: character hex test (measured: 8 us per sha256 line down to 1.5 us); a line with an
#: escape marker, a CR at its end or anything unusual takes ``parse_line`` itself.
_PLAIN_GNU = re.compile(r"([0-9a-fA-F]+) [ *]([^\0]+)", re.DOTALL)
_PLAIN_TAGGED = re.compile(r"([A-Za-z0-9-]+) \(([^\0]+)\) = ([0-9a-fA-F]+)", re.DOTALL)


def _plain_line(text: str) -> ChecksumLine | None:
    """``parse_line(text)`` for a plain line (see ``_PLAIN_GNU``), else None. A GNU line's
    tag parse never succeeds (its would-be tag holds the digest's space), so the GNU match
    alone decides; a tagged line needs a tag ``tag_algorithm`` knows."""
    if text.startswith("\\"):
        return None
    gnu = _PLAIN_GNU.fullmatch(text)
    if gnu is not None:
        return ChecksumLine(gnu[1].lower(), gnu[2], None)
    tagged = _PLAIN_TAGGED.fullmatch(text)
    if tagged is not None:
        algo = tag_algorithm(tagged[1])
        if algo is not None:
            return ChecksumLine(tagged[3].lower(), tagged[2], algo)
    return None


def _parse(text: str, keep_cr: bool = False, untagged: str | None = None) -> ChecksumLine:
    """Parse a line that may end in ``\\r``: coreutils drops that CR (a file written on
    Windows), and so does current b3sum in a CRLF file; b3sum 1.2 keeps it as part of the
    name, so a blake3 line of a file that is not CRLF (``keep_cr``) keeps it."""
    if not text.endswith("\r"):
        return _plain_line(text) or parse_line(text)
    stripped = parse_line(text[:-1])
    if not keep_cr or (stripped.tag_algo or untagged) != "blake3":
        return stripped
    try:
        return parse_line(text)
    except BadLine:
        return stripped


def crlf_file(
    lines: Iterator[tuple[int, str | None]], untagged: str | None
) -> tuple[bool, Iterator]:
    """Whether the file's first line ends in CR (a file written on Windows: every CR before a
    newline is a line end), and the lines, none lost. A first line that is blake3's for a
    name ending in CR (``scan -a blake3`` and b3sum write that CR raw) does not make the
    file CRLF when only the name with the CR exists: the one stat that lets such a file
    round-trip and read as b3sum 1.2 reads it."""
    first = next(lines, None)
    if first is None:
        return False, lines
    text = first[1]
    crlf = bool(text and text.endswith("\r")) and not _raw_cr_name(text, untagged)
    return crlf, itertools.chain([first], lines)


def _raw_cr_name(text: str, untagged: str | None) -> bool:
    """Whether a blake3 line ending in CR names an existing file whose name ends in that CR
    while the name without it does not exist."""
    try:
        name = _parse(text, True, untagged).name
    except BadLine:
        return False
    return name.endswith("\r") and os.path.lexists(name) and not os.path.lexists(name[:-1])


def expected_entries(
    name: str,
    stream: BinaryIO,
    lines: Iterator[tuple[int, str]],
    untagged_algo: str | None,
    report: CheckReport,
    source: int,
    keep_cr: bool = True,
) -> Iterator[Expected | FileRecord]:
    """Stream the checksum lines of one file as ``Expected`` items for the batcher.

    Runs on the pool's task-handler thread, so it never raises for a bad line: it counts it
    (and warns with --warn). Fatal problems were found before the pipeline started.
    """
    options = report.options
    state = report.files[source]
    lengths: dict[str, int] = {}  # digest length by algorithm: one lookup per file
    try:
        for number, text in lines:
            if text is not None and (not text or text.startswith("#")):
                continue
            try:
                if text is None:
                    raise BadLine(f"line longer than {MAX_RECORD} bytes")
                line = _parse(text, keep_cr, untagged_algo)
                algo = _line_algorithm(line, untagged_algo, options.algo)
                if algo is None:  # past the look-ahead: the first untagged line decides
                    algo = untagged_algo = _untagged_algorithm(
                        len(line.digest), algorithm_from_name(name), name
                    )
                length = lengths.get(algo)
                if length is None:
                    length = lengths[algo] = get_algorithm(algo).hex_length
                if len(line.digest) != length:
                    raise BadLine(f"digest length does not match {algo}")
                if line.name == "-" and stream is sys.stdin.buffer:
                    # sha256sum -c: this line cannot also read stdin (coreutils md5sum.c)
                    raise BadLine("'-' names standard input, which is this checksum file")
            except (BadLine, FatalError) as exc:
                state.malformed += 1
                if options.warn:
                    err(f"parhash: {sanitize(name)}: {number}: {exc}")
                continue
            state.formatted += 1
            entry = Expected(line.name, algo, line.digest, number, source)
            yield _stdin_entry(entry, report) if line.name == "-" else entry
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


#: Why a ``-`` line of one checksum file is not read when another checksum file of the
#: run is stdin: its lines were (partly) read ahead, so stdin's bytes are no longer whole.
STDIN_TAKEN = "standard input is read as a checksum file"


def _stdin_entry(entry: Expected, report: CheckReport) -> Expected | FileRecord:
    """A ``-`` line: standard input hashed here, now, in line order (as ``sha256sum -c``
    does), unless stdin is a checksum file of this run."""
    if report.stdin_sums:
        return FileRecord("-", "-", None, None, None, STDIN_TAKEN, entry)
    return stdin_file_record(sys.stdin.buffer, (entry.algo,), entry)


def _line_algorithm(line: ChecksumLine, untagged: str | None, chosen: str | None) -> str | None:
    """A tagged line's own algorithm, else the file's (under ``-a blake2b``, the BLAKE2b-N of
    the digest's length). ``-a`` never overrides a tag: a line tagged with another algorithm
    is a bad line, as ``sha256sum -c`` finds an ``MD5 (f)`` line and ``xxh64sum -c`` an
    ``XXH3`` one."""
    if line.tag_algo is None:
        if chosen == "blake2b":  # the family: the length is the digest's (b2sum -c)
            return _blake2b_of_length(len(line.digest)) or untagged
        return untagged
    if chosen is not None and line.tag_algo != chosen and not _same_family(line.tag_algo, chosen):
        raise BadLine(f"tagged {get_algorithm(line.tag_algo).tag}, but -a is {chosen}")
    return line.tag_algo


def _same_family(tagged: str, chosen: str) -> bool:
    """``-a blake2b`` names BLAKE2b of any length: a ``BLAKE2b-256`` tag is one of it."""
    return chosen == "blake2b" and tagged.startswith("blake2b-")


def label_repeats(items: Iterable[Expected | FileRecord]) -> Iterator[Expected | FileRecord]:
    """Name the algorithm in the verdicts of a file listed once per algorithm in a row (``scan
    -a sha256,blake3``, hashdeep): ``a: OK (SHA256)`` then ``a: FAILED (BLAKE3)``, never two
    bare verdicts that contradict each other. Other lines keep sha256sum's exact output."""
    held: Expected | None = None
    for item in items:
        if isinstance(item, Expected) and held is not None and _repeats(held, item):
            yield held if held.label else _labeled(held)
            held = _labeled(item)
            continue
        if held is not None:
            yield held
        held = None
        if isinstance(item, Expected):
            held = item
        else:
            yield item
    if held is not None:
        yield held


def _repeats(before: Expected, after: Expected) -> bool:
    return before.path == after.path and before.algo != after.algo


def _labeled(expected: Expected) -> Expected:
    return replace(expected, label=get_algorithm(expected.algo).tag)


def check_sources(names: list[str], report: CheckReport) -> list[Source]:
    """One source per checksum file that opens; the files are opened (and algorithms
    resolved) now, so an ambiguous checksum file is fatal before any hashing starts."""
    sources = []
    report.stdin_sums = "-" in names
    for name in names:
        stream = open_sums_file(name, report)
        if stream is None:
            continue
        source = len(report.files)
        report.files.append(SumsFileState(name))
        if hashdeep.is_hashdeep(stream.peek(len(hashdeep.MAGIC))):
            entries = hashdeep_entries(name, stream, report, source)
            sources.append(Source(name, True, label_repeats(entries), named=True))
            continue
        algo, lines = default_algorithm(name, _lines(stream, report.options.zero), report.options)
        crlf, lines = crlf_file(lines, algo)
        if algo is not None and not report.options.algo and algo in XXHSUM_LENGTHS.values():
            report.files[-1].assumed = algo if algorithm_from_name(name) != algo else None
        entries = expected_entries(name, stream, lines, algo, report, source, not crlf)
        # named: a /dev/null line is read, as sha256sum -c reads it
        sources.append(Source(name, True, label_repeats(entries), named=True))
    return sources


def hashdeep_entries(
    name: str, stream: BinaryIO, report: CheckReport, source: int
) -> Iterator[Expected | FileRecord]:
    """A hashdeep file's records as one ``Expected`` per digest column (``-a``: that column
    only). The header is read now: unsupported columns are fatal before any hashing."""
    header, lines = hashdeep.read_header(_lines(stream, False), name)
    chosen = report.options.algo
    if chosen is not None and chosen not in header.algos:
        raise FatalError(f"{name}: has no {chosen} column ({', '.join(header.algos)})")
    return _hashdeep_expected(name, stream, lines, header, report, source)


def _hashdeep_expected(name, stream, lines, header, report, source):
    state = report.files[source]
    chosen = report.options.algo
    try:
        for number, item in hashdeep.records(lines, header, name):
            if isinstance(item, str):
                state.malformed += 1
                if report.options.warn:
                    err(f"parhash: {sanitize(name)}: {number}: {item}")
                continue
            state.formatted += 1
            for algo, digest in item.digests:
                if chosen is None or algo == chosen:
                    yield Expected(item.path, algo, digest, number, source)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def display_name(name: str) -> str:
    """The name as ``sha256sum -c`` prints it: verbatim, unless it holds a newline; then
    escaped (``\\\\``, ``\\n``) behind a leading ``\\``, as coreutils 9.1 does."""
    if "\n" not in name:
        return name
    return "\\" + name.replace("\\", "\\\\").replace("\n", "\\n")


#: Characters of a name kept in a message on stderr; a longer one is cut, with its length.
MESSAGE_NAME_CHARS = 200


def short_name(name: str) -> str:
    """A name for a message: whole if short, else its start, an ellipsis and its length
    (a malformed -z list can make a "name" of megabytes)."""
    if len(name) <= MESSAGE_NAME_CHARS:
        return name
    return f"{name[:MESSAGE_NAME_CHARS]}... ({len(name)} characters)"


class CheckSink:
    """Turns verified records into ``name: OK/FAILED`` lines; runs on the writer thread."""

    def __init__(self, stream: BinaryIO, report: CheckReport, warn) -> None:
        self.stream = stream
        self.report = report
        self.warn = warn

    def write(self, records: list[FileRecord]) -> None:
        options = self.report.options
        lines = []
        for record in records:
            expected = record.expected
            if expected is None:
                continue
            state = self.report.files[expected.source]
            name = display_name(expected.path)
            label = f" ({expected.label})" if expected.label else ""
            if record.error is not None:
                if options.ignore_missing and record.error == MISSING:
                    continue
                state.verified += 1
                self.report.unreadable += 1
                self.warn(f"{short_name(record.path)}: {record.error}")
                if not options.status:
                    lines.append(f"{name}: FAILED open or read{label}\n")
            elif record.digest == expected.digest:
                state.verified += 1
                self.report.ok += 1
                if not (options.quiet or options.status):
                    lines.append(f"{name}: OK{label}\n")
            else:
                state.verified += 1
                state.failed += 1
                self.report.mismatched += 1
                if not options.status:
                    lines.append(f"{name}: FAILED{label}\n")
        if lines:
            self.stream.write("".join(lines).encode("utf-8", "surrogateescape"))

    def close(self, summary: Summary) -> None:
        self.stream.flush()
