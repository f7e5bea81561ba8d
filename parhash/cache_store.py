"""The hash cache's database, on the parent's side: opening it, a run's session, upkeep.

One SQLite file (``cache_policy.CACHE_FILE``) in WAL mode, so that the workers read while
this process writes and two parhash processes may share it; only the parent of a run ever
writes (Dask may run a task twice; a worker that died may have half-done anything). Writes
go through one thread (``_Writer``) in batched transactions, behind a bounded queue.

A cache that cannot be used is never a reason to fail a run, nor to trust a wrong digest:
corrupt or truncated (rebuilt empty, one warning), newer than this parhash, not ours, or
locked for longer than ``OPEN_TIMEOUT_S`` (one warning, the run goes on without it).

Schema (``SCHEMA_VERSION``, ``_SCHEMA``): ``roots`` is one keyspace (a scan root's real
path as bytes and the algorithms: how many runs it had, its measured read rate), ``dirs``
its directories relative to the root (bytes), ``entries`` one file each, by directory and
name (bytes, so that any file name works): the stat fields it must match followed by its
digests (``cache_policy.entry_value``), how racy it was when hashed, when it was last
verified by a full read, and the last run of its root that saw it (``TTL_RUNS``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from parhash.cache_policy import TTL_RUNS, CacheOptions
from parhash.model import CacheCounts

#: Bumped on any change of the tables; a newer file is left alone (an older one rebuilt).
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` ("PHC1"): tells our file from another SQLite database.
APPLICATION_ID = 0x50484331

#: How long opening waits for a lock another process holds (then: run without the cache).
OPEN_TIMEOUT_S = 5.0
#: How long a batched write waits for a concurrent writer before giving up the cache for
#: the rest of the run. Another parhash holds the write lock for one batch (milliseconds).
WRITE_TIMEOUT_S = 30.0

#: Answers waiting for the writer thread: bounds memory when the disk under the cache is
#: slower than hashing (each answer holds at most one task's rows, ~1,000).
WRITE_QUEUE = 64
#: Most answers per transaction: a commit costs one WAL fsync-free append (synchronous
#: NORMAL), so fewer, larger transactions are cheaper; 32 tasks is ~32,000 rows.
WRITE_BATCH = 32

#: How long an interrupted run (Ctrl-C, SIGTERM) waits for the cache writer's last batch.
ABANDON_S = 2.0

#: Names left out of a seen range that are bound inline; more use a temporary table.
MAX_INLINE_NAMES = 200

#: Read rate assumed for a ``--verify-budget`` duration before a root's first measured run.
DEFAULT_RATE = 100e6

#: The root key of paths named one by one (``--files-from``, file arguments): their
#: directory is absolute.
NAMED_ROOT = b""

#: A keyspace is a root and its algorithms (``roots``); directories are stored once
#: (``dirs``), so an entry holds only its name: measured on the 100,000-file corpus, 141
#: bytes per entry with the directory and algorithms in every row and an index by
#: verification time, against ~70 like this. The budget's stalest-first order is a sort
#: when a budget is given (a 100,000-entry root: tens of milliseconds), not an index
#: that every write pays for.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS roots(
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL,
    algos TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    last_run_ns INTEGER,
    rate REAL,
    UNIQUE(path, algos)
);
CREATE TABLE IF NOT EXISTS dirs(
    id INTEGER PRIMARY KEY,
    root INTEGER NOT NULL,
    path BLOB NOT NULL,
    UNIQUE(root, path)
);
CREATE TABLE IF NOT EXISTS entries(
    dir INTEGER NOT NULL,
    name BLOB NOT NULL,
    size INTEGER NOT NULL,
    value BLOB NOT NULL,
    racy INTEGER NOT NULL,
    verified_ns INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,
    PRIMARY KEY(dir, name)
) WITHOUT ROWID;
"""

#: The id of a directory of a root (a subquery: one index lookup).
DIR_ID = "(SELECT id FROM dirs WHERE root = ? AND path = ?)"
#: The entries of a root.
OF_ROOT = "dir IN (SELECT id FROM dirs WHERE root = ?)"
#: The entries of a root that its run number ? (the previous one) or a later one saw.
_LIVE = OF_ROOT + " AND seen_run >= ?"

