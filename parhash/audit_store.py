"""``parhash audit``: what changed in a tree since its manifest was taken.

The manifest and the fresh scan each go into a table of SQLite's private temporary database
(on disk in TMPDIR, nameless), keyed by the path relative to its root; the diff is a handful of
indexed joins. Measured against the alternatives: two Python dicts of a million entries
cost ~1 GB; a sorted merge needs both sides sorted, which a parallel scan is not. SQLite
keeps memory at its page cache (``CACHE_KIB``) however large the manifest.

Every path lands in exactly one class:

- ``unchanged``: same digest.
- ``modified``: digest differs and so does size or mtime (or the manifest had no size and
  mtime, as in a sums file, or had an error for it).
- ``corrupted``: digest differs but size and mtime are identical, and the new content is
  no other entry's content moved here (below): bit rot or tampering that an mtime-based
  tool cannot see.
- ``moved``: a path whose content (digest and size; non-empty files) is the old content of
  a different manifest path that is gone or holds other content now. The new path may be
  in the tree only (an added path) or in both with other content before (it was
  replaced: ``mv new current`` makes ``current`` moved from ``new``, not corrupted); the
  old content of a replaced path found elsewhere is a move too (``mv current previous``
  first: ``previous`` moved from ``current``). Pairs are matched in path order when
  several share a digest. A replaced path whose new content is in no manifest entry is
  ``modified`` or ``corrupted`` as above, even if its old content moved away. Inside a directory
  move (every movable file below ``a/`` now below ``b/`` under the same relative name) an
  empty file ``a/x`` with ``b/x`` empty too is paired as a move of that directory. A
  directory move needs ``DIRECTORY_SHARE`` (90 %) of the movable files below ``a/`` to
  have moved to ``b/`` together; of the rest, ``a/x`` edited into ``b/x`` is ``modified``
  (from ``a/x``), and every one is listed as an exception of the directory move.
- ``removed`` / ``added``: only in the manifest / only in the tree.
- ``unreadable``: the scan produced an error record for it.

Entries this run cannot judge stay out of every class and go to a third table, ``kept``:
those outside this run's selection (``--exclude``, ``--max-depth``, size filters, ...) and
those below a directory the scan could not list. ``--update`` writes them back unchanged,
with the previous digest of every file unreadable now: an update never thins the baseline.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import fsdecode, fsencode

from parhash.manifest import ManifestEntry, ManifestError, PlainRows, plain_keys, relative_key
from parhash.model import FileRecord, Summary
from parhash.walk import child_prefix

CLASSES = ("added", "removed", "modified", "corrupted", "moved", "unreadable", "unchanged")
#: Classes that make the exit status 1 unless --fail-on says otherwise.
DEFAULT_FAIL_ON = tuple(c for c in CLASSES if c != "unchanged")

#: SQLite page cache per connection: the audit's memory ceiling for the diff.
CACHE_KIB = 16 * 1024

#: Rows per executemany call while loading.
LOAD_CHUNK = 5000

#: Fewest files a directory move has: one file that moved is reported as what it is.
MIN_DIRECTORY_FILES = 2

#: Share of a directory's movable files that must move together under the same relative
#: names for the whole to be one directory move (the rest listed as its exceptions): high
#: enough that two directories merely sharing many files are not called a move, low
#: enough that editing a file or two while moving a directory keeps the grouping.
DIRECTORY_SHARE = 0.9

#: A directory pair (old ri, old directory key, new ri, new directory key).
DirectoryPair = tuple[int, str, int, str]

#: ``admit(ri, key, size, error)``: does this run's selection reach a manifest entry?
Admit = Callable[[int, str, "int | None", "str | None"], bool]

#: One scanned file as ``AuditStore.add_scanned_rows`` takes it: (path, size, mtime_ns,
#: digest, error, extra digests); the columns a worker can send without a FileRecord.
ScannedRow = tuple[str, "int | None", "int | None", "str | None", "str | None", tuple]

#: The index of ``old`` and of ``new``: by key, with every column the diff and the counts
#: compare, so that joining the two sides reads both indexes in key order and never the
#: rows (which are in scan order: a random read each).
_COVERING = "ri, key, hash, size, mtime, error"

#: The columns after the relative name in ``_insert_rows``'s rows.
_PLAIN_COLUMNS = "size, mtime, hash"
_SCANNED_COLUMNS = "size, mtime, hash, error"


_SCANNED_ROW: Callable[[FileRecord], ScannedRow] = operator.attrgetter(
    "path", "size", "mtime_ns", "digest", "error", "extra"
)
_ROOT_OF = operator.attrgetter("root")


def _joined(prefix: str) -> str:
    """SQL for the BLOB ``prefix`` + the relative name ``?1`` (a literal: no parameter)."""
    return f"CAST(X'{fsencode(prefix).hex()}' || ?1 AS BLOB)"


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
    moved_from: str | None = None  #: ``moved``, an edited ``modified``: the old key


class AuditStore:
    """The two tables and the diff, in a temporary database that vanishes on close or death.

    Rows are keyed by (root index, path relative to that root), so a tree audited at another
    place (ROOT) matches, and two roots of one manifest never collide. Tables are filled
    without an index and indexed once loaded: one sort instead of a B-tree insert per row.
    """

    def __init__(self) -> None:
        # Paths are stored as BLOBs of their exact bytes: names that are not valid UTF-8
        # cannot be SQLite TEXT, and BLOB order is byte order, the order --sort uses.
        # "": SQLite's private temporary database, a file in TMPDIR (SQLITE_TMPDIR first)
        # created only when the page cache spills and unlinked as soon as it is opened, so
        # a run killed by SIGKILL leaves nothing with a name (https://sqlite.org/inmemorydb.html,
        # "Temporary Databases"); memory stays at the page cache (CACHE_KIB).
        self.db = sqlite3.connect("", check_same_thread=False)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "temp_store=FILE",
            f"cache_size=-{CACHE_KIB}",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        for table in ("old", "new", "kept"):
            self.db.execute(
                f"CREATE TABLE {table} (ri INTEGER, key BLOB, path BLOB, size INTEGER, "
                "mtime INTEGER, hash TEXT, error TEXT, extra TEXT)"
            )
        #: Roots in the manifest's order; a row's ``ri`` indexes this list.
        self.roots: list[str] = []
        self._root_index: dict[str, int] = {}
        #: Where each root is scanned (``scan_roots``): as recorded, absolute, or ROOT;
        #: None for a root this run leaves alone (ROOT named another one).
        self.scanned: list[str | None] = []
        #: Per root, the subtree ROOT covers ("": all of it): the keys' common prefix.
        self.prefixes: list[str] = []
        #: ``reach(ri, key)``: whether the recorded selection takes a path the walk of a
        #: subtree found (its globs and depth count from the recorded root); None: all.
        self.reach: Callable[[int, str], bool] | None = None
        #: Digests after the first (``-a sha256,blake3``), kept in the ``extra`` column.
        self.extra_algos: tuple[str, ...] = ()
        #: The manifest's header says its paths are relative (``--relative``): a path is
        #: its key as it stands, even one that starts with the root's name.
        self.relative_paths = False
        #: Directory moves ``diff`` recognised (their empty files paired as moves too).
        self.directories: set[DirectoryPair] = set()
        #: What ``counts`` found (None: not counted yet).
        self._counts: dict[str, int] | None = None

    def close(self) -> None:
        self.db.close()

    def ri_of(self, root: str) -> int:
        """The index of a manifest root (a root met first in a record is added)."""
        index = self._root_index.get(root)
        if index is None:
            index = self._root_index[root] = len(self.roots)
            self.roots.append(root)
        return index

    def register_roots(self, roots: Iterable[str]) -> None:
        """Roots a manifest header names, even those that held no file."""
        for root in roots:
            self.ri_of(root)

    def load_manifest(
        self,
        entries: Iterable[ManifestEntry | PlainRows],
        admit: Admit | None,
        source,
    ) -> int:
        """Insert the manifest's entries and index them: ``admit(ri, key, size, error)``
        says whether this run's selection reaches the path (None: it reaches them all);
        the others go to ``kept``, untouched. A path listed twice makes the manifest
        untrustworthy. Returns the count compared."""
        rows: dict[str, list[tuple]] = {"old": [], "kept": []}
        count = 0
        for e in entries:
            if type(e) is PlainRows:
                count += self._load_plain(e, admit)
                continue
            key = os.path.normpath(e.path) if self.relative_paths else relative_key(e.path, e.root)
            ri = self.ri_of(e.root)
            table = "old" if admit is None or admit(ri, key, e.size, e.error) else "kept"
            extra = None
            if self.extra_algos and e.extra:
                extra = json.dumps([e.extra.get(a) for a in self.extra_algos])
            row = (ri, fsencode(key), fsencode(e.path), e.size, e.mtime_ns, e.digest, e.error)
            rows[table].append((*row, extra))
            if len(rows[table]) >= LOAD_CHUNK:
                count += self._flush(table, rows[table])
        count += self._flush("old", rows["old"])
        self._flush("kept", rows["kept"])
        self.db.execute(f"CREATE INDEX old_key ON old ({_COVERING})")
        self.db.execute("CREATE INDEX kept_key ON kept (ri, key)")
        for table in ("old", "kept"):
            twice = self.db.execute(
                f"SELECT min(path) FROM {table} GROUP BY ri, key HAVING count(*) > 1 LIMIT 1"
            ).fetchone()
            if twice is not None:
                raise ManifestError(f"{source}: {fsdecode(twice[0])!r} is listed twice")
        return count

    def _flush(self, table: str, rows: list[tuple]) -> int:
        count = self._insert(table, rows)
        rows.clear()
        return count

    def _load_plain(self, plain: PlainRows, admit: Admit | None) -> int:
        """Insert a run of plain records (``PlainRows``), each row's path made by SQLite
        from the key (``_insert_rows``); with a selection, each row is admitted or kept."""
        ri = self.ri_of(plain.root)
        old = plain.rows
        if admit is not None:
            reached = [admit(ri, row[0], row[1], None) for row in old]
            kept = [row for row, yes in zip(old, reached, strict=True) if not yes]
            if kept:
                old = [row for row, yes in zip(old, reached, strict=True) if yes]
                self._insert_rows("kept", ri, "", plain.prefix, kept, _PLAIN_COLUMNS)
        return self._insert_rows("old", ri, "", plain.prefix, old, _PLAIN_COLUMNS)

    def _insert_rows(
        self, table: str, ri: int, key_prefix: str, path_prefix: str, rows, columns: str
    ) -> int:
        """Insert rows that start with the text ``rel`` of their key: key
        ``key_prefix + rel``, path ``path_prefix + rel``, both made by SQLite (one bound
        parameter fewer per row, and no Python string per path), then the ``columns``.
        ``rel`` must be text SQLite can hold (ASCII: the callers make sure)."""
        values = ", ".join(f"?{i}" for i in range(2, 2 + columns.count(",") + 1))
        sql = (
            f"INSERT INTO {table} (ri, key, path, {columns}) VALUES ({int(ri)}, "
            f"{_joined(key_prefix)}, {_joined(path_prefix)}, {values})"
        )
        return self.db.executemany(sql, rows).rowcount

    def scan_roots(self, scanned: list[str | None], prefixes: list[str]) -> list[str]:
        """Scan the manifest's roots at ``scanned`` (same order: a root as recorded, its
        recorded absolute path, ROOT, or None: not this time), each one's keys below its
        prefix. Returns the paths to scan."""
        self.scanned = list(scanned)
        self.prefixes = list(prefixes)
        self._root_index = {root: i for i, root in enumerate(scanned) if root is not None}
        return [root for root in scanned if root is not None]

    def key_of(self, ri: int, path: str, root: str) -> str:
        """The key of a scanned path: relative to the manifest root it stands for."""
        key = relative_key(path, root)
        prefix = self.prefixes[ri]
        return os.path.join(prefix, key) if prefix else key

    def add_scanned(self, records: list[FileRecord]) -> None:
        """Insert one batch of scan records (called on the writer thread)."""
        roots = set(map(_ROOT_OF, records))
        if len(roots) == 1:  # a batch is of one root: no Python loop per record
            self.add_scanned_rows(roots.pop(), list(map(_SCANNED_ROW, records)))
            return
        for root in roots:
            self.add_scanned_rows(root, [_SCANNED_ROW(r) for r in records if r.root == root])

    def add_scanned_rows(self, root: str, rows: Sequence[ScannedRow]) -> None:
        """Insert scanned files of one root: (path, size, mtime_ns, digest, error, extra)
        each, ``extra`` the digests after the first (or empty). The common batch (every
        path ASCII, below the root, already normal; no extra digests; no subtree
        selection) is a few C-level passes over its columns and one ``executemany``,
        SQLite making each key and path from the relative name; any other takes
        ``_scanned_slow``."""
        if not rows:
            return
        ri = self._root_index[root]
        child = child_prefix(root)
        paths, sizes, mtimes, digests, errors, extras = zip(*rows, strict=True)
        if self.reach is None and not any(extras):
            keys = plain_keys(paths, child)
            if keys is not None:
                prefix = self.prefixes[ri]
                key_prefix = prefix + os.sep if prefix else ""
                columns = zip(keys, sizes, mtimes, digests, errors, strict=True)
                self._insert_rows("new", ri, key_prefix, child, columns, _SCANNED_COLUMNS)
                return
        self._scanned_slow(ri, root, rows)

    def _scanned_slow(self, ri: int, root: str, rows: Sequence[ScannedRow]) -> None:
        """``add_scanned_rows`` one row at a time: any name, a file root, a subtree."""
        reach = self.reach
        out = []
        for path, size, mtime_ns, digest, error, extra in rows:
            key = self.key_of(ri, path, root)
            if reach is None or reach(ri, key):
                extra_json = json.dumps(list(extra)) if extra else None
                row = (ri, fsencode(key), fsencode(path), size, mtime_ns, digest, error)
                out.append((*row, extra_json))
        self._insert("new", out)

    def _insert(self, table: str, rows: Iterable[tuple]) -> int:
        sql = f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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

    def diff(self, size_range: tuple[int | None, int | None] = (None, None)) -> None:
        """Index the scan, set aside what it could not judge, pair moves (the one step that
        needs both sides complete)."""
        self.db.execute(f"CREATE INDEX new_key ON new ({_COVERING})")
        # A kept entry the scan reached after all (a file that grew into a size range, a
        # changed .gitignore) is compared like any other.
        reached = "WHERE EXISTS (SELECT 1 FROM new WHERE new.ri = kept.ri AND new.key = kept.key)"
        self.db.execute(f"INSERT INTO old SELECT * FROM kept {reached}")
        self.db.execute(f"DELETE FROM kept {reached}")
        self._keep_below_unlistable()
        if size_range != (None, None):
            self._keep_out_of_range(*size_range)
        self.db.executescript(_DIFF_SQL)
        self.directories = self._directory_moves()

    def _directory_counts(self) -> Counter[DirectoryPair]:
        """How many moves each candidate directory pair groups: one pass over the moves,
        one counter per pair (bounded by directories, not files)."""
        counts: Counter[DirectoryPair] = Counter()
        for old_ri, old_key, new_ri, new_key in self.moved_rows():
            for old, new in directory_levels(old_key, new_key):
                counts[old_ri, old, new_ri, new] += 1
        return counts

    def _directory_moves(self) -> set[DirectoryPair]:
        """The directory pairs every movable file below the old one moved into, each
        under the same relative name (a partial move stays file moves), with their empty
        files paired (``_adopt``) before the count must reach ``MIN_DIRECTORY_FILES``:
        ``src/{main.py, __init__.py}`` is a directory of 2 files."""
        whole = {
            pair
            for pair, n in self._directory_counts().items()
            if n >= DIRECTORY_SHARE * self.movable_below(pair[0], pair[1])
        }
        for pair in whole:
            self._adopt(pair, "moved")
        counts = self._directory_counts()
        found = {pair for pair in whole if counts[pair] >= MIN_DIRECTORY_FILES}
        for pair in found:
            self._adopt(pair, "edited")
        return found

    def _adopt(self, pair: DirectoryPair, table: str) -> None:
        """Pair the files below a directory move with the files under the same relative
        names below its new directory that no other pairing took: into ``moved`` those
        with the same digest and size (empty files: all share one digest, so pairing them
        by digest would be guesswork), into ``edited`` those with other content (a file
        changed while its directory moved is ``modified``, from its old path)."""
        self.db.execute(_ADOPT[table], self._below_args(pair))

    def _below_args(self, pair: DirectoryPair) -> dict[str, object]:
        """The parameters of ``_OLD_BELOW`` and ``_NEW_KEY`` for a directory pair."""
        old_ri, old, new_ri, new = pair
        low, high = _prefix_range(old)
        prefix = fsencode(new) + os.sep.encode()
        return dict(
            old_ri=old_ri, low=low, high=high, new_ri=new_ri, prefix=prefix, cut=len(low) + 1
        )

    def strays(self, pair: DirectoryPair) -> Iterator[str]:
        """The manifest's files below a directory move's old directory that did not move
        with it (edited, removed, moved elsewhere, unreadable): its exceptions."""
        for ri, key in self.db.execute(_STRAYS_SQL, self._below_args(pair)):
            yield self.display(ri, fsdecode(key))

    def _keep(self, ri: int, lo: bytes, hi: bytes) -> None:
        """Move the old rows of root ``ri`` with ``lo <= key < hi`` to ``kept``."""
        where = "WHERE ri = ? AND key >= ? AND key < ?"
        self.db.execute(f"INSERT INTO kept SELECT * FROM old {where}", (ri, lo, hi))
        self.db.execute(f"DELETE FROM old {where}", (ri, lo, hi))

    def _keep_below_unlistable(self) -> None:
        """Files below a directory the scan could not list are not removed: unknown now."""
        rows = self.db.execute(
            "SELECT ri, key, path FROM new WHERE error LIKE 'cannot list directory%'"
        ).fetchall()
        for ri, key, path in rows:
            if fsdecode(path) == self.scanned[ri]:  # the root itself: all it covers
                prefix = fsencode(self.prefixes[ri])
                if prefix:
                    self._keep(ri, prefix + b"/", prefix + b"0")
                else:
                    self._keep(ri, b"", b"\xff" * 8)
            else:
                self._keep(ri, key + b"/", key + b"0")  # "0" follows "/" in byte order

    def _keep_out_of_range(self, low: int | None, high: int | None) -> None:
        """A file the manifest lists that a size filter now skips (it grew or shrank out of
        range) is outside the selection, not removed: one stat per such candidate."""
        rows = self.db.execute(
            "SELECT old.ri, old.key FROM old LEFT JOIN new ON new.ri = old.ri "
            "AND new.key = old.key WHERE new.key IS NULL"
        ).fetchall()
        for ri, key in rows:
            try:
                st = os.stat(self.on_disk(ri, fsdecode(key)))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and out_of_range(st.st_size, low, high):
                self._keep(ri, key, key + b"\0")

    def on_disk(self, ri: int, key: str) -> str:
        """Where the file with this key is now (a file root is its own path)."""
        root = self.scanned[ri]
        assert root is not None, "only scanned roots have keys to look up"
        if os.path.isfile(root):
            return root
        prefix = self.prefixes[ri]
        return os.path.join(root, key[len(prefix) + 1 :] if prefix else key)

    def kept_counts(self) -> tuple[int, int]:
        """(entries kept outside this run's reach, previous digests kept for files that
        are unreadable now): what ``--update`` carries forward without re-establishing."""
        (outside,) = self.db.execute("SELECT count(*) FROM kept").fetchone()
        (unreadable,) = self.db.execute(f"SELECT count(*) {_UNREADABLE_KEPT}").fetchone()
        return outside, unreadable

    def merged(self, out_roots: list[str], relative: bool) -> Iterator[FileRecord]:
        """The updated manifest's records in path order: the fresh record of every path
        scanned OK (or unreadable and never hashed), the previous one of a path unreadable
        now, every kept entry; removed paths dropped. Paths take the manifest's style:
        under ``out_roots`` (as recorded, or ROOT), or relative to them."""
        for row in self.db.execute(_MERGE_SQL):
            source, ri, path, size, mtime, digest, error, extra, key = row
            text = fsdecode(path)
            if source == "new":
                text = self._new_path(ri, text, fsdecode(key), out_roots[ri], relative)
            elif not relative:
                text = restyle(text, self.roots[ri], out_roots[ri])
            extras = tuple(json.loads(extra)) if extra else (None,) * len(self.extra_algos)
            yield FileRecord(text, out_roots[ri], size, mtime, digest, error, None, extras)

    def counts(self) -> dict[str, int]:
        """How many paths each class holds: one pass over the scan (``_COUNTS_SQL``: five
        classes at once, the same conditions as ``_WHERE``) and one each for ``removed``
        and ``moved``, instead of a join per class (0.36 s down to 0.12 s for 100,000
        unchanged files). Remembered, so that ``events`` of an empty class reads nothing."""
        moves = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM moved) OR EXISTS (SELECT 1 FROM edited)"
        ).fetchone()[0]
        row = self.db.execute(_COUNTS_SQL[bool(moves)]).fetchone()
        found = dict(zip(_COUNTED_TOGETHER, row, strict=True))
        for kind in ("removed", "moved"):
            found[kind] = self.db.execute(_COUNT[kind]).fetchone()[0]
        self._counts = {kind: found[kind] or 0 for kind in CLASSES}
        return dict(self._counts)

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
        """Stream one class's events in path order (none without a query when ``counts``
        found the class empty: an unchanged tree costs no pass per class)."""
        if self._counts is not None and not self._counts[kind]:
            return
        for row in self.db.execute(_SELECT[kind]):
            ri, key, mri, mkey, op, os_, om, oh, oe, np, ns, nm, nh, ne = row
            old = Side(fsdecode(op), os_, om, oh, oe) if op is not None else None
            new = Side(fsdecode(np), ns, nm, nh, ne) if np is not None else None
            moved_from = self.display(mri, fsdecode(mkey)) if mkey is not None else None
            yield AuditEvent(kind, self.display(ri, fsdecode(key)), old, new, moved_from)

    def _new_path(self, ri: int, path: str, key: str, out_root: str, relative: bool) -> str:
        """A scanned path in the manifest's style: its key (relative manifests), the root
        itself (a file named as the root), or the key below the manifest's root."""
        if relative:
            return key
        if path == self.scanned[ri] and not self.prefixes[ri]:
            return out_root
        return child_prefix(out_root) + key


