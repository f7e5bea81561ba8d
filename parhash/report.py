"""Reporters: turn record lists into the bytes of one output format (sums, jsonl, json, csv).

Each reporter writes to a binary stream, one ``write`` per batch (one encode and one
``write`` call per batch, not per file), and encodes names with surrogateescape, so a
name that is not valid UTF-8 comes out with exactly the bytes it has on disk. The one
exception is JSON text, which must be valid UTF-8: there such names carry ``\\udcXX``
escapes, and ``os.fsencode(json.loads(line)["path"])`` gives the original bytes back.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Rendering:
    """How records become bytes in one format: all a worker needs to format its task's
    records exactly as the parent would (the formats stay owned here, called there)."""

    fmt: str  #: "sums", "jsonl", "json" (the records array's body) or "csv" (rows only)
    #: Several algorithms (``-a sha256,xxh3``): the first is ``algo``/``hash``, and each
    #: gets a field of its own in jsonl/json/csv, a tagged line each in sums.
    algos: tuple[str, ...]
    relative: bool = False
    tag: bool = False
    zero: bool = False


Formatter = Callable[[list[FileRecord]], bytes]


@functools.lru_cache(maxsize=16)
def formatter(rendering: Rendering) -> Formatter:
    """The formatting function of ``rendering`` (built once per process and format)."""
    if rendering.fmt == "sums":
        return _SumsFormat(rendering)
    if rendering.fmt in ("jsonl", "json"):
        return _JsonFormat(rendering)
    if rendering.fmt == "csv":
        return _CsvFormat(rendering)
    raise ValueError(f"unknown format {rendering.fmt!r}")


#: Algorithms whose lines are always tagged: ``xxhsum -H3`` writes ``XXH3 (f) = hex``, and an
#: untagged 16-digit line means XXH64 to ``xxhsum -c``, so an untagged XXH3 line would fail.
ALWAYS_TAGGED = frozenset({"xxh3"})


def _plain(name: str) -> bool:
    """True if no escaping rule can apply to the name (the common case, tested first)."""
    return "\\" not in name and "\n" not in name and "\r" not in name


class _SumsFormat:
    """Checksum lines exactly as the algorithm's own tool prints them: ``<hex>  <path>``
    (sha256sum, b3sum, xxhsum -H1), ``XXH3 (<path>) = <hex>`` (xxhsum -H3), or the BSD form
    for every algorithm with ``--tag``. Names are escaped as that tool escapes them.

    Error records print nothing here (sha256sum prints nothing on stdout for a file it can't
    read); their warning goes to stderr and they count in the exit code.
    """

    def __init__(self, rendering: Rendering) -> None:
        algos = rendering.algos
        self.relative, self.zero = rendering.relative, rendering.zero
        # Several digests per file are only unambiguous with their algorithm on each line:
        # then every file gets one tagged line per algorithm.
        tagged = rendering.tag or len(algos) > 1 or algos[0] in ALWAYS_TAGGED
        self.tags = [get_algorithm(a).tag for a in algos] if tagged else None
        self.styles = [escape_style(a) for a in algos]

    def __call__(self, records: list[FileRecord]) -> bytes:
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
        return "".join(lines).encode("utf-8", "surrogateescape") if lines else b""

    def from_raw(self, paths: list[str], raws: list, root: str) -> bytes | None:
        """The lines of files that were all hashed without error, from the read results
        (size, mtime_ns, digest, None) directly: no record per file in the worker. None when
        this rendering needs the general path (several algorithms, -z, --relative)."""
        if self.zero or self.relative or (self.tags is not None and len(self.tags) > 1):
            return None
        tag = self.tags[0] if self.tags else None
        style = self.styles[0]
        lines = [
            (f"{tag} ({p}) = {r[2]}\n" if tag else f"{r[2]}  {p}\n")
            if _plain(p)
            else format_line(r[2], p, tag=tag, style=style)
            for p, r in zip(paths, raws, strict=True)
        ]
        return "".join(lines).encode("utf-8", "surrogateescape")

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


#: Distinct roots whose JSON strings a formatter remembers (every record repeats its root).
ROOTS_REMEMBERED = 256


class _JsonFormat:
    """Records as JSON objects, keys in ``FIELDS`` order, built by hand for speed: one per
    line (jsonl, with its newline), or the body of json's records array (``,\n`` between,
    nothing after: the reporter joins chunks)."""

    def __init__(self, rendering: Rendering) -> None:
        self.algos, self.relative = rendering.algos, rendering.relative
        self.lines = rendering.fmt == "jsonl"
        self.roots: dict[str, str] = {}

    def from_raw(self, paths: list[str], raws: list, root: str) -> bytes | None:
        """``_SumsFormat.from_raw`` for JSON: the same text as ``_json_record`` makes."""
        if self.relative or len(self.algos) > 1:
            return None
        tail = f'"algo": "{self.algos[0]}", "hash": "'
        end = f'", "error": null, "root": {json_string(root)}}}'
        objects = [
            f'{{"path": {json_string(p)}, "size": {r[0]}, "mtime": {r[1]}, {tail}{r[2]}{end}'
            for p, r in zip(paths, raws, strict=True)
        ]
        if self.lines:
            return ("\n".join(objects) + "\n").encode("utf-8")
        return ",\n".join(objects).encode("utf-8")

    def __call__(self, records: list[FileRecord]) -> bytes:
        if not records:
            return b""
        if len(self.roots) > ROOTS_REMEMBERED:
            self.roots.clear()
        objects = [_json_record(r, self.algos, self.relative, self.roots) for r in records]
        if self.lines:
            return ("\n".join(objects) + "\n").encode("utf-8")
        return ",\n".join(objects).encode("utf-8")


class _CsvFormat:
    """RFC 4180 rows, the columns of ``FIELDS`` (plus one per algorithm with several). No
    ``from_raw``: csv's writer is the cost here, so records cost nothing extra."""

    def __init__(self, rendering: Rendering) -> None:
        self.algos, self.relative = rendering.algos, rendering.relative
        self.multi = len(self.algos) > 1

    def __call__(self, records: list[FileRecord]) -> bytes:
        algo = self.algos[0]
        rows = []
        for r in records:
            row = [
                display_path(r, self.relative),
                "" if r.size is None else r.size,
                "" if r.mtime_ns is None else r.mtime_ns,
                algo,
                r.digest or "",
                r.error or "",
                r.root,
            ]
            if self.multi:
                row.extend((r.digest, *r.extra) if r.digest else [""] * len(self.algos))
            rows.append(row)
        return csv_bytes(rows)


