"""The worker side of the seam: one task in, one ``TaskResult`` out.

``run_task`` is what every executor runs (a pool worker, this process for ``-j 1``, later a
cluster worker): it reads and hashes the task's files (hashing.py), makes their records
here, and formats them with the sink's own formatter (report.py), so the parent receives one
bytes blob per task instead of one object per file. It lives at module top level and keeps no
state between tasks beyond per-process caches, so it works under every start method and in
a thread of a process that runs other tasks at the same time.
"""

from __future__ import annotations

import functools
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
    names = task.algos or settings.algos
    algos = _algorithms(tuple(names))
    if task.read_links and settings.dedupe_links:
        settings = replace(settings, dedupe_links=False)
    root, follow, named = task.root, task.follow, task.named
    result = TaskResult(task.task_id)
    records: list[FileRecord] = []
    rows: list[tuple] | None = [] if spec.rendering is None or task.read_links else None
    errors: list[tuple[str, str]] = []
    deferred: list[tuple[int, int, int, int, int]] = []
    index = 0
    nbytes = 0
    for prefix, group in task.groups:
        paths = [prefix + name for name in group] if prefix else list(group)
        raws = hash_files(paths, algos, follow, settings, named)
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
                    nbytes += size or 0
                else:
                    errors.append((path, error))
                if rows is not None:
                    digests = None if digest is None else (record.digest, *record.extra)
                    rows.append((index, size, mtime_ns, digests, error))
            elif raw is not None:
                link: Deferred = raw  # type: ignore[assignment]
                deferred.append((index, link.dev, link.ino, link.size, link.mtime_ns))
            index += 1
    result.files, result.nbytes = len(records), nbytes
    result.errors = errors or None
    result.deferred = deferred or None
    result.rows = rows
    rendering: Rendering | None = spec.rendering  # type: ignore[assignment]
    if rendering is not None and records:
        result.data = formatter(rendering)(records)
    return result
