"""What ``--cluster local`` puts into its own Dask workers; imports ``distributed``, so
only ``cluster.py`` imports it, once ``distributed`` is known to be there.

A terminal's Ctrl-C goes to the whole foreground process group: the LocalCluster's worker
processes too. Dask's worker then raises KeyboardInterrupt in its event loop and prints
two tracebacks per worker, over parhash's one ``interrupted`` line. Only the client
handles Ctrl-C (it cancels the futures and stops the cluster), as only the parent does
for the local pool (pool.py, ``_init_worker``).
"""

from __future__ import annotations

import contextlib
import signal

from distributed import WorkerPlugin


class IgnoreInterrupts(WorkerPlugin):
    """SIGINT and SIGHUP ignored in a worker of this run's LocalCluster (and in each one
    its nanny restarts: the plugin is one of the workers' constructor arguments)."""

    name = "parhash-ignore-interrupts"

    def setup(self, worker) -> None:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to do
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
