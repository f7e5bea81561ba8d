"""The one pipeline behind every command: sources -> tasks -> executor -> chunks -> sink.

``iter_chunks`` is the stream: it makes tasks (batching.py), runs them through an executor
(executor.py), joins each answer with what the parent kept about its task, and yields one
``Chunk`` per task: the worker's output bytes, or records for a sink that needs fields.
``run`` adds the bounded queue and the writer thread that feed a sink, plus progress and the
summary. Check and audit reuse both: they only bring their own sources and their own sink.
``iter_records`` is the library's stream of records (``parhash.scan``).

The parent's work is per task, not per file, when the sink prints a streaming format: a
sink with a ``rendering`` (report.py's reporters) gets bytes its workers formatted.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from parhash.batching import Context, WalkProgress, make_tasks, records_from_rows
from parhash.executor import Executor, make_executor
from parhash.hashing import WorkCounters
from parhash.links import LinkResolver
from parhash.model import FileRecord, Summary
from parhash.options import ScanOptions, resolve_jobs
from parhash.sinks import Sink
from parhash.sources import Source, scan_sources
from parhash.tasks import LostTask, TaskResult, WorkSpec, error_row

if TYPE_CHECKING:
    from parhash.cache_store import CacheSession

#: Chunks (one per task) waiting for the writer thread. With the executor's permits this
#: bounds what is alive at once: a slow stdout stops the walker, not memory growth.
QUEUE_DEPTH = 16

#: Why ``--cache`` does nothing with ``--cluster``: the cache is a database on this host's
#: disk that a worker elsewhere cannot read, its stamps (inode, ctime) would come from the
#: workers' view of the mount, and Dask may run a task twice. Workers read every file; the
#: outputs are those of a run without ``--cache``.
CLUSTER_NO_CACHE = "--cache is not used with --cluster: the workers read every file"

#: Error text for files that were lost twice with a dying worker.
WORKER_DIED = "worker process died while hashing this file"


class ProgressSink(Protocol):
    def counters(self, slots: int) -> WorkCounters | None:
        """Shared counters for the workers to bump per read, or None (no bar)."""

    def start(self, counters: WorkCounters | None, found: WalkProgress) -> None:
        """The workers exist: start showing progress (a refresh timer may start now)."""

    def wrap(self, sink: Sink) -> Sink:
        """The sink as the writer should use it (the bar makes way for data lines)."""

    def update(self, files: int, nbytes: int, found: WalkProgress) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Chunk:
    """What one answer gives the writer: records the parent made or rebuilt (written with
    ``sink.write``), the worker's bytes (``sink.write_data``), and the counts of both."""

    records: list[FileRecord] = field(default_factory=list)
    data: bytes = b""
    files: int = 0
    nbytes: int = 0
    #: (path, message) of every error record in the chunk.
    errors: list[tuple[str, str]] = field(default_factory=list)


def _chunk(records: list[FileRecord], result: TaskResult | None = None) -> Chunk:
    """A chunk of parent-side ``records`` plus, if given, a worker's formatted result."""
    chunk = Chunk(records)
    for record in records:
        if record.error is None:
            chunk.nbytes += record.size or 0
        else:
            chunk.errors.append((record.path, record.error))
    chunk.files = len(records)
    if result is not None:
        chunk.data = result.data
        chunk.files += result.files
        chunk.nbytes += result.nbytes
        if result.errors:
            chunk.errors.extend(result.errors)
    return chunk


