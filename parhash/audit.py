"""``parhash audit``: what changed in a tree since its manifest was taken.

The manifest and the fresh scan each go into a table of an on-disk SQLite database in a
temporary directory, keyed by the path relative to its root; the diff is a handful of
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
from os import fsdecode, fsencode

from parhash.manifest import ManifestEntry, ManifestError, relative_key
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
    """The two tables and the diff. Lives in a temporary directory removed on close.

    Rows are keyed by (root index, path relative to that root), so a tree audited at another
    place (ROOT) matches, and two roots of one manifest never collide. Tables are filled
    without an index and indexed once loaded: one sort instead of a B-tree insert per row.
    """

    def __init__(self) -> None:
        # Paths are stored as BLOBs of their exact bytes: names that are not valid UTF-8
        # cannot be SQLite TEXT, and BLOB order is byte order, the order --sort uses.
        self.directory = tempfile.mkdtemp(prefix="parhash-audit-")
        path = os.path.join(self.directory, "audit.db")
        self.db = sqlite3.connect(path, check_same_thread=False)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "temp_store=FILE",
            f"cache_size=-{CACHE_KIB}",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        for table in ("old", "new"):
            self.db.execute(
                f"CREATE TABLE {table} (ri INTEGER, key BLOB, path BLOB, size INTEGER, "
                "mtime INTEGER, hash TEXT, error TEXT)"
            )
        #: Roots in the manifest's order; a row's ``ri`` indexes this list.
        self.roots: list[str] = []
        self._root_index: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _ri(self, root: str) -> int:
        index = self._root_index.get(root)
        if index is None:
            index = self._root_index[root] = len(self.roots)
            self.roots.append(root)
        return index

    def register_roots(self, roots: Iterable[str]) -> None:
        """Roots a manifest header names, even those that held no file."""
        for root in roots:
            self._ri(root)

    def load_manifest(self, entries: Iterable[ManifestEntry], keep, source: str) -> int:
        """Insert the manifest's entries (``keep(key)`` drops excluded paths) and index them;
        a path listed twice makes the manifest untrustworthy. Returns the count."""
        rows = (
            (
                self._ri(e.root),
                fsencode(key),
                fsencode(e.path),
                e.size,
                e.mtime_ns,
                e.digest,
                e.error,
            )
            for e in entries
            if keep(key := relative_key(e.path, e.root))
        )
        count = self._insert("old", rows)
        try:
            self.db.execute("CREATE UNIQUE INDEX old_key ON old (ri, key)")
        except sqlite3.IntegrityError:
            (path,) = self.db.execute(
                "SELECT min(path) FROM old GROUP BY ri, key HAVING count(*) > 1 LIMIT 1"
            ).fetchone()
            raise ManifestError(f"{source}: {fsdecode(path)!r} is listed twice") from None
        return count

    def scan_roots(self, override: str | None) -> list[str]:
        """The roots to scan, in manifest order; ROOT replaces the one manifest root."""
        if override is None:
            return list(self.roots)
        self._root_index = {override: 0}
        return [override]

    def add_scanned(self, records: list[FileRecord]) -> None:
        """Insert one batch of scan records (called on the writer thread)."""
        index = self._root_index
        self._insert(
            "new",
            (
                (
                    index[r.root],
                    fsencode(relative_key(r.path, r.root)),
                    fsencode(r.path),
                    r.size,
                    r.mtime_ns,
                    r.digest,
                    r.error,
                )
                for r in records
            ),
        )

    def _insert(self, table: str, rows: Iterable[tuple]) -> int:
        sql = f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)"
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
        """Index the scan, pair moves (the one step that needs both sides complete)."""
        self.db.executescript(_DIFF_SQL)

    def counts(self) -> dict[str, int]:
        return {kind: self.db.execute(_COUNT[kind]).fetchone()[0] for kind in CLASSES}

    def moved_rows(
        self, below: tuple[int, str] | None = None
    ) -> Iterator[tuple[int, str, int, str]]:
        """(old ri, old key, new ri, new key) of every move in new-path order; with ``below``
        (ri, directory key), only moves into that directory (an indexed range)."""
        sql = "SELECT old_ri, old_key, new_ri, new_key FROM moved"
        args: tuple = ()
        if below is not None:
            sql += " WHERE new_ri = ? AND new_key >= ? AND new_key < ?"
            args = (below[0], *_prefix_range(below[1]))
        for old_ri, old_key, new_ri, new_key in self.db.execute(sql + " ORDER BY 3, 4", args):
            yield old_ri, fsdecode(old_key), new_ri, fsdecode(new_key)

    def movable_below(self, ri: int, directory: str) -> int:
        """How many manifest entries below ``directory`` (a key) of root ``ri`` could pair
        as moves (non-empty, with a digest: the ``gone`` rule of ``_DIFF_SQL``)."""
        sql = (
            "SELECT count(*) FROM old WHERE ri = ? AND key >= ? AND key < ? "
            "AND hash IS NOT NULL AND error IS NULL AND (size IS NULL OR size > 0)"
        )
        return self.db.execute(sql, (ri, *_prefix_range(directory))).fetchone()[0]

    def display(self, ri: int, key: str) -> str:
        """How a path is shown: relative to the root, or under it when there are several."""
        return key if len(self.roots) <= 1 else os.path.join(self.roots[ri], key)

    def events(self, kind: str) -> Iterator[AuditEvent]:
        """Stream one class's events in path order."""
        for row in self.db.execute(_SELECT[kind]):
            ri, key, mri, mkey, op, os_, om, oh, oe, np, ns, nm, nh, ne = row
            old = Side(fsdecode(op), os_, om, oh, oe) if op is not None else None
            new = Side(fsdecode(np), ns, nm, nh, ne) if np is not None else None
            moved_from = self.display(mri, fsdecode(mkey)) if mkey is not None else None
            yield AuditEvent(kind, self.display(ri, fsdecode(key)), old, new, moved_from)


