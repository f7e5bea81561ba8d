"""Typed options of a run, parsed once at the edge and passed down unchanged.

``ScanOptions`` decides which files are hashed and how; ``resolve_jobs`` turns ``--jobs``
into the number of worker processes, once per run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from parhash.algorithms import DEFAULT_ALGORITHM, parse_algorithms
from parhash.cache_policy import CacheOptions
from parhash.hashing import HashSettings
from parhash.mounts import pseudo_devices
from parhash.walk import WalkOptions


@dataclass(frozen=True)
class ClusterTarget:
    """Where ``--cluster`` sends the tasks: a scheduler's ``address``, or (None) a
    LocalCluster of ``workers`` processes that this run starts and stops."""

    address: str | None = None
    workers: int = 2

    def __str__(self) -> str:
        return self.address if self.address is not None else f"local:{self.workers}"


#: Worker processes of ``--cluster local`` without a count: a quick try on a laptop.
LOCAL_CLUSTER_WORKERS = 2


def parse_cluster(text: str) -> ClusterTarget:
    """``--cluster``: ``local``, ``local:N`` (N >= 1), or a scheduler address
    (``tcp://host:port``, any ``scheme://``, or ``host:port``, which Dask takes as tcp).
    ValueError says what is wrong; nothing is imported or contacted here."""
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(LOCAL_CLUSTER_WORKERS)
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{text!r}: local:N takes a worker count of 1 or more")
        return ClusterTarget(None, int(count))
    scheme, sep, rest = text.partition("://")
    host, colon, port = (rest if sep else text).rpartition(":")
    if not (colon and host and port.isdigit()) and not (sep and scheme and rest):
        raise ValueError(f"{text!r}: expected tcp://HOST:PORT, HOST:PORT, local or local:N")
    return ClusterTarget(text)


@dataclass(frozen=True)
class ScanOptions:
    """Everything that decides which files are hashed and how."""

    #: Canonical algorithm names, parsed once (``parse_algorithms``): the first one is the
    #: manifest's ``algo``; with several, every file gets every digest from one read.
    algos: tuple[str, ...] = (DEFAULT_ALGORITHM,)
    jobs: int | None = None
    walk: WalkOptions = field(default_factory=WalkOptions)
    min_size: int | None = None
    max_size: int | None = None
    #: Read a multiply-linked inode once and give every path its record.
    dedupe_links: bool = True
    #: The persistent hash cache (``--cache``), or None.
    cache: CacheOptions | None = None
    #: ``--cluster``: run the tasks on a Dask cluster (``parse_cluster``), or None (here).
    cluster: ClusterTarget | None = None

    def hash_settings(self) -> HashSettings:
        pseudo = frozenset(pseudo_devices())
        return HashSettings(self.algos, self.min_size, self.max_size, self.dedupe_links, pseudo)


def scan_options(
    algo: str | Sequence[str] = DEFAULT_ALGORITHM,
    jobs: int | None = None,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    dedupe_links: bool = True,
    cache: CacheOptions | None = None,
    cluster: str | ClusterTarget | None = None,
    **walk: object,
) -> ScanOptions:
    """ScanOptions from flat keyword arguments (``walk`` takes WalkOptions' fields): what
    the CLI and ``parhash.scan`` take. ``algo``: names or a comma list, parsed here
    once (an unknown name raises KeyError). ``cluster``: ``--cluster``'s text or a
    ``ClusterTarget`` (bad text raises ValueError)."""
    if "exclude" in walk:
        walk["exclude"] = tuple(walk["exclude"])  # type: ignore[arg-type]
    names = algo if isinstance(algo, str) else ",".join(algo)
    return ScanOptions(
        algos=parse_algorithms(names),
        jobs=jobs,
        walk=WalkOptions(**walk),  # type: ignore[arg-type]
        min_size=min_size,
        max_size=max_size,
        dedupe_links=dedupe_links,
        cache=cache,
        cluster=parse_cluster(cluster) if isinstance(cluster, str) else cluster,
    )


def usable_cpus() -> int:
    """The affinity mask (containers, taskset), not the machine's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_jobs() -> int:
    """Twice the usable CPUs (at most 16 more than them): a worker blocked on a cold read
    leaves its core to another. Measured on 2 cores, mixed corpus, caches dropped: 4 workers
    2.12-2.53 s against 2.78-3.21 s for 2 (xxhsum -P2: 2.26-2.58 s); warm, no difference
    beyond noise. ``--hdd`` (one reader) is the way to be gentle on a spinning disk."""
    cpus = usable_cpus()
    return cpus + min(cpus, 16)


#: Most worker processes per usable CPU. Hashing is CPU-bound once data is cached, and on
#: cold storage a few reads in flight per core already overlap the waits (the default is
#: 2 per CPU); past 4 a worker only adds its memory (measured: 19 MiB RSS, 7 MiB PSS of
#: its own under fork), its descriptors and its permits.
MAX_JOBS_PER_CPU = 4

#: Absolute ceiling, whatever the CPU count: each worker costs the parent two descriptors
#: and PERMITS_PER_PROCESS batches of paths in flight, and a Pool of hundreds takes seconds
#: to start and to stop.
MAX_JOBS = 64


def max_jobs() -> int:
    """The largest --jobs that is honoured: MAX_JOBS_PER_CPU x usable CPUs, at most MAX_JOBS."""
    return min(MAX_JOBS_PER_CPU * usable_cpus(), MAX_JOBS)


def resolve_jobs(requested: int | None, warn: Callable[[str], None] | None = None) -> int:
    """Worker processes for a run: the default, or ``requested`` capped at ``max_jobs()``
    (``-j 1000`` must not start 1,000 processes) with one warning saying so. The default
    obeys the same ceiling (80 on 64 CPUs would pass MAX_JOBS), silently: nobody asked."""
    cap = max_jobs()
    if requested is None:
        return min(default_jobs(), cap)
    if requested <= cap:
        return requested
    if warn is not None:
        warn(
            f"--jobs {requested} capped at {cap} "
            f"({MAX_JOBS_PER_CPU} per usable CPU, at most {MAX_JOBS})"
        )
    return cap