_UPSERT = (
    "INSERT OR REPLACE INTO entries(dir, name, size, value, racy, verified_ns, seen_run)"
    f" VALUES ({DIR_ID}, ?, ?, ?, ?, ?, ?)"
)
_NEW_DIR = "INSERT OR IGNORE INTO dirs(root, path) VALUES (?, ?)"
_SEEN = (
    f"UPDATE entries SET seen_run = ? WHERE dir = {DIR_ID}"
    " AND name BETWEEN ? AND ? AND seen_run <> ?"
)


class CacheUnavailable(Exception):
    """The cache cannot be used for this run: the message is the one warning line."""


def _corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def connect(path: str, timeout: float = OPEN_TIMEOUT_S) -> tuple[sqlite3.Connection, str | None]:
    """The cache database at ``path``, created if missing, rebuilt empty if corrupt;
    also the warning to print (a rebuild), if any. Raises ``CacheUnavailable``."""
    try:
        return _connect(path, timeout), None
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise CacheUnavailable(f"cache {path}: {exc}; running without it") from None
        reason = str(exc)
    _remove(path)
    try:
        return _connect(path, timeout), f"cache {path} was unreadable ({reason}); rebuilt empty"
    except sqlite3.Error as exc:
        raise CacheUnavailable(f"cache {path}: {exc}; running without it") from None


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # The cache lists file names: readable by its owner only (SQLite would use 0644).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    except OSError as exc:
        raise CacheUnavailable(f"cache {path}: {exc.strerror or exc}; running without it") from None
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        _check(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a file that is not ours or is newer; create the tables in a new one; spot
    a truncated file (SQLite itself notices only when a query reaches a missing page).

    Two processes may open a new cache at once: the header is read in one transaction
    (a consistent snapshot), and the tables are created in a write transaction that
    reads it again, so neither ever sees the other's half-made file as foreign or old.
    """
    conn.execute("BEGIN")
    try:
        app, version, tables = _header(conn)
    finally:
        conn.execute("COMMIT")
    _refuse(app, version, tables, path)
    if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
        raise CacheUnavailable(f"cache {path}: WAL mode refused; running without it")
    conn.execute("PRAGMA synchronous=NORMAL")
    if version < SCHEMA_VERSION:
        with _transaction(conn):
            app, version, tables = _header(conn)
            _refuse(app, version, tables, path)
            if version < SCHEMA_VERSION and tables:  # an older layout: start again
                raise sqlite3.DatabaseError("older schema, not a database this parhash reads")
            if version < SCHEMA_VERSION:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    _check_length(conn, path)


def _header(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(application id, schema version, number of schema objects)."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return app, version, tables


def _refuse(app: int, version: int, tables: int, path: str) -> None:
    if tables and app != APPLICATION_ID:
        raise CacheUnavailable(f"cache {path} is not a parhash cache; running without it")
    if version > SCHEMA_VERSION:
        raise CacheUnavailable(
            f"cache {path} was written by a newer parhash (schema {version}); running without it"
        )


def _check_length(conn: sqlite3.Connection, path: str) -> None:
    """A file shorter than its header's page count lost its tail (truncated, a full disk
    during a copy): corrupt, where SQLite would report it only on the first missing page."""
    wal = sidecar(path, "-wal")
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        return  # pages may live in the WAL only; SQLite checks the WAL's own checksums
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    if os.path.getsize(path) < pages * page_size:
        raise sqlite3.DatabaseError("file is truncated: database disk image is malformed")
    conn.execute("SELECT count(*) FROM roots").fetchone()


def sidecar(path: str, suffix: str) -> str:
    """The database's WAL (``-wal``) or shared memory (``-shm``): SQLite puts them next to
    the file a symlink names (its unix VFS resolves links), so a cache file that is a
    symlink (the cache on another disk) has them there, not next to the link."""
    return os.path.realpath(path) + suffix if suffix else path


def _remove(path: str) -> None:
    """Delete a corrupt cache: the file (a symlink itself, never what it names) and its
    WAL and shared memory (where SQLite put them: ``sidecar``), so a new file never meets
    the old WAL. A file that cannot be deleted stays, and is found corrupt again (then:
    no cache, one warning)."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(sidecar(path, suffix))


