"""``parhash audit``: what changed in a tree since its manifest was taken.

The manifest and the fresh scan each go into a table of an on-disk SQLite database in a
temporary directory, keyed by the path relative to the root; the diff is a handful of
indexed joins. Measured against the alternatives: two Python dicts of a million entries
cost ~1 GB; a sorted merge needs both sides sorted, which a parallel scan is not. SQLite
keeps memory at its page cache (``CACHE_KIB``) however large the manifest.

Every path lands in exactly one class:

- ``unchanged``: same digest.
- ``modified``: digest differs and so does size or mtime (or the manifest had no size and
  mtime, as in a sums file, or had an error for it).
- ``corrupted``: digest differs but size and mtime are identical: bit rot or tampering
  that an mtime-based tool cannot see.
- ``moved``: a removed path and an added path with the same digest and size (non-empty
  files; pairs are matched in path order when several share a digest).
- ``removed`` / ``added``: only in the manifest / only in the tree.
- ``unreadable``: the scan produced an error record for it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from parhash.manifest import ManifestEntry, relative_key
from parhash.model import FileRecord, Summary

CLASSES = ("added", "removed", "modified", "corrupted", "moved", "unreadable", "unchanged")
#: Classes that make the exit status 1 unless --fail-on says otherwise.
DEFAULT_FAIL_ON = tuple(c for c in CLASSES if c != "unchanged")

#: SQLite page cache per connection: the audit's memory ceiling for the diff.
CACHE_KIB = 16 * 1024

#: Rows per executemany call while loading.
LOAD_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison: what the manifest or the scan says about a path."""

    path: str
    size: int | None
    mtime_ns: int | None
    digest: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One path's class, with both sides where they exist (``moved``: old path in ``old``)."""

    kind: str
    key: str
    old: Side | None
    new: Side | None
    moved_from: str | None = None  #: ``moved``: the old key


