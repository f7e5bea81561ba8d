"""Render an audit: a grouped human report, JSON Lines (one change per line) or one JSON
document. Every renderer streams events from the store, class by class, in path order."""

from __future__ import annotations

import json
import time
from typing import BinaryIO

from parhash.audit import CLASSES, AuditEvent, AuditStore, Side
from parhash.output import plural, sanitize
from parhash.report import json_string

#: Order of the human report: the alarming classes first.
REPORT_ORDER = ("corrupted", "modified", "removed", "moved", "added", "unreadable", "unchanged")

_COLORS = {
    "corrupted": "\x1b[1;31m",
    "removed": "\x1b[31m",
    "modified": "\x1b[33m",
    "moved": "\x1b[36m",
    "added": "\x1b[32m",
    "unreadable": "\x1b[35m",
    "unchanged": "\x1b[2m",
}
_RESET = "\x1b[0m"

_EXPLAIN = {
    "corrupted": "content changed, size and mtime did not",
    "modified": "content changed",
    "removed": "in the manifest, not in the tree",
    "moved": "same content, new path",
    "added": "in the tree, not in the manifest",
    "unreadable": "could not be hashed",
    "unchanged": "",
}


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
        parts = []
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
) -> None:
    """Counts first, then each non-empty class with its paths (unchanged only if verbose).

    ``title=None`` (``audit -q``): the classes only, so a tree without changes prints
    nothing, as ``check --quiet`` prints nothing when every file matched.
    """

    def paint(kind: str, text: str) -> str:
        return f"{_COLORS[kind]}{text}{_RESET}" if color else text

    changes = sum(n for kind, n in counts.items() if kind != "unchanged")
    listed = [
        f"{counts[k]:,} {paint(k, k)}" for k in REPORT_ORDER if counts[k] and k != "unchanged"
    ]
    if title is not None:
        head = plural(changes, "change") + (f": {', '.join(listed)}" if listed else "")
        _write(stream, [title, head, f"{counts['unchanged']:,} unchanged"])
    first = title is None
    for kind in REPORT_ORDER:
        if not counts[kind] or (kind == "unchanged" and not verbose):
            continue
        explain = f": {_EXPLAIN[kind]}" if _EXPLAIN[kind] else ""
        block = [] if first else [""]
        first = False
        block.append(paint(kind, f"{kind} ({counts[kind]:,}){explain}"))
        for event in store.events(kind):
            block.append(f"  {sanitize(event.key)}{_detail(event)}")
            if len(block) >= 1024:
                _write(stream, block)
                block = []
        _write(stream, block)


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


def render_jsonl(store: AuditStore, stream: BinaryIO, *, verbose: bool) -> None:
    for kind in _kinds(verbose):
        batch = []
        for event in store.events(kind):
            batch.append(event_json(event))
            if len(batch) >= 1024:
                stream.write(("\n".join(batch) + "\n").encode())
                batch = []
        if batch:
            stream.write(("\n".join(batch) + "\n").encode())


def render_json(
    store: AuditStore, counts: dict[str, int], stream: BinaryIO, *, header: dict, verbose: bool
) -> None:
    """One document, streamed: ``{"audit": {...header, counts}, "changes": [...]}``."""
    head = json.dumps({**header, "counts": counts}, ensure_ascii=True)
    stream.write(f'{{"audit": {head},\n"changes": [\n'.encode())
    first = True
    for kind in _kinds(verbose):
        for event in store.events(kind):
            stream.write(((",\n" if not first else "") + event_json(event)).encode())
            first = False
    stream.write(b"\n]}\n")
