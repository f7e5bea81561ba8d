"""The one pipeline behind every command: roots -> batches -> executor -> records -> sink.

``iter_records`` is the library-level stream (used by ``parhash.scan``); ``run`` adds the
bounded queue and the writer thread that feed a reporter, plus progress and the summary.
Check and audit reuse both: they only bring their own roots and their own sink.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from parhash.exit_codes import FatalError
from parhash.hashing import DEFAULT_ALGORITHM, RawResult, get_algorithm
from parhash.model import Batch, FileRecord, Summary
from parhash.walk import WalkOptions, classify_root, walk_directory

#: Largest number of files per task. At ~1 us of IPC per file in batches this size, the
#: pool's overhead is small next to the ~5 us a worker spends opening and reading a file.
MAX_BATCH = 128

#: First batch size; batches double up to MAX_BATCH so that workers start at once on a
#: small tree and a tiny tree still spreads over every worker.
FIRST_BATCH = 8

#: Result lists (one per batch) waiting for the writer thread. With the executor's permits
#: this bounds the records alive at once: a slow stdout stops the walker, not memory growth.
QUEUE_DEPTH = 16


@dataclass(frozen=True)
class ScanOptions:
    """Everything that decides which files are hashed and how."""

    algo: str = DEFAULT_ALGORITHM
    jobs: int | None = None
    walk: WalkOptions = field(default_factory=WalkOptions)


@dataclass
class WalkProgress:
    """What the walker has found so far; read by the progress bar from another thread."""

    files_found: int = 0
    done: bool = False


class Sink(Protocol):
    """A consumer of records: a reporter, a manifest writer, an audit comparer."""

    def write(self, records: list[FileRecord]) -> None: ...

    def close(self, summary: Summary) -> None: ...


class ProgressSink(Protocol):
    def update(self, files: int, nbytes: int, found: WalkProgress) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


def check_roots(roots: Iterable[str]) -> list[str]:
    """Validate PATH arguments up front: a missing root is fatal, not a per-file error."""
    roots = list(roots)
    for root in roots:
        kind = classify_root(root)
        if kind not in ("dir", "file"):
            raise FatalError(f"{root}: {kind}")
    return roots


def make_batches(
    roots: list[str], walk: WalkOptions, processes: int, found: WalkProgress
) -> Iterator[Batch]:
    """Group the walker's output into batches (one root and one symlink policy per batch).

    Batches start small and double, and the last partial batch of the whole walk is split
    over the workers, so a tree of four huge files still keeps every core busy.
    """
    next_id = 0
    size = FIRST_BATCH
    pending: list[tuple[str, bool, list[str], list[FileRecord]]] = []
    for root in roots:
        kind = classify_root(root)
        items: Iterable[str | FileRecord]
        if kind == "dir":
            items, follow = walk_directory(root, walk), walk.follow_symlinks
        else:  # a file named on the command line is followed, like find -H
            items, follow = [root], True
        paths: list[str] = []
        errors: list[FileRecord] = []
        for item in items:
            if type(item) is str:
                paths.append(item)
                found.files_found += 1
            else:
                errors.append(item)  # type: ignore[arg-type]
            if len(paths) + len(errors) >= size:
                yield Batch(next_id, root, follow, tuple(paths), tuple(errors))
                next_id += 1
                size = min(size * 2, MAX_BATCH)
                paths, errors = [], []
        if paths or errors:
            pending.append((root, follow, paths, errors))
    found.done = True
    for root, follow, paths, errors in pending:
        for chunk_paths, chunk_errors in _split(paths, errors, processes):
            yield Batch(next_id, root, follow, chunk_paths, chunk_errors)
            next_id += 1


def _split(
    paths: list[str], errors: list[FileRecord], parts: int
) -> Iterator[tuple[tuple[str, ...], tuple[FileRecord, ...]]]:
    """Deal ``paths`` round-robin into at most ``parts`` tuples; the errors go with the first."""
    parts = max(1, min(parts, len(paths)))
    for i in range(parts):
        yield tuple(paths[i::parts]), tuple(errors) if i == 0 else ()


def to_records(batch: Batch, raw: list[RawResult]) -> list[FileRecord]:
    """Join a batch's paths with its workers' results, walker errors first."""
    root = batch.root
    records = list(batch.errors)
    for path, (size, mtime_ns, digest, error) in zip(batch.paths, raw, strict=True):
        records.append(FileRecord(path, root, size, mtime_ns, digest, error))
    return records


def make_executor(options: ScanOptions):
    """``--jobs 1`` hashes in-process; otherwise a Pool (imported only when needed)."""
    from parhash.pool import InlineExecutor, default_jobs

    jobs = options.jobs or default_jobs()
    if jobs <= 1:
        return InlineExecutor(options.algo), 1
    from parhash.pool import PoolExecutor

    return PoolExecutor(options.algo, jobs), jobs


def iter_batches(
    roots: list[str], options: ScanOptions, found: WalkProgress | None = None
) -> Iterator[list[FileRecord]]:
    """Stream record lists (one per batch) for ``roots``; the pool lives as long as this."""
    get_algorithm(options.algo)  # unknown names fail here, before any process starts
    executor, processes = make_executor(options)
    batches = make_batches(roots, options.walk, processes, found or WalkProgress())
    results = executor.results(batches)
    try:
        for batch, raw in results:
            yield to_records(batch, raw)
    finally:
        results.close()  # type: ignore[attr-defined]


def iter_records(roots: Iterable[str], options: ScanOptions) -> Iterator[FileRecord]:
    """Library-level scan: one ``FileRecord`` per file, in completion order."""
    for records in iter_batches(check_roots(roots), options):
        yield from records


_DONE = object()


class _Writer(threading.Thread):
    """Consumes record lists from the bounded queue and hands them to the sink.

    Writing happens off the main thread so that formatting and a slow stdout overlap with
    receiving results; when the queue is full, the main thread blocks, stops releasing
    permits, and the walker pauses: backpressure end to end.
    """

    def __init__(self, sink: Sink, depth: int = QUEUE_DEPTH) -> None:
        super().__init__(name="parhash-writer", daemon=True)
        self.sink = sink
        self.queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            try:
                self.sink.write(item)  # type: ignore[arg-type]
            except BaseException as exc:
                self.error = exc

    def put(self, records: list[FileRecord]) -> None:
        """Block until there is room; re-raise a failure of the writer in the producer."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(records, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.queue.put(_DONE)
        self.join()
        if self.error is not None:
            raise self.error


def run(roots: Iterable[str], options: ScanOptions, sink: Sink, progress: ProgressSink) -> Summary:
    """Hash ``roots`` into ``sink``; returns the summary. Raises on fatal problems only."""
    roots = check_roots(roots)
    summary = Summary()
    started = time.monotonic()
    found = WalkProgress()
    writer = _Writer(sink)
    writer.start()
    stream = iter_batches(roots, options, found)
    try:
        for records in stream:
            nbytes = 0
            for record in records:
                summary.add(record)
                if record.error is None:
                    nbytes += record.size or 0
                else:
                    progress.warn(f"{record.path}: {record.error}")
            progress.update(len(records), nbytes, found)
            writer.put(records)
        writer.finish()
        summary.elapsed = time.monotonic() - started
        sink.close(summary)
    finally:
        stream.close()
        progress.close()
    return summary
