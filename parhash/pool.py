"""The local process pool behind the executor seam (executor.py): ``PoolExecutor``.

Data flow of ``PoolExecutor`` (one pool generation; a dead worker starts the next one)::

    tasks (walker) ----> _Gate ------------> Pool task-handler thread --> inqueue pipe
       ^ pulled on the Pool's task-handler      (runs the gate)              |
       |  thread, one permit per task                                        v
    permits.release() <-- results() <-- it.next(timeout) <-- outqueue <-- workers
       (consumer asks for the next result)   | on timeout: are the original
                                             | workers still alive?

Why a gate: ``Pool.imap_unordered`` drains its input eagerly on the task-handler thread (only
the pipe's ~64 KiB slows it down), and its results pile up in an unbounded deque when the
consumer is slow. Counting permits per task bounds both: at most ``permits`` tasks exist
between the walker and the consumer. The gate polls a stop event while it waits, so
``terminate()`` never waits on a thread stuck in ``acquire()`` (design notes, 7a).

Why a watchdog: when a worker dies (SIGKILL, OOM killer), Pool replaces it but never answers
its task, so a blocking ``next()`` waits forever (https://github.com/python/cpython/issues/66587).
We never block: on each timeout tick we check that the workers we started are alive. If one
is gone, the pool is torn down and the tasks that were in flight come back as ``LostTask``
(the pipeline retries their files once, one per task; a file whose retry dies too becomes an
error record), and the next tasks run in a fresh pool. This
keeps ``Pool.imap_unordered`` (the design we chose) while behaving like
``ProcessPoolExecutor``'s sentinel wait. Each death is one warning line (which worker, which
signal, how many files are retried); the run's exit status still describes the records,
which are complete after the retry.

Why workers start with signals blocked: a worker must never run the parent's handlers (see
``_block_parent_signals``), and it must never outlive the parent (see ``_die_with_parent``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from parhash.executor import BaseExecutor, stderr_warning
from parhash.exit_codes import FatalError
from parhash.hashing import WorkCounters, count_progress
from parhash.tasks import LostTask, Task, TaskResult, WorkSpec
from parhash.worker import run_task

try:  # imported now: once descriptors run out, even an import fails
    import resource
except ImportError:  # not POSIX
    resource = None  # type: ignore[assignment]

#: Seconds between liveness checks of the workers. Short enough that a killed worker is
#: noticed within a second, long enough that the check (one waitpid per child) costs nothing.
WATCHDOG_INTERVAL = 0.25

#: Tasks admitted per worker process. More keeps workers fed while the parent writes
#: output; fewer bounds memory tighter. 4 x processes x 1,024 paths is ~1 MiB of paths.
PERMITS_PER_PROCESS = 4

#: How long the gate sleeps between checks of the stop event while waiting for a permit.
GATE_POLL = 0.1

#: The signals the parent handles with Python handlers (cli.guarded). They are blocked
#: while a pool starts its workers, so a worker starts with them blocked and unblocks them
#: only once its own dispositions are in place (``_block_parent_signals``).
PARENT_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

#: Seconds between a worker's checks that its parent is alive, where the kernel cannot do
#: it for us (no ``PR_SET_PDEATHSIG``): an orphan is gone within this, well under 2 s,
#: and a wake-up twice a second per worker costs nothing.
PARENT_POLL = 0.5

#: ``prctl(2)`` option: the signal a process gets when its parent thread exits (Linux).
PR_SET_PDEATHSIG = 1

#: Exit status of a worker that found its parent gone (EX_UNAVAILABLE); nobody reads it
#: but a debugger.
ORPHAN_EXIT = 69


def _block_parent_signals() -> set[int] | None:
    """Block the parent's signals in this thread while a pool starts its workers; returns
    the mask to restore (``_restore_signals``).

    Why this and not only the initializer: with the fork start method a child inherits the
    parent's Python handlers, and it runs Python code (``_bootstrap``, ``_after_fork``,
    closing stdin) before the initializer resets them. ``Pool()`` that fails half-way (EMFILE)
    terminates the workers it started; a worker still in that window ran parhash's SIGTERM
    handler, which raised inside multiprocessing's start-up code, and the parent then joined
    it forever (issue 10, item 7). A blocked signal stays pending instead, and the default
    action the initializer installs takes it the moment it unblocks: there is no window.
    Installing the parent's handlers only after the pool exists would not close it: Pool
    forks replacement workers later, from its worker-handler thread.

    The mask covers every start method: a forked child inherits it; spawn and forkserver
    children inherit it across ``exec`` (a fresh interpreter, with no parhash handlers at
    all). Pool's helper threads are created inside ``Pool()`` and keep the mask for life, so
    replacement workers start blocked too, and the parent's signals are always delivered
    to the main thread, where Python runs handlers anyway.
    """
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: no fork, no inherited handlers
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)


def _restore_signals(previous: set[int] | None) -> None:
    """Undo ``_block_parent_signals``: a signal that came meanwhile is handled now, so the
    caller must already own the pool (and stop it in a ``finally``)."""
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(parent: int, counters: WorkCounters | None = None) -> None:
    """Pool initializer: the worker's own signal dispositions, then its tie to ``parent``.

    Only the parent handles Ctrl-C and a closed terminal (SIGINT, SIGHUP are ignored here:
    no tracebacks, no worker death the watchdog would take for a crash); SIGTERM, how
    ``terminate()`` stops a worker, kills quietly. The signals arrive blocked
    (``_block_parent_signals``) and are unblocked only after that. With a progress bar,
    the worker takes its counter slot.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    count_progress(counters)
    _die_with_parent(parent)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)