def _prefix_range(directory: str) -> tuple[bytes, bytes]:
    """The BLOB range of the keys below ``directory``: ``dir/`` up to ``dir0`` ('0' is the
    byte after '/'), so that an index serves it."""
    low = fsencode(directory) + os.sep.encode()
    return low, low[:-1] + bytes([low[-1] + 1])


_DIFF_SQL = """
CREATE INDEX new_key ON new (ri, key);
CREATE TABLE gone AS
    SELECT old.ri, old.key, old.hash, old.size,
           ROW_NUMBER() OVER (PARTITION BY old.hash, old.size ORDER BY old.ri, old.key) AS rn
    FROM old LEFT JOIN new ON new.ri = old.ri AND new.key = old.key
    WHERE new.key IS NULL AND old.hash IS NOT NULL AND old.error IS NULL
      AND (old.size IS NULL OR old.size > 0);
CREATE TABLE came AS
    SELECT new.ri, new.key, new.hash, new.size,
           ROW_NUMBER() OVER (PARTITION BY new.hash, new.size ORDER BY new.ri, new.key) AS rn
    FROM new LEFT JOIN old ON old.ri = new.ri AND old.key = new.key
    WHERE old.key IS NULL AND new.hash IS NOT NULL AND new.error IS NULL AND new.size > 0;
CREATE TABLE moved AS
    SELECT came.ri AS new_ri, came.key AS new_key, gone.ri AS old_ri, gone.key AS old_key
    FROM gone JOIN came
      ON came.hash = gone.hash AND came.rn = gone.rn
     AND (gone.size IS NULL OR gone.size = came.size);
CREATE UNIQUE INDEX moved_old ON moved (old_ri, old_key);
CREATE UNIQUE INDEX moved_new ON moved (new_ri, new_key);
"""

_OLD = "old.path, old.size, old.mtime, old.hash, old.error"
_NEW = "new.path, new.size, new.mtime, new.hash, new.error"
_NULLS = "NULL, NULL, NULL, NULL, NULL"
_BOTH = "FROM old JOIN new ON new.ri = old.ri AND new.key = old.key"
_OLD_ONLY = "FROM old LEFT JOIN new ON new.ri = old.ri AND new.key = old.key"
_NEW_ONLY = "FROM new LEFT JOIN old ON old.ri = new.ri AND old.key = new.key"

_WHERE = {
    "unreadable": f"{_NEW_ONLY} WHERE new.error IS NOT NULL",
    "unchanged": f"{_BOTH} WHERE new.error IS NULL AND old.hash = new.hash",
    "corrupted": (
        f"{_BOTH} WHERE new.error IS NULL AND old.error IS NULL "
        "AND old.hash != new.hash AND old.size = new.size AND old.mtime = new.mtime"
    ),
    "modified": (
        f"{_BOTH} WHERE new.error IS NULL AND (old.error IS NOT NULL "
        "OR (old.hash != new.hash AND NOT (old.size IS new.size AND old.mtime IS new.mtime)))"
    ),
    "removed": (
        f"{_OLD_ONLY} WHERE new.key IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM moved WHERE old_ri = old.ri AND old_key = old.key)"
    ),
    "added": (
        f"{_NEW_ONLY} WHERE old.key IS NULL AND new.error IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM moved WHERE new_ri = new.ri AND new_key = new.key)"
    ),
    "moved": (
        "FROM moved JOIN old ON old.ri = moved.old_ri AND old.key = moved.old_key "
        "JOIN new ON new.ri = moved.new_ri AND new.key = moved.new_key"
    ),
}

_COLUMNS = {
    "removed": f"old.ri, old.key, NULL, NULL, {_OLD}, {_NULLS}",
    "added": f"new.ri, new.key, NULL, NULL, {_NULLS}, {_NEW}",
    "unreadable": f"new.ri, new.key, NULL, NULL, {_OLD}, {_NEW}",
    "moved": f"moved.new_ri, moved.new_key, moved.old_ri, moved.old_key, {_OLD}, {_NEW}",
}
_DEFAULT_COLUMNS = f"old.ri, old.key, NULL, NULL, {_OLD}, {_NEW}"

_SELECT = {
    k: f"SELECT {_COLUMNS.get(k, _DEFAULT_COLUMNS)} {_WHERE[k]} ORDER BY 1, 2" for k in CLASSES
}
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
