"""The executor seam: where tasks go to be run, whoever runs them.

The pipeline talks to one small protocol, ``Executor``. It takes a stream of ``Task``s and
yields answers in completion order: a ``TaskResult`` for each task, or a ``LostTask`` for one
whose worker died (the pipeline decides what to do with its files). Extra tasks the pipeline
makes while consuming results (a hard link's one read, a lost task's files again) go in
through ``inject``. Closing the ``results`` generator (or ``close``) stops every worker.

Implementations: ``InlineExecutor`` (this process, ``-j 1``), ``pool.PoolExecutor`` (a local
``multiprocessing.Pool``) and ``cluster.DaskExecutor`` (a Dask cluster): none of them changes the
pipeline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from parhash.hashing import WorkCounters, count_progress
from parhash.tasks import LostTask, Task, TaskResult, WorkSpec
from parhash.worker import run_task

if TYPE_CHECKING:
    from parhash.options import ClusterTarget


class Executor(Protocol):
    """What the pipeline needs from whatever runs its tasks."""

    #: Shared progress counters the workers bump per read (None: no progress bar).
    counters: WorkCounters | None
    #: Called once, when the workers exist (the bar starts its refresh thread then, so no
    #: thread of ours is alive when local workers are forked).
    on_start: Callable[[], None] | None

    def results(self, tasks: Iterable[Task]) -> Iterator[TaskResult | LostTask]:
        """Run ``tasks`` (pulled lazily: at most a bounded number in flight) and the injected
        ones; one answer per task, in completion order."""
        ...

    def inject(self, task: Task) -> None:
        """Run one more task (its id is the caller's) before the stream ends."""
        ...

    def close(self) -> None:
        """Stop: no worker outlives this call."""
        ...


class BaseExecutor:
    """What every executor shares: the injected tasks, the counters, the start hook."""

    def __init__(self, spec: WorkSpec, counters: WorkCounters | None = None) -> None:
        self.spec = spec
        self.counters = counters
        self.on_start: Callable[[], None] | None = None
        self.injected: deque[Task] = deque()

    def inject(self, task: Task) -> None:
        self.injected.append(task)

    def close(self) -> None:
        """Nothing to stop by default; executors with workers override this."""

    def _started(self) -> None:
        if self.on_start is not None:
            hook, self.on_start = self.on_start, None
            hook()


class InlineExecutor(BaseExecutor):
    """Run tasks in this process (``--jobs 1``): deterministic, no IPC, nothing to clean up."""

    def results(self, tasks: Iterable[Task]) -> Iterator[TaskResult | LostTask]:
        count_progress(self.counters)
        self._started()
        try:
            for task in tasks:
                yield run_task(self.spec, task)
                while self.injected:  # queued while the consumer handled the last result
                    yield run_task(self.spec, self.injected.popleft())
        finally:
            count_progress(None)


def stderr_warning(message: str) -> None:
    """Default ``warn`` for library callers that pass none: the CLI's warning format."""
    from parhash.progress import NullProgress

    NullProgress().warn(message)


def make_executor(
    spec: WorkSpec,
    jobs: int,
    counters: WorkCounters | None = None,
    warn: Callable[[str], None] | None = None,
    cluster: ClusterTarget | None = None,
) -> Executor:
    """``cluster`` (``--cluster``) runs on Dask (cluster.py, imported only then); else
    ``jobs`` 1 runs in this process, otherwise a local Pool (imported only then). ``warn``
    gets the lines about the executor itself (a worker died)."""
    if cluster is not None:
        from parhash.cluster import DaskExecutor

        return DaskExecutor(spec, cluster, warn)
    if jobs <= 1:
        return InlineExecutor(spec, counters)
    from parhash.pool import PoolExecutor

    return PoolExecutor(spec, jobs, counters, warn)
