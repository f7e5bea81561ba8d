"""hashdeep's own files, read by ``check`` and by ``audit``, so a hashdeep baseline carries over.

The layout hashdeep 4.4 writes (``hashdeep -r -c md5,sha256 DIR``)::

    %%%% HASHDEEP-1.0
    %%%% size,md5,sha256,filename
    ## Invoked from: /home/user
    ## $ hashdeep -r -c md5,sha256 DIR
    ##
    5,<md5>,<sha256>,DIR/a

The column line names the fields of every record, in order: ``size`` first, ``filename``
last, digests between (md5, sha1, sha256, tiger, whirlpool, as ``-c`` chose). The name is
the last field and written verbatim, so it may hold commas (hashdeep escapes nothing, so a
name with a newline cannot be read back, by hashdeep either). Without ``-l`` names are
absolute; with ``-l`` they are as given, relative to the ``Invoked from`` directory.
Concatenated outputs repeat the header; a new column line applies from there on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from parhash.algorithms import get_algorithm
from parhash.exit_codes import FatalError

MAGIC = "%%%% HASHDEEP-1.0"
_COLUMNS = "%%%% "
_INVOKED = "## Invoked from: "

#: hashdeep's digest columns and parhash's name for each; None: no implementation here
#: (hashlib has neither Tiger nor Whirlpool), so a file with such a column is refused rather
#: than half verified.
DIGESTS = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "tiger": None, "whirlpool": None}

#: The digest an audit compares when a file has several (an entry keeps one): strongest first.
STRENGTH = ("sha256", "sha1", "md5")

Lines = Iterator[tuple[int, "str | None"]]


class HashdeepError(FatalError):
    """A hashdeep file parhash cannot use as a whole (unsupported columns, no header)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One file of a hashdeep list: its size, its digests (algorithm, lowercase hex)."""

    size: int
    digests: tuple[tuple[str, str], ...]
    path: str


@dataclass
class Header:
    """The columns of the records that follow, and where hashdeep was run."""

    algos: tuple[str, ...]
    invoked_from: str | None = None


def is_hashdeep(head: bytes) -> bool:
    """True for the first bytes of a hashdeep file."""
    return head.startswith(MAGIC.encode())


def columns(text: str, where: str) -> tuple[str, ...]:
    """The digest algorithms of a ``%%%% size,...,filename`` line; unsupported ones are
    refused (HashdeepError) with the list of those parhash reads."""
    fields = text[len(_COLUMNS) :].split(",")
    if len(fields) < 3 or fields[0] != "size" or fields[-1] != "filename":
        raise HashdeepError(f"{where}: expected 'size,<digests>,filename' columns")
    algos = []
    for name in fields[1:-1]:
        algo = DIGESTS.get(name)
        if algo is None:
            readable = ", ".join(k for k, v in DIGESTS.items() if v)
            raise HashdeepError(
                f"{where}: hashdeep column {name!r} is not supported (parhash reads {readable})"
            )
        algos.append(algo)
    return tuple(algos)


def read_header(lines: Lines, source: str) -> tuple[Header, Lines]:
    """Read the magic, the column line and the ``##`` lines after them (fatal if wrong, so
    ``check`` fails before hashing); the rest of the lines are handed back."""
    number, text = next(lines, (1, None))
    if text is None or text.rstrip("\r") != MAGIC:
        raise HashdeepError(f"{source}:{number}: not a hashdeep file (no {MAGIC!r} line)")
    number, text = next(lines, (2, None))
    if text is None or not text.startswith(_COLUMNS):
        raise HashdeepError(f"{source}:{number}: expected hashdeep's '%%%% size,...' line")
    header = Header(columns(text.rstrip("\r"), f"{source}:{number}"))
    for number, text in lines:
        if text is None or not text.startswith("##"):
            return header, _chain((number, text), lines)
        if text.startswith(_INVOKED):
            header.invoked_from = text[len(_INVOKED) :].rstrip("\r")
    return header, lines


def _chain(first: tuple[int, str | None], rest: Lines) -> Lines:
    yield first
    yield from rest


def records(lines: Lines, header: Header, source: str) -> Iterator[tuple[int, Record | str]]:
    """Each record line as a ``Record``, or a string saying what is wrong with it (the
    caller decides: ``check`` counts a bad line, ``audit`` refuses the manifest)."""
    algos: tuple[str, ...] | None = header.algos
    for number, text in lines:
        if text is None:
            yield number, "line too long"
            continue
        text = text.rstrip("\r")
        if not text or text.startswith("##") or text == MAGIC:
            continue
        if text.startswith(_COLUMNS):
            try:
                algos = columns(text, f"{source}:{number}")
            except HashdeepError as exc:
                algos = None
                yield number, str(exc)
            continue
        if algos is None:
            yield number, "follows a column line parhash cannot read"
            continue
        try:
            yield number, parse_record(text, algos)
        except ValueError as exc:
            yield number, str(exc)


def parse_record(text: str, algos: tuple[str, ...]) -> Record:
    """``size,digest...,name``: the name is everything after the last digest."""
    fields = text.split(",", len(algos) + 1)
    if len(fields) != len(algos) + 2 or not fields[-1]:
        raise ValueError(f"expected {len(algos) + 2} comma-separated fields")
    size = fields[0]
    if not size.isascii() or not size.isdigit():
        raise ValueError(f"size is not a non-negative integer: {size[:40]!r}")
    digests = []
    for algo, digest in zip(algos, fields[1:-1], strict=True):
        if len(digest) != get_algorithm(algo).hex_length or not _is_hex(digest):
            raise ValueError(f"{algo} field is not a {algo} digest: {digest[:140]!r}")
        digests.append((algo, digest.lower()))
    return Record(int(size), tuple(digests), fields[-1])


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


# -- as an audit manifest ------------------------------------------------------------------


def _file_lines(path: str, stream) -> Lines:
    """The lines of the manifest ``audit`` opened once (``path`` names it in messages)."""
    from parhash.manifest import ManifestError

    try:
        for number, raw in enumerate(stream, 1):
            if not raw.endswith(b"\n"):
                raise ManifestError(f"{path}:{number}: last line is incomplete (truncated?)")
            yield number, raw[:-1].decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror or exc}") from None


def _manifest_records(path: str, stream) -> Iterator[tuple[int, Header, Record]]:
    from parhash.manifest import ManifestError

    try:
        header, lines = read_header(_file_lines(path, stream), path)
    except HashdeepError as exc:
        raise ManifestError(str(exc)) from None
    for number, item in records(lines, header, path):
        if isinstance(item, str):
            raise ManifestError(item if item.startswith(path) else f"{path}:{number}: {item}")
        yield number, header, item


def manifest_info(path: str, stream):
    """A ``ManifestInfo`` for ``audit``: the strongest digest column, and as root the common
    directory of the names (a relative one under ``Invoked from``); one pass over the file."""
    from parhash.manifest import ManifestError, ManifestInfo, _common_dir

    common: str | None = None
    header: Header | None = None
    algo: str | None = None
    for number, seen, record in _manifest_records(path, stream):
        header = seen
        have = [a for a, _ in record.digests]
        if algo is None:
            algo = next((a for a in STRENGTH if a in have), None)
        if algo not in have:
            raise ManifestError(f"{path}:{number}: no {algo} digest (columns changed)")
        common = _common_dir(common, os.path.dirname(_located(record.path, seen)))
    if header is None or algo is None:
        raise ManifestError(f"{path}: no records: an empty manifest cannot be audited")
    return ManifestInfo(path, "hashdeep", algo, [common or "."])


def manifest_entries(info, stream) -> Iterator:
    """The manifest's entries: path, size and the digest of ``info.algo`` (no mtime:
    hashdeep records none, so a content change is "modified" when the size changed too)."""
    from parhash.manifest import ManifestEntry

    root = info.roots[0]
    for _, header, record in _manifest_records(info.path, stream):
        digest = dict(record.digests)[info.algo]
        yield ManifestEntry(_located(record.path, header), root, record.size, None, digest, None)


def _located(path: str, header: Header) -> str:
    """A ``-l`` (relative) name as the path it names: under ``Invoked from``."""
    if os.path.isabs(path) or not header.invoked_from:
        return path
    return os.path.normpath(os.path.join(header.invoked_from, path))