def directory_levels(old: str, new: str) -> Iterator[tuple[str, str]]:
    """The (old directory, new directory) pairs a move could belong to, deepest first:
    ``a/b/f -> x/b/f`` gives (a/b, x/b) then (a, x); the name below must be the same."""
    old_parts, new_parts = old.split(os.sep), new.split(os.sep)
    for level in range(1, min(len(old_parts), len(new_parts))):
        if old_parts[-level] != new_parts[-level]:
            return
        yield os.sep.join(old_parts[:-level]), os.sep.join(new_parts[:-level])


def out_of_range(size: int | None, low: int | None, high: int | None) -> bool:
    """Whether --min-size/--max-size skip a file of ``size`` bytes (unknown: they don't)."""
    if size is None:
        return False
    return (low is not None and size < low) or (high is not None and size > high)


def restyle(path: str, root: str, new_root: str) -> str:
    """``path`` (reached from ``root``) as reached from ``new_root`` instead."""
    if root == new_root:
        return path
    if path == root:
        return new_root
    prefix = child_prefix(root)
    if path.startswith(prefix):
        return child_prefix(new_root) + path[len(prefix) :]
    return path


_UNREADABLE_KEPT = (
    "FROM old JOIN new ON new.ri = old.ri AND new.key = old.key "
    "WHERE new.error IS NOT NULL AND old.hash IS NOT NULL"
)