class _Run:
    """One stream of tasks through one executor: the parent's side of every answer."""

    def __init__(
        self,
        executor: Executor,
        options: ScanOptions,
        rendering,
        ids,
        contexts,
        cache: CacheSession | None = None,
    ):
        self.executor = executor
        self.rendering = rendering
        self.ids = ids
        self.contexts: dict[int, Context] = contexts
        self.links = LinkResolver(self.submit, ids) if options.dedupe_links else None
        self.cache: CacheSession | None = cache

    def submit(self, context: Context) -> None:
        """Run one more task (a link's read, a retry): registered, then injected."""
        self.contexts[context.task.task_id] = context
        self.executor.inject(context.task)

    def answer(self, answer: TaskResult | LostTask) -> Chunk:
        context = self.contexts.pop(answer.task_id)
        if type(answer) is LostTask:
            return self.lost(context)
        result: TaskResult = answer  # type: ignore[assignment]
        if result.cache is not None and self.cache is not None:
            self.cache.absorb(context.task.cache, result.cache)  # type: ignore[arg-type]
        records = context.ready
        rows_only = self.rendering is None
        if rows_only and result.rows:
            records = records + records_from_rows(context, result)
        if result.deferred and self.links is not None:
            for link in result.deferred:
                records = records + self.links.defer(context, link)
        if self.links is not None and self.links.is_read(result.task_id):
            records = records + self.links.settle(result.task_id, result.rows or [])
        return _chunk(records, None if rows_only else result)

    def lost(self, context: Context) -> Chunk:
        """A task whose worker died: its files once more, one per task; a file lost twice
        is an error record (and so are the paths waiting on it, for a link's read)."""
        task = context.task
        if task.attempt:
            rows = [error_row(i, WORKER_DIED) for i in range(task.count)]
            result = TaskResult(task.task_id, rows=rows)
            records = context.ready + records_from_rows(context, result)
            if self.links is not None and self.links.is_read(task.task_id):
                records += self.links.settle(task.task_id, rows)
            return _chunk(records)
        if task.count == 1:  # keeps its id: a link's read is awaited by id
            self.submit(Context(task.retried(), [], context.expected))
        else:
            for index in range(task.count):
                single = task.single(index, next(self.ids)).retried()
                expected = context.expected_at(index)
                self.submit(Context(single, [], (expected,) if expected else ()))
        return _chunk(context.ready)


def iter_chunks(
    sources: Iterable[Source],
    options: ScanOptions,
    rendering=None,
    found: WalkProgress | None = None,
    progress: ProgressSink | None = None,
    cache: CacheSession | None = None,
) -> Iterator[Chunk]:
    """Stream one chunk per task for ``sources``; the executor lives as long as this.

    ``rendering``: how workers format records (a sink's), or None for records. The first
    task is made before any executor exists, so an empty walk never starts a pool.
    ``progress`` is started once the workers exist, with their counters; it also gets the
    lines about the executor itself (jobs capped, a worker died). ``cache``: the run's
    hash-cache session (its owner closes it).
    """
    found = found or WalkProgress()
    warn = progress.warn if progress is not None else None
    jobs = resolve_jobs(options.jobs, warn)
    settings = options.hash_settings()
    ids = itertools.count()
    contexts: dict[int, Context] = {}
    key = cache.task_key if cache is not None else None
    tasks = make_tasks(sources, jobs, found, settings, ids, contexts, key)
    first = next(tasks, None)
    if first is None:
        return
    # Shared-memory counters reach local workers only: on a cluster the bar counts results.
    local = progress is not None and options.cluster is None
    counters = progress.counters(max(jobs, 1)) if local else None  # type: ignore[union-attr]
    spec = WorkSpec(settings, rendering, cache.spec() if cache is not None else None)
    executor = make_executor(spec, jobs, counters, warn, options.cluster)
    if progress is not None:
        executor.on_start = lambda: progress.start(counters, found)
    run = _Run(executor, options, rendering, ids, contexts, cache)
    try:
        for answer in executor.results(itertools.chain((first,), tasks)):
            chunk = run.answer(answer)
            if chunk.files or chunk.data:
                yield chunk
    finally:
        executor.close()


def iter_records(roots: list[str], options: ScanOptions) -> Iterator[FileRecord]:
    """Library-level scan of roots already checked (``check_roots``): one ``FileRecord``
    per file, in completion order. A cache that cannot be used is a ``RuntimeWarning``."""
    cache = open_cache(options, _library_warning)
    complete = False
    try:
        sources = scan_sources(roots, options.walk)
        for chunk in iter_chunks(sources, options, cache=cache, progress=None):
            yield from chunk.records
        complete = True
    finally:
        if cache is not None:
            cache.close(complete)


