"""The hash cache on the workers' side: one lookup per directory group, one stat per file.

A worker holding a task of a cached root asks the database (read-only, its own connection
per thread) once per directory group for the entries of that group's names, then stats
each file that has one: a valid entry (``cache_policy.entry_valid``) answers without
opening the file, unless it is due for verification (its last full read is at or before
the task's cutoff, and a duration budget has time left). Everything else is read by the
usual read loop (``hashing.hash_files``), whose fstat gives the new entry its ctime and
inode at no extra syscall. The worker never writes: it sends the rows to write and the
ranges of names it met, and the parent's one writer applies them (``cache_store``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from parhash.algorithms import Algorithm
from parhash.cache_policy import entry_valid, signed64
from parhash.hashing import HashSettings, count_started, hash_files

#: How long a worker's read waits on a lock (a WAL reader waits only for a checkpoint or
#: a rebuild): past this the group is read as if it had no entries.
READ_TIMEOUT_S = 5.0

_FETCH = (
    "SELECT name, size, mtime_ns, ctime_ns, ino, digests, hashed_ns, verified_ns FROM entries"
    " WHERE root = ? AND algos = ? AND dir = ? AND name BETWEEN ? AND ?"
)


@dataclass(frozen=True)
class CacheSpec:
    """What every task of a cached run shares (``WorkSpec.cache``)."""

    path: str
    full_trust: bool = True
    #: Wall-clock end of a duration ``--verify-budget`` (ns since the epoch): no hit is
    #: read again for verification after it.
    deadline_ns: int | None = None


class _Readers(threading.local):
    def __init__(self) -> None:
        self.connections: dict[str, sqlite3.Connection | None] = {}


_readers = _Readers()


def _reader(path: str) -> sqlite3.Connection:
    """This thread's read-only connection to the cache (opened once per process)."""
    conn = _readers.connections.get(path)
    if conn is None:
        uri = f"file:{quote(path)}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        _readers.connections[path] = conn
    return conn


def _drop_reader(path: str) -> None:
    conn = _readers.connections.pop(path, None)
    if conn is not None:
        conn.close()