_MERGE_SQL = f"""
SELECT 'new', ri, path, size, mtime, hash, error, extra, key FROM new
 WHERE error IS NULL OR NOT EXISTS
       (SELECT 1 FROM old WHERE old.ri = new.ri AND old.key = new.key AND old.hash IS NOT NULL)
UNION ALL
SELECT 'old', old.ri, old.path, old.size, old.mtime, old.hash, old.error, old.extra, old.key
 {_UNREADABLE_KEPT}
UNION ALL
SELECT 'old', ri, path, size, mtime, hash, error, extra, key FROM kept
 WHERE NOT EXISTS (SELECT 1 FROM new WHERE new.ri = kept.ri AND new.key = kept.key)
ORDER BY 2, 9
"""


def _prefix_range(directory: str) -> tuple[bytes, bytes]:
    """The BLOB range of the keys below ``directory``: ``dir/`` up to ``dir0`` ('0' is the
    byte after '/'), so that an index serves it."""
    low = fsencode(directory) + os.sep.encode()
    return low, low[:-1] + bytes([low[-1] + 1])


# ``gone``: old contents no longer at their path (removed, or the path now holds other
# content); ``came``: new contents not at their path before (added, or replacing other
# content). A pair is a move; a path in both is moved here, not corrupted or modified.
_DIFF_SQL = """
CREATE TABLE gone AS
    SELECT old.ri, old.key, old.hash, old.size,
           ROW_NUMBER() OVER (PARTITION BY old.hash, old.size ORDER BY old.ri, old.key) AS rn
    FROM old LEFT JOIN new ON new.ri = old.ri AND new.key = old.key
    WHERE (new.key IS NULL OR (new.error IS NULL AND new.hash != old.hash))
      AND old.hash IS NOT NULL AND old.error IS NULL AND (old.size IS NULL OR old.size > 0);
CREATE TABLE came AS
    SELECT new.ri, new.key, new.hash, new.size,
           ROW_NUMBER() OVER (PARTITION BY new.hash, new.size ORDER BY new.ri, new.key) AS rn
    FROM new LEFT JOIN old ON old.ri = new.ri AND old.key = new.key
    WHERE (old.key IS NULL OR (old.error IS NULL AND old.hash != new.hash))
      AND new.hash IS NOT NULL AND new.error IS NULL AND new.size > 0;
CREATE TABLE moved AS
    SELECT came.ri AS new_ri, came.key AS new_key, gone.ri AS old_ri, gone.key AS old_key
    FROM gone JOIN came
      ON came.hash = gone.hash AND came.rn = gone.rn
     AND (gone.size IS NULL OR gone.size = came.size);
CREATE UNIQUE INDEX moved_old ON moved (old_ri, old_key);
CREATE UNIQUE INDEX moved_new ON moved (new_ri, new_key);
CREATE TABLE edited (new_ri INTEGER, new_key BLOB, old_ri INTEGER, old_key BLOB);
CREATE UNIQUE INDEX edited_old ON edited (old_ri, old_key);
CREATE UNIQUE INDEX edited_new ON edited (new_ri, new_key);
"""

