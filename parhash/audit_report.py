"""Render an audit: a grouped human report, JSON Lines (one change per line) or one JSON
document. Every renderer streams events from the store, class by class, in path order."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from parhash.audit_store import CLASSES, AuditEvent, AuditStore, Side, directory_levels
from parhash.model import CacheCounts
from parhash.output import plural, sanitize, styled
from parhash.progress import cache_note, stalest_age
from parhash.report import json_string

#: Order of the human report: the alarming classes first.
REPORT_ORDER = ("corrupted", "modified", "removed", "moved", "added", "unreadable", "unchanged")

_EXPLAIN = {
    "corrupted": "content changed, size and mtime did not",
    "modified": "content changed",
    "removed": "in the manifest, not in the tree",
    "moved": "same content, new path",
    "added": "in the tree, not in the manifest",
    "unreadable": "could not be hashed",
    "unchanged": "",
}


@dataclass(frozen=True, slots=True)
class DirectoryMove:
    """Every manifest file below ``old`` (root ``old_ri``) is now below ``new`` under the
    same relative name: one move of a directory, ``count`` files."""

    old_ri: int
    old: str
    new_ri: int
    new: str
    count: int


class DirectoryMoves:
    """The moves that are moves of whole directories (issue 10 item 20).

    Which directories moved is the store's decision (``AuditStore.directories``, made
    before the counts, which include the empty files it pairs); here each file belongs
    to the highest such directory (``photos -> archive/photos``, not one move per
    subdirectory), and a directory's count is every move it groups, empty files included.
    """

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        candidates: Counter[tuple[int, str, int, str]] = Counter()
        for old_ri, old_key, new_ri, new_key in store.moved_rows():
            for old, new in directory_levels(old_key, new_key):
                candidates[old_ri, old, new_ri, new] += 1
        self.valid = {pair: n for pair, n in candidates.items() if pair in store.directories}
        # A valid pair whose parent pair is valid too is part of that bigger move.
        self.moves = [
            DirectoryMove(*pair, n)
            for pair, n in sorted(self.valid.items())
            if not self._inner(pair)
        ]
        self.by_display = {
            (store.display(m.old_ri, m.old), store.display(m.new_ri, m.new)): m for m in self.moves
        }

    def _inner(self, pair: tuple[int, str, int, str]) -> bool:
        old_ri, old, new_ri, new = pair
        parent = next(directory_levels(old, new), None)
        return parent is not None and (old_ri, parent[0], new_ri, parent[1]) in self.valid

    def _highest(self, old_ri: int, old_key: str, new_ri: int, new_key: str):
        best = None
        for old, new in directory_levels(old_key, new_key):
            if (old_ri, old, new_ri, new) in self.valid:
                best = (old_ri, old, new_ri, new)
        return best

    def of(self, event: AuditEvent) -> DirectoryMove | None:
        """The directory move a ``moved`` event is part of, if any."""
        best = None
        for pair in directory_levels(event.moved_from or "", event.key):
            best = self.by_display.get(pair, best)
        return best

    def strays(self, move: DirectoryMove) -> Iterator[str]:
        """The old paths below the moved directory that did not move with it."""
        return self.store.strays((move.old_ri, move.old, move.new_ri, move.new))

    def files(self, move: DirectoryMove) -> Iterator[str]:
        """The new paths of a directory move's files, in path order."""
        for row in self.store.moved_rows(below=(move.new_ri, move.new)):
            if self._highest(*row) == (move.old_ri, move.old, move.new_ri, move.new):
                yield self.store.display(row[2], row[3])


#: Exceptions of a directory move named on its line in the human report; the rest are
#: counted (each is in its own class's section anyway; JSON lists them all).
STRAYS_SHOWN = 5


def _directory_line(moves: DirectoryMoves, move: DirectoryMove) -> str:
    store = moves.store
    old, new = store.display(move.old_ri, move.old), store.display(move.new_ri, move.new)
    strays = list(moves.strays(move))
    note = ""
    if strays:
        names = ", ".join(sanitize(p) for p in strays[:STRAYS_SHOWN])
        more = len(strays) - STRAYS_SHOWN
        names += f", and {more:,} more" if more > 0 else ""
        note = f"; {len(strays):,} did not follow: {names}"
    return f"  {sanitize(new)}/  (from {sanitize(old)}/: a directory of {move.count:,} files{note})"