def _die_with_parent(parent: int) -> None:
    """Make sure this worker does not outlive parhash's main process ``parent``.

    A worker whose parent died (kill -9, a crash) would otherwise sit in ``inqueue.get()``
    forever: the other workers hold the queue's write end, so it never sees EOF. On Linux,
    ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL us when the thread that started us
    exits: parhash's main thread, or Pool's worker-handler thread for a replacement worker
    (it lives as long as the pool). Elsewhere a daemon thread polls ``getppid()``: it also
    covers a worker that is idle, which a check in the read loop would not. Under forkserver
    the process that started us is the fork server, which outlives parhash (every worker
    holds its "alive" pipe open), so there the thread also watches ``parent`` itself.

    The race: a parent that died before the prctl call sends no signal, so the parent is
    checked once more after it; from then on the kernel (or the thread) has it.
    """
    launcher = os.getppid()
    if not set_pdeathsig() or launcher != parent:
        threading.Thread(
            target=_watch_parent,
            args=(launcher, parent),
            name="parhash-parent-watch",
            daemon=True,
        ).start()
    if not _alive(parent):
        os._exit(ORPHAN_EXIT)


#: ``prctl`` resolved in the parent, for the at-fork hook: a child must not load a library
#: (dlopen takes locks another thread may have held at the fork).
_prctl = None


