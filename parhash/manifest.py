"""Reading manifests back: any parhash output with sizes (jsonl, json, csv) or a sums file.

A manifest is opened once (``open_manifest``) and read as one stream, so ``audit -`` and
``audit <(...)`` work like a file: the first bytes are peeked to tell the format, the header
(if any) and the first record are read for ``read_info``, and ``iter_entries`` goes on from
there. Entries are streamed, never collected, so an audit of a million-entry manifest stays
small. Every field of every record is validated; every problem (a truncated file, a bad line,
a digest of the wrong length, a newer layout) is a ``ManifestError`` that names the file and
the line, never a traceback and never a silently partial audit.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from parhash import hashdeep
from parhash.algorithms import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    UnknownAlgorithm,
    canonical,
    get_algorithm,
)
from parhash.exit_codes import FatalError
from parhash.jsonstream import JsonText, JsonTextError
from parhash.layout import CSV_HEADER_PREFIX, FIELDS, MANIFEST_VERSION
from parhash.sums import (
    BadLine,
    ChecksumLine,
    algorithm_for_length,
    algorithm_from_name,
    parse_line,
)
from parhash.walk import child_prefix


class ManifestError(FatalError):
    """The manifest cannot be trusted; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file as the manifest recorded it."""

    path: str
    root: str
    size: int | None
    mtime_ns: int | None
    digest: str | None
    error: str | None
    #: The other algorithms' digests of a ``-a sha256,blake3`` manifest, by name.
    extra: dict[str, str | None] | None = None


#: A record as read: the entry, its algorithm's canonical name, and its line (for messages).
Record = tuple[ManifestEntry, str, int]


@dataclass
class ManifestInfo:
    """What the manifest says about itself: format, algorithm, roots, when it was taken.

    The fields after ``started`` come from the header (H, README "Output formats"); a
    manifest without one (a sums file, a version-1 jsonl/csv) leaves them ``None``.
    """

    path: str
    format: str
    algo: str
    roots: list[str] = field(default_factory=list)
    started: str | None = None
    header: dict | None = None
    algos: list[str] | None = None
    roots_abs: list[str] | None = None
    host: str | None = None
    relative: bool | None = None
    #: The selection the scan applied (walk and size options), as recorded.
    options: dict | None = None
    #: The open manifest ``iter_entries`` goes on reading (set by ``read_info``).
    reader: ManifestReader | None = field(default=None, repr=False, compare=False)


#: The manifest name that means standard input.
STDIN = "-"

#: The first bytes read to tell the format: up to the first line that is not a comment,
#: but never more than this (a jsonl line, header included, is far shorter; a one-line JSON
#: document longer than this is still recognised, as JSON).
HEAD_MAX = 8 << 20

#: Read size of the one buffered stream every format reads through.
BUFFER = 1 << 20

#: Keys of a json document whose value is the records array ("files" is what parhash
#: writes; "records" is accepted as the obvious synonym).
RECORD_ARRAYS = ("files", "records")

_BOM = b"\xef\xbb\xbf"


def open_manifest(path: str, *, rewrite: bool = False) -> ManifestReader:
    """Open the manifest once (``-``: standard input). ``rewrite`` (``--update``) needs a
    regular file to replace: stdin, a pipe or a FIFO has no file to rewrite, so say so now,
    before anything is scanned."""
    reader = ManifestReader(path)
    if rewrite and (path == STDIN or not reader.is_file):
        reader.close()
        raise ManifestError(
            f"{reader.name}: --update needs a manifest file to rewrite, not "
            f"{'standard input' if path == STDIN else 'a pipe or FIFO'}"
        )
    return reader


class _Prefixed(io.RawIOBase):
    """The bytes already peeked, then the rest of the file: a pipe cannot be rewound."""

    def __init__(self, head: bytes, raw: io.RawIOBase) -> None:
        self.head = memoryview(head)
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return self.raw.readinto(buffer)


class ManifestReader:
    """One open manifest: its format, its header once met, and its records, read once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "stdin" if path == STDIN else path
        try:
            if path == STDIN:
                self.raw = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115
            else:
                self.raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            st = os.fstat(self.raw.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "Is a directory")
            self.start = self.raw.tell() if stat.S_ISREG(st.st_mode) else 0
            head = self._read_head()
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{self.name}: {getattr(exc, 'strerror', None) or exc}") from None
        self.is_file = stat.S_ISREG(st.st_mode)
        if head.startswith(_BOM):  # spreadsheet exports start with one
            head = head[len(_BOM) :]
            self.start += len(_BOM)
        self.empty = not head.strip()
        self.format = detect_format(head, path)
        #: The manifest's own header (jsonl line 1, csv ``#parhash-header``, json "header"),
        #: validated; set as the records are read (json: wherever its key comes).
        self.header: dict | None = None
        self.header_where = ""
        source: io.RawIOBase = _Prefixed(head, self.raw)
        if not self.raw.seekable() and _read_twice(self.format, head):
            source = self._spool(source)
        self._header_searched = False
        self.stream = io.BufferedReader(source, BUFFER)
        self._records: Iterator[Record] | None = None
        self._peeked: Record | None = None
        #: Set by ``iter_entries(plain=...)``: takes a decoded jsonl chunk whole when every
        #: record in it is plain (``_Plain``); None: one record at a time.
        self.plain: _PlainRecords | None = None

    def _read_head(self) -> bytes:
        """Read until the first line that is not blank or a ``#`` comment is complete."""
        head = bytearray()
        while len(head) < HEAD_MAX:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                break
            head += chunk
            if b"\n" in chunk and _first_line(head) is not None:
                break
        return bytes(head)

    def set_header(self, header: object, where: str) -> None:
        """The header met at ``where``, validated."""
        self.header = _json_header(header, where)
        self.header_where = where

    def __enter__(self) -> ManifestReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for stream in (getattr(self, "stream", None), self.raw):
            if stream is not None:
                stream.close()

    def text(self, errors: str = "strict") -> io.TextIOWrapper:
        """The stream as UTF-8 text (newlines untranslated: csv wants them raw)."""
        text = io.TextIOWrapper(self.stream, encoding="utf-8", errors=errors, newline="")
        self.stream = text  # closing the wrapper closes the buffered stream under it
        return text

    def first(self) -> Record | None:
        """The first record, kept for ``records()``; reading it reads a header before it."""
        if self._records is None:
            self._records = _READERS[self.format](self) if not self.empty else iter(())
            self._peeked = next(self._records, None)
        return self._peeked

    def records(self) -> Iterator[Record | PlainRows]:
        """Every (entry, algorithm) once, the peeked first record included (runs of plain
        records as ``PlainRows`` once ``plain`` is set)."""
        first = self.first()
        if first is not None:
            self._peeked = None
            yield first
            assert self._records is not None
            yield from self._records

    def find_json_header(self) -> None:
        """Read a JSON document's "header" wherever its key comes (``jq -S`` and
        ``sort_keys=True`` put it after "files"): a second reader of the same open file
        (``pread``, so the records' reader keeps its place) walks the top-level keys and
        skips the records one at a time without keeping them, so memory stays bounded.
        The input is a regular file or a spool (``_read_twice``): never read twice."""
        if self._header_searched or self.header is not None:
            return
        self._header_searched = True
        raw = _PreadRaw(self.raw.fileno(), self.start)
        text = io.TextIOWrapper(io.BufferedReader(raw, BUFFER), encoding="utf-8", newline="")
        _json_header_anywhere(JsonText(text, self.name), self)

    def _spool(self, source: io.RawIOBase) -> io.RawIOBase:
        """Copy a piped manifest that must be read twice (``_read_twice``) to an anonymous
        temporary file (gone on close, even on a kill): the pipe can be read only once."""
        spool = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed by close()
        try:
            shutil.copyfileobj(source, spool, BUFFER)
            spool.seek(0)
        except OSError as exc:
            spool.close()
            raise ManifestError(f"{self.name}: cannot keep a copy: {exc.strerror}") from None
        self.raw.close()
        self.raw, self.start = spool, 0
        return spool

    def rewind(self) -> io.BufferedReader:
        """The second pass over a sums file, from the start (see ``_spool``)."""
        self.stream.detach()  # dropping the first pass's reader must not close the file
        self.raw.seek(self.start)
        self.stream = io.BufferedReader(self.raw, BUFFER)
        return self.stream


