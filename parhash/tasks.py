"""The unit of work and its answer: what crosses the executor seam, and nothing else.

A ``Task`` holds only what a worker needs (a root, directories and the names in them, how to
open them); whatever the parent keeps for itself about a task (error records the walker
made, ``check``'s expected digests) stays in the parent (``batching.Context``). A task is
self-contained: whole paths are ``directory + name``, so it runs the same in a local worker,
in this process, or on another machine that mounts the same tree.

A ``TaskResult`` holds everything the parent needs and no object per file: the output bytes
a streaming format prints (formatted in the worker by report.py's own functions), the counts
for the summary and the progress bar, the error records' paths and messages, and compact rows
only where a sink needs fields (``check``, ``audit``, ``--sort``, the library's records, the
one read of a hard-linked inode). ``LostTask`` is how an executor says a task's worker died.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from parhash.hashing import HashSettings
from parhash.model import Expected, FileRecord

#: One record's fields as a worker sends them when a sink needs fields:
#: (index in the task, size, mtime_ns, digests or None, error or None); ``digests`` holds
#: one hex string per algorithm. Plain tuples: they pickle faster than any class.
Row = tuple


def error_row(index: int, message: str) -> Row:
    """The row of a file that has only an error (a worker that died on it)."""
    return (index, None, None, None, message)


def row_record(path: str, root: str, expected: Expected | None, row: Row) -> FileRecord:
    """The record a row stands for; the one place that reads a row's layout."""
    _, size, mtime_ns, digests, error = row
    digest, extra = (digests[0], digests[1:]) if digests else (None, ())
    return FileRecord(path, root, size, mtime_ns, digest, error, expected, extra)


@dataclass(frozen=True, slots=True)
class Task:
    """Files to hash: ``groups`` of (directory prefix, names in it), all below ``root``.

    The prefix ends with a separator (``child_prefix``) or is empty (names are whole paths:
    ``--files-from``, sums-file lines, command-line files). Several directories share one task
    so that a tree of small directories still costs one round trip per ~1,000 files.
    """

    task_id: int
    root: str
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    #: Open symbolic links (``-L``, named paths) or refuse them (O_NOFOLLOW).
    follow: bool = False
    #: The user named these paths: a FIFO or device among them is read (sha256sum does).
    named: bool = False
    #: Algorithms of this task when not the run's (``check`` of mixed checksum files).
    algos: tuple[str, ...] | None = None
    #: The one read of a hard-linked inode: read it even if it has several links, and send
    #: its row back (its digest becomes every other path's record).
    read_links: bool = False
    #: 1 for a lost task's files sent again one per task (a second loss is an error record).
    attempt: int = 0
    #: With a hash cache: (root id, verification cutoff in ns, length of the root's path
    #: prefix, the root's run number) from ``cache_store.CacheSession.task_key``; None:
    #: no cache for this task.
    cache: tuple[int, int, int, int] | None = None

    @property
    def count(self) -> int:
        return sum(len(names) for _, names in self.groups)

    def paths(self) -> Iterator[str]:
        """Every path of the task, in order (the order of results and rows)."""
        for prefix, names in self.groups:
            for name in names:
                yield prefix + name

    def path_at(self, index: int) -> str:
        """The ``index``-th path (rows and deferred links name files by index)."""
        prefix, name = self._at(index)
        return prefix + name

    def _at(self, index: int) -> tuple[str, str]:
        for prefix, names in self.groups:
            if index < len(names):
                return prefix, names[index]
            index -= len(names)
        raise IndexError(index)

    def retried(self, task_id: int | None = None) -> Task:
        """This task again after its worker died (``attempt`` 1: a second loss is final)."""
        return replace(self, task_id=self.task_id if task_id is None else task_id, attempt=1)

    def single(self, index: int, task_id: int) -> Task:
        """The ``index``-th file alone, as a task of its own (a retry, a hard link's read)."""
        prefix, name = self._at(index)  # its directory kept: the hash cache keys on it
        return replace(self, task_id=task_id, groups=((prefix, (name,)),))


@dataclass(frozen=True)
class WorkSpec:
    """What every task of a run shares, sent with each task (it is small): how to read and
    hash (``HashSettings``) and, for a sink that prints a streaming format, how to format
    (``report.Rendering``; None: send rows)."""

    settings: HashSettings
    rendering: object | None = None
    #: ``cache_lookup.CacheSpec`` of a run with ``--cache`` (tasks with a ``cache`` key use it).
    cache: object | None = None
    #: The client's working directory, for workers in other processes with another one (a
    #: Dask cluster): relative paths are opened below it, and records keep them as given.
    base: str | None = None


@dataclass(slots=True)
class TaskResult:
    """A worker's answer to one task (see the module docstring)."""

    task_id: int
    #: Output bytes of the records, in the sink's format ("" when rows are sent instead).
    data: bytes = b""
    #: Records made (files hashed or failed; not those skipped by a size filter or deferred).
    files: int = 0
    #: Bytes of the files hashed without error.
    nbytes: int = 0
    #: (path, message) of every error record, in order: warnings and the summary need them.
    errors: list[tuple[str, str]] | None = None
    #: One ``Row`` per record, when the sink needs fields (or for a link's one read).
    rows: list[Row] | None = None
    #: (index, dev, ino, size, mtime_ns) of files with several hard links, left to the
    #: parent (links.py), which has one of them read.
    deferred: list[tuple[int, int, int, int, int]] | None = None
    #: ``cache_lookup.CachedHashing.answer()`` of a task run through the hash cache.
    cache: tuple | None = None


@dataclass(frozen=True, slots=True)
class LostTask:
    """An executor could not get an answer for ``task``: its worker died (SIGKILL, the OOM
    killer, a crash). The pipeline decides what happens to its files (retried once, one per
    task; then an error record each)."""

    task: Task
    reason: str = "worker process died"

    @property
    def task_id(self) -> int:
        return self.task.task_id
