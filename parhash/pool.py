"""Executors: run ``hashing.hash_batch`` over a stream of batches, in-process or in a Pool.

Data flow of ``PoolExecutor`` (one pool generation; a dead worker starts the next one)::

    batches (walker) --> _Gate ------------> Pool task-handler thread --> inqueue pipe
       ^ pulled on the Pool's task-handler      (runs the gate)              |
       |  thread, one permit per batch                                       v
    permits.release() <-- results() <-- it.next(timeout) <-- outqueue <-- workers
       (consumer asks for the next result)   | on timeout: are the original
                                             | workers still alive?

Why a gate: ``Pool.imap_unordered`` drains its input eagerly on the task-handler thread (only
the pipe's ~64 KiB slows it down), and its results pile up in an unbounded deque when the
consumer is slow. Counting permits per batch bounds both: at most ``permits`` batches exist
between the walker and the consumer. The gate polls a stop event while it waits, so
``terminate()`` never waits on a thread stuck in ``acquire()`` (design notes, 7a).

Why a watchdog: when a worker dies (SIGKILL, OOM killer), Pool replaces it but never answers
its task, so a blocking ``next()`` waits forever (https://github.com/python/cpython/issues/66587).
We never block: on each timeout tick we check that the workers we started are alive. If one
is gone, the pool is torn down and the batches that were in flight are retried once, one
file per batch, in a fresh pool; a file whose retry dies too becomes an error record. This
keeps ``Pool.imap_unordered`` (the design we chose) while behaving like
``ProcessPoolExecutor``'s sentinel wait.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from parhash.hashing import HashSettings, WorkCounters, count_progress, hash_batch
from parhash.model import Batch

#: Seconds between liveness checks of the workers. Short enough that a killed worker is
#: noticed within a second, long enough that the check (one waitpid per child) costs nothing.
WATCHDOG_INTERVAL = 0.25

#: Batches admitted per worker process. More keeps workers fed while the parent formats
#: output; fewer bounds memory tighter. 4 x processes x 128 paths is ~100 KiB of paths.
PERMITS_PER_PROCESS = 4

#: How long the gate sleeps between checks of the stop event while waiting for a permit.
GATE_POLL = 0.1

#: Error text for files that were lost twice with a dying worker.
WORKER_DIED = "worker process died while hashing this file"


def _init_worker(counters: WorkCounters | None = None) -> None:
    """Pool initializer: only the parent handles Ctrl-C, so workers print no tracebacks, and
    SIGTERM (how ``terminate()`` stops a worker) kills quietly even if the parent installed
    a handler before forking. With a progress bar, the worker takes its counter slot."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    count_progress(counters)


class _Executor:
    """What both executors share: extra batches with ids of their own, progress counters,
    and a hook run once the workers exist (the bar starts its refresh thread there, so no
    thread of ours is alive when the first workers are forked)."""

    def __init__(self, settings: HashSettings, counters: WorkCounters | None = None) -> None:
        self.settings = settings
        self.counters = counters
        self.on_start: Callable[[], None] | None = None
        self.injected: deque[Batch] = deque()
        self._ids = itertools.count(-1, -1)  # extra batches never collide with the walker's

    def inject(self, batch: Batch) -> int:
        """Queue an extra batch (a hard link's one read); returns the id it was given."""
        batch = replace(batch, batch_id=next(self._ids))
        self.injected.append(batch)
        return batch.batch_id

    def _started(self) -> None:
        if self.on_start is not None:
            hook, self.on_start = self.on_start, None
            hook()


class InlineExecutor(_Executor):
    """Hash in the calling process (``--jobs 1``): deterministic, no IPC, nothing to clean up."""

    def results(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list]]:
        count_progress(self.counters)
        self._started()
        try:
            for batch in batches:
                yield batch, hash_batch(batch, self.settings)[1]
                while self.injected:  # queued while the consumer handled the last result
                    extra = self.injected.popleft()
                    yield extra, hash_batch(extra, self.settings)[1]
        finally:
            count_progress(None)


class _Gate:
    """The input side of one pool generation: retries, injected batches, then the walker's,
    one permit each."""

    def __init__(self, executor: PoolExecutor, inflight: dict[int, Batch], permits: int) -> None:
        self.executor = executor
        self.inflight = inflight
        self.permits = threading.Semaphore(permits)
        self.stop = threading.Event()

    def __iter__(self) -> Iterator[Batch]:
        while True:
            while not self.permits.acquire(timeout=GATE_POLL):
                if self.stop.is_set():
                    return
            batch = None if self.stop.is_set() else self._next_batch()
            if batch is None:
                return
            # Registered before it is handed to the Pool: if the pool breaks now, the batch
            # is still known and gets retried, never silently dropped.
            self.inflight[batch.batch_id] = batch
            yield batch

    def _next_batch(self) -> Batch | None:
        executor = self.executor
        while True:
            if executor.retry:
                return executor.retry.popleft()
            if executor.injected:
                return executor.injected.popleft()
            if not executor.exhausted:
                # The lock serializes the walker between an old pool's task-handler thread
                # that is winding down and the new pool's: a generator runs on one thread.
                with executor.source_lock:
                    batch = next(executor.source, None)
                if batch is not None:
                    return batch
                executor.exhausted = True
            # The walk is over; only results still in flight can ask for more (a hard
            # link's one read). Their entries leave ``inflight`` after the consumer is done.
            if not self.inflight and not executor.injected and not executor.retry:
                return None
            if self.stop.wait(GATE_POLL / 10):
                return None