@dataclass
class _Root:
    """A root of this run: its id, this run's number for it, its verification cutoff."""

    root_id: int
    run: int
    cutoff_ns: int
    base_len: int


def open_session(options: CacheOptions, algos: tuple[str, ...], warn) -> CacheSession | None:
    """A run's session, or None after one warning when the cache cannot be used."""
    try:
        return CacheSession(options, algos, warn)
    except CacheUnavailable as exc:
        warn(str(exc))
        return None


class CacheSession:
    """One run's use of the cache: roots registered as their sources come, answers written
    by one thread, counts for the summary. ``close(complete)`` flushes the writes and, for
    a run that finished, drops the entries of its roots not seen for ``TTL_RUNS`` runs."""

    def __init__(self, options: CacheOptions, algos: tuple[str, ...], warn) -> None:
        self.options = options
        #: The keyspace's algorithms: a root hashed with others is another root.
        self.algos = ",".join(algos)
        self.warn = warn
        self.started_ns = time.time_ns()
        #: The main thread's connection (roots, cutoffs, the end of the run); the writer
        #: has its own: one connection's transactions cannot interleave across threads.
        self.conn, note = connect(options.path)
        if note:
            warn(note)
        self.roots: dict[str, _Root] = {}
        self.counts = CacheCounts(path=options.path)
        self.deadline_ns = self._deadline()
        self.writer = _Writer(options.path)
        self.warned: set[str] = set()
        self.rebuild = False
        #: Set when registering a root failed: the rest of the run goes without the cache.
        self.disabled = False

    def identities(self) -> set[tuple[int, int]]:
        """(st_dev, st_ino) of the cache's files, for the walk to skip: a cache inside
        the tree it describes must not be hashed while it is written. The WAL and
        shared-memory files live as long as this session's connection."""
        found = set()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                st = os.stat(sidecar(self.options.path, suffix))
                found.add((st.st_dev, st.st_ino))
        return found

    def spec(self):
        """What the workers need (``cache_lookup.CacheSpec``)."""
        from parhash.cache_lookup import CacheSpec

        return CacheSpec(self.options.path, self.options.stamp_length, self.deadline_ns)

    def _deadline(self) -> int | None:
        seconds = self.options.budget.seconds
        return self.started_ns + int(seconds * 1e9) if seconds else None

    # -- roots -------------------------------------------------------------------------

    def task_key(self, root: str, named: bool) -> tuple[int, int, int, int] | None:
        """(root id, verification cutoff, length of the root's path prefix, this run's
        number for the root) for the tasks of a source below ``root``; None when the
        cache failed (the tasks run without it)."""
        key = "" if named else root
        entry = self.roots.get(key)
        if entry is None:
            if self.disabled:
                return None
            try:
                entry = self._register(root, named)
            except sqlite3.Error as exc:
                self.disabled = True  # once: a locked cache must not cost every task a wait
                self.counts.available = False
                self._failed(exc)
                return None
            self.roots[key] = entry
        return entry.root_id, entry.cutoff_ns, entry.base_len, entry.run

    def _register(self, root: str, named: bool) -> _Root:
        from parhash.walk import child_prefix

        path = NAMED_ROOT if named else os.fsencode(os.path.realpath(root))
        conn = self.conn
        with _transaction(conn):
            conn.execute(
                "INSERT INTO roots(path, algos, runs, last_run_ns) VALUES (?, ?, 1, ?)"
                " ON CONFLICT(path, algos)"
                " DO UPDATE SET runs = runs + 1, last_run_ns = excluded.last_run_ns",
                (path, self.algos, self.started_ns),
            )
            root_id, run, rate = conn.execute(
                "SELECT id, runs, rate FROM roots WHERE path = ? AND algos = ?", (path, self.algos)
            ).fetchone()
        cutoff = self._cutoff(root_id, run, rate)
        return _Root(root_id, run, cutoff, 0 if named else len(child_prefix(root)))

    def _cutoff(self, root_id: int, run: int, rate: float | None) -> int:
        """Hits verified at or before this time are read again this run: the stalest
        entries until the budget is met, and any older than ``--verify-max-age``.

        The budget counts only entries the root's previous run saw: an entry whose file
        is gone stays for ``TTL_RUNS`` runs with its old verification time, and counted it
        would be the stalest every run, spending the budget on files no run meets (ten
        deleted files verified nothing of a 20% budget on 50 entries)."""
        options = self.options
        cutoff = -1
        if options.max_age_s is not None:
            cutoff = self.started_ns - int(options.max_age_s * 1e9)
        budget = options.budget
        if budget.empty:
            return cutoff
        want_bytes, want_count = float(budget.nbytes), 0.0
        if budget.seconds:
            want_bytes = budget.seconds * (rate or DEFAULT_RATE)
        if budget.fraction:
            total_bytes, total_count = self.conn.execute(
                f"SELECT coalesce(sum(size), 0), count(*) FROM entries WHERE {_LIVE}",
                (root_id, run - 1),
            ).fetchone()
            want_bytes, want_count = budget.fraction * total_bytes, budget.fraction * total_count
        got_bytes = 0
        # Verified "in the future" (a clock that ran ahead) first: they are due anyway
        # (cache_lookup._FETCH_DUE) and count against the budget, not as a cutoff.
        now = self.started_ns
        rows = self.conn.execute(
            f"SELECT verified_ns, size FROM entries WHERE {_LIVE}"
            " ORDER BY verified_ns > ? DESC, verified_ns",
            (root_id, run - 1, now),
        )
        for got_count, (verified_ns, size) in enumerate(rows):
            if got_bytes >= want_bytes and got_count >= want_count:
                break
            got_bytes += size
            if verified_ns <= now:
                cutoff = max(cutoff, verified_ns)
        return cutoff

    # -- answers -----------------------------------------------------------------------

    def absorb(self, key: tuple[int, int, int, int], answer: tuple) -> None:
        """Count one task's cache answer (the task's ``task_key``), warn about what it
        found, and queue its writes."""
        rows, dirs, seen, trusted, verified, hashed, read_bytes, mismatched, error = answer
        counts = self.counts
        counts.trusted += trusted
        counts.verified += verified
        counts.hashed += hashed
        counts.read_bytes += read_bytes
        counts.mismatched += len(mismatched)
        *first, last = self.options.trusted_fields
        fields = f"{', '.join(first)} and {last}"
        for path in mismatched:
            self.warn(
                f"{path}: content differs from the cached digest, but {fields} did not "
                "change (bit rot, or a write that restored the timestamps)"
            )
        if error is not None:
            self._worker_error(error)
        if (rows or seen) and not self.writer.failed:
            root_id, _, _, run = key
            self.writer.put((root_id, run, rows, dirs, seen))

    def _worker_error(self, error: str) -> None:
        if "malformed" in error or "not a database" in error:
            self.rebuild = True
        if error not in self.warned:
            self.warned.add(error)
            self.warn(
                f"cache {self.options.path} unreadable in a worker ({error}): its files were read"
            )

    def _failed(self, exc: sqlite3.Error) -> None:
        if _corrupt(exc):
            self.rebuild = True
        message = f"cache {self.options.path}: {exc}; the rest of the run goes without it"
        if message not in self.warned:
            self.warned.add(message)
            self.warn(message)

    def close(self, complete: bool) -> None:
        """Flush; after a complete run, expire entries and record the read rate. An
        interrupted run waits for the writer at most ``ABANDON_S``: what it committed is
        whole (each batch is one transaction), the rest is lost with no harm."""
        error = self.writer.finish(None if complete else ABANDON_S)
        if error is not None:
            self._failed(error)
        try:
            if complete and error is None and not self.disabled:
                self.counts.stalest_ns = self._stalest()
                self._expire()
        except sqlite3.Error as exc:
            self._failed(exc)
        finally:
            self.conn.close()
        if self.rebuild:
            _remove(self.options.path)
            self.warn(f"cache {self.options.path} was corrupt: removed (the next run rebuilds it)")

    def _stalest(self) -> int | None:
        """The oldest full read behind a digest trusted this run: the oldest verification
        among the entries this run saw (those it read are fresh)."""
        if not self.counts.trusted:
            return None
        oldest = None
        for entry in self.roots.values():
            (value,) = self.conn.execute(
                f"SELECT min(verified_ns) FROM entries WHERE {OF_ROOT} AND seen_run = ?",
                (entry.root_id, entry.run),
            ).fetchone()
            if value is not None and (oldest is None or value < oldest):
                oldest = value
        return oldest

    def _expire(self) -> None:
        elapsed = (time.time_ns() - self.started_ns) / 1e9
        with _transaction(self.conn):
            for entry in self.roots.values():
                self.conn.execute(
                    f"DELETE FROM entries WHERE {OF_ROOT} AND seen_run <= ?",
                    (entry.root_id, entry.run - TTL_RUNS),
                )
                self.conn.execute(_EMPTY_DIRS + " AND root = ?", (entry.root_id,))
                if self.counts.read_bytes >= 64 << 20 and elapsed > 0.5:
                    self.conn.execute(
                        "UPDATE roots SET rate = ? WHERE id = ?",
                        (self.counts.read_bytes / elapsed, entry.root_id),
                    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection):
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_DONE = object()


