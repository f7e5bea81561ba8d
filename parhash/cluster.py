"""The Dask executor behind the seam (executor.py): ``--cluster ADDRESS|local[:N]``.

The pipeline is the local run's: this process walks, makes the same tasks, writes every
output (Dask may run a task twice, so only this process writes) and keeps the same bounded
queue. Only where a task runs changes: in a Dask worker, through ``run_tasks``, which
``run_task``s a *unit* of several tasks (the scheduler costs about a millisecond per task).

Data flow::

    tasks (walker, this thread) --> units of UNIT_TASKS --> client.submit(pure=False)
        ^ pulled only while fewer than WINDOW_PER_THREAD x threads units are out   |
        |                                                                          v
    results() <-- one TaskResult per task <-- as_completed(with_results=True) <-- workers

Faults: a worker that dies mid-unit is Dask's to handle (the scheduler runs the unit again
elsewhere; no file is lost). A unit whose workers die ``allowed-failures`` + 1 times fails
with ``KilledWorker``, and a unit cancelled under us (someone restarted the cluster) is lost:
each of its tasks comes back as ``LostTask``, so the pipeline's own policy applies (its files
again, one per task; a file lost twice is an error record and the run exits 1).

Files are read where the workers run, by the same paths: relative paths are opened below
this process's working directory (``WorkSpec.base``), and the root of every walked tree is
checked on every worker before its first unit is sent (``_check_roots``). Files named one
by one (``--files-from``, ``check``'s lists) are checked as they are read: a file a worker
does not see is an error record, as a missing file is in a local run. Workers that join
later (adaptive clusters) are not checked.

Imported only for ``--cluster``; ``distributed`` only once a run connects (``_connect``),
so a core install without the extra gets ``NEEDS_EXTRA`` and exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from parhash.batching import MAX_BATCH
from parhash.executor import BaseExecutor, stderr_warning
from parhash.exit_codes import FatalError
from parhash.pool import _kill_pool_processes
from parhash.tasks import LostTask, Task, TaskResult, WorkSpec
from parhash.worker import run_task

if TYPE_CHECKING:
    from parhash.options import ClusterTarget

#: The one line for ``--cluster`` on an install without the extra.
NEEDS_EXTRA = "--cluster needs the dask extra: pip install 'parhash[dask]'"

#: How long connecting to a scheduler may take: an unreachable address fails within this
#: (Dask retries the connection until then), a busy scheduler across a WAN still answers.
CONNECT_TIMEOUT = "5s"

#: Full tasks (MAX_BATCH files each) per Dask task. The scheduler and the client cost about
#: 1-2 ms per Dask task (measured here: ~2 ms for a trivial one on 2 cores), against
#: ~20 ms of hashing for a task of 1,024 small files: 4 makes that overhead ~2-3%. More
#: would make the tail of a run coarser (a unit is one worker thread's); smaller tasks
#: (the first ones of a run, the last ones of a root, which batching keeps small so that
#: they spread over every worker) are never grouped.
UNIT_TASKS = 4

#: Units in flight per worker thread: one running and one waiting, so a thread never
#: waits on a round trip to the client; the window (and so the client's memory) is bounded.
WINDOW_PER_THREAD = 2

#: Seconds a finished unit's result may take to reach the client (its records: KiB to a
#: few MiB). Past it the gather is taken as stuck (issue 7331, below) and the unit's files
#: go again; a result that is being computed again is waited for, however long it takes.
GATHER_TIMEOUT = 20

#: Seconds without a finished unit before the cluster is asked whether it still has any
#: worker: one scheduler round trip, and a hang of a LocalCluster whose workers all died
#: ends within this.
WORKER_CHECK = 5.0

#: Where a LocalCluster's scheduler serves HTTP (it always does): any free port on the
#: loopback. Dask's default takes 8787 and, when another cluster has it, warns on stderr.
LOCAL_HTTP = "127.0.0.1:0"

#: Threads per worker process of a LocalCluster: hashing holds the GIL between reads, so
#: processes, not threads, give parallelism (as the local pool does).
LOCAL_THREADS = 1


def run_tasks(spec: WorkSpec, tasks: list[Task]) -> list[TaskResult]:
    """What a Dask worker runs: ``run_task`` for each task of a unit (module top level, so
    it pickles by reference: the workers need parhash installed)."""
    return [run_task(spec, task) for task in tasks]


def missing_roots(roots: list[str]) -> list[str]:
    """What a worker runs at the start (``client.run``): the roots it does not see."""
    return [root for root in roots if not os.path.exists(root)]


class DaskExecutor(BaseExecutor):
    """Run tasks on a Dask cluster in units, in a bounded window (module docstring)."""

    def __init__(
        self,
        spec: WorkSpec,
        target: ClusterTarget,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(replace(spec, base=os.getcwd()))
        self.target = target
        self.warn = warn or stderr_warning
        self.client: Any = None
        self.cluster: Any = None
        self.checked: set[str] = set()
        #: The "no worker" warning was given (once per run).
        self.waiting = False
        #: Child processes that existed before the LocalCluster started (not ours to kill).
        self.children: set[int | None] = set()
        self.units: dict[Any, list[Task]] = {}
        self._results: Iterator[TaskResult | LostTask] | None = None
        self._log_levels: dict[str, int] = {}

    def results(self, tasks: Iterable[Task]) -> Iterator[TaskResult | LostTask]:
        self._results = self._stream(iter(tasks))
        return self._results

    def close(self) -> None:
        if self._results is not None:
            self._results.close()  # type: ignore[attr-defined]
        self._disconnect()

    def _stream(self, source: Iterator[Task]) -> Iterator[TaskResult | LostTask]:
        try:
            distributed = self._connect()
            window = WINDOW_PER_THREAD * self._threads()
            self._started()
            # Not ``with_results=True``: its gather can wait forever once a worker that held
            # a result died (https://github.com/dask/distributed/issues/7331, seen here in 1
            # of ~10 runs that killed workers); ``_outcome`` gathers with a deadline.
            done = distributed.as_completed(loop=self.client.loop, raise_errors=False)
            pending: list[Task] = []
            while True:
                while len(self.units) < window and self._fill(source, pending):
                    self._submit(done, pending)
                    pending = []
                if not self.units:
                    return
                future = self._next_done(done)
                unit = self.units.pop(future)
                outcome = self._outcome(future)
                if outcome is RUNS_AGAIN:
                    self.units[future] = unit
                    done.add(future)
                    continue
                yield from self._answers(outcome, unit)
        finally:
            self._disconnect()

    def _fill(self, source: Iterator[Task], unit: list[Task]) -> bool:
        """Make the next unit in ``unit``: injected tasks first (a retried one alone, so a
        file that kills workers is alone when it does it again), then the walk's; False
        when there is nothing to send."""
        while len(unit) < UNIT_TASKS:
            task = self.injected.popleft() if self.injected else next(source, None)
            if task is None:
                break
            if task.attempt and unit:  # alone: back in front for the next unit
                self.injected.appendleft(task)
                break
            unit.append(task)
            if task.attempt or task.count < MAX_BATCH:
                break
        return bool(unit)

    def _submit(self, done, unit: list[Task]) -> None:
        self._check_roots(unit)
        future = self.client.submit(run_tasks, self.spec, unit, pure=False)
        self.units[future] = unit
        done.add(future)

    def _next_done(self, done):
        """The next finished unit. While none is, the cluster is asked every WORKER_CHECK
        seconds whether it still has workers: a LocalCluster of ours without any is fatal
        (its nanny gave up restarting them), a remote one is waited for, said once."""
        check = time.monotonic() + WORKER_CHECK
        while not done.has_ready():
            with done.thread_condition:  # what as_completed's own __next__ waits on
                done.thread_condition.wait(timeout=0.1)
            if time.monotonic() > check:
                check = time.monotonic() + WORKER_CHECK
                if not self._nthreads():
                    self._no_workers()
        return next(done)

    def _no_workers(self) -> None:
        if self.cluster is not None:
            raise FatalError("the local Dask cluster has no worker left: they kept dying")
        if not self.waiting:
            self.waiting = True
            self.warn(f"no Dask worker at {self._where()}: waiting for one")

    def _outcome(self, future) -> list[TaskResult] | BaseException | object:
        """A done unit's results, or the exception it ended with, or ``RUNS_AGAIN``: its
        result was on a worker that died, and the scheduler computes it again. A gather
        still stuck after GATHER_TIMEOUT is given up (``Lost``; the unit's files go again)."""
        from distributed import TimeoutError as DaskTimeout

        if future.status in AGAIN:
            return RUNS_AGAIN
        if future.status != "finished":
            return future.exception() if future.status == "error" else Lost("was cancelled")
        try:
            return future.result(timeout=GATHER_TIMEOUT)
        except (TimeoutError, DaskTimeout):
            if future.status in AGAIN:
                return RUNS_AGAIN
            with contextlib.suppress(Exception):
                self.client.cancel([future], force=True)
            return Lost("could not be fetched from its worker")
        except (Exception, asyncio.CancelledError) as exc:
            return exc

    def _answers(self, outcome, unit: list[Task]) -> Iterator[TaskResult | LostTask]:
        """One answer per task of a unit; ``LostTask`` each for a unit that killed its
        workers or was lost; any other failure is fatal (a bug, or a worker that cannot
        import this parhash)."""
        if type(outcome) is list:
            yield from outcome
            return
        if isinstance(outcome, asyncio.CancelledError):
            outcome = Lost("was cancelled")
        elif _killed(outcome):
            outcome = Lost("killed the workers that ran it")
        if not isinstance(outcome, Lost):
            name = type(outcome).__name__
            raise FatalError(f"a task failed on the Dask cluster: {name}: {outcome}")
        if self.client.status != "running":
            raise FatalError(f"lost the Dask scheduler at {self._where()}")
        again = sum(task.count for task in unit if not task.attempt)
        if again:
            self.warn(_lost_message(sum(t.count for t in unit), str(outcome), again))
        for task in unit:
            yield LostTask(task, f"a Dask task that {outcome}")

    def _check_roots(self, unit: list[Task]) -> None:
        """The roots of walked trees that no worker was asked about yet, on every worker:
        one ``client.run`` per new root, before its first unit."""
        roots = {os.path.join(self.spec.base or "", t.root) for t in unit if not t.named}
        roots -= self.checked
        if not roots:
            return
        self.checked |= roots
        for worker, missing in sorted(self.client.run(missing_roots, sorted(roots)).items()):
            if missing:
                raise FatalError(
                    f"{missing[0]}: not found on Dask worker {worker} "
                    "(every worker must mount the tree at the same path)"
                )

    def _threads(self) -> int:
        """Worker threads of the cluster; with none yet (a batch queue), wait for one."""
        threads = self._nthreads()
        if not threads:
            self._no_workers()
            self.client.wait_for_workers(1)
            threads = self._nthreads()
        return max(threads, 1)

    def _nthreads(self) -> int:
        """Threads of the cluster's workers, from the scheduler; one that stopped answering
        (it died, the network went) is fatal: the run cannot end without it."""
        try:
            return sum(self.client.nthreads().values())
        except (OSError, RuntimeError, ValueError) as exc:
            raise FatalError(f"lost the Dask scheduler at {self._where()}: {exc}") from None

    def _connect(self):
        """Connect to the scheduler, or start the LocalCluster; returns ``distributed``."""
        try:
            import distributed
        except ImportError:
            raise FatalError(NEEDS_EXTRA) from None
        self._quiet_logs()
        target = self.target
        if target.address is None:
            self.children = {p.pid for p in multiprocessing.active_children()}
            self.cluster = _local_cluster(distributed, target.workers)
            self.client = distributed.Client(self.cluster, set_as_default=False)
            return distributed
        try:
            self.client = distributed.Client(
                target.address, timeout=CONNECT_TIMEOUT, set_as_default=False
            )
        except (OSError, ValueError, TypeError) as exc:
            where = target.address
            raise FatalError(f"cannot reach the Dask scheduler at {where}: {exc}") from None
        return distributed

    def _disconnect(self) -> None:
        """Cancel what is still out, close the client, and stop the LocalCluster this run
        started; a remote cluster stays up and usable for its other clients."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                if self.units:
                    client.cancel(list(self.units), force=True)
            self.units.clear()
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
            # A worker stuck in a read (a FIFO nobody writes to) outlives close(): none may
            # outlive the run (the local pool's rule).
            _kill_pool_processes(self.children)
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)
        self._log_levels = {}

    def _quiet_logs(self) -> None:
        """Dask logs a worker's death, a restart, a gather it retries, each with a level of
        its own per logger: the run's own lines (warnings, error records) say what matters,
        and stderr keeps parhash's format. Restored by ``_disconnect``."""
        loggers = logging.root.manager.loggerDict
        for name in ["distributed", *(n for n in loggers if n.startswith("distributed."))]:
            logger = logging.getLogger(name)
            self._log_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL)

    def _where(self) -> str:
        return str(self.target)


