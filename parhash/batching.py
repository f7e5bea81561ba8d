"""Sources into tasks: the parent's side of the work split.

``make_tasks`` groups the items of every source into ``Task``s of up to ``MAX_BATCH`` files
(several small directories share a task) and keeps what only the parent needs about each task
in a ``Context`` (the walker's error records, ``check``'s expected digests), registered by task
id in ``contexts``; the task itself stays slim. A path only this process can open
(``sources.process_bound``) is hashed here, at once, into its context's ready records.

The parent's time per file bounds a run of small files on two cores, so the walker hands over
whole directories (a prefix and a list of names) and this module works per listing and per
task, never per file, except for the lists of paths and checksum lines it must go through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from parhash.hashing import HashSettings
from parhash.model import Expected, FileRecord
from parhash.sources import Source, process_bound
from parhash.tasks import Task, TaskResult, WorkSpec, row_record
from parhash.worker import run_task

#: Largest number of files per task. Each task costs the parent a few thread handoffs
#: (task handler, result handler, main thread) and one Pool round trip (~12 us): measured on
#: 100,000 small files, tasks of 128 cost the parent 10.7 us/file and 9,500 context switches,
#: tasks of 1,024 7 us and 1,900 (before workers formatted their own output). A large file
#: in a task delays only that task: the pool keeps taking others.
MAX_BATCH = 1024

#: First task size; sizes double up to MAX_BATCH so that workers start at once on a small
#: tree and a tiny tree still spreads over every worker.
FIRST_BATCH = 8


@dataclass
class WalkProgress:
    """What the walker has found so far; read by the progress bar from another thread."""

    files_found: int = 0
    done: bool = False
    #: Mount points not entered (pseudo filesystems), for ``run`` to warn about once each.
    skipped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Context:
    """What the parent keeps about one task in flight, and never sends."""

    task: Task
    #: Records made before hashing (walker errors, process-bound paths hashed here): they
    #: reach the sink with the task's results, through the one bounded channel.
    ready: list[FileRecord] = field(default_factory=list)
    #: ``check``: the expected entry of each file of the task, in task order.
    expected: tuple[Expected, ...] = ()

    def expected_at(self, index: int) -> Expected | None:
        return self.expected[index] if self.expected else None


class _Builder:
    """Accumulates one task; flushed by size, by a change of source or algorithm."""

    def __init__(self, ids: Iterator[int], cache_key=None) -> None:
        self.ids = ids
        #: ``CacheSession.task_key`` of a run with a hash cache, else None.
        self.cache_key = cache_key
        self.size = FIRST_BATCH
        self.reset(None)

    def reset(self, algo: str | None) -> None:
        self.algo = algo
        self.groups: list[tuple[str, list[str]]] = []
        self.count = 0
        self.ready: list[FileRecord] = []
        self.expected: list[Expected] = []

    def __len__(self) -> int:
        return self.count + len(self.ready)

    def add(self, prefix: str, names: list[str]) -> None:
        if self.groups and self.groups[-1][0] == prefix:
            self.groups[-1][1].extend(names)
        else:
            self.groups.append((prefix, names))
        self.count += len(names)

    def build(self, source: Source, groups, ready, expected) -> Context:
        task = Task(
            next(self.ids),
            source.root,
            tuple((prefix, tuple(names)) for prefix, names in groups),
            source.follow,
            source.named,
            (self.algo,) if self.algo else None,
            cache=self.cache_key(source.root, source.named) if self.cache_key else None,
        )
        return Context(task, list(ready), tuple(expected))

    def take(self, source: Source) -> Context:
        context = self.build(source, self.groups, self.ready, self.expected)
        self.size = min(self.size * 2, MAX_BATCH)
        self.reset(self.algo)
        return context

    def split(self, source: Source, parts: int) -> Iterator[Context]:
        """Deal the pending files round-robin into at most ``parts`` tasks (the last task
        of a run), so that a few huge files still spread over every worker."""
        files = [(prefix, name) for prefix, names in self.groups for name in names]
        parts = max(1, min(parts, len(files)))
        for i in range(parts):
            groups: list[tuple[str, list[str]]] = []
            for prefix, name in files[i::parts]:
                if groups and groups[-1][0] == prefix:
                    groups[-1][1].append(name)
                else:
                    groups.append((prefix, [name]))
            expected = self.expected[i::parts] if self.expected else []
            yield self.build(source, groups, self.ready if i == 0 else [], expected)
        self.reset(self.algo)


def make_tasks(
    sources: Iterable[Source],
    processes: int,
    found: WalkProgress,
    settings: HashSettings,
    ids: Iterator[int],
    contexts: dict[int, Context],
    cache_key=None,
) -> Iterator[Task]:
    """The tasks of ``sources``, each registered in ``contexts`` before it is yielded.

    Tasks start small and double up to MAX_BATCH; the very last partial task is split over
    the workers, so a tree of four huge files still keeps every core busy. Task ids come
    from ``ids``, which the pipeline shares with the tasks it makes later (retries, links).
    ``cache_key(root, named)``: the hash-cache key of a source's tasks (a cached run).
    """
    for context in _contexts(sources, processes, found, settings, ids, cache_key):
        contexts[context.task.task_id] = context
        yield context.task


def _contexts(
    sources: Iterable[Source],
    processes: int,
    found: WalkProgress,
    settings: HashSettings,
    ids: Iterator[int],
    cache_key=None,
) -> Iterator[Context]:
    builder = _Builder(ids, cache_key)
    last: Source | None = None
    for source in sources:
        if last is not None and len(builder):
            yield builder.take(last)
        last = source
        if source.listings:
            yield from _from_listings(builder, source, found, settings)
        else:
            yield from _from_items(builder, source, found, settings)
    found.done = True
    if last is not None and len(builder):
        yield from builder.split(last, processes)


def _from_listings(
    builder: _Builder, source: Source, found: WalkProgress, settings: HashSettings
) -> Iterator[Context]:
    """Fill tasks from the walker's per-directory (prefix, names, records) listings."""
    for prefix, names, records in source.items:  # type: ignore[misc]
        if source.skipped:  # the walker appends while it lists; moved on at once
            found.skipped.extend(source.skipped)
            source.skipped.clear()
        found.files_found += len(names)
        builder.ready.extend(records)
        if source.here:
            for name in names:
                builder.ready.extend(hashed_here(source, prefix + name, None, settings))
            names = []
        start = 0
        while start < len(names):
            room = builder.size - len(builder)
            builder.add(prefix, names[start : start + room])
            start += room
            if len(builder) >= builder.size:
                yield builder.take(source)
        if len(builder) >= builder.size:
            yield builder.take(source)