class _PreadRaw(io.RawIOBase):
    """An open file from ``offset`` on, read with ``pread``: a second reader that leaves
    the file's own offset (the first reader's) alone, and never closes the descriptor."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self.fd, len(buffer), self.offset)
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)


#: A JSON document whose first key is "header" (parhash's own layout, ``jq .``): its
#: header is met before its records, so a pipe of it need not be spooled.
_HEADER_FIRST = re.compile(rb'\s*(\[|\{\s*"header"\s*:)')


def _read_twice(fmt: str, head: bytes) -> bool:
    """Must a piped manifest be spooled (``ManifestReader._spool``) to be read twice? A sums
    file's root is the common directory of all its paths, known only at the end; hashdeep's
    likewise; a JSON document's header may come after its records (``jq -S``). A bare
    array has no header, and a header that comes first is read on the way."""
    if fmt in ("sums", "hashdeep"):
        return True
    return fmt == "json" and not _HEADER_FIRST.match(head)


def _first_line(head: bytes) -> bytes | None:
    """The first line that is neither blank nor a ``#`` comment, if ``head`` holds it all."""
    start = 0
    while True:
        end = head.find(b"\n", start)
        if end < 0:
            return None
        line = head[start:end].strip()
        if line and not line.startswith(b"#"):
            return line
        start = end + 1


def detect_format(head: bytes, name: str = "") -> str:
    """jsonl, json, csv, hashdeep or sums, from the first bytes (``head``), not the name.

    jsonl is told from a json document by its first line: a whole JSON object on its own
    (``{"header": ...}`` or a record). A document reformatted by ``jq .`` starts with ``{``
    alone; parhash's compact layout starts ``{"header": {...},``; one on a single line has a
    records array. An empty manifest has no content to tell: its name's extension decides
    (it matters only for the format ``--update`` writes).
    """
    if hashdeep.is_hashdeep(head):
        return "hashdeep"
    text = head.lstrip()
    if not text:
        extension = os.path.splitext(name)[1].lower().lstrip(".")
        return extension if extension in ("jsonl", "json", "csv") else "sums"
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl" if _is_jsonl_line(text.split(b"\n", 1)[0]) else "json"
    if text.startswith(CSV_HEADER_PREFIX.encode()):
        return "csv"
    line = _first_line(head if head.endswith(b"\n") else head + b"\n")
    if line is not None and _is_csv_columns(line):
        return "csv"
    return "sums"


