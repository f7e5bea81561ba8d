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
from parhash.model import Batch, Expected, FileRecord, Summary
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


def scan_options(
    algo: str = DEFAULT_ALGORITHM,
    jobs: int | None = None,
    *,
    follow_symlinks: bool = False,
    one_file_system: bool = False,
    exclude: Iterable[str] = (),
) -> ScanOptions:
    """ScanOptions from flat keyword arguments: what the CLI and ``parhash.scan`` take."""
    walk = WalkOptions(
        follow_symlinks=follow_symlinks, one_file_system=one_file_system, exclude=tuple(exclude)
    )
    return ScanOptions(algo=algo, jobs=jobs, walk=walk)


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


@dataclass(frozen=True)
class Source:
    """One stream of work: items below one root, opened with one symlink policy.

    Items are paths to hash (``str``), error records the producer already made, or
    ``Expected`` entries (a path with the digest it should have: ``check``).
    """

    root: str
    follow: bool
    items: Iterable[str | FileRecord | Expected]


def scan_sources(roots: list[str], walk: WalkOptions) -> Iterator[Source]:
    """The sources of a scan: each directory root walked, each file root hashed as named."""
    for root in roots:
        if classify_root(root) == "dir":
            yield Source(root, walk.follow_symlinks, walk_directory(root, walk))
        else:  # a file named on the command line is followed, like find -H
            yield Source(root, True, (root,))


class _BatchBuilder:
    """Accumulates one batch; flushed by size, by a change of algorithm, or by the caller."""

    def __init__(self) -> None:
        self.next_id = 0
        self.size = FIRST_BATCH
        self.reset(None)

    def reset(self, algo: str | None) -> None:
        self.algo = algo
        self.paths: list[str] = []
        self.errors: list[FileRecord] = []
        self.expected: list[Expected] = []

    def __len__(self) -> int:
        return len(self.paths) + len(self.errors)

    def build(self, source: Source, paths: list[str], errors, expected) -> Batch:
        batch = Batch(
            self.next_id,
            source.root,
            source.follow,
            tuple(paths),
            tuple(errors),
            self.algo,
            tuple(expected),
        )
        self.next_id += 1
        return batch

    def take(self, source: Source) -> Batch:
        batch = self.build(source, self.paths, self.errors, self.expected)
        self.size = min(self.size * 2, MAX_BATCH)
        self.reset(self.algo)
        return batch

    def split(self, source: Source, parts: int) -> Iterator[Batch]:
        """Deal the pending paths round-robin into at most ``parts`` batches (the last
        batch of a run), so that a few huge files still spread over every worker."""
        parts = max(1, min(parts, len(self.paths)))
        for i in range(parts):
            expected = self.expected[i::parts] if self.expected else []
            yield self.build(source, self.paths[i::parts], self.errors if i == 0 else [], expected)
        self.reset(self.algo)


def make_batches(sources: Iterable[Source], processes: int, found: WalkProgress) -> Iterator[Batch]:
    """Group the sources' items into batches (one root, symlink policy and algorithm each).

    Batches start small and double up to MAX_BATCH; the very last partial batch is split
    over the workers, so a tree of four huge files still keeps every core busy.
    """
    builder = _BatchBuilder()
    last: Source | None = None
    for source in sources:
        if last is not None and len(builder):
            yield builder.take(last)
        last = source
        for item in source.items:
            kind = type(item)
            if kind is str:
                builder.paths.append(item)  # type: ignore[arg-type]
                found.files_found += 1
            elif kind is FileRecord:
                builder.errors.append(item)  # type: ignore[arg-type]
            else:
                entry: Expected = item  # type: ignore[assignment]
                if entry.algo != builder.algo:
                    if len(builder):
                        yield builder.take(source)
                    builder.reset(entry.algo)
                builder.paths.append(entry.path)
                builder.expected.append(entry)
                found.files_found += 1
            if len(builder) >= builder.size:
                yield builder.take(source)
    found.done = True
    if last is not None and len(builder):
        yield from builder.split(last, processes)


def to_records(batch: Batch, raw: list[RawResult]) -> list[FileRecord]:
    """Join a batch's paths with its workers' results, walker errors first."""
    root = batch.root
    records = list(batch.errors)
    if batch.expected:
        for entry, (size, mtime_ns, digest, error) in zip(batch.expected, raw, strict=True):
            records.append(FileRecord(entry.path, root, size, mtime_ns, digest, error, entry))
        return records
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
    sources: Iterable[Source], options: ScanOptions, found: WalkProgress | None = None
) -> Iterator[list[FileRecord]]:
    """Stream record lists (one per batch) for ``sources``; the pool lives as long as this."""
    get_algorithm(options.algo)  # unknown names fail here, before any process starts
    executor, processes = make_executor(options)
    batches = make_batches(sources, processes, found or WalkProgress())
    results = executor.results(batches)
    try:
        for batch, raw in results:
            yield to_records(batch, raw)
    finally:
        results.close()  # type: ignore[attr-defined]


def iter_records(roots: Iterable[str], options: ScanOptions) -> Iterator[FileRecord]:
    """Library-level scan: one ``FileRecord`` per file, in completion order."""
    sources = scan_sources(check_roots(roots), options.walk)
    for records in iter_batches(sources, options):
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


def run(
    sources: Iterable[Source],
    options: ScanOptions,
    sink: Sink,
    progress: ProgressSink,
    *,
    warn_errors: bool = True,
) -> Summary:
    """Hash ``sources`` into ``sink``; returns the summary. Raises on fatal problems only.

    ``warn_errors``: print a warning for each error record (check prints its own).
    """
    summary = Summary()
    started = time.monotonic()
    found = WalkProgress()
    writer = _Writer(sink)
    writer.start()
    stream = iter_batches(sources, options, found)
    try:
        for records in stream:
            nbytes = 0
            for record in records:
                summary.add(record)
                if record.error is None:
                    nbytes += record.size or 0
                elif warn_errors:
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