class CachedHashing:
    """One task's hashing through the cache; ``answer()`` is what goes back to the parent:
    (rows, seen, trusted, verified, hashed, read_bytes, stalest_ns, mismatched, error)."""

    def __init__(
        self,
        spec: CacheSpec,
        key: tuple[int, int, int],
        algos: tuple[Algorithm, ...],
        follow: bool,
        settings: HashSettings,
        named: bool,
    ) -> None:
        self.spec = spec
        self.root_id, self.cutoff_ns, self.base_len = key
        self.algos = algos
        self.algos_key = ",".join(a.name for a in algos)
        self.follow = follow
        self.settings = settings
        self.named = named
        self.rows: list[tuple] = []
        self.seen: list[tuple] = []
        self.trusted = self.verified = self.hashed = self.read_bytes = 0
        self.stalest: int | None = None
        self.mismatched: list[str] = []
        self.error: str | None = None

    def answer(self) -> tuple:
        return (
            self.rows,
            self.seen,
            self.trusted,
            self.verified,
            self.hashed,
            self.read_bytes,
            self.stalest,
            self.mismatched,
            self.error,
        )

    # -- lookups -----------------------------------------------------------------------

    def _fetch(self, directory: bytes, low: bytes, high: bytes) -> dict[bytes, tuple]:
        if self.error is not None:
            return {}
        try:
            rows = (
                _reader(self.spec.path)
                .execute(_FETCH, (self.root_id, self.algos_key, directory, low, high))
                .fetchall()
            )
        except sqlite3.Error as exc:
            self.error = str(exc)
            _drop_reader(self.spec.path)
            return {}
        return {row[0]: row[1:] for row in rows}

    def hash_group(self, prefix: str, names: tuple[str, ...], paths: list[str]) -> list:
        """The raw results of one group (``hashing.hash_files``' form), through the cache."""
        if not prefix:
            return self._hash_named(paths)
        directory = os.fsencode(prefix[self.base_len :])
        keys = [os.fsencode(name) for name in names]
        entries = self._fetch(directory, min(keys), max(keys))
        raws, met = self._resolve(paths, keys, [directory] * len(keys), entries)
        if met:  # one range for the group, minus the cached names in it the group lacks
            self.seen.append((directory, min(keys), max(keys), list(entries)))
        return raws

    def _hash_named(self, paths: list[str]) -> list:
        """Paths named one by one: keyed by their absolute directory and name."""
        directories, keys, entries = [], [], {}
        for path in paths:
            directory, name = os.path.split(os.path.abspath(path))
            d, k = os.fsencode(directory + os.sep), os.fsencode(name)
            directories.append(d)
            keys.append(k)
            for found, entry in self._fetch(d, k, k).items():
                entries[d, found] = entry
        pairs = list(zip(directories, keys, strict=True))
        raws, met = self._resolve(paths, pairs, directories, entries)
        for directory, key in met:
            self.seen.append((directory, key, key, []))
        return raws

    # -- the decision per file ---------------------------------------------------------

    def _resolve(
        self, paths: list[str], keys: list, directories: list[bytes], entries: dict
    ) -> tuple[list, list]:
        """Trust, verify or read each file: the raw results, and the keys that had an
        entry. ``entries`` loses the keys met: what is left is the cached names of the
        range that this group does not hold."""
        now = time.time_ns()  # before any stat or read: conservative for the racy rule
        full, settings, follow = self.spec.full_trust, self.settings, self.follow
        deadline, cutoff = self.spec.deadline_ns, self.cutoff_ns
        raws: list = [None] * len(paths)
        to_read: list[int] = []
        checked: dict[int, tuple] = {}
        met: list = []
        trusted = 0
        for index, key in enumerate(keys):
            entry = entries.pop(key, None)
            if entry is None:
                to_read.append(index)
                continue
            met.append(key)
            try:
                st = os.stat(paths[index], follow_symlinks=follow)
            except (OSError, ValueError):
                to_read.append(index)  # the read reports why
                continue
            size, mtime_ns, ctime_ns, ino, digests, hashed_ns, verified_ns = entry
            if (
                st.st_mode & 0o170000 != stat.S_IFREG
                or st.st_dev in settings.pseudo_devices
                or not entry_valid(full, size, mtime_ns, ctime_ns, ino, hashed_ns, st)
            ):
                to_read.append(index)
                continue
            if verified_ns <= cutoff and (deadline is None or time.time_ns() < deadline):
                checked[index] = entry
                to_read.append(index)
                continue
            if (settings.min_size is not None and size < settings.min_size) or (
                settings.max_size is not None and size > settings.max_size
            ):
                continue  # skipped by a size filter, as a read would skip it
            raws[index] = (
                size,
                mtime_ns,
                digests if len(self.algos) == 1 else tuple(digests.split()),
                None,
            )
            trusted += 1
            if self.stalest is None or verified_ns < self.stalest:
                self.stalest = verified_ns
        self.trusted += trusted
        count_started(trusted)
        if to_read:
            self._read(paths, keys, directories, to_read, checked, raws, now)
        return raws, met

    def _read(self, paths, keys, directories, to_read, checked, raws, now) -> None:
        stats: list = []
        reads = hash_files(
            [paths[i] for i in to_read], self.algos, self.follow, self.settings, self.named, stats
        )
        pseudo = self.settings.pseudo_devices
        for index, raw, st in zip(to_read, reads, stats, strict=True):
            raws[index] = raw
            if type(raw) is not tuple or raw[3] is not None or st is None:
                continue  # an error, a skip, or a hard link left to the parent
            if st.st_mode & 0o170000 != stat.S_IFREG or st.st_dev in pseudo:
                continue
            digests = raw[2] if type(raw[2]) is str else " ".join(raw[2])
            key = keys[index]
            name = key[1] if type(key) is tuple else key
            # verified_ns is unique per file of the group (+ its index): budgets cut the
            # stalest-first order exactly instead of at a whole group's shared time.
            row = (directories[index], name, raw[0], raw[1], st.st_ctime_ns, signed64(st.st_ino))
            self.rows.append((*row, digests, now, now + index))
            self.read_bytes += raw[0]
            entry = checked.get(index)
            if entry is None:
                self.hashed += 1
                continue
            self.verified += 1
            if digests != entry[4] and _same_stat(entry, st, self.spec.full_trust):
                self.mismatched.append(paths[index])


def _same_stat(entry: tuple, st: os.stat_result, full: bool) -> bool:
    """The file read has the stat its entry recorded: a new digest is then a change that
    the metadata does not show (not a write between our stat and our read)."""
    size, mtime_ns, ctime_ns, ino = entry[:4]
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        return False
    return not full or (st.st_ctime_ns == ctime_ns and signed64(st.st_ino) == ino)