def _is_jsonl_line(line: bytes) -> bool:
    """Is this line one whole JSON object without a records array? Walked key by key (a
    one-line document is told at its "files" key, without decoding its records)."""
    try:
        doc = JsonText(io.StringIO(line.decode("utf-8")), "")
        doc.take("{", "")
        if doc.peek() == "}":
            return True
        while doc.peek() == '"':
            if doc.value() in RECORD_ARRAYS:
                return False
            doc.take(":", "")
            doc.peek()
            doc.value()
            if doc.take(",}", "") == "}":
                return not doc.peek()
    except (JsonTextError, UnicodeDecodeError):
        pass
    return False


_CSV_COLUMN = re.compile(rb"[A-Za-z][A-Za-z0-9_-]*\Z")


def _is_csv_columns(line: bytes) -> bool:
    """A csv column row: comma-separated names, parhash's among them (a sums line has a
    space between digest and name, so it is never one). A row missing some of parhash's
    columns is still csv, so that the reader can say which are missing."""
    cells = [c.strip(b'"') for c in line.split(b",")]
    return (
        len(cells) > 1
        and all(_CSV_COLUMN.match(c) for c in cells)
        and any(c.decode() in FIELDS for c in cells)
    )


def _check_version(version: object, where: str) -> None:
    if isinstance(version, int) and version > MANIFEST_VERSION:
        raise ManifestError(
            f"{where}: manifest version {version} is newer than this parhash reads "
            f"({MANIFEST_VERSION}); upgrade parhash"
        )


def _info_from_header(path: str, fmt: str, header: dict, where: str) -> ManifestInfo:
    """ManifestInfo from H (met at ``where``); a key of the wrong type is an error, not a
    guess. Algorithm names are made canonical, as the records' are."""
    algo = _check_algo(header.get("algo"), f"{where}: header")
    algos = header.get("algos") or [algo]
    if isinstance(algos, list):
        algos = [_check_algo(name, f"{where}: header") for name in algos]
    roots = header.get("roots")
    roots_abs = header.get("roots_abs")
    options = header.get("options")
    if not (isinstance(algos, list) and algos[0] == algo):
        raise ManifestError(f"{where}: header 'algos' must be a list starting with 'algo'")
    if not (isinstance(roots, list) and all(isinstance(r, str) for r in roots)):
        raise ManifestError(f"{where}: header 'roots' must be a list of strings")
    if roots_abs is not None and not (
        isinstance(roots_abs, list)
        and len(roots_abs) == len(roots)
        and all(isinstance(r, str) for r in roots_abs)
    ):
        raise ManifestError(f"{where}: header 'roots_abs' must be one string per root")
    if options is not None and not isinstance(options, dict):
        raise ManifestError(f"{where}: header 'options' must be an object")
    host = header.get("host")
    return ManifestInfo(
        path,
        fmt,
        str(algo),
        list(roots),
        header.get("started"),
        header,
        list(algos),
        roots_abs,
        host if isinstance(host, str) else None,
        bool(header.get("relative", False)),
        options,
    )


def read_info(source: ManifestReader | str, algo_override: str | None = None) -> ManifestInfo:
    """Read just enough to know the algorithm and the roots (header, or first record).

    ``source`` is an open manifest (``open_manifest``) or a name to open. The manifest is
    read once: ``iter_entries`` goes on from here (its first record was already read) and
    adds more roots of a header-less multi-root jsonl/csv manifest as it meets them.
    """
    reader = source if isinstance(source, ManifestReader) else open_manifest(source)
    try:
        info = _info(reader, algo_override)
    except BaseException:
        reader.close()
        raise
    info.reader = reader
    return info


def _info(reader: ManifestReader, algo_override: str | None) -> ManifestInfo:
    fmt = reader.format
    if fmt == "sums":
        return _sums_info(reader, algo_override)
    if fmt == "hashdeep":
        return hashdeep.manifest_info(reader.name, reader.stream)
    first = reader.first()  # reads a header that comes before the records too
    if reader.header is not None:
        return _info_from_header(reader.name, fmt, reader.header, reader.header_where)
    if first is not None:
        entry, algo, _ = first
        info = ManifestInfo(reader.name, fmt, algo, [entry.root])
        info.relative = _looks_relative(entry)
        return info
    return _empty_info(reader, algo_override)


def _looks_relative(entry: ManifestEntry) -> bool:
    """A header-less manifest's path style, from its first record: made with --relative
    when the path is not reached from the root (``tree/a``, ``./a``)."""
    if entry.path == entry.root:
        return False
    return not entry.path.startswith(child_prefix(entry.root))


def _check_algo(algo: object, where: str) -> str:
    """The canonical name of a header's algorithm; an unknown one is an error."""
    try:
        return _algo_name(algo)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None


def _empty_info(reader: ManifestReader, algo_override: str | None) -> ManifestInfo:
    """A manifest without records or header (an older parhash's manifest of an empty tree):
    nothing says where its tree is or how it was hashed, so it has no roots (the audit asks
    for ROOT) and the algorithm of ``-a``, the file's name, or the default."""
    algo = algo_override or algorithm_from_name(reader.path) or DEFAULT_ALGORITHM
    return ManifestInfo(reader.name, reader.format, get_algorithm(algo).name, [])


