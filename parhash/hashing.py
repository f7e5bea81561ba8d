"""Hash algorithms and the per-file read loop that runs inside the worker processes.

Everything here is importable at module top level (no closures) so it works under every
multiprocessing start method: fork, forkserver (Python 3.14's default) and spawn.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from parhash.algorithms import Algorithm, get_algorithm
from parhash.fsutil import LongPathOpener, describe_oserror, file_kind
from parhash.mounts import PSEUDO_READ_LIMIT

#: Read size for files that do not fit in one read. 256 KiB keeps the buffer in L2 cache, so
#: the hash reads from cache what the kernel just copied there (xxh3 hashes at ~30 GB/s).
CHUNK_SIZE = 256 * 1024

#: One result per file, in batch order: (size, mtime_ns, hexdigest, error).
RawResult = tuple["int | None", "int | None", "str | None", "str | None"]


# Per-process reusable read buffer: a fresh bytes object per read makes the allocator grow
# and trim its heap for every file (450k page faults on a 2,000-file corpus, measured).
_buffer: tuple[bytearray, memoryview, list[bytearray]] | None = None


def _get_buffer() -> tuple[bytearray, memoryview, list[bytearray]]:
    """The buffer, a view of it, and the one-element list ``os.readv`` takes."""
    global _buffer
    if _buffer is None:
        data = bytearray(CHUNK_SIZE)
        _buffer = (data, memoryview(data), [data])
    return _buffer


_NAMED_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
# O_NONBLOCK: if a regular file is swapped for a FIFO after the walk, open() must not block
# (nor a read of /proc/kmsg). A path the user named is opened without it: a named FIFO
# waits for its writer and is read to EOF, as sha256sum reads it.
_BASE_FLAGS = _NAMED_FLAGS | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


_long_paths = LongPathOpener()


#: Fields of one worker's slot in ``WorkCounters``: files started, bytes their fstat
#: announced, bytes read so far (bumped per read, so a 20 GB file shows progress).
STARTED, ANNOUNCED, READ = range(3)


class WorkCounters:
    """What every worker has done so far, in shared memory, polled by the progress bar.

    One slot of ``STARTED, ANNOUNCED, READ`` per worker, each written by its one worker
    only (no lock: a 64-bit store is atomic, and a reader that sees a value one read old
    is fine for a bar). A worker takes the next slot when it starts; slots wrap round so
    that the pool a dead worker forces is given the slots of the dead generation (their
    counts stay, so the sums never go back). Passed through the Pool initializer, so it
    works under fork, forkserver and spawn alike.
    """

    def __init__(self, slots: int) -> None:
        import multiprocessing  # only a run with a progress bar builds counters

        self.slots = max(1, slots)
        self.array = multiprocessing.Array("q", 3 * self.slots, lock=False)
        self.next_slot = multiprocessing.Value("i", 0)

    def totals(self) -> tuple[int, int, int]:
        """(files started, bytes announced, bytes read) summed over every worker."""
        values = self.array[:]
        return sum(values[STARTED::3]), sum(values[ANNOUNCED::3]), sum(values[READ::3])


# This process's slot in the shared counters (``None``: no bar, nothing to count). A
# module global, because the read loop below must not pay a lookup per chunk.
_progress = None
_slot = 0


def count_progress(counters: WorkCounters | None) -> None:
    """Make this process count its work into ``counters`` (a worker's initializer, or the
    parent for ``-j 1``); ``None`` stops counting."""
    global _progress, _slot
    if counters is None:
        _progress = None
        return
    with counters.next_slot.get_lock():
        index = counters.next_slot.value % counters.slots
        counters.next_slot.value += 1
    _progress, _slot = counters.array, 3 * index


@dataclass(frozen=True)
class HashSettings:
    """What every worker needs to know besides the batch: sent once per task (it is tiny)."""

    algos: tuple[str, ...] = ("xxh3",)
    #: Files outside [min_size, max_size] are skipped after the worker's fstat (no read).
    min_size: int | None = None
    max_size: int | None = None
    #: Defer files with more than one hard link to the parent, which has one of them read
    #: and gives its digest to every path of the inode.
    dedupe_links: bool = False
    #: ``st_dev`` of the pseudo filesystems (mounts.py): their files are read to EOF.
    pseudo_devices: frozenset[int] = frozenset()


class Deferred(NamedTuple):
    """A result that is not a digest yet: a file with several hard links, read only once."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def hash_file(
    path: str,
    algos: Algorithm | Sequence[Algorithm],
    follow: bool,
    settings: HashSettings | None = None,
    named: bool = False,
) -> RawResult | Deferred | None:
    """Hash one file in constant memory; every per-file problem becomes an error string.

    The file is opened before anything else is trusted: fstat on the open descriptor decides
    whether it is a regular file (a FIFO is never read). A file that fits in one read and
    returns exactly the size fstat reported is hashed from that one read; any other file
    is read to EOF and fstat'ed again, so a file that grew, shrank or was rewritten while
    it was hashed becomes an error record instead of a digest of bytes that never existed
    together on disk. With several algorithms the digest is a tuple, all from the one read.
    ``None``: skipped by a size filter. ``Deferred``: a hard link (see links.py).
    ``named``: the user named this path (argument, list, sums file): a FIFO or a device is
    read too (``_read_special``), and so is any file on a pseudo filesystem, named or not.

    This is the per-file hot path (a 100,000-file tree calls it 100,000 times): the
    one-read case is kept inline and free of extra calls.
    """
    if isinstance(algos, Algorithm):
        algos = (algos,)
    progress = _progress
    if progress is not None:  # every path counts as started, even one that fails to open
        progress[_slot + STARTED] += 1
    flags = (_NAMED_FLAGS if named else _BASE_FLAGS) | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            return (None, None, None, describe_oserror(exc, follow=follow))
        try:
            fd = _long_paths.open(path, flags)
        except OSError as exc:
            return (None, None, None, describe_oserror(exc, follow=follow))
    except ValueError:  # a NUL in the name: no file can have it
        return (None, None, None, "name holds a NUL byte")
    try:
        before = os.fstat(fd)
        if before.st_mode & 0o170000 != stat.S_IFREG or (
            settings is not None and before.st_dev in settings.pseudo_devices
        ):
            return _read_special(fd, before, algos, named, settings)
        if settings is not None and (
            before.st_nlink > 1 or settings.min_size is not None or settings.max_size is not None
        ):
            early = _filtered(before, settings)
            if early is not False:
                return early  # type: ignore[return-value]
        size = before.st_size
        if progress is not None:
            progress[_slot + ANNOUNCED] += size
        _, view, bufs = _buffer or _get_buffer()
        n = os.readv(fd, bufs)
        if progress is not None:
            progress[_slot + READ] += n
        if n == size and n < CHUNK_SIZE:
            # The whole file in one read, at the size it had when opened: the common case
            # for small files, and the one-shot call skips creating a hash object.
            data = view[:n]
            if len(algos) == 1:
                return (n, before.st_mtime_ns, algos[0].oneshot(data), None)
            return (n, before.st_mtime_ns, tuple(a.oneshot(data) for a in algos), None)
        digests, total = _read_and_hash(fd, size, n, algos)
        after = os.fstat(fd)
    except OSError as exc:
        return (None, None, None, describe_oserror(exc))
    finally:
        os.close(fd)
    if (
        after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
        or (before.st_size and total != before.st_size)
    ):
        return (None, None, None, "file changed while being read")
    return (total, before.st_mtime_ns, digests[0] if len(digests) == 1 else tuple(digests), None)


