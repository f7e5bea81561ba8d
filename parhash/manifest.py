"""Reading manifests back: any parhash output with sizes (jsonl, json, csv) or a sums file.

Entries are streamed, never collected, so an audit of a million-entry manifest stays small.
Every problem (a truncated file, a bad line, a newer layout) is a ``ManifestError`` that
names the file and the line, never a traceback and never a silently partial audit.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from parhash import hashdeep
from parhash.exit_codes import FatalError
from parhash.hashing import ALGORITHMS, get_algorithm
from parhash.report import CSV_HEADER_PREFIX, FIELDS, MANIFEST_VERSION
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


def detect_format(path: str) -> str:
    """jsonl, json, csv, hashdeep or sums, from the first bytes (not the file name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror or exc}") from None
    stripped = head.lstrip()
    if hashdeep.is_hashdeep(head):
        return "hashdeep"
    if stripped.startswith(b'{"header"'):
        return "jsonl" if _jsonl_header_line(path) is not None else "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    if head.startswith((",".join(FIELDS).encode(), CSV_HEADER_PREFIX.encode())):
        return "csv"
    return "sums"


def _jsonl_header_line(path: str) -> dict | None:
    """The header of a jsonl manifest: line 1 is one whole ``{"header": H}`` object (a json
    manifest's line 1 is not a complete document)."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        obj = json.loads(first)
    except ValueError:
        return None
    if type(obj) is dict and "header" in obj and "path" not in obj:
        return obj["header"]
    return None


def _header_of(path: str, fmt: str) -> dict | None:
    """The manifest's header object H, or None for a manifest that has none (a sums file,
    a version-1 jsonl or csv): those audit as before, without a recorded selection."""
    if fmt == "json":
        header: object = _json_header(path)
    elif fmt == "jsonl":
        header = _jsonl_header_line(path)
    elif fmt == "csv":
        with open(path, "rb") as f:
            first = f.readline().decode("utf-8", "surrogateescape").rstrip("\r\n")
        if not first.startswith(CSV_HEADER_PREFIX):
            return None
        try:
            header = json.loads(first[len(CSV_HEADER_PREFIX) :])
        except ValueError as exc:
            raise ManifestError(f"{path}:1: bad header ({exc.msg})") from None
    else:
        return None
    if header is None:
        return None
    if type(header) is not dict:
        raise ManifestError(f"{path}:1: the header must be a JSON object")
    for key in ("version", "manifest_version"):
        _check_version(header.get(key), f"{path}:1")
    return header


def _check_version(version: object, where: str) -> None:
    if isinstance(version, int) and version > MANIFEST_VERSION:
        raise ManifestError(
            f"{where}: manifest version {version} is newer than this parhash reads "
            f"({MANIFEST_VERSION}); upgrade parhash"
        )


def _info_from_header(path: str, fmt: str, header: dict) -> ManifestInfo:
    """ManifestInfo from H; a key of the wrong type is an error, not a guess."""
    where = f"{path}:1"
    algo = header.get("algo")
    _check_algo(algo, f"{where}: header")
    algos = header.get("algos") or [algo]
    roots = header.get("roots")
    roots_abs = header.get("roots_abs")
    options = header.get("options")
    if not (isinstance(algos, list) and algos[0] == algo):
        raise ManifestError(f"{where}: header 'algos' must be a list starting with 'algo'")
    for name in algos:
        _check_algo(name, f"{where}: header")
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


def read_info(path: str, algo_override: str | None = None) -> ManifestInfo:
    """Read just enough to know the algorithm and the first root (header, or first record).

    More roots of a multi-root jsonl/csv manifest are added to ``info.roots`` by
    ``iter_entries`` as it meets them: the manifest is read once, not twice.
    """
    fmt = detect_format(path)
    header = _header_of(path, fmt)
    if header is not None:
        return _info_from_header(path, fmt, header)
    if fmt == "sums":
        return _sums_info(path, algo_override)
    if fmt == "hashdeep":
        return hashdeep.manifest_info(path)
    for entry, algo in _records(path, fmt):
        _check_algo(algo, f"{path}: first record")
        info = ManifestInfo(path, fmt, algo, [entry.root])
        info.relative = _looks_relative(entry)
        return info
    raise ManifestError(f"{path}: no records: an empty manifest cannot be audited against")


def _looks_relative(entry: ManifestEntry) -> bool:
    """A header-less manifest's path style, from its first record: made with --relative
    when the path is not reached from the root (``tree/a``, ``./a``)."""
    if entry.path == entry.root:
        return False
    return not entry.path.startswith(child_prefix(entry.root))


def _check_algo(algo: object, where: str) -> None:
    try:
        get_algorithm(str(algo))
    except KeyError:
        raise ManifestError(f"{where}: unknown algorithm {algo!r}") from None


def iter_entries(info: ManifestInfo) -> Iterator[ManifestEntry]:
    """Stream the manifest's entries, validated line by line; completes ``info.roots``."""
    if info.format in ("sums", "hashdeep"):
        yield from (_sums_entries if info.format == "sums" else hashdeep.manifest_entries)(info)
        return
    roots = set(info.roots)
    for entry, algo in _records(info.path, info.format):
        if algo != info.algo:
            raise ManifestError(f"{info.path}: mixes {algo} records into a {info.algo} manifest")
        if entry.root not in roots:
            roots.add(entry.root)
            info.roots.append(entry.root)
        yield entry