def no_root_message(info: ManifestInfo) -> str:
    """Why an audit of a header-less empty manifest needs ROOT, and how to give it."""
    return (
        f"{info.path}: no records, and no header to name the tree they came from: "
        "give the tree to audit as ROOT (parhash audit MANIFEST ROOT)"
    )


def iter_entries(
    info: ManifestInfo, *, plain: bool = False, relative: bool = False
) -> Iterator[ManifestEntry | PlainRows]:
    """Stream the manifest's entries, validated line by line; completes ``info.roots``.
    The manifest is closed when they are all read (or the reading stops).

    ``plain``: a run of jsonl records that pass the chunk-level check (``_PlainRecords``)
    comes as one ``PlainRows`` of (key, size, mtime, digest) instead of one entry each,
    the keys made as ``relative_key`` makes them (``relative``: the paths themselves, as
    for a ``--relative`` manifest). Every other record is a ``ManifestEntry`` as without.
    """
    reader = info.reader
    assert reader is not None, "ManifestInfo from read_info"
    try:
        if info.format == "sums":
            yield from _sums_entries(reader, info)
            return
        if info.format == "hashdeep":
            yield from hashdeep.manifest_entries(info, reader.rewind())
            return
        roots = set(info.roots)
        if plain and info.format == "jsonl":
            reader.plain = _PlainRecords(info.algo, roots, relative)
        for item in reader.records():
            if type(item) is PlainRows:
                yield item
                continue
            entry, algo, number = item
            if algo != info.algo:
                where = f"{info.path}:{number}"
                raise ManifestError(f"{where}: a {algo} record in a {info.algo} manifest")
            if entry.root not in roots:
                roots.add(entry.root)
                info.roots.append(entry.root)
            yield entry
    finally:
        reader.close()


# -- validation ------------------------------------------------------------------------------

_record_fields = operator.itemgetter("path", "root", "size", "mtime", "hash", "error", "algo")

#: SQLite stores integers as signed 64 bits: a larger size or mtime cannot even be compared.
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

_HEX = re.compile(r"[0-9a-fA-F]+\Z")

#: Longest piece of a bad value quoted back in a message.
_SHOWN = 40


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


#: Spellings of algorithms met so far -> (canonical name, digest length): a manifest spells
#: its algorithm the same way a million times.
_ALGO_SEEN: dict[str, tuple[str, int]] = {}


def _algo_name(algo: object) -> str:
    """The canonical name of a record's algorithm (records may spell it in any case)."""
    try:
        name = canonical(algo)
    except UnknownAlgorithm:
        raise ValueError(f"algo must name a supported algorithm, got {_shown(algo)}") from None
    _ALGO_SEEN[algo] = (name, get_algorithm(name).hex_length)  # type: ignore[index]
    return name


def _digest(value: object, algo: str, key: str) -> str:
    """A digest as stored: hex of exactly the algorithm's length, any case, made lower case
    (tools on Windows print upper case; it is the same digest)."""
    length = ALGORITHMS[algo].hex_length
    if type(value) is not str or len(value) != length or not _HEX.match(value):
        raise ValueError(f"{key} must be {length} hex digits ({algo}), got {_shown(value)}")
    return value.lower()


def _size(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise ValueError(f"size must be an integer from 0 to 2**63-1, got {_shown(value)}")
    return value


def _mtime(value: object) -> int | None:
    """Nanoseconds since the epoch: signed, since a file can date from before 1970 (and
    ``st_mtime_ns`` is then negative), but within 64 bits."""
    if value is None:
        return None
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"mtime must be an integer (nanoseconds) within 64 bits, got {_shown(value)}"
        )
    return value


def _name(value: object, key: str) -> str:
    """A path: a name the file system could hold (no NUL; JSON's ``\\udcXX`` escapes for
    bytes that are not UTF-8 are fine, a lone surrogate of any other kind is not)."""
    if type(value) is not str or not value or "\0" in value:
        raise ValueError(f"{key} must be a non-empty string without NUL, got {_shown(value)}")
    if not value.isascii():
        try:
            os.fsencode(value)
        except UnicodeEncodeError:
            raise ValueError(f"{key} is not a file name (a lone surrogate escape)") from None
    return value


def _message(value: object) -> str | None:
    """An error record's message, made storable: it is only shown, so a character UTF-8
    cannot hold (a surrogate) is written as its escape rather than refused."""
    if value is None:
        return None
    if type(value) is not str or not value:
        raise ValueError(f"error must be a non-empty string or null, got {_shown(value)}")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _entry(
    path, root, size, mtime, digest, error, algo, extras, source: str, number: int
) -> Record:
    """Validate one record's fields (already decoded, csv cells already converted) and
    return it with its algorithm's name.

    The common record (a hex digest, integer size and mtime, ASCII names) passes one
    inline test, three times cheaper than the field-by-field check; anything else takes
    that check, which names what is wrong.
    """
    known = _ALGO_SEEN.get(algo) if type(algo) is str else None
    if (
        known is not None
        and error is None
        and not extras
        and type(digest) is str
        and len(digest) == known[1]
        and _HEX.match(digest)
        and type(size) is int
        and 0 <= size <= INT64_MAX
        and type(mtime) is int
        and INT64_MIN <= mtime <= INT64_MAX
        and type(path) is str
        and type(root) is str
        and path.isascii()
        and root.isascii()
        and path
        and root
        and "\0" not in path
        and "\0" not in root
    ):
        return ManifestEntry(path, root, size, mtime, digest.lower(), None), known[0], number
    return _checked_entry(path, root, size, mtime, digest, error, algo, extras, source, number)


