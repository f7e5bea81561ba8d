"""Reporters: turn record lists into the bytes of one output format (sums, jsonl, json, csv).

Each reporter writes to a binary stream, one ``write`` per batch (one encode and one
``write`` call per batch, not per file), and encodes names with surrogateescape, so a
name that is not valid UTF-8 comes out with exactly the bytes it has on disk. The one
exception is JSON text, which must be valid UTF-8: there such names carry ``\\udcXX``
escapes, and ``os.fsencode(json.loads(line)["path"])`` gives the original bytes back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from typing import BinaryIO

from parhash.algorithms import get_algorithm, parse_algorithms
from parhash.layout import CSV_HEADER_PREFIX, FIELDS, iso_time, manifest_header
from parhash.model import FileRecord, Summary
from parhash.sums import escape_style, format_line
from parhash.walk import child_prefix

_encode_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]
_encode_json_ascii = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def json_string(text: str) -> str:
    """A JSON string literal; names that are not valid UTF-8 get ``\\udcXX`` escapes."""
    if text.isascii():
        return _encode_json_ascii(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _encode_json_ascii(text)
    return _encode_json_str(text)


def display_path(record: FileRecord, relative: bool) -> str:
    """The path as printed: as reached from the argument, or relative to the root."""
    if not relative:
        return record.path
    prefix = child_prefix(record.root)
    if record.path.startswith(prefix):
        return record.path[len(prefix) :]
    if record.path == record.root:  # a file named on the command line: its name
        return os.path.basename(record.path.rstrip(os.sep)) or record.path
    return record.path  # listed by --files-from: already relative to where it was listed


class Reporter:
    """Common plumbing: the stream, the algorithm and the path style."""

    def __init__(
        self, stream: BinaryIO, algo: str, *, relative: bool = False, options: dict | None = None
    ) -> None:
        self.stream = stream
        #: Several algorithms (``-a sha256,xxh3``): the first is ``algo``/``hash``, and each
        #: gets a field of its own in jsonl/json/csv.
        self.algos = parse_algorithms(algo) if isinstance(algo, str) else tuple(algo)
        self.algo = self.algos[0]
        self.relative = relative
        #: The selection (walk and size options) the header records, for ``audit``.
        self.options = options or {}
        self.started = time.time()
        self.roots: dict[str, str] = {}  # root -> its JSON string (jsonl/json)

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        """Called once before the first record: writes the header, if the format has one
        (``header``: a prepared one, as ``audit --update`` carries the old one forward)."""

    def header(self, roots: list[str]) -> dict:
        """The manifest header: what ``audit`` needs to repeat this scan (algorithms, roots
        as given and absolute, host, path style and selection)."""
        return manifest_header(
            self.algos, roots, relative=self.relative, options=self.options, started=self.started
        )

    def write(self, records: list[FileRecord]) -> None:
        raise NotImplementedError

    def close(self, summary: Summary) -> None:
        self.stream.flush()


#: Algorithms whose lines are always tagged: ``xxhsum -H3`` writes ``XXH3 (f) = hex``, and an
#: untagged 16-digit line means XXH64 to ``xxhsum -c``, so an untagged XXH3 line would fail.
ALWAYS_TAGGED = frozenset({"xxh3"})


def _plain(name: str) -> bool:
    """True if no escaping rule can apply to the name (the common case, tested first)."""
    return "\\" not in name and "\n" not in name and "\r" not in name


class SumsReporter(Reporter):
    """Checksum lines exactly as the algorithm's own tool prints them: ``<hex>  <path>``
    (sha256sum, b3sum, xxhsum -H1), ``XXH3 (<path>) = <hex>`` (xxhsum -H3), or the BSD form
    for every algorithm with ``--tag``. Names are escaped as that tool escapes them.

    Error records print nothing here (sha256sum prints nothing on stdout for a file it can't
    read); their warning went to stderr and they count in the exit code.
    """

    def __init__(
        self, stream: BinaryIO, algo: str, *, relative: bool = False, tag: bool = False, zero=False
    ) -> None:
        super().__init__(stream, algo, relative=relative)
        # Several digests per file are only unambiguous with their algorithm on each line:
        # then every file gets one tagged line per algorithm.
        tagged = tag or len(self.algos) > 1 or self.algo in ALWAYS_TAGGED
        self.tags = [get_algorithm(a).tag for a in self.algos] if tagged else None
        self.styles = [escape_style(a) for a in self.algos]
        self.zero = zero

    def write(self, records: list[FileRecord]) -> None:
        if self.tags is not None and len(self.tags) > 1:
            lines = [
                format_line(
                    digest, display_path(r, self.relative), tag=tag, zero=self.zero, style=style
                )
                for r in records
                if r.digest is not None
                for tag, style, digest in zip(
                    self.tags, self.styles, (r.digest, *r.extra), strict=True
                )
            ]
        else:
            lines = self._single(records)
        if lines:
            self.stream.write("".join(lines).encode("utf-8", "surrogateescape"))

    def _single(self, records: list[FileRecord]) -> list[str]:
        """Lines of a one-algorithm run; the common case is kept to one f-string per file,
        with the full formatter only for the rare name that may need escaping."""
        tag = self.tags[0] if self.tags else None
        style = self.styles[0]
        if not self.zero and not self.relative:
            return [
                (f"{tag} ({r.path}) = {r.digest}\n" if tag else f"{r.digest}  {r.path}\n")
                if _plain(r.path)
                else format_line(r.digest, r.path, tag=tag, style=style)
                for r in records
                if r.digest is not None
            ]
        return [
            format_line(
                r.digest, display_path(r, self.relative), tag=tag, zero=self.zero, style=style
            )
            for r in records
            if r.digest is not None
        ]


def _json_record(
    record: FileRecord, algos: tuple[str, ...], relative: bool, roots: dict[str, str]
) -> str:
    """One record as a JSON object; ``roots`` caches each root's JSON string (every record
    of a root repeats it, and the parent formats one record per file)."""
    size = "null" if record.size is None else record.size
    mtime = "null" if record.mtime_ns is None else record.mtime_ns
    digest = "null" if record.digest is None else f'"{record.digest}"'
    error = "null" if record.error is None else json_string(record.error)
    root = roots.get(record.root)
    if root is None:
        root = roots[record.root] = json_string(record.root)
    more = ""
    if len(algos) > 1:
        digests = (record.digest, *record.extra) if record.digest else (None,) * len(algos)
        more = "".join(
            f', "{a}": ' + ("null" if d is None else f'"{d}"')
            for a, d in zip(algos, digests, strict=True)
        )
    return (
        f'{{"path": {json_string(display_path(record, relative))}, "size": {size}, '
        f'"mtime": {mtime}, "algo": "{algos[0]}", "hash": {digest}, "error": {error}, '
        f'"root": {root}{more}}}'
    )


class JsonlReporter(Reporter):
    """One JSON object per line, keys in ``FIELDS`` order; built by hand for speed. Line 1
    is ``{"header": H}`` (it has no ``path`` key, so ``jq 'select(.path)'`` skips it)."""

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        text = json.dumps({"header": header or self.header(roots)}, ensure_ascii=True)
        self.stream.write(f"{text}\n".encode())

    def write(self, records: list[FileRecord]) -> None:
        if records:
            text = "\n".join(
                _json_record(r, self.algos, self.relative, self.roots) for r in records
            )
            self.stream.write((text + "\n").encode("utf-8"))


class JsonReporter(Reporter):
    """One JSON document, streamed: a header object, the records array, then a summary."""

    def __init__(self, stream: BinaryIO, algo: str, *, relative: bool = False, options=None):
        super().__init__(stream, algo, relative=relative, options=options)
        self.first = True

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        text = json.dumps(header or self.header(roots), ensure_ascii=True)
        self.stream.write(f'{{"header": {text},\n"files": [\n'.encode())

    def write(self, records: list[FileRecord]) -> None:
        if not records:
            return
        text = ",\n".join(_json_record(r, self.algos, self.relative, self.roots) for r in records)
        if not self.first:
            text = ",\n" + text
        self.first = False
        self.stream.write(text.encode("utf-8"))

    def close(self, summary: Summary) -> None:
        tail = {
            "files": summary.files,
            "bytes": summary.bytes,
            "errors": summary.errors,
            "elapsed": round(summary.elapsed, 6),
            "ended": iso_time(time.time()),
        }
        self.stream.write(f'\n],\n"summary": {json.dumps(tail)}}}\n'.encode())
        super().close(summary)


class CsvReporter(Reporter):
    """RFC 4180 CSV with a header row, same columns as jsonl; empty cells for null. Before
    it, one ``#parhash-header {...}`` line carries the manifest header (``pandas.read_csv(
    comment="#")``, ``grep -v '^#'`` skip it)."""

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        self.multi = len(self.algos) > 1
        text = json.dumps(header or self.header(roots), ensure_ascii=True, separators=(",", ":"))
        self.stream.write(f"{CSV_HEADER_PREFIX}{text}\r\n".encode())
        self._emit([FIELDS + (self.algos if self.multi else ())])

    def write(self, records: list[FileRecord]) -> None:
        rows = []
        for r in records:
            row = [
                display_path(r, self.relative),
                "" if r.size is None else r.size,
                "" if r.mtime_ns is None else r.mtime_ns,
                self.algo,
                r.digest or "",
                r.error or "",
                r.root,
            ]
            if self.multi:
                row.extend((r.digest, *r.extra) if r.digest else [""] * len(self.algos))
            rows.append(row)
        self._emit(rows)

    def _emit(self, rows: list) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerows(rows)
        self.stream.write(buf.getvalue().encode("utf-8", "surrogateescape"))


class SortedReporter:
    """Holds every record and writes them sorted by path bytes at the end (``--sort``).

    The one place parhash keeps the whole tree in memory, because the user asked for it.
    """

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.records: list[FileRecord] = []

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        self.inner.begin(roots, header)

    def write(self, records: list[FileRecord]) -> None:
        self.records.extend(records)

    def close(self, summary: Summary) -> None:
        relative = self.inner.relative
        self.records.sort(key=lambda r: os.fsencode(display_path(r, relative)))
        for start in range(0, len(self.records), 1024):
            self.inner.write(self.records[start : start + 1024])
        self.records = []
        self.inner.close(summary)


def make_reporter(
    fmt: str,
    stream: BinaryIO,
    algo: str,
    *,
    relative: bool = False,
    tag: bool = False,
    zero: bool = False,
    sort: bool = False,
    options: dict | None = None,
) -> Reporter | SortedReporter:
    """Build the reporter for ``--format``; ``sort`` wraps it in a SortedReporter."""
    reporter: Reporter
    if fmt == "sums":
        reporter = SumsReporter(stream, algo, relative=relative, tag=tag, zero=zero)
    elif fmt == "jsonl":
        reporter = JsonlReporter(stream, algo, relative=relative, options=options)
    elif fmt == "json":
        reporter = JsonReporter(stream, algo, relative=relative, options=options)
    elif fmt == "csv":
        reporter = CsvReporter(stream, algo, relative=relative, options=options)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return SortedReporter(reporter) if sort else reporter