def _pdeathsig_after_fork() -> None:
    """``os.register_at_fork`` hook, run in every child forked while a pool starts or lives:
    the kernel's tie to the parent is set before ``_bootstrap`` runs any Python code. A
    forked worker stuck before its initializer (on a lock held at the fork) then still dies
    with parhash instead of being orphaned to PID 1 with SIGTERM blocked."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def arm_pdeathsig_at_fork() -> None:
    """Resolve ``prctl`` once and register the at-fork hook (Linux; idempotent)."""
    global _prctl
    if _prctl is not None or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    os.register_at_fork(after_in_child=_pdeathsig_after_fork)


def set_pdeathsig() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(launcher: int, parent: int) -> None:
    """Exit once we were reparented or parhash's main process is gone."""
    while os.getppid() == launcher and _alive(parent):
        time.sleep(PARENT_POLL)
    os._exit(ORPHAN_EXIT)


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists (our parent, or under forkserver our grandparent)."""
    if os.getppid() == pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


#: Descriptors a pool holds in the parent per worker: its sentinel and its start-up pipe
#: (measured: 6 + 2 per worker under fork, 2 more under forkserver).
DESCRIPTORS_PER_WORKER = 2

#: Descriptors a pool needs besides: its three queues' pipes (6), the pipes and socket of
#: the worker being started (4), the forkserver's alive pipe and the resource tracker's (2),
#: and a margin for the run (the directory being listed, a worker's file: a forked worker
#: inherits the parent's table). Too few and the pool fails half-way, inside
#: multiprocessing, where the forkserver dies with a traceback of its own.
POOL_DESCRIPTORS = 16


class _Pool(multiprocessing.pool.Pool):
    """``multiprocessing.Pool`` whose worker-handler thread does not spin on results.

    Since https://github.com/python/cpython/pull/11488 (bpo-35493) that thread sleeps in
    ``wait()`` on the workers' sentinels, the change notifier and the result pipe's read
    end. The pipe is level-triggered and read by another thread (the result handler), so
    while a result is in the pipe the handler wakes, rebuilds its selector and polls every
    worker, again and again: measured, 40% of the parent's samples on 100,000 small files
    (py-spy), more than the walker. Its only use is to reap workers retired by
    ``maxtasksperchild``, which parhash never sets; a worker's death still wakes it through
    its sentinel. ``ThreadPool`` leaves the pipe out in the same way (``_get_sentinels``).
    """

    def _get_sentinels(self):
        return [self._change_notifier._reader]


def _start_pool(processes: int, counters: WorkCounters | None) -> multiprocessing.pool.Pool:
    """``Pool(processes)``; the caller blocks the parent's signals around it.

    Running out of descriptors (pipes, one sentinel per worker) or of threads here is a
    fatal problem of the environment, not of a file: one line and exit 2. The descriptors
    are counted first, so a limit that is too low fails before any process starts.
    """
    _check_descriptors(DESCRIPTORS_PER_WORKER * processes + POOL_DESCRIPTORS)
    arm_pdeathsig_at_fork()
    try:
        context = multiprocessing.get_context()
        return _Pool(processes, _init_worker, (os.getpid(), counters), context=context)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise FatalError(too_many_open_files()) from None
        raise FatalError(f"cannot start worker processes: {exc.strerror or exc}") from None
    except RuntimeError as exc:  # "can't start new thread" (ulimit -u, ulimit -v)
        raise FatalError(f"cannot start worker processes: {exc}") from None


def _check_descriptors(needed: int) -> None:
    """FatalError unless ``needed`` more descriptors fit under the soft RLIMIT_NOFILE."""
    if resource is None:
        return
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return
    try:
        in_use = len(os.listdir("/dev/fd")) - 1  # less the one listdir itself opened
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise FatalError(too_many_open_files()) from None
        return  # no /dev/fd: Pool() itself will tell
    if soft - in_use < needed:
        raise FatalError(too_many_open_files())


def too_many_open_files() -> str:
    """The message for EMFILE/ENFILE, with the limit that caused it."""
    if resource is None:
        return "too many open files"
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    return f"too many open files (ulimit -n is {limit})"


def describe_death(pid: int, exitcode: int | None, retried: int) -> str:
    """The warning for a worker that died: which one, of what, and what it cost."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    elif exitcode is not None:
        how = f"exited with status {exitcode}"
    else:
        how = "vanished"
    files = f"{retried:,} file" + ("" if retried == 1 else "s")
    return f"worker process {pid} {how}; {files} in flight hashed again in a new pool"


class _Gate:
    """The input side of one pool generation: injected tasks (retries, hard links' reads)
    first, then the stream's, one permit each."""

    def __init__(self, executor: PoolExecutor, inflight: dict[int, Task], permits: int) -> None:
        self.executor = executor
        self.inflight = inflight
        self.permits = threading.Semaphore(permits)
        self.stop = threading.Event()

    def __iter__(self) -> Iterator[Task]:
        while True:
            while not self.permits.acquire(timeout=GATE_POLL):
                if self.stop.is_set():
                    return
            task = None if self.stop.is_set() else self._next_task()
            if task is None:
                return
            # Registered before it is handed to the Pool: if the pool breaks now, the task
            # is still known and reported lost, never silently dropped.
            self.inflight[task.task_id] = task
            yield task

    def _next_task(self) -> Task | None:
        executor = self.executor
        while True:
            if executor.injected:
                return executor.injected.popleft()
            if not executor.exhausted:
                # The lock serializes the walker between an old pool's task-handler thread
                # that is winding down and the new pool's: a generator runs on one thread.
                with executor.source_lock:
                    task = next(executor.source, None)
                if task is not None:
                    return task
                executor.exhausted = True
            # The walk is over; only results still in flight can ask for more (a hard
            # link's one read). Their entries leave ``inflight`` after the consumer is done.
            if not self.inflight and not executor.injected:
                return None
            if self.stop.wait(GATE_POLL / 10):
                return None