def _checked_entry(
    path, root, size, mtime, digest, error, algo, extras, source: str, number: int
) -> Record:
    """``_entry``, one field at a time: a problem is the record's place and what is wrong."""
    try:
        algo = _algo_name(algo)
        error = _message(error)
        if digest is None:
            if error is None:
                raise ValueError("record has neither a hash nor an error")
        elif error is not None:
            raise ValueError("record has both a hash and an error")
        else:
            digest = _digest(digest, algo, "hash")
        extra = {key: _extra_digest(key, value, digest, algo) for key, value in extras}
        entry = ManifestEntry(
            _name(path, "path"),
            _name(root, "root"),
            _size(size),
            _mtime(mtime),
            digest,
            error,
            extra or None,
        )
    except ValueError as exc:
        raise ManifestError(f"{source}:{number}: {exc}") from None
    return entry, algo, number


def _extra_digest(key: str, value: object, digest: str | None, algo: str) -> str | None:
    """A multi-algorithm manifest's per-algorithm field (lower case): a digest exactly when
    the record has one (the first algorithm's must repeat ``hash``)."""
    if digest is None:
        if value is not None:
            raise ValueError(f"{key} must be empty in a record with an error")
        return None
    extra = _digest(value, key, key)
    if key == algo and extra != digest:
        raise ValueError(f"{key} differs from hash")
    return extra


# -- jsonl and json -------------------------------------------------------------------------


def _entry_from_object(obj: object, source: str, number: int) -> Record:
    """Validate one decoded record; the location is formatted only when something is wrong."""
    if type(obj) is not dict:
        raise ManifestError(f"{source}:{number}: a record must be a JSON object")
    if "manifest_version" in obj:
        _check_version(obj["manifest_version"], f"{source}:{number}")
    try:
        path, root, size, mtime, digest, error, algo = _record_fields(obj)
    except KeyError as exc:
        raise ManifestError(f"{source}:{number}: record has no {exc.args[0]!r} key") from None
    extras = [(k, v) for k, v in obj.items() if k in ALGORITHMS] if len(obj) > 7 else ()
    return _entry(path, root, size, mtime, digest, error, algo, extras, source, number)


# -- plain records, a chunk at a time ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlainRows:
    """Records taken whole by ``_PlainRecords``: all of ``root``, each path ``prefix + key``,
    each row (key, size, mtime, digest). What the audit loads without a Python object per
    record."""

    root: str
    prefix: str
    rows: list[tuple[str, int, int, str]]


#: The record keys, exactly: a plain record has these and no other (no extra digests, no
#: ``manifest_version``).
_PLAIN_KEYS = 7

_LOWER_HEX = "0123456789abcdef"

#: Where a key that ``os.path.normpath`` would change shows itself once the keys are
#: joined with NUL (no path holds one) and framed by it: an empty or ``.``/``..``
#: component, a doubled or a trailing slash, a leading slash.
_NOT_NORMAL = ("\0\0", "//", "/./", "/../", "/\0", "\0./", "\0../", "\0.\0", "\0..\0")
_NOT_NORMAL += ("/.\0", "/..\0", "\0/")


class _PlainRecords:
    """The chunk-level twin of ``_entry``: a decoded jsonl chunk whose every record is
    the plain kind (the seven keys, one known root, the manifest's algorithm spelled as
    its canonical name, no error, lower-case hex of the right length, sizes and mtimes
    that are ints in range, ASCII paths below the root whose keys ``normpath`` leaves
    alone) is checked with a handful of C-level passes over its columns instead of a
    dozen Python tests per record (measured: 4.0 us per record down to 0.5 us), and comes
    back as rows. Anything else returns None: the chunk takes the per-record path, which
    accepts the same records, yields the same entries and names what is wrong with the
    others (tests/test_nightly.py holds the two to agreement)."""

    def __init__(self, algo: str, roots: set[str], relative: bool) -> None:
        self.algo = algo
        self.length = ALGORITHMS[algo].hex_length
        self.roots = roots  #: the manifest's known roots (a new one is met record by record)
        self.relative = relative
        self.prefixes: dict[str, str | None] = {}

    def _prefix(self, root: str) -> str | None:
        """What a path of ``root`` starts with and loses to become its key (None: this
        root takes the per-record path: unknown, or not a name ``_name`` accepts)."""
        if root not in self.roots:  # not yet: iter_entries adds it when met
            return None
        if root not in self.prefixes:
            try:
                _name(root, "root")
            except ValueError:
                self.prefixes[root] = None
            else:
                self.prefixes[root] = "" if self.relative else child_prefix(root)
        return self.prefixes[root]

    def __call__(self, objs: list[object]) -> PlainRows | None:
        if set(map(type, objs)) != {dict} or set(map(len, objs)) != {_PLAIN_KEYS}:
            return None
        try:
            paths, roots, sizes, mtimes, digests, errors, algos = zip(
                *map(_record_fields, objs), strict=True
            )
        except KeyError:
            return None
        root_set = set(roots)
        if len(root_set) != 1 or set(algos) != {self.algo} or set(errors) != {None}:
            return None
        (root,) = root_set
        prefix = self._prefix(root)
        if prefix is None or not (_ints(sizes, 0) and _ints(mtimes, INT64_MIN)):
            return None
        if set(map(type, digests)) != {str} or set(map(len, digests)) != {self.length}:
            return None
        if "".join(digests).strip(_LOWER_HEX) or set(map(type, paths)) != {str}:
            return None
        keys = plain_keys(paths, prefix)
        if keys is None:
            return None
        return PlainRows(root, prefix, list(zip(keys, sizes, mtimes, digests, strict=True)))


