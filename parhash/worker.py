"""The worker side of the seam: one task in, one ``TaskResult`` out.

``run_task`` is what every executor runs (a pool worker, this process for ``-j 1``, a Dask
worker through ``cluster.run_tasks``): it reads and hashes the task's files (hashing.py),
makes their records here, and formats them with the sink's own formatter (report.py), so the
parent receives one bytes blob per task instead of one object per file. It lives at module
top level and keeps no state between tasks beyond per-process caches, so it works under
every start method and in a thread of a process that runs other tasks at the same time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace

from parhash.algorithms import Algorithm, get_algorithm
from parhash.hashing import Deferred, HashSettings, hash_files
from parhash.model import FileRecord
from parhash.report import Rendering, formatter
from parhash.tasks import Task, TaskResult, WorkSpec


@functools.lru_cache(maxsize=32)
def _algorithms(names: tuple[str, ...]) -> tuple[Algorithm, ...]:
    return tuple(get_algorithm(name) for name in names)


def run_task(spec: WorkSpec, task: Task) -> TaskResult:
    """Hash every file of ``task``; never raises for a file (its problem is its record)."""
    settings: HashSettings = spec.settings
    algos = _algorithms(tuple(task.algos or settings.algos))
    if task.read_links and settings.dedupe_links:
        settings = replace(settings, dedupe_links=False)
    answer = _Answer(task, spec.rendering, rows=spec.rendering is None or task.read_links)
    cached = _cached(spec, task, algos, settings)
    for prefix, group in task.groups:
        paths = [prefix + name for name in group] if prefix else list(group)
        if cached is None:
            opened = paths if spec.base is None else [os.path.join(spec.base, p) for p in paths]
            answer.add(paths, hash_files(opened, algos, task.follow, settings, task.named))
        else:
            answer.add(paths, cached.hash_group(prefix, group, paths))
    result = answer.result()
    if cached is not None:
        result.cache = cached.answer()
    return result


def _cached(spec: WorkSpec, task: Task, algos: tuple[Algorithm, ...], settings: HashSettings):
    """The task's hashing through the hash cache, or None (no cache for this task)."""
    if spec.cache is None or task.cache is None:
        return None
    from parhash.cache_lookup import CachedHashing

    return CachedHashing(spec.cache, task.cache, algos, task.follow, settings, task.named)  # type: ignore[arg-type]


class _Answer:
    """One task's answer being built, one directory group at a time."""

    def __init__(self, task: Task, rendering: Rendering | None, rows: bool) -> None:
        self.task = task
        self.format = formatter(rendering) if rendering is not None else None
        #: json's array body needs a separator between the pieces of a task.
        self.separator = b",\n" if rendering is not None and rendering.fmt == "json" else b""
        self.pieces: list[bytes] = []
        self.rows: list[tuple] | None = [] if rows else None
        #: The formatter's no-record path, where it has one and no rows are wanted.
        self.from_raw = None if rows else getattr(self.format, "from_raw", None)
        self.errors: list[tuple[str, str]] = []
        self.deferred: list[tuple[int, int, int, int, int]] = []
        self.files = self.nbytes = self.index = 0

    def add(self, paths: list[str], raws: list) -> None:
        """The read results of one group: formatted straight from them when every file was
        hashed (the common case: no record per file), else through records."""
        if self.from_raw is not None and _all_hashed(raws):
            data = self.from_raw(paths, raws, self.task.root)
            if data is not None:
                self.pieces.append(data)
                self.files += len(raws)
                self.nbytes += sum(raw[0] for raw in raws)
                self.index += len(raws)
                return
        records = self._records(paths, raws)
        if self.format is not None and records:
            self.pieces.append(self.format(records))

    def _records(self, paths: list[str], raws: list) -> list[FileRecord]:
        root, rows, index = self.task.root, self.rows, self.index
        records: list[FileRecord] = []
        for path, raw in zip(paths, raws, strict=True):
            if type(raw) is tuple:
                size, mtime_ns, digest, error = raw
                if type(digest) is tuple:
                    first, extra = digest[0], digest[1:]
                    record = FileRecord(path, root, size, mtime_ns, first, error, None, extra)
                else:
                    record = FileRecord(path, root, size, mtime_ns, digest, error)
                records.append(record)
                if error is None:
                    self.nbytes += size or 0
                else:
                    self.errors.append((path, error))
                if rows is not None:
                    digests = None if digest is None else (record.digest, *record.extra)
                    rows.append((index, size, mtime_ns, digests, error))
            elif raw is not None:
                link: Deferred = raw  # type: ignore[assignment]
                self.deferred.append((index, link.dev, link.ino, link.size, link.mtime_ns))
            index += 1
        self.index = index
        self.files += len(records)
        return records

    def result(self) -> TaskResult:
        return TaskResult(
            self.task.task_id,
            self.separator.join(piece for piece in self.pieces if piece),
            self.files,
            self.nbytes,
            self.errors or None,
            self.rows,
            self.deferred or None,
        )


def _all_hashed(raws: list) -> bool:
    """Every result is a digest of one algorithm (no error, skip, link or digest tuple)."""
    for raw in raws:
        if type(raw) is not tuple or raw[3] is not None or type(raw[2]) is not str:
            return False
    return True