class AuditStore:
    """The two tables and the diff. Lives in a temporary directory removed on close."""

    def __init__(self, full_paths: bool = False) -> None:
        #: Several roots: keys are whole paths (relative keys of two roots could collide).
        self.full_paths = full_paths
        self.directory = tempfile.mkdtemp(prefix="parhash-audit-")
        self.db = sqlite3.connect(os.path.join(self.directory, "audit.db"), check_same_thread=False)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "temp_store=FILE",
            f"cache_size=-{CACHE_KIB}",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        for table in ("old", "new"):
            self.db.execute(
                f"CREATE TABLE {table} (key TEXT PRIMARY KEY, path TEXT, size INTEGER, "
                "mtime INTEGER, hash TEXT, error TEXT) WITHOUT ROWID"
            )

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def key(self, path: str, root: str) -> str:
        return os.path.normpath(path) if self.full_paths else relative_key(path, root)

    def load_manifest(self, entries: Iterable[ManifestEntry], keep) -> int:
        """Insert the manifest's entries; ``keep(key)`` drops excluded paths. Returns count."""
        rows = (
            (key, e.path, e.size, e.mtime_ns, e.digest, e.error)
            for e in entries
            if keep(key := self.key(e.path, e.root))
        )
        return self._insert("old", rows)

    def add_scanned(self, records: list[FileRecord]) -> None:
        """Insert one batch of scan records (called on the writer thread)."""
        self._insert(
            "new",
            (
                (self.key(r.path, r.root), r.path, r.size, r.mtime_ns, r.digest, r.error)
                for r in records
            ),
        )

    def _insert(self, table: str, rows: Iterable[tuple]) -> int:
        sql = f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?, ?)"
        count = 0
        chunk: list[tuple] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= LOAD_CHUNK:
                self.db.executemany(sql, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            self.db.executemany(sql, chunk)
            count += len(chunk)
        return count

    def diff(self) -> None:
        """Pair moves (the one step that needs both sides complete), then index by class."""
        self.db.executescript(_DIFF_SQL)

    def counts(self) -> dict[str, int]:
        return {kind: self.db.execute(_COUNT[kind]).fetchone()[0] for kind in CLASSES}

    def events(self, kind: str) -> Iterator[AuditEvent]:
        """Stream one class's events in path order."""
        for row in self.db.execute(_SELECT[kind]):
            key, moved_from, op, os_, om, oh, oe, np, ns, nm, nh, ne = row
            old = Side(op, os_, om, oh, oe) if op is not None else None
            new = Side(np, ns, nm, nh, ne) if np is not None else None
            yield AuditEvent(kind, key, old, new, moved_from)


_DIFF_SQL = """
CREATE TABLE gone AS
    SELECT old.key, old.hash, old.size,
           ROW_NUMBER() OVER (PARTITION BY old.hash, old.size ORDER BY old.key) AS rn
    FROM old LEFT JOIN new USING (key)
    WHERE new.key IS NULL AND old.hash IS NOT NULL AND old.error IS NULL
      AND (old.size IS NULL OR old.size > 0);
CREATE TABLE came AS
    SELECT new.key, new.hash, new.size,
           ROW_NUMBER() OVER (PARTITION BY new.hash, new.size ORDER BY new.key) AS rn
    FROM new LEFT JOIN old USING (key)
    WHERE old.key IS NULL AND new.hash IS NOT NULL AND new.error IS NULL AND new.size > 0;
CREATE TABLE moved AS
    SELECT came.key AS new_key, gone.key AS old_key
    FROM gone JOIN came
      ON came.hash = gone.hash AND came.rn = gone.rn
     AND (gone.size IS NULL OR gone.size = came.size);
CREATE UNIQUE INDEX moved_old ON moved (old_key);
CREATE UNIQUE INDEX moved_new ON moved (new_key);
"""

_OLD = "old.path, old.size, old.mtime, old.hash, old.error"
_NEW = "new.path, new.size, new.mtime, new.hash, new.error"
_NULLS = "NULL, NULL, NULL, NULL, NULL"

_WHERE = {
    "unreadable": "FROM new LEFT JOIN old USING (key) WHERE new.error IS NOT NULL",
    "unchanged": "FROM old JOIN new USING (key) WHERE new.error IS NULL AND old.hash = new.hash",
    "corrupted": (
        "FROM old JOIN new USING (key) WHERE new.error IS NULL AND old.error IS NULL "
        "AND old.hash != new.hash AND old.size = new.size AND old.mtime = new.mtime"
    ),
    "modified": (
        "FROM old JOIN new USING (key) WHERE new.error IS NULL AND (old.error IS NOT NULL "
        "OR (old.hash != new.hash AND NOT (old.size IS new.size AND old.mtime IS new.mtime)))"
    ),
    "removed": (
        "FROM old LEFT JOIN new USING (key) WHERE new.key IS NULL "
        "AND old.key NOT IN (SELECT old_key FROM moved)"
    ),
    "added": (
        "FROM new LEFT JOIN old USING (key) WHERE old.key IS NULL AND new.error IS NULL "
        "AND new.key NOT IN (SELECT new_key FROM moved)"
    ),
    "moved": ("FROM moved JOIN old ON old.key = moved.old_key JOIN new ON new.key = moved.new_key"),
}

_COLUMNS = {
    "unreadable": f"key, NULL, {_OLD}, {_NEW}",
    "unchanged": f"key, NULL, {_OLD}, {_NEW}",
    "corrupted": f"key, NULL, {_OLD}, {_NEW}",
    "modified": f"key, NULL, {_OLD}, {_NEW}",
    "removed": f"key, NULL, {_OLD}, {_NULLS}",
    "added": f"key, NULL, {_NULLS}, {_NEW}",
    "moved": f"moved.new_key, moved.old_key, {_OLD}, {_NEW}",
}

_ORDER = {"moved": "moved.new_key"}

_SELECT = {k: f"SELECT {_COLUMNS[k]} {_WHERE[k]} ORDER BY {_ORDER.get(k, 'key')}" for k in CLASSES}
_COUNT = {k: f"SELECT count(*) {_WHERE[k]}" for k in CLASSES}


class AuditSink:
    """The pipeline's consumer for an audit: scan records into the store (and, with
    --update, into the new manifest's reporter at the same time)."""

    def __init__(self, store: AuditStore, also=None) -> None:
        self.store = store
        self.also = also

    def write(self, records: list[FileRecord]) -> None:
        self.store.add_scanned(records)
        if self.also is not None:
            self.also.write(records)

    def close(self, summary: Summary) -> None:
        if self.also is not None:
            self.also.close(summary)
