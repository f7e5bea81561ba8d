"""``parhash cache stats|prune|clear``: real processes on real SQLite cache files.

The expected values come from the tree itself (``os.stat``, ``os.walk``) and from the
database read with ``sqlite3`` directly, never from parhash's own output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, write_tree

CACHE_FILE = "cache.sqlite3"
TREE = {
    "a.txt": b"alpha\n",
    "b.bin": b"\x00" * 70_000,
    "sub": {"c.txt": b"gamma" * 10, "deeper": {"d": b"d"}},
}


def _files(root: Path) -> list[Path]:
    return [Path(d, f) for d, _, names in os.walk(root) for f in names]


def _scan(root: Path, cache_dir: Path, *extra: str) -> None:
    result = run_cli("scan", "-q", root, "--cache-dir", cache_dir, *extra)
    assert result.returncode == 0, result.stderr


def _stats_json(*args: str | os.PathLike, env: dict | None = None) -> dict:
    result = run_cli("cache", "stats", "-f", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


@contextlib.contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection committed and closed at the end (``with sqlite3.connect()`` only
    commits: the open connection would keep another process from locking the file)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _rows(cache: Path) -> list[tuple[bytes, bytes]]:
    with _db(cache) as conn:
        return sorted(conn.execute("SELECT dir, name FROM entries"))


@pytest.fixture
def scanned(tmp_path):
    """A tree scanned twice into a cache of its own: (tree, cache directory)."""
    root = write_tree(tmp_path / "tree", TREE)
    cache_dir = tmp_path / "cache"
    _scan(root, cache_dir)
    _scan(root, cache_dir)
    return root, cache_dir


def test_stats_of_a_missing_cache_says_so_and_creates_nothing(tmp_path):
    where = tmp_path / "nowhere"
    human = run_cli("cache", "stats", "--cache-dir", where)
    assert (human.returncode, human.stderr) == (0, "")
    assert human.text == f"no cache at {where / CACHE_FILE} (nothing cached yet)\n"
    document = _stats_json("--cache-dir", where)
    assert document == {
        "cache": str(where / CACHE_FILE),
        "exists": False,
        "size_on_disk": 0,
        "entries": 0,
        "roots": [],
    }
    for command in ("prune", "clear"):
        result = run_cli("cache", command, "--cache-dir", where)
        assert result.returncode == 0, result.stderr
        assert result.text.startswith("dropped 0 entries")
    assert not where.exists()


def test_stats_counts_what_the_tree_holds(scanned):
    root, cache_dir = scanned
    cache = cache_dir / CACHE_FILE
    files = _files(root)
    before = time.time_ns()
    document = _stats_json("--cache-dir", cache_dir)
    assert document["cache"] == str(cache)
    assert document["exists"] is True
    on_disk = sum(os.path.getsize(p) for p in cache_dir.iterdir() if p.name.startswith(CACHE_FILE))
    assert document["size_on_disk"] == on_disk
    assert document["entries"] == len(files)
    [entry] = document["roots"]
    assert entry["path"] == os.path.realpath(root)
    assert entry["algos"] == "xxh3"
    assert entry["entries"] == len(files)
    assert entry["bytes"] == sum(p.stat().st_size for p in files)
    assert entry["runs"] == 2
    with _db(cache) as conn:
        oldest = conn.execute("SELECT min(verified_ns) FROM entries").fetchone()[0]
        last_run = conn.execute("SELECT last_run_ns FROM roots").fetchone()[0]
    assert entry["oldest_verified_ns"] == oldest
    assert entry["last_run_ns"] == last_run
    # ages are measured when stats ran: between "before" and the end of this test
    for key, stamp in (("oldest_verification_age_s", oldest), ("last_run_age_s", last_run)):
        assert (before - stamp) / 1e9 - 0.001 <= entry[key] <= (time.time_ns() - stamp) / 1e9

    human = run_cli("cache", "stats", "--cache-dir", cache_dir)
    assert human.returncode == 0 and human.stderr == ""
    lines = human.text.splitlines()
    assert lines[0].startswith(f"cache {cache}: ")
    assert f"{len(files)} entries, 1 root" in lines[0]
    assert lines[1] == f"{os.path.realpath(root)} (xxh3)"
    assert lines[2].startswith(f"  entries: {len(files)} (")
    assert lines[3].startswith("  runs: 2, last ") and lines[3].endswith(" ago)")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(oldest // 1_000_000_000))
    assert lines[4].startswith(f"  oldest verification: {stamp} (")


def test_each_choice_of_algorithms_is_its_own_root(scanned):
    root, cache_dir = scanned
    _scan(root, cache_dir, "-a", "sha256,md5")
    roots = _stats_json("--cache-dir", cache_dir)["roots"]
    count = len(_files(root))
    got = sorted((r["path"], r["algos"], r["entries"], r["runs"]) for r in roots)
    real = os.path.realpath(root)
    # in the order -a gave them: the order of the digests each entry stores
    assert got == sorted([(real, "xxh3", count, 2), (real, "sha256,md5", count, 1)])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PARHASH_CACHE_DIR": "{t}/env"}, "{t}/env"),
        ({"XDG_CACHE_HOME": "{t}/xdg"}, "{t}/xdg/parhash"),
        ({"HOME": "{t}/home"}, "{t}/home/.cache/parhash"),
        ({"XDG_CACHE_HOME": "relative/ignored", "HOME": "{t}/home"}, "{t}/home/.cache/parhash"),
    ],
)
def test_the_cache_is_found_where_scan_puts_it(tmp_path, env, expected):
    """Same resolution as scan: $PARHASH_CACHE_DIR, $XDG_CACHE_HOME/parhash, ~/.cache."""
    clean = {k: "" for k in ("PARHASH_CACHE_DIR", "XDG_CACHE_HOME")}
    env = {**clean, **{k: v.format(t=tmp_path) for k, v in env.items()}}
    root = write_tree(tmp_path / "tree", {"x": b"x"})
    result = run_cli("scan", "-q", "--cache", root, env=env)
    assert result.returncode == 0, result.stderr
    where = Path(expected.format(t=tmp_path)) / CACHE_FILE
    assert where.is_file()
    document = _stats_json(env=env)
    assert (document["cache"], document["entries"]) == (str(where), 1)
    # --cache-dir wins over the environment
    other = _stats_json("--cache-dir", tmp_path / "other", env=env)
    assert other["cache"] == str(tmp_path / "other" / CACHE_FILE)
    assert other["exists"] is False


def test_prune_drops_entries_not_seen_for_20_runs(scanned):
    root, cache_dir = scanned
    cache = cache_dir / CACHE_FILE
    (root / "sub" / "c.txt").unlink()
    _scan(root, cache_dir)  # run 3 sees every file but c.txt
    # 18 more runs of this root (as if they happened): c.txt was last seen at run 2 of 21
    # (kept until 20 runs went by), the others at run 3.
    with _db(cache) as conn:
        conn.execute("UPDATE roots SET runs = runs + 18")
    kept = run_cli("cache", "prune", "--cache-dir", cache_dir)
    assert kept.returncode == 0, kept.stderr
    assert kept.text == f"dropped 0 entries not seen for 20 runs of their root: {cache}\n"
    with _db(cache) as conn:
        conn.execute("UPDATE roots SET runs = runs + 1")
    pruned = run_cli("cache", "prune", "--cache-dir", cache_dir)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.text == f"dropped 1 entry not seen for 20 runs of their root: {cache}\n"
    names = {name for _, name in _rows(cache)}
    assert names == {os.fsencode(p.name) for p in _files(root)}
    assert _stats_json("--cache-dir", cache_dir)["entries"] == len(_files(root))


def test_clear_empties_the_cache_and_the_next_run_reads_everything(scanned):
    root, cache_dir = scanned
    cache = cache_dir / CACHE_FILE
    cleared = run_cli("cache", "clear", "--cache-dir", cache_dir)
    assert cleared.returncode == 0, cleared.stderr
    count = len(_files(root))
    assert cleared.text == f"dropped {count} entries: {cache} is empty\n"
    assert _rows(cache) == []
    assert _stats_json("--cache-dir", cache_dir)["roots"] == []
    again = run_cli("scan", root, "--cache-dir", cache_dir)
    assert again.returncode == 0
    assert f"parhash: cache: 0 trusted, 0 verified by a full read, {count} new or changed" in (
        again.stderr
    )


def test_a_name_that_is_not_utf8(tmp_path):
    parent = os.fsencode(tmp_path) + b"/caf\xe9\x1b[31m"
    os.mkdir(parent)
    root = Path(os.fsdecode(parent))
    write_tree(root, {b"\xff.bin": b"x"})
    cache_dir = tmp_path / "cache"
    _scan(root, cache_dir)
    document = _stats_json("--cache-dir", cache_dir)
    assert document["roots"][0]["path"] == os.fsdecode(os.path.realpath(parent))
    human = run_cli("cache", "stats", "--cache-dir", cache_dir)
    assert human.returncode == 0
    assert b"\x1b" not in human.stdout and b"\xe9" not in human.stdout  # sanitized


def _one_line_exit_2(result, expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == b""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("parhash: error: cache ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["stats", "prune", "clear"])
def test_a_newer_cache_is_left_alone(scanned, command):
    _, cache_dir = scanned
    cache = cache_dir / CACHE_FILE
    with _db(cache) as conn:
        conn.execute("PRAGMA user_version = 99")
    rows = _rows(cache)
    result = run_cli("cache", command, "--cache-dir", cache_dir)
    _one_line_exit_2(result, "written by a newer parhash (schema 99)")
    assert "running without it" not in result.stderr
    assert _rows(cache) == rows  # untouched
    with _db(cache) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


@pytest.mark.parametrize("command", ["stats", "prune", "clear"])
def test_a_corrupt_cache_is_one_line(tmp_path, command):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / CACHE_FILE).write_bytes(os.urandom(8192))
    result = run_cli("cache", command, "--cache-dir", cache_dir)
    _one_line_exit_2(result, "unreadable")


def test_a_database_that_is_not_a_cache_is_left_alone(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    with _db(cache_dir / CACHE_FILE) as conn:
        conn.execute("CREATE TABLE mine(x)")
        conn.execute("INSERT INTO mine VALUES (1)")
    for command in ("stats", "clear"):
        result = run_cli("cache", command, "--cache-dir", cache_dir)
        _one_line_exit_2(result, "is not a parhash cache")
    with _db(cache_dir / CACHE_FILE) as conn:
        assert conn.execute("SELECT x FROM mine").fetchall() == [(1,)]


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("DELETE FROM roots WHERE 0")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_cache_locked_by_another_process(scanned):
    """Another process holds the database exclusively: each command waits for the lock
    (cache_store.OPEN_TIMEOUT_S), then says so in one line; the holder's data is intact."""
    root, cache_dir = scanned
    cache = cache_dir / CACHE_FILE
    rows = _rows(cache)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cache)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        for command in ("stats", "prune", "clear"):
            result = run_cli("cache", command, "--cache-dir", cache_dir)
            _one_line_exit_2(result, "database is locked")
    finally:
        holder.communicate("", timeout=60)
    assert _rows(cache) == rows
    assert _stats_json("--cache-dir", cache_dir)["entries"] == len(_files(root))


def test_help_has_examples_and_the_json_keys():
    for command in ("stats", "prune", "clear"):
        result = run_cli("cache", command, "--help")
        assert result.returncode == 0
        assert "parhash cache stats" in result.text
        assert "oldest_verification_age_s" in result.text
        assert "2 usage error, or the cache cannot be used" in " ".join(result.text.split())
    group = run_cli("--help")
    assert re.search(r"^  cache +Show, prune or clear the hash cache\.$", group.text, re.M)


@pytest.mark.parametrize("columns", ["40", "80"])
def test_help_words_are_never_cut(columns):
    """Each option's help of the cache commands appears word for word at any width."""
    import typer

    from parhash.cli import cache_app

    group = typer.main.get_command(cache_app)
    for name, command in group.commands.items():
        text = run_cli("cache", name, "--help", env={"COLUMNS": columns}).text
        flat = " ".join(text.split())
        for param in command.params:
            if getattr(param, "help", None):
                assert " ".join(param.help.split()) in flat, (name, param.help, text)