# The new key is the new directory's prefix and the old key's rest: BLOB bytes joined with
# ``||`` (which yields TEXT of the same bytes) and cast back, so non-UTF-8 names still match.
_NEW_KEY = "CAST(:prefix || substr(old.key, :cut) AS BLOB)"
_SAME_NAME = f"new.ri = :new_ri AND new.key = {_NEW_KEY}"
_OLD_BELOW = "old.ri = :old_ri AND old.key >= :low AND old.key < :high"

_ADOPT_SQL = """
INSERT INTO {table}
SELECT new.ri, new.key, old.ri, old.key
FROM old JOIN new ON {same_name}
WHERE {old_below} AND {content} AND old.error IS NULL AND new.error IS NULL
  AND NOT EXISTS (SELECT 1 FROM new AS here WHERE here.ri = old.ri AND here.key = old.key)
  AND NOT EXISTS (SELECT 1 FROM old AS was WHERE was.ri = new.ri AND was.key = new.key)
  AND NOT EXISTS (SELECT 1 FROM moved WHERE old_ri = old.ri AND old_key = old.key)
  AND NOT EXISTS (SELECT 1 FROM moved WHERE new_ri = new.ri AND new_key = new.key)
  AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.old_ri = old.ri AND t.old_key = old.key)
"""
_ADOPT = {
    "moved": _ADOPT_SQL.format(
        table="moved",
        same_name=_SAME_NAME,
        old_below=_OLD_BELOW,
        content="old.hash = new.hash AND (old.size IS NULL OR old.size = new.size)",
    ),
    "edited": _ADOPT_SQL.format(
        table="edited", same_name=_SAME_NAME, old_below=_OLD_BELOW, content="old.hash != new.hash"
    ),
}
_STRAYS_SQL = f"""
SELECT old.ri, old.key FROM old WHERE {_OLD_BELOW} AND NOT EXISTS (
    SELECT 1 FROM moved WHERE old_ri = old.ri AND old_key = old.key
       AND new_ri = :new_ri AND new_key = {_NEW_KEY})
ORDER BY 1, 2
"""

