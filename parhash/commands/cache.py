"""``parhash cache stats|prune|clear``: look after the hash cache between runs.

The database and its rules are ``parhash.cache_store``'s (``stats``, ``prune``, ``clear``)
and where it lives is ``cache_policy.cache_directory``'s; this module resolves the file,
turns an unusable cache into one fatal line (``FatalError``, exit 2) and renders ``stats``
for a person or as JSON. A cache that does not exist is not an error: there is nothing in
it (``stats`` says so, ``prune`` and ``clear`` drop 0 entries).

``stats --format json`` is one object with these keys, kept stable (the README lists
them): ``cache`` (the file), ``exists``, ``size_on_disk`` (bytes, with the WAL and
shared-memory files), ``entries``, ``roots``: a list of objects with ``path``,
``algos`` (the algorithms its digests are of: a root hashed with two ``-a`` choices is
two roots), ``entries``, ``bytes`` (the sizes of the files its entries describe), ``runs``,
``last_run_ns`` and ``oldest_verified_ns`` (nanoseconds since the epoch, or null), and
``last_run_age_s`` and ``oldest_verification_age_s`` (seconds before this command ran, or
null).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING

from parhash.exit_codes import FatalError

if TYPE_CHECKING:
    from parhash.cache_store import CacheStats, RootStats

#: Formats of ``stats``.
FORMATS = ("human", "json")

#: ``cache_store`` words its warnings for a run that goes on without the cache; here the
#: command is about the cache itself, so that ending is dropped from the fatal line.
_RUN_SUFFIX = "; running without it"


def cache_file(directory: str | None) -> str:
    """The cache database: ``--cache-dir`` as scan and audit resolve it."""
    from parhash.cache_policy import CACHE_FILE, cache_directory

    return os.path.join(cache_directory(directory), CACHE_FILE)


def _guarded(action, path: str):
    """``action(path)``, an unusable cache (corrupt, newer, not ours, locked) as one fatal
    line: ``CacheUnavailable`` already says which; a SQLite error past opening (a lock held
    through the whole busy timeout) is worded here."""
    from parhash.cache_store import CacheUnavailable

    try:
        return action(path)
    except CacheUnavailable as exc:
        raise FatalError(str(exc).removesuffix(_RUN_SUFFIX)) from None
    except sqlite3.Error as exc:
        raise FatalError(f"cache {path}: {exc}") from None


def stats(path: str) -> CacheStats | None:
    """The cache's statistics, or None when there is no cache at ``path``."""
    from parhash import cache_store

    if not os.path.exists(path):
        return None
    return _guarded(cache_store.stats, path)


def prune(path: str) -> int:
    """Drop now the entries not seen for ``TTL_RUNS`` runs of their root; how many."""
    from parhash import cache_store

    return _guarded(cache_store.prune, path)


def clear(path: str) -> int:
    """Empty the cache; how many entries it had."""
    from parhash import cache_store

    return _guarded(cache_store.clear, path)


def _age(ns: int | None, now_ns: int) -> float | None:
    return None if ns is None else max(0.0, (now_ns - ns) / 1e9)


def _root_json(root: RootStats, now_ns: int) -> dict:
    return {
        "path": root.path,
        "algos": root.algos,
        "entries": root.entries,
        "bytes": root.nbytes,
        "runs": root.runs,
        "last_run_ns": root.last_run_ns,
        "last_run_age_s": _age(root.last_run_ns, now_ns),
        "oldest_verified_ns": root.oldest_verified_ns,
        "oldest_verification_age_s": _age(root.oldest_verified_ns, now_ns),
    }


def render_json(path: str, found: CacheStats | None, now_ns: int | None = None) -> str:
    """``stats --format json``: the keys of this module's docstring, one line (ASCII:
    a name that is not UTF-8 gets ``\\udcXX`` escapes, as the audit's JSON header)."""
    import json

    now_ns = time.time_ns() if now_ns is None else now_ns
    roots = [] if found is None else [_root_json(r, now_ns) for r in found.roots]
    document = {
        "cache": path,
        "exists": found is not None,
        "size_on_disk": 0 if found is None else found.size_on_disk,
        "entries": 0 if found is None else found.entries,
        "roots": roots,
    }
    return json.dumps(document, ensure_ascii=True) + "\n"


def _when(ns: int | None, now_ns: int) -> str:
    """``2026-12-01 02:00:03 UTC (13 h ago)``, or ``never``."""
    from parhash.progress import human_age

    if ns is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns // 1_000_000_000))
    return f"{stamp} ({human_age(_age(ns, now_ns) or 0.0)} ago)"


def render_human(path: str, found: CacheStats | None, now_ns: int | None = None) -> str:
    """``stats``: the file, its size on disk, then a block per root."""
    from parhash.output import plural, sanitize
    from parhash.progress import human_bytes

    if found is None:
        return f"no cache at {sanitize(path)} (nothing cached yet)\n"
    now_ns = time.time_ns() if now_ns is None else now_ns
    lines = [
        f"cache {sanitize(path)}: {human_bytes(found.size_on_disk)} on disk, "
        f"{plural(found.entries, 'entry', 'entries')}, {plural(len(found.roots), 'root')}"
    ]
    for root in found.roots:
        lines += [
            f"{sanitize(root.path)} ({root.algos})",
            f"  entries: {root.entries:,} ({human_bytes(root.nbytes)} of files)",
            f"  runs: {root.runs:,}, last {_when(root.last_run_ns, now_ns)}",
            f"  oldest verification: {_when(root.oldest_verified_ns, now_ns)}",
        ]
    return "\n".join(lines) + "\n"