def _records(path: str, fmt: str) -> Iterator[tuple[ManifestEntry, str]]:
    if fmt == "jsonl":
        yield from _jsonl_records(path)
    elif fmt == "json":
        yield from _json_records(path)
    else:
        yield from _csv_records(path)


_KEYS = ("path", "root", "size", "mtime", "hash", "error")


def _entry_from_object(obj: object, source: str, number: int) -> tuple[ManifestEntry, str]:
    """Validate one decoded record; the location is formatted only when something is wrong."""
    if type(obj) is not dict:
        raise ManifestError(f"{source}:{number}: a record must be a JSON object")
    _check_version(obj.get("manifest_version"), f"{source}:{number}")
    try:
        path, root, size, mtime, digest, error = [obj[k] for k in _KEYS]
        algo = obj["algo"]
    except KeyError as exc:
        raise ManifestError(f"{source}:{number}: record has no {exc.args[0]!r} key") from None
    extra = _extras(obj) if len(obj) > len(_KEYS) + 1 else None
    return _entry(path, root, size, mtime, digest, error, source, number, extra), algo


def _extras(obj: dict) -> dict[str, str | None] | None:
    """The per-algorithm keys of a several-algorithm record (``"blake3": "..."``)."""
    return {k: v for k, v in obj.items() if k in ALGORITHMS and k not in _KEYS} or None


def _entry(
    path, root, size, mtime, digest, error, source: str, number: int, extra=None
) -> ManifestEntry:
    problem = None
    if type(path) is not str or type(root) is not str:
        problem = "path and root must be strings"
    elif size is not None and type(size) is not int:
        problem = "size must be an integer"
    elif mtime is not None and type(mtime) is not int:
        problem = "mtime must be an integer (nanoseconds)"
    elif digest is None and error is None:
        problem = "record has neither a hash nor an error"
    if problem:
        raise ManifestError(f"{source}:{number}: {problem}")
    return ManifestEntry(path, root, size, mtime, digest, error, extra)


_decode = json.JSONDecoder().decode

#: jsonl lines decoded per ``json.loads`` call: one C-level parse of a joined array instead
#: of a Python call per line (3x faster on a million-line manifest).
JSONL_CHUNK = 2000


def _reason(exc: ValueError) -> str:
    return getattr(exc, "msg", None) or "not UTF-8"


def _jsonl_records(path: str) -> Iterator[tuple[ManifestEntry, str]]:
    with open(path, "rb") as f:
        first = 1
        if _jsonl_header_line(path) is not None:  # line 1 is the header, not a record
            f.readline()
            first = 2
        while True:
            lines = f.readlines(JSONL_CHUNK * 200)
            if not lines:
                return
            if not lines[-1].endswith(b"\n"):
                where = f"{path}:{first + len(lines) - 1}"
                raise ManifestError(f"{where}: last line is incomplete (truncated manifest?)")
            numbered = [(first + i, raw) for i, raw in enumerate(lines) if raw.strip()]
            first += len(lines)
            for (number, _), obj in zip(numbered, _decode_lines(path, numbered), strict=True):
                yield _entry_from_object(obj, path, number)


def _decode_lines(path: str, numbered: list[tuple[int, bytes]]) -> list[object]:
    """Decode many JSON lines at once; on failure, find and name the bad line."""
    try:
        return _decode("[" + b",".join(raw for _, raw in numbered).decode("utf-8") + "]")
    except ValueError:
        pass
    out = []
    for number, raw in numbered:
        try:
            out.append(_decode(raw.decode("utf-8")))
        except ValueError as exc:
            raise ManifestError(f"{path}:{number}: not valid JSON ({_reason(exc)})") from None
    # Each line parsed alone, yet not together: a line held two values, e.g. "{...}, {...}".
    raise ManifestError(f"{path}: a line holds more than one JSON value")


