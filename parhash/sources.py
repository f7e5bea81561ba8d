"""Where work comes from: the sources of a run (roots, lists, standard input).

A ``Source`` is one stream of items below one root, opened with one symlink policy: the
walker's per-directory listings, the paths of ``--files-from``, the lines of a checksum file
(``Expected`` entries), or records made before any hashing (a root that does not exist,
standard input hashed here). batching.py turns sources into tasks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from parhash.exit_codes import FatalError
from parhash.model import Expected, FileRecord
from parhash.walk import WalkOptions, classify_root, named_root_ids, walk_listings


def check_roots(roots: Iterable[str]) -> list[str]:
    """Validate roots up front where a missing one is fatal (an audit's manifest roots)."""
    roots = list(roots)
    for root in roots:
        kind = classify_root(root)
        if kind not in ("dir", "file"):
            raise FatalError(f"{root}: {kind}")
    return roots


def unique_roots(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """A scan's PATH arguments, each file or directory once, and a warning per one dropped.

    ``scan . .`` or ``scan tree ./tree``: sha256sum hashes twice, but a manifest that lists
    a path twice is one ``audit`` must refuse, so a root that is the same file or directory
    (``st_dev``, ``st_ino``) as an earlier one is dropped. A root that does not exist stays:
    it becomes an error record, as with sha256sum (``scan a missing b`` hashes a and b).
    """
    roots: list[str] = []
    notices: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            roots.append(path)
            continue
        first = seen.get((st.st_dev, st.st_ino))
        if first is None:
            seen[st.st_dev, st.st_ino] = path
            roots.append(path)
        else:
            same = "named twice" if first == path else f"same as {first}"
            notices.append(f"{path}: {same}, scanned once")
    return roots, notices


@dataclass(frozen=True)
class Source:
    """One stream of work: items below one root, opened with one symlink policy.

    Items are paths to hash (``str``), error records the producer already made, or
    ``Expected`` entries (a path with the digest it should have: ``check``).
    """

    root: str
    follow: bool
    items: Iterable[str | FileRecord | Expected]
    #: ``items`` are (directory prefix, names, records) listings, one per directory (the
    #: walker's form: ``walk.walk_listings``).
    listings: bool = False
    #: The user named these paths (not met while walking): FIFOs and devices are read.
    named: bool = False
    #: Mount points the walker did not enter (pseudo filesystems), filled as it goes.
    skipped: list[str] = field(default_factory=list)
    #: Hash every file in this process: a walk of /proc/self means this process's entries.
    here: bool = False


def scan_sources(roots: list[str], walk: WalkOptions) -> Iterator[Source]:
    """The sources of a scan: each directory root walked, each file root hashed as named,
    each root that cannot be stat'ed one error record (``missing: No such file...``).
    A root nested in another named root is walked once, as itself (``named_roots``)."""
    walk = replace(walk, named_roots=named_root_ids(roots))
    for root in roots:
        kind = classify_root(root)
        if kind == "dir":
            skipped: list[str] = []
            listings = walk_listings(root, walk, skipped)
            here = process_bound(root)
            follow = walk.follow_symlinks
            yield Source(root, follow, listings, listings=True, skipped=skipped, here=here)
        elif kind == "file":  # a file named on the command line is followed, like find -H
            yield Source(root, True, (root,), named=True)
        else:
            yield Source(root, True, (FileRecord(root, root, None, None, None, kind),))


def listed_source(name: str, null: bool, guard=None) -> Source:
    """``--files-from``: exactly the listed paths, one per line (or NUL-terminated with
    ``--null``), streamed. Listed symlinks are followed, as for command-line paths; a path
    that does not exist or is not a regular file becomes an error record like any other."""
    if name == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(name, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise FatalError(f"{name}: {exc.strerror or exc}") from None
    items = _listed_paths(stream, b"\0" if null else b"\n", guard)
    return Source(".", True, items, named=True)


#: Error text of a listed path that is the ``-o`` target (the run then fails, exit 2).
IS_OUTPUT = "is the -o output file; not read"


def _listed_paths(stream, separator: bytes, guard=None) -> Iterator[str | FileRecord]:
    """``guard`` (``output.ListedOutputGuard``, with ``-o``) turns the output file into
    an error record instead of an input."""
    try:
        tail = b""
        while chunk := stream.read(1 << 16):
            parts = (tail + chunk).split(separator)
            tail = parts.pop()
            for raw in parts:
                if raw:
                    yield _guarded(_listed(raw), guard)
        if tail:
            yield _guarded(_listed(tail), guard)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _guarded(item: str | FileRecord, guard) -> str | FileRecord:
    if guard is not None and type(item) is str and guard.is_output(item):
        return FileRecord(item, ".", None, None, None, IS_OUTPUT)
    return item


def _listed(raw: bytes) -> str | FileRecord:
    path = os.fsdecode(raw)
    if b"\0" in raw:  # a NUL-separated list read without --null
        return FileRecord(
            path, ".", None, None, None, "name holds a NUL byte (lists from -print0 need -0)"
        )
    return path


def stdin_record(stream, algos: tuple[str, ...]) -> Source:
    """``parhash scan -``: hash standard input here, in the parent, like ``sha256sum -``."""
    return Source("-", True, (stdin_file_record(stream, algos),))


def stdin_file_record(stream, algos: tuple[str, ...], entry: Expected | None = None) -> FileRecord:
    """The record of standard input, hashed to its end here (``scan -``, and a ``-`` line of
    a checksum file for ``check``, as ``sha256sum -c`` reads it): workers have another
    stdin."""
    from parhash.hashing import hash_stream

    try:
        size, digests = hash_stream(stream, algos)
    except OSError as exc:
        return FileRecord("-", "-", None, None, None, f"cannot read stdin: {exc.strerror}", entry)
    return FileRecord("-", "-", size, None, digests[0], None, entry, tuple(digests[1:]))


#: Named paths that mean something else in another process: a worker that opened
#: ``/dev/stdin`` would read its own descriptor 0 (the parent's only under the fork start
#: method; forkserver and spawn workers have another), ``/dev/fd/63`` (``<(cmd)``) is open
#: in a forked worker only, and ``/proc/self`` is the worker.
_PROCESS_BOUND = ("/dev/stdin/", "/dev/fd/", "/proc/self/", "/proc/thread-self/")

#: Symbolic links followed by ``process_bound`` before it gives up (as the kernel: 40).
_MAX_HOPS = 40


def process_bound(path: str) -> bool:
    """Whether only this process can open ``path``: it is, or is a symbolic link to,
    /dev/stdin, /dev/fd/N, /proc/self/... (symlinks in the parent directories are not
    resolved: a cheap string test first, one ``readlink`` per hop after)."""
    own = (*_PROCESS_BOUND, f"/proc/{os.getpid()}/")
    for _ in range(_MAX_HOPS):
        full = os.path.abspath(path)
        if (full + os.sep).startswith(own):
            return True
        try:
            path = os.path.join(os.path.dirname(full), os.readlink(full))
        except (OSError, ValueError):
            return False
    return False