class _Writer(threading.Thread):
    """Applies answers' writes in batched transactions, off the main thread. The first
    error stops writing (the run goes on; ``finish`` returns the error)."""

    def __init__(self, path: str) -> None:
        super().__init__(name="parhash-cache-writer", daemon=True)
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.queue: queue.Queue[object] = queue.Queue(maxsize=WRITE_QUEUE)
        self.error: sqlite3.Error | None = None
        self.started = False

    @property
    def failed(self) -> bool:
        return self.error is not None

    def put(self, item: tuple) -> None:
        if not self.started:
            self.started = True
            self.start()
        self.queue.put(item)

    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(
                self.path, timeout=WRITE_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA synchronous=NORMAL")  # per connection, like the timeout
        return self.conn

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            done = batch[-1] is _DONE
            items = [item for item in batch if item is not _DONE]
            if items and self.error is None:
                try:
                    self._apply(items)
                except sqlite3.Error as exc:
                    self.error = exc
            if done:
                return

    def _apply(self, items: list) -> None:
        conn = self._connection()
        with _transaction(conn):
            for root_id, run, rows, dirs, seen in items:
                if seen:
                    _mark_seen(conn, root_id, run, seen)
                if rows:
                    conn.executemany(_NEW_DIR, [(root_id, path) for path in dirs])
                    conn.executemany(_UPSERT, rows)

    def finish(self, timeout: float | None = None) -> sqlite3.Error | None:
        """Apply what is queued, stop, close the writer's connection; its first error.
        With a ``timeout`` (an interrupted run), a writer still busy after it is left
        behind (a daemon thread: it dies with the process, mid-transaction at worst,
        which SQLite rolls back)."""
        if self.started:
            try:
                self.queue.put(_DONE, timeout=timeout)
            except queue.Full:
                return self.error
            self.join(timeout)
            if self.is_alive():
                return self.error
        if self.conn is not None:
            self.conn.close()
        return self.error


#: Directories left without entries (after an expiry, a prune).
_EMPTY_DIRS = "DELETE FROM dirs WHERE NOT EXISTS (SELECT 1 FROM entries WHERE dir = dirs.id)"


def _mark_seen(conn: sqlite3.Connection, root_id: int, run: int, seen: Iterable) -> None:
    """Refresh ``seen_run`` of the entries each task met: per directory group one range
    (its lowest and highest name), minus the cached names in that range it did not meet
    (deleted files, or names of another task's group): one statement per group, in C.
    Many names to leave out (the last tasks of a run deal one directory's files out in
    turn) go through a temporary table, not thousands of bound parameters (SQLite builds
    before 3.32 allow 999)."""
    for directory, low, high, absent in seen:
        args = (run, root_id, directory, low, high, run)
        if not absent:
            conn.execute(_SEEN, args)
        elif len(absent) <= MAX_INLINE_NAMES:
            marks = ",".join("?" * len(absent))
            conn.execute(_SEEN + f" AND name NOT IN ({marks})", (*args, *absent))
        else:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS absent(name BLOB PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO absent VALUES (?)", ((n,) for n in absent))
            conn.execute(_SEEN + " AND name NOT IN (SELECT name FROM absent)", args)
            conn.execute("DELETE FROM absent")


# -- upkeep: parhash cache stats | prune | clear -------------------------------------------


@dataclass
class RootStats:
    """One keyspace of the cache: a root and the algorithms it was hashed with."""

    path: str
    runs: int
    last_run_ns: int | None
    entries: int
    nbytes: int
    oldest_verified_ns: int | None
    algos: str = ""


@dataclass
class CacheStats:
    path: str
    size_on_disk: int
    roots: list[RootStats] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(root.entries for root in self.roots)


def _existing(path: str) -> sqlite3.Connection | None:
    if not os.path.exists(path):
        return None
    conn, note = connect(path)
    if note:
        conn.close()  # the rebuilt, empty database: not what the caller asked about
        raise CacheUnavailable(note)
    return conn


def disk_size(path: str) -> int:
    """The database plus its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += os.path.getsize(sidecar(path, suffix))
    return total


def stats(path: str) -> CacheStats:
    """Roots, entries, size on disk and the oldest verification, per root."""
    result = CacheStats(path, disk_size(path))
    conn = _existing(path)
    if conn is None:
        return result
    try:
        rows = conn.execute(
            "SELECT r.path, r.runs, r.last_run_ns, count(e.dir), coalesce(sum(e.size), 0),"
            " min(e.verified_ns), r.algos FROM roots r LEFT JOIN dirs d ON d.root = r.id"
            " LEFT JOIN entries e ON e.dir = d.id GROUP BY r.id ORDER BY r.path, r.algos"
        ).fetchall()
    finally:
        conn.close()
    for raw, runs, last, entries, nbytes, oldest, algos in rows:
        name = os.fsdecode(raw) if raw != NAMED_ROOT else "(paths named one by one)"
        result.roots.append(RootStats(name, runs, last, entries, nbytes, oldest, algos))
    return result


def prune(path: str, ttl: int = TTL_RUNS) -> int:
    """Drop now the entries not seen for ``ttl`` runs of their root, and roots left empty;
    give the space back. Returns the number of entries dropped."""
    conn = _existing(path)
    if conn is None:
        return 0
    try:
        with _transaction(conn):
            before = conn.total_changes
            conn.execute(
                "DELETE FROM entries WHERE seen_run <= (SELECT r.runs FROM dirs d JOIN roots r"
                " ON r.id = d.root WHERE d.id = entries.dir) - ?",
                (ttl,),
            )
            dropped = conn.total_changes - before
            conn.execute(_EMPTY_DIRS)
            conn.execute("DELETE FROM roots WHERE id NOT IN (SELECT root FROM dirs)")
        _compact(conn)
    finally:
        conn.close()
    return dropped


def clear(path: str) -> int:
    """Empty the cache (the file stays, so another process holding it open is unharmed).
    Returns the number of entries dropped."""
    conn = _existing(path)
    if conn is None:
        return 0
    try:
        with _transaction(conn):
            dropped = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            conn.execute("DELETE FROM entries")
            conn.execute("DELETE FROM dirs")
            conn.execute("DELETE FROM roots")
        _compact(conn)
    finally:
        conn.close()
    return dropped


def _compact(conn: sqlite3.Connection) -> None:
    """Give freed pages back to the filesystem (VACUUM needs no other writer; skipped when
    another process is busy with the cache: the pages are reused instead)."""
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