def _ints(values: tuple, low: int) -> bool:
    """Every value an int (not a bool, not a float) from ``low`` to ``INT64_MAX``."""
    return set(map(type, values)) == {int} and min(values) >= low and max(values) <= INT64_MAX


def plain_keys(paths: tuple[str, ...], prefix: str) -> list[str] | None:
    """The keys of paths that all start with ``prefix``, are ASCII and non-empty, hold no
    NUL, and whose rest ``normpath`` leaves as it is (so it is what ``relative_key``
    gives); None if any is not."""
    # Character by character on purpose: min and max of the paths, compared once.
    if prefix and not os.path.commonprefix(paths).startswith(prefix):  # noqa: RUF071
        return None
    cut = len(prefix)
    keys = [path[cut:] for path in paths] if cut else list(paths)
    joined = "\0" + "\0".join(keys) + "\0"
    if not joined.isascii() or joined.count("\0") != len(keys) + 1:
        return None
    if any(pattern in joined for pattern in _NOT_NORMAL):
        return None
    return keys


def _json_header(header: object, where: str) -> dict:
    """Validate a manifest header H (jsonl line 1, csv ``#parhash-header``, json "header"):
    the keys the audit relies on must be right; any other key is accepted and ignored."""
    if type(header) is dict and set(header) == {"header"}:
        header = header["header"]  # csv's line may carry {"header": H} as jsonl's does
    if type(header) is not dict:
        raise ManifestError(f"{where}: the header must be a JSON object")
    versions = [header.get(key) for key in ("version", "manifest_version")]
    if not any(type(v) is int for v in versions):
        raise ManifestError(f"{where}: header has no manifest_version")
    for version in versions:
        _check_version(version, where)
    roots = header.get("roots")
    if type(roots) is not list or not all(type(r) is str and r for r in roots):
        raise ManifestError(f"{where}: header 'roots' must be a list of paths")
    started = header.get("started")
    if started is not None and type(started) is not str:
        raise ManifestError(f"{where}: header 'started' must be a string")
    return header


def _is_header_line(obj: object) -> bool:
    return type(obj) is dict and "header" in obj and "path" not in obj


_decode = json.JSONDecoder().decode

#: jsonl lines decoded per ``json.loads`` call: one C-level parse of a joined array instead
#: of a Python call per line (3x faster on a million-line manifest).
JSONL_CHUNK = 2000


def _reason(exc: ValueError | RecursionError) -> str:
    """Why a line is not JSON (a number of more than 4,300 digits is a plain ValueError)."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return getattr(exc, "msg", None) or str(exc)


def _jsonl_records(reader: ManifestReader) -> Iterator[Record | PlainRows]:
    """One record per line; the first line may be ``{"header": H}``, no other. With
    ``reader.plain`` set, a chunk of plain records is one ``PlainRows``."""
    source = reader.name
    first = 1
    header_allowed = True
    while True:
        lines = reader.stream.readlines(JSONL_CHUNK * 200)
        if not lines:
            return
        if not lines[-1].endswith(b"\n"):
            where = f"{source}:{first + len(lines) - 1}"
            raise ManifestError(f"{where}: last line is incomplete (truncated manifest?)")
        numbered = [(first + i, raw) for i, raw in enumerate(lines) if raw.strip()]
        first += len(lines)
        objs = _decode_lines(source, numbered)
        tried = False  # the chunk-level check, once per chunk (from the first record on)
        for i, ((number, _), obj) in enumerate(zip(numbered, objs, strict=True)):
            if not tried and reader.plain is not None and not header_allowed:
                tried = True
                taken = reader.plain(objs[i:] if i else objs)
                if taken is not None:
                    yield taken
                    break
            if _is_header_line(obj):
                if not header_allowed:
                    raise ManifestError(f"{source}:{number}: a header must be the first line")
                reader.set_header(obj["header"], f"{source}:{number}")  # type: ignore[index]
            else:
                yield _entry_from_object(obj, source, number)
            header_allowed = False


def _decode_lines(path: str, numbered: list[tuple[int, bytes]]) -> list[object]:
    """Decode many JSON lines at once; on failure, find and name the bad line."""
    try:
        return _decode("[" + b",".join(raw for _, raw in numbered).decode("utf-8") + "]")
    except (ValueError, RecursionError):
        pass
    out = []
    for number, raw in numbered:
        try:
            out.append(_decode(raw.decode("utf-8")))
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"{path}:{number}: not valid JSON ({_reason(exc)})") from None
    # Each line parsed alone, yet not together: a line held two values, e.g. "{...}, {...}".
    raise ManifestError(f"{path}: a line holds more than one JSON value")


def _json_records(reader: ManifestReader) -> Iterator[Record]:
    """A JSON document, however it is laid out (parhash's one record per line, ``jq .``,
    ``json.dumps(indent=2)``, one line): ``{"header": H, "files": [...], "summary": {...}}``
    with its keys in any order, or a bare array of records. Streamed record by record;
    the summary's file count, when there is one, must match."""
    doc = JsonText(reader.text(), reader.name)
    try:
        if doc.take("{[", "a JSON object or array") == "[":
            yield from _json_array(doc, "the end of the records array")
        else:
            yield from _json_object(doc, reader)
        if doc.peek():
            raise ManifestError(f"{doc.where()}: more data after the end of the JSON document")
    except JsonTextError as exc:
        raise ManifestError(str(exc)) from None