def csv_bytes(rows: list) -> bytes:
    """Rows as CSV text (CRLF line ends), names with their exact bytes."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogateescape")


def _json_record(
    record: FileRecord, algos: tuple[str, ...], relative: bool, roots: dict[str, str]
) -> str:
    """One record as a JSON object; ``roots`` caches each root's JSON string."""
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


class Reporter:
    """A sink for one format: the header, then bytes (formatted by the workers with
    ``rendering``, or here by ``write`` for the records the parent makes), then the end."""

    fmt = "sums"

    def __init__(
        self,
        stream: BinaryIO,
        algos: tuple[str, ...] | str,
        *,
        relative: bool = False,
        options: dict | None = None,
        tag: bool = False,
        zero: bool = False,
    ) -> None:
        self.stream = stream
        names = parse_algorithms(algos) if isinstance(algos, str) else tuple(algos)
        self.rendering = Rendering(self.fmt, names, relative, tag, zero)
        self.format = formatter(self.rendering)
        self.algos, self.algo, self.relative = names, names[0], relative
        #: The selection (walk and size options) the header records, for ``audit``.
        self.options = options or {}
        self.started = time.time()

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
        """Records made in the parent (walker errors, hard links, stdin): formatted here."""
        data = self.format(records)
        if data:
            self.write_data(data)

    def write_data(self, data: bytes) -> None:
        """Bytes a worker formatted with ``rendering``: written as they are."""
        self.stream.write(data)

    def close(self, summary: Summary) -> None:
        self.stream.flush()


class SumsReporter(Reporter):
    """Checksum lines (``_SumsFormat``); sums files have no header."""


class JsonlReporter(Reporter):
    """One JSON object per line (``_JsonFormat``). Line 1 is ``{"header": H}`` (it has no
    ``path`` key, so ``jq 'select(.path)'`` skips it)."""

    fmt = "jsonl"

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        text = json.dumps({"header": header or self.header(roots)}, ensure_ascii=True)
        self.stream.write(f"{text}\n".encode())


class JsonReporter(Reporter):
    """One JSON document, streamed: a header object, the records array, then a summary."""

    fmt = "json"

    def __init__(self, stream: BinaryIO, algos, **kwargs) -> None:
        super().__init__(stream, algos, **kwargs)
        self.first = True

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        text = json.dumps(header or self.header(roots), ensure_ascii=True)
        self.stream.write(f'{{"header": {text},\n"files": [\n'.encode())

    def write_data(self, data: bytes) -> None:
        if data:
            self.stream.write(data if self.first else b",\n" + data)
            self.first = False

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

    fmt = "csv"

    def begin(self, roots: list[str], header: dict | None = None) -> None:
        text = json.dumps(header or self.header(roots), ensure_ascii=True, separators=(",", ":"))
        self.stream.write(f"{CSV_HEADER_PREFIX}{text}\r\n".encode())
        multi = len(self.algos) > 1
        self.stream.write(csv_bytes([FIELDS + (self.algos if multi else ())]))


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


_REPORTERS: dict[str, type[Reporter]] = {
    "sums": SumsReporter,
    "jsonl": JsonlReporter,
    "json": JsonReporter,
    "csv": CsvReporter,
}


def make_reporter(
    fmt: str,
    stream: BinaryIO,
    algos: tuple[str, ...] | str,
    *,
    relative: bool = False,
    tag: bool = False,
    zero: bool = False,
    sort: bool = False,
    options: dict | None = None,
) -> Reporter | SortedReporter:
    """Build the reporter for ``--format``; ``sort`` wraps it in a SortedReporter. ``tag``
    and ``zero`` shape sums lines only; ``options`` is the header's selection."""
    cls = _REPORTERS.get(fmt)
    if cls is None:
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "sums":
        reporter = cls(stream, algos, relative=relative, tag=tag, zero=zero)
    else:
        reporter = cls(stream, algos, relative=relative, options=options)
    return SortedReporter(reporter) if sort else reporter
