"""The per-file read loop that runs in the workers (processes, or threads of a Dask worker).

Everything here is importable at module top level (no closures) so it works under every
multiprocessing start method: fork, forkserver (Python 3.14's default) and spawn. State that
a read uses (the reused buffer, the long-path opener) is per thread, so two threads of one
process may hash at once; the few per-process facts (``O_NOATIME`` refused, a filesystem
without ``RWF_NOWAIT``) are one-way switches that any thread may flip.

How a file is read, by size (each threshold measured, see its constant):

- up to ``CHUNK_SIZE``: open + fstat + one read + close, and the one-shot digest;
- up to ``MMAP_THRESHOLD``: a read loop into the buffer, then a second fstat;
- from ``MMAP_THRESHOLD`` on: hashed from a memory map, window by window (no copy), then a
  second fstat; a file that changed in the last ``MMAP_QUIET_NS`` is read instead.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from parhash.algorithms import Algorithm, get_algorithm
from parhash.fsutil import LongPathOpener, describe_oserror, file_kind
from parhash.mounts import PSEUDO_READ_LIMIT

#: Read size for files that do not fit in one read. 256 KiB keeps the buffer in L2 cache, so
#: the hash reads from cache what the kernel just copied there (xxh3 hashes at ~30 GB/s).
#: Bigger buffers do not read faster (a warm 512 MiB file, xxh3, issue 11: 256 KiB
#: 6.5 GB/s, 1 MiB 6.9, 4 MiB 6.5, 16 MiB 5.4): large files are mapped instead.
#: The buffer has one byte more, so that a file of exactly this size is one read too (a
#: read that fills the buffer could not tell a file that grew from one that ended).
CHUNK_SIZE = 256 * 1024

#: Files of at least this many bytes are hashed from a memory map instead of read into the
#: buffer. Warm, per file (issue 11): at 256 KiB a map costs 1.26x the read loop
#: for xxh3 (the map's fixed cost: a dup, fstat, mmap, madvise, munmap), at 1 MiB 1.03x,
#: at 2 MiB 0.48x, at 16 MiB 0.41x; for sha256 0.95x at 256 KiB, 0.91x at 1 MiB, 0.83x at
#: 16 MiB. At 1 MiB the map is as fast for the fast hashes and faster for the slow ones.
MMAP_THRESHOLD = 1 << 20

#: Bytes mapped at a time. Bounds a worker's mapped (resident) pages to 16 MiB whatever the
#: file's size, and lets the next window's read-ahead overlap this window's hash. A 512 MiB
#: file, warm, xxh3 (issue 11): 4 MiB windows 21.9 GB/s, 16 MiB 26.0, 64 MiB 25.7,
#: the whole file at once 23.4; 16 MiB is a multiple of 2 MiB, so a large folio of the page
#: cache maps as one huge page.
MMAP_WINDOW = 16 << 20

#: A file whose mtime or ctime is younger than this is read, never mapped. A file that
#: shrinks while it is mapped raises SIGBUS on the next access of a page past its new end,
#: and SIGBUS kills the worker. ``MADV_POPULATE_READ`` turns a shrink (or an I/O error)
#: before a window is hashed into an error return (the file is then read instead), so the
#: risk is a truncation during the hash of one window, already populated. Files being
#: written or truncated are recently changed: they are read, where a shrink is the usual
#: "file changed while being read" record. A file quiet for 10 s that is truncated during
#: the milliseconds of its hash still kills the worker; the pool retries its batch (where
#: the file, changed now, is read) and warns.
MMAP_QUIET_NS = 10 * 1_000_000_000

#: Cold read-ahead depth: once a task meets a file that is not in the page cache, the next
#: this many files of the task are opened ahead and given to the kernel to read
#: (``POSIX_FADV_WILLNEED``) while the current one is hashed: that many reads in flight
#: per worker, as ``xargs -P`` gets with processes.
READ_AHEAD = 16

#: One result per file, in batch order: (size, mtime_ns, hexdigest, error).
RawResult = tuple["int | None", "int | None", "str | None", "str | None"]

#: The error of a file whose stat differed between before and after its read (after it
#: was read again once: a file that is appended to now and then gets a second chance).
CHANGED = "file changed while being read"

#: ``madvise`` advice 22 (Linux 5.14+): fault the pages in now and report a page that cannot
#: be read (past EOF, an I/O error) as an error instead of a SIGBUS. Python 3.11 lacks the
#: name. Without it (another kernel or OS) files are never mapped.
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else 0)


class _Opener(LongPathOpener):
    """A worker thread's long-path opener: its directory closes when the thread ends."""

    def __del__(self) -> None:
        self.close()