class PoolExecutor(BaseExecutor):
    """Run tasks in ``processes`` worker processes with bounded memory; a dead worker's
    tasks come back as ``LostTask`` and the next tasks run in a fresh pool."""

    def __init__(
        self,
        spec: WorkSpec,
        processes: int,
        counters: WorkCounters | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(spec, counters)
        self.processes = processes
        self.warn = warn or stderr_warning
        self.exhausted = False
        self.source: Iterator[Task] = iter(())
        self.source_lock = threading.Lock()
        self._results: Iterator[TaskResult | LostTask] | None = None

    def results(self, tasks: Iterable[Task]) -> Iterator[TaskResult | LostTask]:
        self._results = self._generations(tasks)
        return self._results

    def close(self) -> None:
        if self._results is not None:
            self._results.close()  # type: ignore[attr-defined]

    def _generations(self, tasks: Iterable[Task]) -> Iterator[TaskResult | LostTask]:
        self.source = iter(tasks)
        while True:
            inflight: dict[int, Task] = {}
            gate = _Gate(self, inflight, PERMITS_PER_PROCESS * self.processes)
            dead = yield from self._one_generation(gate)
            if not dead:
                return
            again = sum(t.count for t in inflight.values() if not t.attempt)
            for pid, exitcode in dead:
                self.warn(describe_death(pid, exitcode, again))
            for task in list(inflight.values()):
                yield LostTask(task)

    def _one_generation(self, gate: _Gate) -> Iterator[TaskResult | LostTask]:
        """Run one Pool until the input is exhausted (returns []) or a worker dies (returns
        the dead workers' (pid, exitcode))."""
        before = {p.pid for p in multiprocessing.active_children()}
        mask = _block_parent_signals()
        try:
            pool = _start_pool(self.processes, self.counters)
        except BaseException:
            _restore_signals(mask)
            raise
        workers = [p for p in multiprocessing.active_children() if p.pid not in before]
        work = functools.partial(run_task, self.spec)
        dead: list[tuple[int, int | None]] = []
        try:
            # A Ctrl-C or SIGTERM that came while the pool started is raised here, inside
            # the ``try``: the pool is stopped below, never left to its finalizer (which
            # hangs when a worker died holding the inqueue lock).
            _restore_signals(mask)
            self._started()
            it = pool.imap_unordered(work, gate, chunksize=1)
            last_check = time.monotonic()
            while True:
                try:
                    result = it.next(timeout=WATCHDOG_INTERVAL)
                except StopIteration:
                    return dead
                except multiprocessing.TimeoutError:
                    last_check = time.monotonic()
                    dead = _dead(workers)
                    if dead:
                        return dead
                    continue
                yield result
                # Only now, after the consumer handled it (and maybe injected a task), is
                # the task done: the gate ends the input when nothing is in flight.
                del gate.inflight[result.task_id]
                gate.permits.release()
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    dead = _dead(workers)
                    if dead:
                        return dead
        finally:
            gate.stop.set()
            _shutdown(pool, before, workers, self.processes)


def _dead(workers: list) -> list[tuple[int, int | None]]:
    """(pid, exitcode) of the workers we started that are gone (reaps exited children)."""
    alive = {p.pid for p in multiprocessing.active_children()}
    return [(p.pid, p.exitcode) for p in workers if p.pid not in alive]


#: Seconds ``terminate()`` may take before its workers are killed by hand. A broken pool gets
#: less: a dead worker holding the inqueue lock makes ``terminate()`` wait forever.
TERMINATE_DEADLINE = 5.0
BROKEN_TERMINATE_DEADLINE = 1.0


#: How often ``_shutdown`` looks for a worker that died while ``terminate()`` runs.
SHUTDOWN_POLL = 0.05


def _shutdown(
    pool: multiprocessing.pool.Pool, before: set[int], workers: list, started: int
) -> None:
    """Stop a pool without ever hanging the caller, and leave no process behind.

    A broken pool may have lost a worker that held the inqueue's read lock, and then
    ``terminate()`` blocks forever (https://github.com/python/cpython/issues/96062): its
    workers (and any replacements Pool started) are killed first, and ``terminate()`` runs
    in a daemon thread with a deadline; past it, whatever is left of the pool is killed.
    A worker can also die while ``terminate()`` waits (SIGTERM sent to the whole process
    group by systemd or a shell): the pool is then treated as broken from that moment.
    Fewer ``workers`` than the ``started`` processes means one died before we saw it.
    """
    broken = len(workers) < started or bool(_dead(workers))
    if broken:
        _kill_pool_processes(before)
    failed = threading.Event()
    stopper = threading.Thread(
        target=_terminate_and_join, args=(pool, failed), name="parhash-pool-stop", daemon=True
    )
    # Held while the thread starts: a SIGTERM whose handler raised inside Thread.start()
    # left the new thread to fail on threading's _limbo table, printing "Exception ignored
    # in thread started by ..." (a KeyError, seen in the start-up SIGTERM loop under load).
    mask = _block_parent_signals()
    try:
        stopper.start()
    except RuntimeError:  # no thread can start (ulimit -v, -u): the data may be complete
        _stop_without_a_thread(pool, before)
        return
    finally:
        _restore_signals(mask)
    deadline = time.monotonic() + (BROKEN_TERMINATE_DEADLINE if broken else TERMINATE_DEADLINE)
    while stopper.is_alive() and time.monotonic() < deadline:
        stopper.join(SHUTDOWN_POLL)
        if not broken and _dead(workers):
            broken = True
            _kill_pool_processes(before)
            deadline = min(deadline, time.monotonic() + BROKEN_TERMINATE_DEADLINE)
    if stopper.is_alive() or failed.is_set():
        _kill_pool_processes(before)
        stopper.join(BROKEN_TERMINATE_DEADLINE)


def _stop_without_a_thread(pool: multiprocessing.pool.Pool, before: set[int]) -> None:
    """Stop a pool when no stopper thread can start (found in review under ``ulimit -v``:
    the output was complete, and dropping it for a failed thread start was wrong). No new
    worker is started (``close``), every process is killed, and the pool's finalizer is
    cancelled: at exit it would wait for the inqueue lock a killed worker held
    (https://github.com/python/cpython/issues/96062), which hung the run."""
    with contextlib.suppress(Exception):
        pool.close()
    _kill_pool_processes(before)
    finalizer = getattr(pool, "_terminate", None)
    if finalizer is not None:
        finalizer.cancel()


def _terminate_and_join(pool: multiprocessing.pool.Pool, failed: threading.Event) -> None:
    """``terminate()`` then ``join()``, both on the stopper thread, so that neither can hold
    the caller. ``join()`` waits for every worker the pool knows, including a replacement
    its worker-handler thread forked while ``terminate()`` ran; such a child can be stuck
    before its initializer (on a lock another thread held at the fork) with SIGTERM still
    blocked, so only the deadline's SIGKILL ends it (seen in a SIGTERM-to-the-group loop,
    issue 10 item 7)."""
    try:
        pool.terminate()
        pool.join()
    except Exception:
        # multiprocessing's own shutdown can fail part-way when a worker is reaped by
        # someone else mid-terminate (a KeyError in this thread, seen once in the
        # SIGTERM-to-the-group loop under load); the caller's _kill_pool_processes ends
        # whatever is left (``failed``), and the traceback would only garble stderr.
        failed.set()


def _kill_pool_processes(before: set[int]) -> None:
    """SIGKILL and reap every child process that this pool started."""
    for proc in multiprocessing.active_children():
        if proc.pid not in before:
            proc.kill()
            proc.join(timeout=1.0)