def _mtime(ns: int | None) -> str:
    if ns is None:
        return "?"
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def _detail(event: AuditEvent) -> str:
    old, new = event.old, event.new
    if event.kind == "moved":
        return f"  (from {sanitize(event.moved_from or '')})"
    if event.kind == "unreadable" and new is not None:
        return f"  {sanitize(new.error or '')}"
    if event.kind == "modified" and old is not None and new is not None:
        parts = [f"from {sanitize(event.moved_from)}"] if event.moved_from else []
        if old.error is not None:
            parts.append(f"was unreadable: {old.error}")
        if old.size is not None and old.size != new.size:
            parts.append(f"size {old.size:,} -> {new.size:,}")
        if old.mtime_ns is not None and old.mtime_ns != new.mtime_ns:
            parts.append(f"mtime {_mtime(old.mtime_ns)} -> {_mtime(new.mtime_ns)}")
        return "  " + "; ".join(parts) if parts else ""
    return ""


def render_human(
    store: AuditStore,
    counts: dict[str, int],
    stream: BinaryIO,
    *,
    title: str | None,
    color: bool,
    verbose: bool,
    cache: CacheCounts | None = None,
) -> None:
    """Counts first, then each non-empty class with its paths (unchanged only if verbose).

    ``title=None`` (``audit -q``): the classes only, so a tree without changes prints
    nothing, as ``check --quiet`` prints nothing when every file matched. With ``cache``
    (``--cache``) the counts end with a line saying what the cache trusted and re-read.
    """

    def paint(kind: str, text: str) -> str:
        return styled(text, kind) if color else text

    changes = sum(n for kind, n in counts.items() if kind != "unchanged")
    listed = [
        f"{counts[k]:,} {paint(k, k)}" for k in REPORT_ORDER if counts[k] and k != "unchanged"
    ]
    if title is not None:
        head = plural(changes, "change") + (f": {', '.join(listed)}" if listed else "")
        summary = [title, head, f"{counts['unchanged']:,} unchanged"]
        if cache is not None:
            summary.append(f"cache: {cache_note(cache)}")
        _write(stream, summary)
    first = title is None
    moves = DirectoryMoves(store) if counts["moved"] else None
    for kind in REPORT_ORDER:
        if not counts[kind] or (kind == "unchanged" and not verbose):
            continue
        explain = f": {_EXPLAIN[kind]}" if _EXPLAIN[kind] else ""
        block = [] if first else [""]
        first = False
        block.append(paint(kind, f"{kind} ({counts[kind]:,}){explain}"))
        headed: set[DirectoryMove] = set()
        for event in store.events(kind):
            block.extend(_event_lines(event, moves, headed, verbose))
            if len(block) >= 1024:
                _write(stream, block)
                block = []
        _write(stream, block)


def _event_lines(
    event: AuditEvent, moves: DirectoryMoves | None, headed: set[DirectoryMove], verbose: bool
) -> list[str]:
    """An event's lines in the human report: its own; for a file of a directory move, the
    directory's line the first time (``headed``) and the file indented only if verbose."""
    line = f"  {sanitize(event.key)}{_detail(event)}"
    move = moves.of(event) if moves is not None and event.kind == "moved" else None
    if move is None:
        return [line]
    lines = []
    if move not in headed:
        headed.add(move)
        lines.append(_directory_line(moves, move))  # type: ignore[arg-type]
    if verbose:
        lines.append("  " + line)
    return lines


def _write(stream: BinaryIO, lines: list[str]) -> None:
    if lines:
        stream.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


