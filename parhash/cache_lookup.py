"""The hash cache on the workers' side: one lookup per directory group, one stat per file.

A worker holding a task of a cached root asks the database (read-only, its own connection
per thread) once per directory group for the entries of that group's names, then stats
each file that has one: a valid entry (its value starts with the file's
``cache_policy.stamp``) answers without opening the file, unless it is due for
verification (its last full read is at or before the task's cutoff, and a duration budget
has time left). Everything else is read by the
usual read loop (``hashing.hash_files``), whose fstat gives the new entry its ctime and
inode at no extra syscall. The worker never writes: it sends the rows to write and the
ranges of names it met, and the parent's one writer applies them (``cache_store``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from parhash.algorithms import Algorithm
from parhash.cache_policy import STAMP_LENGTH, digests_of, entry_value, racy, racy_limit, stamp
from parhash.hashing import HashSettings, count_started, hash_files

#: How long a worker's read waits on a lock (a WAL reader waits only for a checkpoint or
#: a rebuild): past this the group is read as if it had no entries.
READ_TIMEOUT_S = 5.0

_FETCH = (
    "SELECT name, value FROM entries WHERE dir = (SELECT id FROM dirs WHERE root = ?"
    " AND path = ?) AND name BETWEEN ? AND ? AND racy < ? AND {}"
)
#: Entries verified after the cutoff (trusted), and those due for verification: verified
#: at or before the cutoff, or "after now" (while the clock ran ahead, a VM before NTP: a
#: time in the future would never come due otherwise).
_FETCH_TRUSTED = _FETCH.format("verified_ns > ? AND verified_ns <= ?")
_FETCH_DUE = _FETCH.format("(verified_ns <= ? OR verified_ns > ?)")
#: The "now" of a run without a budget: every entry is trusted, whenever it was verified.
_NEVER = (1 << 63) - 1

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", 0)
_DIR_FLAGS |= getattr(os, "O_CLOEXEC", 0)

#: Names as the cache stores them: ``os.fsencode`` without its per-call Python overhead.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


@dataclass(frozen=True)
class CacheSpec:
    """What every task of a cached run shares (``WorkSpec.cache``)."""

    path: str
    #: Bytes of the stamp compared (``CacheOptions.stamp_length``: the --cache-trust fields).
    stamp_length: int = STAMP_LENGTH
    #: Wall-clock end of a duration ``--verify-budget`` (ns since the epoch): no hit is
    #: read again for verification after it.
    deadline_ns: int | None = None


class _Readers(threading.local):
    def __init__(self) -> None:
        #: Cache path -> (the database file's inode when opened, connection).
        self.connections: dict[str, tuple[int, sqlite3.Connection]] = {}


_readers = _Readers()


def _reader(path: str) -> sqlite3.Connection:
    """This thread's read-only connection to the cache, opened once per process, and again
    when the file was replaced (a rebuilt cache; a process that runs several scans, -j 1
    or the library, must not read the file it replaced). One stat per task."""
    inode = os.stat(path).st_ino
    known = _readers.connections.get(path)
    if known is not None and known[0] == inode:
        return known[1]
    _drop_reader(path)
    uri = f"file:{quote(os.fsencode(path))}?mode=ro"  # bytes: any name
    conn = sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT_S, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    _readers.connections[path] = (inode, conn)
    return conn


def _drop_reader(path: str) -> None:
    known = _readers.connections.pop(path, None)
    if known is not None:
        known[1].close()


class CachedHashing:
    """One task's hashing through the cache; ``answer()`` is what goes back to the parent:
    (rows, dirs, seen, trusted, verified, hashed, read_bytes, mismatched, error)."""

    def __init__(
        self,
        spec: CacheSpec,
        key: tuple[int, int, int, int],
        algos: tuple[Algorithm, ...],
        follow: bool,
        settings: HashSettings,
        named: bool,
    ) -> None:
        self.spec = spec
        self.root_id, self.cutoff_ns, self.base_len, self.run = key
        self.algos = algos
        self.lengths = tuple(a.hex_length for a in algos)
        self.follow = follow
        self.settings = settings
        self.named = named
        #: (root, dir, name, size, value, racy, verified_ns, run) of every file read: the
        #: writer's parameters as they are, so the parent spends no Python per row.
        self.rows: list[tuple] = []
        #: The directories of ``rows`` (the writer makes them before the rows).
        self.dirs: set[bytes] = set()
        #: (dir, lowest name, highest name, cached names in between not met) per group.
        self.seen: list[tuple] = []
        self.trusted = self.verified = self.hashed = self.read_bytes = 0
        self.mismatched: list[str] = []
        self.error: str | None = None
        self.conn: sqlite3.Connection | None = None  #: ``_reader``'s, taken once per task
        #: Verification times after this are in the future: due (``_FETCH_DUE``).
        self.now = time.time_ns()

    def answer(self) -> tuple:
        return (
            self.rows,
            list(self.dirs),
            self.seen,
            self.trusted,
            self.verified,
            self.hashed,
            self.read_bytes,
            self.mismatched,
            self.error,
        )

    # -- lookups -----------------------------------------------------------------------

    def _fetch(self, directory: bytes, low: bytes, high: bytes) -> tuple[dict, dict]:
        """The trustable entries of ``directory`` named ``low`` to ``high`` by name: those
        to trust, and those due for a verifying read (only with a budget or a max age)."""
        if self.error is not None:
            return {}, {}
        limit = racy_limit(self.spec.stamp_length)
        budget = self.cutoff_ns >= 0
        now = self.now if budget else _NEVER
        args = (self.root_id, directory, low, high, limit, self.cutoff_ns, now)
        try:
            if self.conn is None:
                self.conn = _reader(self.spec.path)
            trusted = dict(self.conn.execute(_FETCH_TRUSTED, args))
            due = dict(self.conn.execute(_FETCH_DUE, args)) if budget else {}
        except (sqlite3.Error, OSError) as exc:
            self.error = str(exc)
            _drop_reader(self.spec.path)
            return {}, {}
        return trusted, due

    def hash_group(self, prefix: str, names: tuple[str, ...], paths: list[str]) -> list:
        """The raw results of one group (``hashing.hash_files``' form), through the cache."""
        if not prefix:
            return self._hash_named(paths)
        directory = prefix[self.base_len :].encode(_FS_ENCODING, _FS_ERRORS)
        keys = [name.encode(_FS_ENCODING, _FS_ERRORS) for name in names]
        low, high = min(keys), max(keys)
        trusted, due = self._fetch(directory, low, high)
        if not trusted and not due:  # nothing cached here: read them all, no stat first
            return self._resolve(paths, paths, None, keys, [directory] * len(keys), {}, {})[0]
        try:  # one directory lookup, then a stat per name relative to it (0.6 us less)
            fd: int | None = os.open(prefix, _DIR_FLAGS)
        except (OSError, ValueError):
            fd = None
        try:
            targets = list(names) if fd is not None else paths
            directories = [directory] * len(keys)
            raws, met = self._resolve(paths, targets, fd, keys, directories, trusted, due)
        finally:
            if fd is not None:
                os.close(fd)
        if met:  # one range for the group, minus the cached names in it the group lacks
            self.seen.append((directory, low, high, [*trusted, *due]))
        return raws

    def _hash_named(self, paths: list[str]) -> list:
        """Paths named one by one: keyed by their absolute directory and name."""
        directories, pairs, trusted, due = [], [], {}, {}
        for path in paths:
            directory, name = os.path.split(os.path.abspath(path))
            d, k = os.fsencode(directory + os.sep), os.fsencode(name)
            directories.append(d)
            pairs.append((d, k))
            found, late = self._fetch(d, k, k)
            trusted.update({(d, n): v for n, v in found.items()})
            due.update({(d, n): v for n, v in late.items()})
        raws, met = self._resolve(paths, paths, None, pairs, directories, trusted, due)
        for directory, key in met:
            self.seen.append((directory, key, key, []))
        return raws

    # -- the decision per file ---------------------------------------------------------

    def _resolve(self, paths, targets, dir_fd, keys, directories, trusted, due):
        """Trust, verify or read each file: the raw results, and the keys that had an
        entry. ``trusted`` and ``due`` lose the keys met: what is left is the cached names
        of the range that this group does not hold. This loop is the whole per-file cost
        of an unchanged tree: a dict lookup, one stat, one ``startswith``."""
        now = time.time_ns()  # before any stat or read: conservative for the racy rule
        trust, settings, follow = self.spec.stamp_length, self.settings, self.follow
        deadline = self.spec.deadline_ns
        one = len(self.algos) == 1
        smallest, largest = settings.min_size, settings.max_size
        pseudo = settings.pseudo_devices
        raws: list = [None] * len(paths)
        to_read: list[int] = []
        checked: dict[int, bytes] = {}
        met: list = []
        hits = 0
        for index, key in enumerate(keys):
            value = trusted.pop(key, None)
            verify = value is None
            if verify:
                value = due.pop(key, None)
                if value is None:
                    to_read.append(index)
                    continue
            met.append(key)
            try:
                st = os.stat(targets[index], dir_fd=dir_fd, follow_symlinks=follow)
            except (OSError, ValueError):
                to_read.append(index)  # the read reports why
                continue
            if (
                not value.startswith(stamp(st, trust))
                or st.st_mode & 0o170000 != stat.S_IFREG
                or st.st_dev in pseudo
            ):
                to_read.append(index)
            elif verify and (deadline is None or time.time_ns() < deadline):
                checked[index] = value
                to_read.append(index)
            elif (smallest is None or st.st_size >= smallest) and (
                largest is None or st.st_size <= largest
            ):
                digest = value[STAMP_LENGTH:].hex() if one else digests_of(value, self.lengths)
                raws[index] = (st.st_size, st.st_mtime_ns, digest, None)
                hits += 1
            # else: outside a size filter, skipped as a read would skip it
        self.trusted += hits
        count_started(hits)
        if to_read:
            self._read(paths, keys, directories, to_read, checked, raws, now)
        return raws, met

    def _read(self, paths, keys, directories, to_read, checked, raws, now) -> None:
        """Read the files without a trusted entry (``hash_files``: read-ahead, retries)
        and make their rows; a verified file whose digest moved is a mismatch."""
        stats: list = []
        batch = [paths[i] for i in to_read]
        reads = hash_files(batch, self.algos, self.follow, self.settings, self.named, stats)
        pseudo = self.settings.pseudo_devices
        trust = self.spec.stamp_length
        for index, raw, st in zip(to_read, reads, stats, strict=True):
            raws[index] = raw
            if type(raw) is not tuple or raw[3] is not None or st is None:
                continue  # an error, a skip, or a hard link left to the parent
            if st.st_mode & 0o170000 != stat.S_IFREG or st.st_dev in pseudo:
                continue
            value = entry_value(st, (raw[2],) if type(raw[2]) is str else raw[2])
            key = keys[index]
            name = key[1] if type(key) is tuple else key
            # verified_ns is unique per file of the group (+ its index): budgets cut the
            # stalest-first order exactly instead of at a whole group's shared time.
            directory = directories[index]
            self.dirs.add(directory)
            row = (self.root_id, directory, name, raw[0], value, racy(st, now), now + index)
            self.rows.append((*row, self.run))
            self.read_bytes += raw[0]
            old = checked.get(index)
            if old is None:
                self.hashed += 1
                continue
            self.verified += 1
            if old[STAMP_LENGTH:] != value[STAMP_LENGTH:] and old.startswith(stamp(st, trust)):
                self.mismatched.append(paths[index])