class _State:
    """One thread's reusable read state (see ``_local``)."""

    __slots__ = ("before", "buffer", "chunk", "cold", "first", "long_paths", "view")

    def __init__(self) -> None:
        # A fresh bytes object per read makes the allocator grow and trim its heap for every
        # file (450k page faults on a 2,000-file corpus, measured): one buffer, reused.
        self.buffer = bytearray(CHUNK_SIZE + 1)
        self.view = memoryview(self.buffer)
        self.first = [self.buffer]  #: the one read of a file that fits: CHUNK_SIZE + 1 bytes
        self.chunk = [self.view[:CHUNK_SIZE]]  #: every other read: page-aligned offsets
        self.long_paths = _Opener()
        #: Set by a read that found its file out of the page cache (a cold task).
        self.cold = False
        #: The fstat of the last file opened (None: it did not open): what the hash cache
        #: records about a file it reads (ctime, inode), at no syscall of its own.
        self.before: os.stat_result | None = None


class _Local(threading.local):
    def __init__(self) -> None:
        self.state = _State()


#: Per thread, so that a task may run in any thread of a worker (a Dask worker runs several).
_local = _Local()

_NAMED_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
# O_NONBLOCK: if a regular file is swapped for a FIFO after the walk, open() must not block
# (nor a read of /proc/kmsg). A path the user named is opened without it: a named FIFO
# waits for its writer and is read to EOF, as sha256sum reads it.
_BASE_FLAGS = _NAMED_FLAGS | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: ``O_NOATIME``: reading a file does not write its inode back (an atime update is a write
#: per file read on a ``strictatime`` mount, and dirties inodes on ``relatime`` ones). The
#: kernel allows it only to the file's owner and CAP_FOWNER (EPERM otherwise): after the
#: first EPERM that an open without it cures, this process stops asking (as fclones does),
#: so a tree of other people's files costs one open per file, not two.
_noatime = getattr(os, "O_NOATIME", 0)

#: ``RWF_NOWAIT`` on a file's first read: the read fails with EAGAIN instead of waiting for
#: the disk, which tells a cold task from a warm one at no cost (``_State.cold``); a task
#: known to be cold reads without it (no second read per file).
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
#: ``st_dev`` of the filesystems that refused ``RWF_NOWAIT`` (EOPNOTSUPP): read plainly there.
_no_nowait: set[int] = set()

#: False once the kernel refused ``MADV_POPULATE_READ``: read every file instead.
_can_map = bool(_MADV_POPULATE_READ) and hasattr(mmap.mmap, "madvise")

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


def count_started(files: int) -> None:
    """Count files answered without a read (hash-cache hits) as started, so the progress
    bar's file count moves for them too (its bytes stay what was really read)."""
    if _progress is not None:
        _progress[_slot + STARTED] += files


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


def _open_flags(follow: bool, named: bool) -> int:
    return (_NAMED_FLAGS if named else _BASE_FLAGS) | (0 if follow else _NOFOLLOW)


def _as_tuple(algos: Algorithm | Sequence[Algorithm]) -> tuple[Algorithm, ...]:
    return (algos,) if isinstance(algos, Algorithm) else tuple(algos)


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
    is read to EOF (or mapped) and fstat'ed again, so a file that grew, shrank or was
    rewritten while it was hashed becomes an error record instead of a digest of bytes that
    never existed together on disk. With several algorithms the digest is a tuple, all from
    the one read. ``None``: skipped by a size filter. ``Deferred``: a hard link (links.py).
    ``named``: the user named this path (argument, list, sums file): a FIFO or a device is
    read too (``_read_special``), and so is any file on a pseudo filesystem, named or not.
    """
    return hash_files([path], algos, follow, settings, named)[0]


def hash_files(
    paths: Sequence[str],
    algos: Algorithm | Sequence[Algorithm],
    follow: bool,
    settings: HashSettings | None = None,
    named: bool = False,
    stats: list | None = None,
) -> list[RawResult | Deferred | None]:
    """``hash_file`` of every path, in order: a worker's one call per task.

    A warm task costs per file exactly what ``hash_file`` costs. Once a read finds its file
    out of the page cache, the rest of the task is read ahead (``_ReadAhead``). A file that
    changed while it was read is read once more before it becomes a ``CHANGED`` error.
    ``stats``: gets each file's fstat (None where it did not open), for the hash cache.
    """
    algos = _as_tuple(algos)
    flags = _open_flags(follow, named)
    state = _local.state
    state.cold = False
    results: list[RawResult | Deferred | None] = []
    ahead: _ReadAhead | None = None
    try:
        for index, path in enumerate(paths):
            fd = ahead.take(index) if ahead is not None else None
            result = _hash_one(path, fd, flags, algos, settings, named, follow, state)
            if type(result) is tuple and result[3] is CHANGED:
                result = _hash_one(path, None, flags, algos, settings, named, follow, state)
            results.append(result)
            if stats is not None:
                stats.append(state.before)
            if state.cold and ahead is None:
                ahead = _ReadAhead(paths, index + 1, flags, named)
    finally:
        if ahead is not None:
            ahead.close()
    return results


def _hash_one(
    path: str,
    fd: int | None,
    flags: int,
    algos: tuple[Algorithm, ...],
    settings: HashSettings | None,
    named: bool,
    follow: bool,
    state: _State,
) -> RawResult | Deferred | None:
    """``hash_file`` of ``path``, or of ``fd`` when read-ahead opened it already.

    This is the per-file hot path (a 100,000-file tree calls it 100,000 times): the
    one-read case is kept inline and free of extra calls.
    """
    progress = _progress
    if progress is not None:  # every path counts as started, even one that fails to open
        progress[_slot + STARTED] += 1
    state.before = None
    if fd is None:
        try:
            fd = os.open(path, flags | _noatime)
        except OSError as exc:
            try:
                fd = _open_again(path, flags, exc, state)
            except OSError as again:
                return (None, None, None, describe_oserror(again, follow=follow))
        except ValueError:  # a NUL in the name: no file can have it
            return (None, None, None, "name holds a NUL byte")
    try:
        before = state.before = os.fstat(fd)
        if before.st_mode & 0o170000 != stat.S_IFREG or (
            settings is not None and before.st_dev in settings.pseudo_devices
        ):
            return _read_special(fd, before, algos, named, settings, state)
        if settings is not None and (
            before.st_nlink > 1 or settings.min_size is not None or settings.max_size is not None
        ):
            early = _filtered(before, settings)
            if early is not False:
                return early  # type: ignore[return-value]
        size = before.st_size
        if progress is not None:
            progress[_slot + ANNOUNCED] += size
        if size >= MMAP_THRESHOLD and _can_map and _quiet(before):
            mapped = _hash_mapped(fd, before, algos)
            if mapped is not None:
                return mapped
        # A file that fits reads into CHUNK_SIZE + 1 bytes (so that growth shows); a larger
        # one into CHUNK_SIZE, so that every later read starts at a page-aligned offset
        # (unaligned, the read loop costs 2.4x, issue 11).
        bufs = state.first if size <= CHUNK_SIZE else state.chunk
        try:
            n = os.preadv(
                fd, bufs, 0, 0 if state.cold or before.st_dev in _no_nowait else _RWF_NOWAIT
            )
        except OSError as exc:
            n = _read_blocking(fd, bufs, before.st_dev, exc, state)
        if progress is not None:
            progress[_slot + READ] += n
        if n == size and n <= CHUNK_SIZE:
            # The whole file in one read, at the size it had when opened: the common case
            # for small files, and the one-shot call skips creating a hash object.
            data = state.view[:n]
            if len(algos) == 1:
                return (n, before.st_mtime_ns, algos[0].oneshot(data), None)
            return (n, before.st_mtime_ns, tuple(a.oneshot(data) for a in algos), None)
        digests, total = _read_and_hash(fd, size, n, algos, state, positional=True)
        after = os.fstat(fd)
    except OSError as exc:
        return (None, None, None, describe_oserror(exc))
    finally:
        os.close(fd)
    return _checked(before, after, total, digests)


def _checked(
    before: os.stat_result, after: os.stat_result, total: int, digests: list[str]
) -> RawResult:
    """The result of a file read to its end: an error if it changed between the fstats."""
    if (
        after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
        or (before.st_size and total != before.st_size)
    ):
        return (None, None, None, CHANGED)
    return (total, before.st_mtime_ns, digests[0] if len(digests) == 1 else tuple(digests), None)


def _open_again(path: str, flags: int, exc: OSError, state: _State) -> int:
    """The second try of an open that failed: without ``O_NOATIME`` after EPERM, one
    directory at a time after ENAMETOOLONG; otherwise ``exc`` stands."""
    global _noatime
    if exc.errno == errno.EPERM and _noatime:
        fd = os.open(path, flags)  # an EPERM that O_NOATIME did not cause stands
        _noatime = 0
        return fd
    if exc.errno != errno.ENAMETOOLONG:
        raise exc
    try:
        return state.long_paths.open(path, flags | _noatime)
    except PermissionError as again:
        if again.errno != errno.EPERM or not _noatime:
            raise
        fd = state.long_paths.open(path, flags)
        _noatime = 0
        return fd


def _read_blocking(fd: int, bufs: list, dev: int, exc: OSError, state: _State) -> int:
    """The first read again, waiting for the disk: the ``RWF_NOWAIT`` read found the file
    out of the page cache (EAGAIN: the task is cold) or is not supported here."""
    if exc.errno == errno.EAGAIN:
        state.cold = True
    elif exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
        _no_nowait.add(dev)
    else:
        raise exc
    return os.preadv(fd, bufs, 0)


def _quiet(st: os.stat_result) -> bool:
    """Not changed (data or inode) in the last ``MMAP_QUIET_NS``: safe enough to map."""
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= MMAP_QUIET_NS


def _hash_mapped(fd: int, before: os.stat_result, algos: tuple[Algorithm, ...]) -> RawResult | None:
    """Hash a regular file of at least ``MMAP_THRESHOLD`` bytes from memory maps, then fstat
    it again; ``None``: it could not be mapped whole (the caller reads it instead, from the
    start, and reports what the read finds: a shrunk file, an I/O error)."""
    global _can_map
    size = before.st_size
    try:
        digests = _map_and_hash(fd, size, algos)
    except (OSError, ValueError) as exc:  # ValueError: Python's own fstat saw it shrink
        if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
            _can_map = False  # a kernel without MADV_POPULATE_READ
        return None
    return _checked(before, os.fstat(fd), size, digests)


def _map_and_hash(fd: int, size: int, algos: tuple[Algorithm, ...]) -> list[str]:
    """The digests of ``fd``'s first ``size`` bytes, mapped ``MMAP_WINDOW`` at a time; each
    window is populated before it is hashed (an unreadable page raises here, not SIGBUS)
    and the next one is handed to the kernel's read-ahead while this one is hashed."""
    if size <= MMAP_WINDOW:
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as window:
            window.madvise(_MADV_POPULATE_READ)
            if _progress is not None:
                _progress[_slot + READ] += size
            return [algo.oneshot(window) for algo in algos]  # type: ignore[arg-type]
    hashers = [algo.new() for algo in algos]
    offset = 0
    try:
        while offset < size:
            length = min(MMAP_WINDOW, size - offset)
            with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=offset) as window:
                window.madvise(_MADV_POPULATE_READ)
                if offset + length < size:
                    os.posix_fadvise(fd, offset + length, MMAP_WINDOW, os.POSIX_FADV_WILLNEED)
                for hasher in hashers:
                    hasher.update(window)  # type: ignore[attr-defined]
            offset += length
            if _progress is not None:
                _progress[_slot + READ] += length
    except (OSError, ValueError):
        if _progress is not None:  # the caller reads the file again: count it once
            _progress[_slot + READ] -= offset
        raise
    return [hasher.hexdigest() for hasher in hashers]  # type: ignore[attr-defined]