_OLD = "old.path, old.size, old.mtime, old.hash, old.error"
_NEW = "new.path, new.size, new.mtime, new.hash, new.error"
_NULLS = "NULL, NULL, NULL, NULL, NULL"
_BOTH = "FROM old JOIN new ON new.ri = old.ri AND new.key = old.key"
_OLD_ONLY = "FROM old LEFT JOIN new ON new.ri = old.ri AND new.key = old.key"
_NEW_ONLY = "FROM new LEFT JOIN old ON old.ri = new.ri AND old.key = new.key"

_NOT_MOVED_HERE = "NOT EXISTS (SELECT 1 FROM moved WHERE new_ri = new.ri AND new_key = new.key)"

_WHERE = {
    "unreadable": f"{_NEW_ONLY} WHERE new.error IS NOT NULL",
    "unchanged": f"{_BOTH} WHERE new.error IS NULL AND old.hash = new.hash",
    "corrupted": (
        f"{_BOTH} WHERE new.error IS NULL AND old.error IS NULL "
        "AND old.hash != new.hash AND old.size = new.size AND old.mtime = new.mtime "
        f"AND {_NOT_MOVED_HERE}"
    ),
    "modified": (
        "FROM new LEFT JOIN edited ON edited.new_ri = new.ri AND edited.new_key = new.key "
        "JOIN old ON old.ri = coalesce(edited.old_ri, new.ri) "
        "AND old.key = coalesce(edited.old_key, new.key) "
        "WHERE new.error IS NULL AND (edited.new_key IS NOT NULL OR old.error IS NOT NULL "
        "OR (old.hash != new.hash AND NOT (old.size IS new.size AND old.mtime IS new.mtime))) "
        f"AND {_NOT_MOVED_HERE}"
    ),
    "removed": (
        f"{_OLD_ONLY} WHERE new.key IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM moved WHERE old_ri = old.ri AND old_key = old.key) AND NOT EXISTS "
        "(SELECT 1 FROM edited WHERE old_ri = old.ri AND old_key = old.key)"
    ),
    "added": (
        f"{_NEW_ONLY} WHERE old.key IS NULL AND new.error IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM moved WHERE new_ri = new.ri AND new_key = new.key) AND NOT EXISTS "
        "(SELECT 1 FROM edited WHERE new_ri = new.ri AND new_key = new.key)"
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
    "modified": f"new.ri, new.key, edited.old_ri, edited.old_key, {_OLD}, {_NEW}",
}
_DEFAULT_COLUMNS = f"old.ri, old.key, NULL, NULL, {_OLD}, {_NEW}"

_SELECT = {
    k: f"SELECT {_COLUMNS.get(k, _DEFAULT_COLUMNS)} {_WHERE[k]} ORDER BY 1, 2" for k in CLASSES
}
_COUNT = {k: f"SELECT count(*) {_WHERE[k]}" for k in CLASSES}

#: The classes ``_COUNTS_SQL`` counts in one pass over ``new``, in its column order.
_COUNTED_TOGETHER = ("unreadable", "unchanged", "corrupted", "modified", "added")

# One row per scanned path (``edited`` and ``moved`` hold a new key at most once: unique
# indexes): its old row under the same key (``old``); for a file edited while its
# directory moved, the old row it was edited from (``eo``); the move into it (``here``:
# ``_NOT_MOVED_HERE`` as a join, one probe per row instead of one per condition). Each
# sum is its class's ``_WHERE`` condition (a NULL, like a false one, counts nothing).


def _counts_sql(moves: bool) -> str:
    """``_COUNTS_SQL``; without ``moves`` (``moved`` and ``edited`` both empty, as after an
    unchanged night) the same sums with those joins' columns known to be NULL: one join
    per row instead of four (0.11 s down to 0.05 s for 100,000 files)."""
    here = "here.new_key IS NULL" if moves else "1"
    edited = "edited.new_key" if moves else "NULL"
    joins = (
        "LEFT JOIN edited ON edited.new_ri = new.ri AND edited.new_key = new.key\n"
        "LEFT JOIN old AS eo ON eo.ri = edited.old_ri AND eo.key = edited.old_key\n"
        "LEFT JOIN moved AS here ON here.new_ri = new.ri AND here.new_key = new.key"
    )
    return f"""
SELECT
  sum(new.error IS NOT NULL),
  sum(old.key IS NOT NULL AND new.error IS NULL AND old.hash = new.hash),
  sum(old.key IS NOT NULL AND new.error IS NULL AND old.error IS NULL
      AND old.hash != new.hash AND old.size = new.size AND old.mtime = new.mtime
      AND {here}),
  sum(new.error IS NULL AND {here}
      AND CASE WHEN {edited} IS NOT NULL THEN {"eo.key IS NOT NULL" if moves else "0"}
          ELSE old.key IS NOT NULL AND (old.error IS NOT NULL OR (old.hash != new.hash
               AND NOT (old.size IS new.size AND old.mtime IS new.mtime))) END),
  sum(old.key IS NULL AND new.error IS NULL AND {here} AND {edited} IS NULL)
FROM new
LEFT JOIN old ON old.ri = new.ri AND old.key = new.key
{joins if moves else ""}
"""


_COUNTS_SQL = {moves: _counts_sql(moves) for moves in (True, False)}


class AuditSink:
    """The pipeline's consumer for an audit: scan records into the store."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def write(self, records: list[FileRecord]) -> None:
        self.store.add_scanned(records)

    def close(self, summary: Summary) -> None:
        pass


def write_update(
    store: AuditStore, reporter, roots: list[str], header: dict, started: float
) -> Summary:
    """Stream the merged manifest into ``reporter`` (``--update``); the summary counts what
    was written, so a json manifest's closing count matches its records."""
    summary = Summary()
    reporter.begin(roots, header)
    batch: list[FileRecord] = []
    for record in store.merged(roots, bool(header.get("relative"))):
        summary.add(record)
        batch.append(record)
        if len(batch) >= 1024:
            reporter.write(batch)
            batch = []
    reporter.write(batch)
    summary.elapsed = time.time() - started
    reporter.close(summary)
    return summary