def _json_object(doc: JsonText, reader: ManifestReader) -> Iterator[Record]:
    count: int | None = None
    summary: object = None
    if doc.peek() == "}":
        doc.pos += 1
    else:
        while True:
            if doc.peek() != '"':
                doc.take('"', "a key")
            key_where = doc.where()
            key = doc.value()
            doc.take(":", f"':' after {key!r}")
            doc.peek()
            if key in RECORD_ARRAYS:
                if count is not None:
                    raise ManifestError(f"{key_where}: a second records array")
                reader.find_json_header()  # before the first record is handed out
                doc.take("[", f"the {key} array")
                count = yield from _json_array(doc, "the end of the records and the summary")
            elif key == "header":
                reader.set_header(doc.value(), key_where)
            elif key == "summary":
                summary_where, summary = key_where, doc.value()
            else:
                doc.value()  # some other key (or a second array): ignored, as new keys are
            if doc.take(",}", "',' or '}' (truncated manifest? no summary)") == "}":
                break
    if count is None:
        raise ManifestError(f'{reader.name}: the JSON document has no "files" array')
    if summary is not None:
        listed = summary.get("files") if type(summary) is dict else None
        if listed != count:
            raise ManifestError(
                f"{summary_where}: summary counts {listed} files but {count} are listed"
            )


def _json_header_anywhere(doc: JsonText, reader: ManifestReader) -> None:
    """The first pass of ``find_json_header``: top-level keys until "header" (any errors
    are the document's, said as the records' pass would say them)."""
    doc.take("{", "a JSON object")
    while doc.peek() == '"':
        key_where = doc.where()
        key = doc.value()
        doc.take(":", f"':' after {key!r}")
        if key == "header":
            doc.peek()
            reader.set_header(doc.value(), key_where)
            return
        if key in RECORD_ARRAYS and doc.peek() == "[":
            doc.take("[", f"the {key} array")
            _skip_array(doc)
        else:
            doc.peek()
            doc.value()
        if doc.take(",}", "',' or '}' (truncated manifest? no summary)") == "}":
            return


def _skip_array(doc: JsonText) -> None:
    """Consume an array whose ``[`` was just taken, one element at a time, keeping none."""
    if doc.peek() == "]":
        doc.pos += 1
        return
    while True:
        doc.peek()
        doc.value()
        if doc.take(",]", "',' or ']' (the end of the records array)") == "]":
            return


def _json_array(doc: JsonText, end: str) -> Iterator[Record]:
    """The records of an array whose ``[`` was just consumed; returns how many."""
    count = 0
    if doc.peek() == "]":
        doc.pos += 1
        return count
    while True:
        if not doc.peek():
            doc.take("{", end)
        number = doc.line()
        obj = doc.value()
        count += 1
        yield _entry_from_object(obj, doc.source, number)
        if doc.take(",]", f"',' or ']' ({end})") == "]":
            return count


# -- csv --------------------------------------------------------------------------------------


#: A csv integer cell: digits only (``int()`` would also take ``+5``, `` 5``, ``5_000``).
_CSV_SIZE = re.compile(r"[0-9]+\Z")
_CSV_MTIME = re.compile(r"-?[0-9]+\Z")

#: Digits beyond any 64-bit value (and far below ``int()``'s 4,300-digit limit).
_MAX_DIGITS = 20


def _csv_int(
    text: str, pattern: re.Pattern[str], what: str, source: str, number: int
) -> int | None:
    """A cell as an integer (its range is checked with the other fields), None if empty."""
    if text == "":
        return None
    if not pattern.match(text):
        raise ManifestError(f"{source}:{number}: {what} is not an integer: {_shown(text)}")
    if len(text) > _MAX_DIGITS:
        raise ManifestError(f"{source}:{number}: {what} is out of range: {_shown(text)}")
    return int(text)