def _filtered(st: os.stat_result, settings: HashSettings) -> Deferred | bool | None:
    """Skip (None), defer (a hard link), or go on and read (False)."""
    size = st.st_size
    if settings.min_size is not None and size < settings.min_size:
        return None
    if settings.max_size is not None and size > settings.max_size:
        return None
    if settings.dedupe_links and st.st_nlink > 1:
        return Deferred(st.st_dev, st.st_ino, size, st.st_mtime_ns)
    return False


def _read_special(
    fd: int,
    st: os.stat_result,
    algos: Sequence[Algorithm],
    named: bool,
    settings: HashSettings | None,
) -> RawResult:
    """A file whose size says nothing: a named FIFO or device, or a file on a pseudo
    filesystem. Read to EOF, its size is what was read, and it cannot "change while being
    read" (sysfs reports 4096 bytes for every file, procfs 0). Reads on a pseudo filesystem
    stop at ``PSEUDO_READ_LIMIT`` (``pagemap``, ``kcore``, ``/dev/zero`` have no useful end).
    """
    kind = st.st_mode & 0o170000
    if kind == stat.S_IFDIR or (kind != stat.S_IFREG and not named):
        return (None, None, None, f"not a regular file ({file_kind(st.st_mode)})")
    pseudo = settings is not None and st.st_dev in settings.pseudo_devices
    limit = PSEUDO_READ_LIMIT if pseudo and kind != stat.S_IFBLK else None
    n = os.readv(fd, _get_buffer()[2])
    if _progress is not None:
        _progress[_slot + READ] += n
    digests, total = _read_and_hash(fd, 0, n, algos, limit)
    if limit is not None and total > limit:
        mib = PSEUDO_READ_LIMIT >> 20
        return (None, None, None, f"pseudo file longer than {mib} MiB: not read to its end")
    return (total, st.st_mtime_ns, digests[0] if len(digests) == 1 else tuple(digests), None)


def _read_and_hash(
    fd: int, size: int, n: int, algos: Sequence[Algorithm], limit: int | None = None
) -> tuple[list[str], int]:
    """Hash ``fd`` to EOF, starting with the ``n`` bytes already in the buffer; stop once
    more than ``limit`` bytes were read (the caller sees ``total > limit``)."""
    _, view, bufs = _get_buffer()
    if size > CHUNK_SIZE and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    hashers = [algo.new() for algo in algos]
    progress, slot = _progress, _slot + READ
    total = 0
    while n:
        data = view[:n]
        for hasher in hashers:
            hasher.update(data)  # type: ignore[attr-defined]
        total += n
        if limit is not None and total > limit:
            break
        n = os.readv(fd, bufs)
        if progress is not None:
            progress[slot] += n
    return [hasher.hexdigest() for hasher in hashers], total  # type: ignore[attr-defined]


def hash_stream(stream, names: Sequence[str]) -> tuple[int, list[str]]:
    """Hash a byte stream to its end (stdin) through the reused buffer."""
    buf, view, _ = _get_buffer()
    hashers = [get_algorithm(name).new() for name in names]
    total = 0
    while n := stream.readinto(buf):
        data = view[:n]
        for hasher in hashers:
            hasher.update(data)  # type: ignore[attr-defined]
        total += n
    return total, [hasher.hexdigest() for hasher in hashers]  # type: ignore[attr-defined]


def hash_files(
    paths: Sequence[str],
    algos: Sequence[Algorithm],
    follow: bool,
    settings: HashSettings | None = None,
    named: bool = False,
) -> list[RawResult | Deferred | None]:
    """``hash_file`` for every path of a task, in order (the worker's entry point)."""
    return [hash_file(path, algos, follow, settings, named) for path in paths]