def _json_header(path: str) -> dict:
    with open(path, "rb") as f:
        first = f.readline()
    text = first.strip()
    if not text.startswith(b'{"header": ') or not text.endswith(b","):
        raise ManifestError(f"{path}:1: not a parhash JSON manifest header")
    try:
        header = json.loads(text[len(b'{"header": ') : -1])
    except ValueError as exc:
        raise ManifestError(f"{path}:1: bad header ({exc.msg})") from None
    version = header.get("manifest_version")
    if not isinstance(version, int):
        raise ManifestError(f"{path}:1: header has no manifest_version")
    _check_version(version, f"{path}:1")
    return header


def _json_records(path: str) -> Iterator[tuple[ManifestEntry, str]]:
    """parhash's JSON layout has one record per line between the header and the summary, so
    it streams like jsonl; the summary's count proves the document is complete."""
    _json_header(path)
    count = 0
    with open(path, "rb") as f:
        f.readline()
        if f.readline().strip() != b'"files": [':
            raise ManifestError(f"{path}:2: expected the files array")
        number = 2
        for raw in f:
            number += 1
            where = f"{path}:{number}"
            text = raw.strip()
            if text == b"],":
                summary = f.readline().strip()
                try:
                    tail = json.loads(summary[len(b'"summary": ') : -1])
                except ValueError:
                    raise ManifestError(f"{path}:{number + 1}: bad or missing summary") from None
                if tail.get("files") != count:
                    raise ManifestError(
                        f"{path}: summary counts {tail.get('files')} files but {count} are listed"
                    )
                return
            if text.endswith(b","):
                text = text[:-1]
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
            count += 1
            yield _entry_from_object(obj, path, number)
    raise ManifestError(f"{path}:{number}: ends before the summary (truncated manifest?)")


def _int_or_none(text: str, what: str, where: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ManifestError(f"{where}: {what} is not an integer: {text!r}") from None


def _csv_records(path: str) -> Iterator[tuple[ManifestEntry, str]]:
    if not _ends_with_newline(path):
        raise ManifestError(f"{path}: last line is incomplete (truncated manifest?)")
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        skipped = 0  # '#' lines (the parhash header) before the column row
        first = f.readline()
        while first.startswith("#"):
            skipped += 1
            first = f.readline()
        reader = csv.reader(itertools.chain((first,), f))
        header = next(reader, None)
        if header is None or tuple(header[: len(FIELDS)]) != FIELDS:
            where = f"{path}:{skipped + 1}"
            raise ManifestError(f"{where}: header must start with {','.join(FIELDS)}")
        more = [name for name in header[len(FIELDS) :] if name in ALGORITHMS]
        for row in reader:
            number = reader.line_num + skipped
            where = f"{path}:{number}"
            if len(row) < len(FIELDS):
                raise ManifestError(f"{where}: expected {len(FIELDS)} columns, got {len(row)}")
            path_, size, mtime, algo, digest, error, root = row[: len(FIELDS)]
            entry = _entry(
                path_,
                root,
                _int_or_none(size, "size", where),
                _int_or_none(mtime, "mtime", where),
                digest or None,
                error or None,
                path,
                number,
                dict(zip(more, (d or None for d in row[len(FIELDS) :]), strict=False)) or None,
            )
            yield entry, algo


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _sums_lines(path: str) -> Iterator[tuple[str, ChecksumLine]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path}:{number}"
            if not raw.endswith(b"\n"):
                raise ManifestError(f"{where}: last line is incomplete (truncated manifest?)")
            text = raw[:-1].decode("utf-8", "surrogateescape")
            if not text or text.startswith("#"):
                continue
            try:
                yield where, parse_line(text)
            except BadLine as exc:
                raise ManifestError(f"{where}: {exc}") from None


def _sums_info(path: str, algo_override: str | None) -> ManifestInfo:
    """A sums file records no root: the common directory of its paths stands in for it."""
    algo = algo_override or algorithm_from_name(path)
    common: str | None = None
    for where, line in _sums_lines(path):
        line_algo = line.tag_algo or algo or algorithm_for_length(len(line.digest), path)
        if algo is None:
            algo = line_algo
        elif line_algo != algo:
            raise ManifestError(f"{where}: mixes {line_algo} into a {algo} manifest")
        common = _common_dir(common, os.path.dirname(line.name))
    if algo is None:
        raise ManifestError(f"{path}: no checksum lines: an empty manifest cannot be audited")
    get_algorithm(algo)
    return ManifestInfo(path, "sums", algo, [common or "."])


def _common_dir(common: str | None, parent: str) -> str:
    if common is None:
        return parent
    if not common or not parent:
        return ""
    try:
        return os.path.commonpath([common, parent])
    except ValueError:  # one absolute, one relative
        return ""


def _sums_entries(info: ManifestInfo) -> Iterator[ManifestEntry]:
    root = info.roots[0]
    for _, line in _sums_lines(info.path):
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