def _library_warning(message: str) -> None:
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=2)


_DONE = object()


class _Writer(threading.Thread):
    """Consumes chunks from the bounded queue and hands them to the sink.

    Writing happens off the main thread so that a slow stdout overlaps with receiving
    results; when the queue is full, the main thread blocks, stops releasing permits, and
    the walker pauses: backpressure end to end.
    """

    def __init__(self, sink: Sink, depth: int = QUEUE_DEPTH) -> None:
        super().__init__(name="parhash-writer", daemon=True)
        self.sink = sink
        self.queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None

    def run(self) -> None:
        sink = self.sink
        write_data = getattr(sink, "write_data", None)
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            chunk: Chunk = item  # type: ignore[assignment]
            try:
                if chunk.records:
                    sink.write(chunk.records)
                if chunk.data:
                    write_data(chunk.data)  # type: ignore[misc]
            except BaseException as exc:
                self.error = exc

    def put(self, chunk: Chunk) -> None:
        """Block until there is room; re-raise a failure of the writer in the producer.

        The thread starts with the first chunk, after the pool's workers were forked: a
        fork while another thread runs can copy a lock that thread holds (Python 3.12+
        warns about it), and the workers must never inherit the writer's stdout lock.
        """
        if not self.is_alive() and self.ident is None:
            self.start()
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        if self.ident is None:
            self.start()
        self.queue.put(_DONE)
        self.join()
        if self.error is not None:
            raise self.error


def _report_skipped(found: WalkProgress, summary: Summary, progress: ProgressSink) -> None:
    """One warning per mount point the walker did not enter; the summary counts them.
    Skipping by policy is not a failure: it does not change the exit status."""
    while found.skipped:
        mount = found.skipped.pop(0)
        summary.skipped_mounts.append(mount)
        progress.warn(f"{mount}, not entered (name it as a PATH to hash it)")


def open_cache(options: ScanOptions, warn) -> CacheSession | None:
    """The run's hash-cache session, or None (no --cache, or one warning said why not);
    sqlite3 is imported only for a run with --cache. Opened before the run's sources are
    made, so that the walk can skip the cache's own files (``CacheSession.identities``)."""
    if options.cache is None:
        return None
    if options.cluster is not None:
        warn(CLUSTER_NO_CACHE)
        return None
    from parhash.cache_store import open_session

    return open_session(options.cache, options.algos, warn)


def run(
    sources: Iterable[Source],
    options: ScanOptions,
    sink: Sink,
    progress: ProgressSink,
    *,
    warn_errors: bool = True,
    cache: CacheSession | None = None,
) -> Summary:
    """Hash ``sources`` into ``sink``; returns the summary. Raises on fatal problems only.

    ``warn_errors``: print a warning for each error record (check prints its own).
    ``cache``: the run's hash-cache session (``open_cache``); this closes it.
    """
    summary = Summary()
    started = time.monotonic()
    found = WalkProgress()
    writer = _Writer(progress.wrap(sink))
    rendering = getattr(sink, "rendering", None)
    stream = iter_chunks(sources, options, rendering, found, progress, cache)
    complete = False
    try:
        for chunk in stream:
            summary.add_chunk(chunk.files, chunk.nbytes, chunk.errors)
            if warn_errors:
                for path, message in chunk.errors:
                    progress.warn(f"{path}: {message}")
            progress.update(chunk.files, chunk.nbytes, found)
            _report_skipped(found, summary, progress)
            writer.put(chunk)
        _report_skipped(found, summary, progress)
        writer.finish()
        complete = True
        if cache is not None:
            cache.close(complete=True)
            summary.cache = cache.counts
        summary.elapsed = time.monotonic() - started
        writer.sink.close(summary)
    finally:
        stream.close()
        if cache is not None and not complete:
            cache.close(complete=False)
        progress.close()
    return summary