def _from_items(
    builder: _Builder, source: Source, found: WalkProgress, settings: HashSettings
) -> Iterator[Context]:
    """Fill tasks from a stream of paths, records and expected entries (one at a time)."""
    for item in source.items:
        kind = type(item)
        if source.named and kind is not FileRecord:
            here = _hash_here_if_bound(source, item, settings)  # type: ignore[arg-type]
            if here is not None:
                builder.ready.extend(here)
                continue
        if kind is str:
            builder.add("", [item])  # type: ignore[list-item]
            found.files_found += 1
        elif kind is FileRecord:
            builder.ready.append(item)  # type: ignore[arg-type]
        else:
            entry: Expected = item  # type: ignore[assignment]
            if entry.algo != builder.algo:
                if len(builder):
                    yield builder.take(source)
                builder.reset(entry.algo)
            builder.add("", [entry.path])
            builder.expected.append(entry)
            found.files_found += 1
        if len(builder) >= builder.size:
            yield builder.take(source)


def _hash_here_if_bound(
    source: Source, item: str | Expected, settings: HashSettings
) -> list[FileRecord] | None:
    """The record of a named path that only this process can open, hashed now; None for
    any other path. A command-line PATH always gets the full test (a symbolic link to
    /dev/stdin under any name); a listed or sums-file path only when its name mentions
    dev/ or proc/, so that a list of 100,000 ordinary paths costs no syscall per path."""
    entry = item if type(item) is Expected else None
    path: str = entry.path if entry is not None else item  # type: ignore[assignment,union-attr]
    if path != source.root and "dev/" not in path and "proc/" not in path:
        return None
    if not process_bound(path):
        return None
    return hashed_here(source, path, entry, settings)


def hashed_here(
    source: Source, path: str, entry: Expected | None, settings: HashSettings
) -> list[FileRecord]:
    """Hash one path in this process, now (a process-bound one): its record."""
    task = Task(
        -1,
        source.root,
        (("", (path,)),),
        source.follow,
        source.named,
        (entry.algo,) if entry is not None else None,
    )
    context = Context(task, [], (entry,) if entry is not None else ())
    result = run_task(WorkSpec(replace(settings, dedupe_links=False)), task)
    return records_from_rows(context, result)


def records_from_rows(context: Context, result: TaskResult) -> list[FileRecord]:
    """The records of a result sent as rows (a sink that needs fields, a link's read)."""
    task = context.task
    paths = list(task.paths())
    root = task.root
    at = context.expected_at
    return [row_record(paths[row[0]], root, at(row[0]), row) for row in result.rows or ()]