def _local_cluster(distributed, workers: int):
    """``--cluster local:N``: N worker processes of LOCAL_THREADS thread(s), HTTP on LOCAL_HTTP;
    Ctrl-C is the client's alone (``cluster_worker.IgnoreInterrupts``)."""
    from parhash.cluster_worker import IgnoreInterrupts

    try:
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=LOCAL_THREADS,
            processes=True,
            dashboard_address=LOCAL_HTTP,
            silence_logs=logging.CRITICAL,
            plugins=(IgnoreInterrupts(),),
        )
    except (OSError, RuntimeError) as exc:
        raise FatalError(f"cannot start a local Dask cluster: {exc}") from None


class Lost(Exception):
    """A unit without an answer that is not a failure of its own: what happened to it."""


#: ``_outcome`` of a unit whose result the scheduler is computing again.
RUNS_AGAIN = object()

#: Future states of a unit that is being computed again (its result was lost with a worker).
AGAIN = ("pending", "lost")


def _killed(exc: BaseException) -> bool:
    """``KilledWorker``: the unit's workers died ``allowed-failures`` + 1 times."""
    from distributed import KilledWorker

    return isinstance(exc, KilledWorker)


def _lost_message(files: int, how: str, again: int) -> str:
    """The warning for a lost unit: what happened, and how many files go again."""
    plural = "" if files == 1 else "s"
    return f"a Dask task of {files:,} file{plural} {how}; {again:,} hashed again, one per task"