def _side_json(side: Side | None) -> str:
    if side is None:
        return "null"
    size = "null" if side.size is None else side.size
    mtime = "null" if side.mtime_ns is None else side.mtime_ns
    digest = "null" if side.digest is None else f'"{side.digest}"'
    error = "null" if side.error is None else json_string(side.error)
    return (
        f'{{"path": {json_string(side.path)}, "size": {size}, "mtime": {mtime}, '
        f'"hash": {digest}, "error": {error}}}'
    )


def event_json(event: AuditEvent) -> str:
    """One change as a JSON object: class, path (relative to the root), old and new sides."""
    moved = f'"from": {json_string(event.moved_from)}, ' if event.moved_from else ""
    return (
        f'{{"class": "{event.kind}", "path": {json_string(event.key)}, {moved}'
        f'"old": {_side_json(event.old)}, "new": {_side_json(event.new)}}}'
    )


def _kinds(verbose: bool) -> list[str]:
    return [k for k in CLASSES if verbose or k != "unchanged"]


def directory_json(moves: DirectoryMoves, move: DirectoryMove) -> str:
    """A directory move as one JSON object (one line: its size grows with its files):
    ``{"class": "moved-directory", "path": new, "from": old, "count": n, "files": [...]}``,
    each file by its new path; every file also has its own ``moved`` object;
    ``exceptions``: the old paths below ``from`` that did not follow (each in its class)."""
    store = moves.store
    old, new = store.display(move.old_ri, move.old), store.display(move.new_ri, move.new)
    files = ", ".join(map(json_string, moves.files(move)))
    strays = ", ".join(map(json_string, moves.strays(move)))
    return (
        f'{{"class": "moved-directory", "path": {json_string(new)}, '
        f'"from": {json_string(old)}, "count": {move.count}, "files": [{files}], '
        f'"exceptions": [{strays}]}}'
    )


def _events_json(store: AuditStore, verbose: bool) -> Iterator[str]:
    """Every change as a JSON object (text), class by class; directory moves after the
    file moves they group."""
    for kind in _kinds(verbose):
        for event in store.events(kind):
            yield event_json(event)
        if kind == "moved":
            moves = DirectoryMoves(store)
            for move in moves.moves:
                yield directory_json(moves, move)


def render_jsonl(store: AuditStore, stream: BinaryIO, *, verbose: bool) -> None:
    batch = []
    for line in _events_json(store, verbose):
        batch.append(line)
        if len(batch) >= 1024:
            stream.write(("\n".join(batch) + "\n").encode())
            batch = []
    if batch:
        stream.write(("\n".join(batch) + "\n").encode())


def render_json(
    store: AuditStore,
    counts: dict[str, int],
    stream: BinaryIO,
    *,
    header: dict,
    verbose: bool,
    cache: CacheCounts | None = None,
) -> None:
    """One document, streamed: ``{"audit": {...header, counts}, "changes": [...]}``; with
    ``cache`` (``--cache``), ``"cache"`` follows ``"counts"`` (``cache_json``)."""
    extra = {} if cache is None else {"cache": cache_json(cache)}
    head = json.dumps({**header, "counts": counts, **extra}, ensure_ascii=True)
    stream.write(f'{{"audit": {head},\n"changes": [\n'.encode())
    first = True
    for text in _events_json(store, verbose):
        stream.write(((",\n" if not first else "") + text).encode())
        first = False
    stream.write(b"\n]}\n")


def cache_json(cache: CacheCounts, now_ns: int | None = None) -> dict:
    """The JSON report's ``"cache"`` object: whether the cache could be used throughout
    (false: a warning said why, and the counts are partial), files trusted from it, hits
    verified by a full read, files hashed (new, changed or racy), the bytes read, verified
    files whose content no longer matched, and the oldest full read behind a trusted digest
    (nanoseconds since the epoch, and its age in seconds; null when nothing was trusted)."""
    return {
        "available": cache.available,
        "trusted": cache.trusted,
        "verified": cache.verified,
        "hashed": cache.hashed,
        "read_bytes": cache.read_bytes,
        "mismatched": cache.mismatched,
        "stalest_verified_ns": cache.stalest_ns,
        "stalest_verification_age_s": stalest_age(cache, now_ns),
    }