def _csv_columns(reader: ManifestReader, lines: Iterator[str]) -> tuple[dict[str, int], int]:
    """Read up to the column row: line 1 may be ``#parhash-header H``, other ``#`` lines are
    comments. Returns each column's index, by name, and the column row's line number."""
    number = 0
    for raw in lines:
        number += 1
        if number == 1 and raw.startswith(CSV_HEADER_PREFIX):
            where = f"{reader.name}:1"
            try:
                header = json.loads(raw[len(CSV_HEADER_PREFIX) :])
            except ValueError as exc:
                raise ManifestError(f"{where}: bad header ({_reason(exc)})") from None
            reader.set_header(header, where)
        elif raw.strip() and not raw.startswith("#"):
            names = next(csv.reader([raw]))
            break
    else:
        raise ManifestError(f"{reader.name}:{number}: no column row ({','.join(FIELDS)})")
    where = f"{reader.name}:{number}"
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in columns:
            raise ManifestError(f"{where}: column {name!r} appears twice")
        columns[name] = index
    missing = [name for name in FIELDS if name not in columns]
    if missing:
        raise ManifestError(
            f"{where}: no {', '.join(map(repr, missing))} column (needs {','.join(FIELDS)})"
        )
    return columns, number


class _Lines:
    """Iterates text lines, remembering the last (to tell a cut last line)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.last = "\n"

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.last = line
            yield line


def _csv_records(reader: ManifestReader) -> Iterator[Record]:
    """Rows read by column name, so the columns may come in any order; a column named after
    an algorithm is that algorithm's digest (``-a sha256,blake3``), others are ignored."""
    lines = _Lines(iter(reader.text("surrogateescape")))
    columns, offset = _csv_columns(reader, iter(lines))
    fields = operator.itemgetter(*(columns[name] for name in FIELDS))
    extra = [(name, i) for name, i in columns.items() if name in ALGORITHMS]
    rows = csv.reader(iter(lines))
    pending: tuple[int, list[str]] | None = None
    try:
        for row in rows:
            if pending is not None:
                yield _csv_entry(reader.name, *pending, len(columns), fields, extra)
            pending = (offset + rows.line_num, row) if row else None
    except csv.Error as exc:
        raise ManifestError(f"{reader.name}:{offset + rows.line_num}: {exc}") from None
    if pending is not None:
        if not lines.last.endswith("\n"):
            raise ManifestError(
                f"{reader.name}:{pending[0]}: last line is incomplete (truncated manifest?)"
            )
        yield _csv_entry(reader.name, *pending, len(columns), fields, extra)


def _csv_entry(source, number, row, width, fields, extra) -> Record:
    if len(row) != width:
        raise ManifestError(f"{source}:{number}: expected {width} columns, got {len(row)}")
    path, size, mtime, algo, digest, error, root = fields(row)
    return _entry(
        path,
        root,
        _csv_int(size, _CSV_SIZE, "size", source, number),
        _csv_int(mtime, _CSV_MTIME, "mtime", source, number),
        digest or None,
        error or None,
        algo,
        [(key, row[i] or None) for key, i in extra],
        source,
        number,
    )


_READERS = {"jsonl": _jsonl_records, "json": _json_records, "csv": _csv_records}


# -- sums -------------------------------------------------------------------------------------


def _sums_lines(reader: ManifestReader, stream) -> Iterator[tuple[str, ChecksumLine]]:
    for number, raw in enumerate(stream, 1):
        where = f"{reader.name}:{number}"
        if not raw.endswith(b"\n"):
            raise ManifestError(f"{where}: last line is incomplete (truncated manifest?)")
        text = raw[:-1].decode("utf-8", "surrogateescape")
        if not text or text.startswith("#"):
            continue
        try:
            yield where, parse_line(text)
        except BadLine as exc:
            raise ManifestError(f"{where}: {exc}") from None


def _sums_info(reader: ManifestReader, algo_override: str | None) -> ManifestInfo:
    """A sums file records no root: the common directory of its paths stands in for it,
    known only once every line was read (a second pass, ``rewind``, yields the entries)."""
    algo = algo_override or algorithm_from_name(reader.path)
    common: str | None = None
    for where, line in _sums_lines(reader, reader.stream):
        line_algo = line.tag_algo or algo or algorithm_for_length(len(line.digest), reader.name)
        if algo is None:
            algo = line_algo
        elif line_algo != algo:
            raise ManifestError(f"{where}: mixes {line_algo} into a {algo} manifest")
        try:
            _digest(line.digest, get_algorithm(algo).name, "the digest")
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        common = _common_dir(common, os.path.dirname(line.name))
    if common is None:
        return _empty_info(reader, algo_override)
    return ManifestInfo(reader.name, "sums", get_algorithm(algo).name, [common or "."])


def _common_dir(common: str | None, parent: str) -> str:
    if common is None:
        return parent
    if not common or not parent:
        return ""
    try:
        return os.path.commonpath([common, parent])
    except ValueError:  # one absolute, one relative
        return ""


def _sums_entries(reader: ManifestReader, info: ManifestInfo) -> Iterator[ManifestEntry]:
    if not info.roots:
        return
    root = info.roots[0]
    for _, line in _sums_lines(reader, reader.rewind()):
        yield ManifestEntry(line.name, root, None, None, line.digest, None)


def relative_key(path: str, root: str) -> str:
    """The key an audit compares on: the path relative to its root (or the path itself if it
    was recorded relative already), normalised so ``./a`` and ``a`` are the same file."""
    prefix = child_prefix(root)
    if root not in (".", "") and path.startswith(prefix):
        path = path[len(prefix) :]
    elif path == root:
        path = os.path.basename(path)
    return os.path.normpath(path)