class _ReadAhead:
    """The next ``READ_AHEAD`` files of a cold task, opened and handed to the kernel's
    read-ahead (``POSIX_FADV_WILLNEED``) while the current one is hashed.

    The descriptor is handed to ``_hash_one`` (no second open), except for named paths:
    these are opened ahead with ``O_NONBLOCK`` (a named FIFO must not block the read-ahead)
    and closed, and the reader opens them itself as a named path must be opened. A path
    that fails to open here is opened again by the reader, which reports its error.
    """

    def __init__(self, paths: Sequence[str], start: int, flags: int, named: bool) -> None:
        self.paths = paths
        self.flags = flags | getattr(os, "O_NONBLOCK", 0)
        self.keep = not named
        self.fds: deque[tuple[int, int | None]] = deque()
        self.next = start
        for _ in range(READ_AHEAD):
            self._open_next()

    def _open_next(self) -> None:
        if self.next >= len(self.paths):
            return
        index, self.next = self.next, self.next + 1
        try:
            fd = os.open(self.paths[index], self.flags | _noatime)
        except (OSError, ValueError):
            self.fds.append((index, None))
            return
        with contextlib.suppress(OSError):  # a FIFO (ESPIPE): nothing to read ahead
            # The first MMAP_THRESHOLD bytes: a small file whole, a large one's first MiB
            # (its own windows read ahead the rest): at most 16 MiB in flight per task.
            os.posix_fadvise(fd, 0, MMAP_THRESHOLD, os.POSIX_FADV_WILLNEED)
        if not self.keep:
            os.close(fd)
            fd = None
        self.fds.append((index, fd))

    def take(self, index: int) -> int | None:
        """The descriptor of ``paths[index]`` if it was opened ahead (now the caller's)."""
        self._open_next()
        if self.fds and self.fds[0][0] == index:
            return self.fds.popleft()[1]
        return None

    def close(self) -> None:
        """Close what was opened ahead and not taken (a task that ended early)."""
        while self.fds:
            fd = self.fds.popleft()[1]
            if fd is not None:
                os.close(fd)


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
    state: _State,
) -> RawResult:
    """A file whose size says nothing: a named FIFO or device, or a file on a pseudo
    filesystem. Read to EOF, its size is what was read, and it cannot "change while being
    read" (sysfs reports 4096 bytes for every file, procfs 0). Reads on a pseudo filesystem
    stop at ``PSEUDO_READ_LIMIT`` (``pagemap``, ``kcore``, ``/dev/zero`` have no useful end).
    Never mapped: a special file's size is no bound on what it holds.
    """
    kind = st.st_mode & 0o170000
    if kind == stat.S_IFDIR or (kind != stat.S_IFREG and not named):
        return (None, None, None, f"not a regular file ({file_kind(st.st_mode)})")
    pseudo = settings is not None and st.st_dev in settings.pseudo_devices
    limit = PSEUDO_READ_LIMIT if pseudo and kind != stat.S_IFBLK else None
    n = os.readv(fd, state.chunk)  # its size says nothing: aligned reads from the start
    if _progress is not None:
        _progress[_slot + READ] += n
    digests, total = _read_and_hash(fd, 0, n, algos, state, positional=False, limit=limit)
    if limit is not None and total > limit:
        mib = PSEUDO_READ_LIMIT >> 20
        return (None, None, None, f"pseudo file longer than {mib} MiB: not read to its end")
    return (total, st.st_mtime_ns, digests[0] if len(digests) == 1 else tuple(digests), None)


def _read_and_hash(
    fd: int,
    size: int,
    n: int,
    algos: Sequence[Algorithm],
    state: _State,
    positional: bool,
    limit: int | None = None,
) -> tuple[list[str], int]:
    """Hash ``fd`` to EOF, starting with the ``n`` bytes already in the buffer; stop once
    more than ``limit`` bytes were read (the caller sees ``total > limit``). ``positional``:
    the first read was a ``preadv`` at offset 0, which moved no file offset: one lseek, then
    plain sequential reads (a FIFO or a device goes on from where its first read left it)."""
    view, bufs = state.view, state.chunk
    if size > CHUNK_SIZE and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    if positional:  # the first read moved no offset: the rest read on from there
        os.lseek(fd, n, os.SEEK_SET)
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
    """Hash a byte stream to its end (stdin) through this thread's reused buffer."""
    state = _local.state
    buf, view = state.buffer, state.view
    hashers = [get_algorithm(name).new() for name in names]
    total = 0
    while n := stream.readinto(buf):
        data = view[:n]
        for hasher in hashers:
            hasher.update(data)  # type: ignore[attr-defined]
        total += n
    return total, [hasher.hexdigest() for hasher in hashers]  # type: ignore[attr-defined]