class PoolExecutor(_Executor):
    """Hash in ``processes`` worker processes with bounded memory and dead-worker recovery."""

    def __init__(
        self, settings: HashSettings, processes: int, counters: WorkCounters | None = None
    ) -> None:
        super().__init__(settings, counters)
        self.processes = processes
        self.retry: deque[Batch] = deque()
        self.exhausted = False
        self.source: Iterator[Batch] = iter(())
        self.source_lock = threading.Lock()

    def results(self, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list]]:
        self.source = iter(batches)
        retried: set[int] = set()
        while True:
            inflight: dict[int, Batch] = {}
            gate = _Gate(self, inflight, PERMITS_PER_PROCESS * self.processes)
            broken = yield from self._one_generation(gate)
            if not broken:
                return
            for batch in list(inflight.values()):
                if batch.batch_id in retried:
                    yield batch, [(None, None, None, WORKER_DIED)] * len(batch.paths)
                    continue
                yield from self._retry_once(batch, retried)

    def _retry_once(self, batch: Batch, retried: set[int]) -> Iterator[tuple[Batch, list]]:
        """Queue a lost batch again, one file per batch, so a file that kills its worker
        takes only itself down the second time. A one-file batch keeps its id (a hard
        link's read is awaited by id)."""
        if len(batch.paths) == 1 and not batch.ready:
            retried.add(batch.batch_id)
            self.retry.append(batch)
            return
        for i, path in enumerate(batch.paths):
            expected = (batch.expected[i],) if batch.expected else ()
            single = replace(
                batch, batch_id=next(self._ids), paths=(path,), ready=(), expected=expected
            )
            retried.add(single.batch_id)
            self.retry.append(single)
        if batch.ready:
            yield replace(batch, paths=(), expected=()), []

    def _one_generation(self, gate: _Gate) -> Iterator[tuple[Batch, list]]:
        """Run one Pool until the input is exhausted (returns False) or a worker dies (True)."""
        before = {p.pid for p in multiprocessing.active_children()}
        pool = multiprocessing.Pool(
            self.processes, initializer=_init_worker, initargs=(self.counters,)
        )
        workers = {p.pid for p in multiprocessing.active_children()} - before
        self._started()
        task = functools.partial(hash_batch, settings=self.settings)
        broken = False
        try:
            it = pool.imap_unordered(task, gate, chunksize=1)
            last_check = time.monotonic()
            while True:
                try:
                    batch_id, raw = it.next(timeout=WATCHDOG_INTERVAL)
                except StopIteration:
                    return False
                except multiprocessing.TimeoutError:
                    last_check = time.monotonic()
                    if not _all_alive(workers):
                        broken = True
                        return True
                    continue
                yield gate.inflight[batch_id], raw
                # Only now, after the consumer handled it (and maybe injected a batch), is
                # the batch done: the gate ends the input when nothing is in flight.
                del gate.inflight[batch_id]
                gate.permits.release()
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if not _all_alive(workers):
                        broken = True
                        return True
        finally:
            gate.stop.set()
            _shutdown(pool, before, broken)


def _all_alive(pids: set[int]) -> bool:
    """True while every worker we started is still running (reaps exited children)."""
    alive = {p.pid for p in multiprocessing.active_children()}
    return pids <= alive


#: Seconds ``terminate()`` may take before its workers are killed by hand. A broken pool gets
#: less: a dead worker holding the inqueue lock makes ``terminate()`` wait forever.
TERMINATE_DEADLINE = 5.0
BROKEN_TERMINATE_DEADLINE = 1.0


def _shutdown(pool: multiprocessing.pool.Pool, before: set[int], broken: bool) -> None:
    """Stop a pool without ever hanging the caller, and leave no process behind.

    A broken pool may have lost a worker that held the inqueue's read lock, and then
    ``terminate()`` blocks forever (https://github.com/python/cpython/issues/96062): its
    workers (and any replacements Pool started) are killed first, and ``terminate()`` runs
    in a daemon thread with a deadline; past it, whatever is left of the pool is killed.
    """
    if broken:
        _kill_pool_processes(before)
    stopper = threading.Thread(target=pool.terminate, name="parhash-pool-stop", daemon=True)
    stopper.start()
    stopper.join(BROKEN_TERMINATE_DEADLINE if broken else TERMINATE_DEADLINE)
    if stopper.is_alive():
        _kill_pool_processes(before)
    else:
        pool.join()


def _kill_pool_processes(before: set[int]) -> None:
    """SIGKILL and reap every child process that this pool started."""
    for proc in multiprocessing.active_children():
        if proc.pid not in before:
            proc.kill()
            proc.join(timeout=1.0)
