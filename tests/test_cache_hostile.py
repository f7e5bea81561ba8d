"""The hash cache against a hostile user: full and read-only filesystems, foreign owners,
odd cache paths, killed processes, roots spelled or mounted differently, files that change
type or content under it, and every output option.

Each test runs the real CLI and holds the cache to one rule: a run with ``--cache`` writes
exactly the data a run without it writes (compared with the same command without the
cache, and digests with hashlib), whatever happens to the cache; a cache that cannot be
used costs one warning, never a traceback or a different exit status. (The plain trust,
racy, rename, corruption and rotation rules are ``test_cache.py``'s.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import jsonl_records, run_cli
from test_processes import (
    GiB,
    MiB,
    file_digest,
    files_open_by_workers,
    kill_group,
    leftovers,
    make_slow_tree,
    start,
    unprivileged,  # noqa: F401
    wait_for,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mounts, /proc, setuid")

#: ``cache_policy.RACY_NS`` and a margin: a file changed less than this before it is hashed
#: is never trusted, so a test that expects hits waits until its files are this old.
SETTLE_S = 2.2

#: The owner of a cache that the unprivileged runner (nobody, or uid 0 without DAC
#: override) may not use.
OTHER_UID = 4242

_CACHE_LINE = re.compile(
    r"cache: ([\d,]+) trusted, ([\d,]+) verified by a full read, ([\d,]+) new or changed read"
)


# --------------------------------------------------------------------------- helpers


def settle(*roots: Path) -> None:
    """Sleep until every file below ``roots`` changed (mtime, ctime) over ``SETTLE_S`` ago
    (an mtime in the future is racy until then: not worth waiting for)."""
    newest, now = 0.0, time.time()
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                newest = max(newest, min(st.st_mtime, now), st.st_ctime)
    wait = newest + SETTLE_S - time.time()
    if wait > 0:
        time.sleep(wait)


def counts(stderr: str) -> tuple[int, int, int]:
    """(trusted, verified, read) from the summary's cache line."""
    found = _CACHE_LINE.search(stderr)
    assert found, stderr
    return tuple(int(g.replace(",", "")) for g in found.groups())  # type: ignore[return-value]


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


def data_of(stdout: bytes, fmt: str = "sums") -> bytes:
    """The records of an output, without what records the run itself (header, summary)."""
    if fmt == "jsonl":
        return stdout.split(b"\n", 1)[1]
    if fmt == "csv":
        return stdout.split(b"\r\n", 1)[1]
    if fmt == "json":
        return b"\n".join(stdout.split(b"\n")[1:-2])
    return stdout


def sorted_lines(data: bytes, end: bytes = b"\n") -> list[bytes]:
    return sorted(data.split(end))


def scan(*args, cache: Path | str | None = None, cwd=None, env=None):
    extra = ["--cache-dir", cache] if cache is not None else []
    return run_cli("scan", *args, *extra, cwd=cwd, env=env)


def assert_clean(result, status: int = 0) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr


def same_as_uncached(
    *args, cache: Path, fmt: str = "sums", cwd=None, sort: bool = False, only_cached=()
):
    """Run the scan with and without the cache (``only_cached``: its options, such as a
    budget): the same exit status and data; returns the cached run."""
    plain = scan(*args, cwd=cwd)
    cached = scan(*args, *only_cached, cache=cache, cwd=cwd)
    assert_clean(cached, plain.returncode)
    mine, theirs = data_of(cached.stdout, fmt), data_of(plain.stdout, fmt)
    if sort:
        assert mine == theirs
    else:
        assert sorted_lines(mine) == sorted_lines(theirs)
    return cached


def digest(path: Path, algo: str = "sha256") -> str:
    return hashlib.new(algo, Path(path).read_bytes()).hexdigest()


def sums_map(stdout: bytes) -> dict[str, str]:
    """{path: digest} from sums output (GNU ``hex  path`` or BSD ``ALGO (path) = hex``)."""
    out = {}
    for line in stdout.decode("utf-8", "surrogateescape").splitlines():
        tagged = re.fullmatch(r"\S+ \((.*)\) = ([0-9a-f]+)", line)
        name, hexdigest = tagged.groups() if tagged else line.split("  ", 1)[::-1]
        out[name] = hexdigest
    return out


def small_tree(root: Path, files: int = 40, dirs: int = 3) -> Path:
    for d in range(dirs):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(files):
            (sub / f"f{i:03d}").write_bytes(os.urandom(i * 37 % 3000))
    return root


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


# --------------------------------------------------------------------------- filesystems


@pytest.mark.timeout(90)
def test_full_filesystem_loses_no_output_then_recovers(tmp_path):
    """A cache on a 1 MiB filesystem that its entries do not fit: the output is complete
    and correct, one warning says so, the exit status is a normal run's (the data lost
    nothing), and with room again the cache fills and answers."""
    tree = tmp_path / "tree"
    for d in range(24):
        sub = tree / f"directory-{d:02d}"
        sub.mkdir(parents=True)
        for i in range(500):
            (sub / f"a-file-with-a-rather-long-name-{i:04d}").write_bytes(b"%d %d\n" % (d, i))
    with tmpfs(tmp_path / "small", "1m") as small:
        cache = small / "cache"
        full = same_as_uncached(tree, "-a", "sha256", cache=cache)
        assert len(warnings_of(full.stderr)) == 1, full.stderr
        assert "full" in warnings_of(full.stderr)[0], full.stderr
        subprocess.run(["mount", "-o", "remount,size=32m", small], check=True)
        settle(tree)
        same_as_uncached(tree, "-a", "sha256", cache=cache)
        again = same_as_uncached(tree, "-a", "sha256", cache=cache)
        assert warnings_of(again.stderr) == [], again.stderr
        assert counts(again.stderr) == (12_000, 0, 0), again.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["dir-is-a-file", "file-is-a-dir", "read-only-fs"])
def test_unusable_cache_dir_is_one_warning(tmp_path, case):
    tree = small_tree(tmp_path / "tree", files=10, dirs=2)
    cache = tmp_path / "cache"
    with contextlib.ExitStack() as stack:
        if case == "dir-is-a-file":
            cache.write_bytes(b"not a directory\n")
        elif case == "file-is-a-dir":
            (cache / "cache.sqlite3").mkdir(parents=True)
        else:
            stack.enter_context(tmpfs(cache, "4m"))
            settle(tree)
            scan(tree, cache=cache)  # a good cache, then the filesystem turns read-only
            subprocess.run(["mount", "-o", "remount,ro", cache], check=True)
        result = same_as_uncached(tree, cache=cache)
        assert len(warnings_of(result.stderr)) == 1, result.stderr
        assert "without it" in result.stderr, result.stderr


@pytest.mark.timeout(90)
def test_cache_of_another_user_is_one_warning(unprivileged):  # noqa: F811 (a fixture)
    """A cache directory of another user, 0700 (or their 0600 file in a 0755 one), used
    by nobody (or root without DAC override): one warning, the full output, the exit
    status of a run without it."""
    home = unprivileged.home
    tree = small_tree(home / "tree", files=10, dirs=2)
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    rootdir, rootfile = home / "root-0700", home / "root-file"
    scan(tree, cache=rootdir)
    scan(tree, cache=rootfile)
    rootdir.chmod(0o700)
    rootfile.chmod(0o755)
    (rootfile / "cache.sqlite3").chmod(0o600)
    for path in (rootdir, *rootdir.iterdir(), rootfile, *rootfile.iterdir()):
        os.chown(path, OTHER_UID, OTHER_UID)
    plain = unprivileged.run(["scan", tree])
    assert plain.returncode == 0, plain.stderr
    for cache in (rootdir, rootfile, rootdir / "sub"):
        run = unprivileged.run(["scan", tree, "--cache-dir", cache])
        err = run.stderr.decode(errors="replace")
        assert run.returncode == 0, err
        assert "Traceback" not in err, err
        assert sorted_lines(run.stdout) == sorted_lines(plain.stdout)
        assert len(warnings_of(err)) == 1 and "Permission denied" in err, err


@pytest.mark.timeout(60)
def test_cache_file_that_is_a_symlink_stays_one(tmp_path):
    """The cache file a symlink to another disk's file: SQLite keeps its WAL next to the
    target, so a check that looked next to the link saw a "truncated" file, and the
    rebuild replaced the user's symlink by a new file (fixed: ``cache_store.sidecar``)."""
    tree = small_tree(tmp_path / "tree", files=20, dirs=2)
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    cache.mkdir()
    elsewhere.mkdir()
    (cache / "cache.sqlite3").symlink_to(elsewhere / "parhash.db")
    settle(tree)
    first = same_as_uncached(tree, cache=cache)
    assert warnings_of(first.stderr) == [], first.stderr
    second = same_as_uncached(tree, cache=cache)
    assert warnings_of(second.stderr) == [], second.stderr
    assert counts(second.stderr) == (40, 0, 0), second.stderr
    assert (cache / "cache.sqlite3").is_symlink()
    assert sorted(os.listdir(cache)) == ["cache.sqlite3"]


@pytest.mark.timeout(60)
def test_cache_inside_the_tree_through_a_symlink_is_not_hashed(tmp_path):
    """The walk skips the cache's own files, also when the cache file is a symlink whose
    WAL lives next to its target inside the tree (it changes while the walk sees it)."""
    tree = small_tree(tmp_path / "tree", files=5, dirs=1)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cache.sqlite3").symlink_to(tree / "db")
    settle(tree)
    scan(tree, cache=cache)
    result = scan(tree, "-f", "jsonl", cache=cache)
    assert_clean(result)
    paths = {Path(r["path"]).name for r in jsonl_records(result.stdout)}
    assert not {p for p in paths if p.startswith("db")}, paths


#: Cache directory names that a ``file:`` URI must quote.
URI_NAMES = [b"a space", b"query?mode=rw", b"frag#x", b"pct%41", b"both?a=1#b", b"\xff\xfe"]


@pytest.mark.timeout(60)
def test_cache_paths_that_a_uri_must_quote(tmp_path):
    """The workers open the cache with a ``file:`` URI: a name with a space, ``?``, ``#``,
    ``%`` or bytes that are not UTF-8 must name the same file (non-UTF-8 was an internal
    error: ``quote`` of a str with surrogates; fixed by quoting the bytes)."""
    tree = small_tree(tmp_path / "tree", files=10, dirs=2)
    settle(tree)
    for name in URI_NAMES:
        cache = os.fsdecode(os.path.join(os.fsencode(tmp_path), name))
        assert_clean(scan(tree, cache=cache))
        second = same_as_uncached(tree, cache=cache)
        assert warnings_of(second.stderr) == [], (name, second.stderr)
        assert counts(second.stderr) == (20, 0, 0), (name, second.stderr)
    assert sorted(os.listdir(os.fsencode(tmp_path))) == sorted([b"tree", *URI_NAMES])


# --------------------------------------------------------------------------- killed runs


def _reference(tree: Path, algo: str) -> dict[str, str]:
    return {str(p): file_digest(p, algo) for p in tree.rglob("*") if p.is_file()}


def _check_against(result, tree: Path, algo: str) -> None:
    assert_clean(result)
    assert sums_map(result.stdout) == _reference(tree, algo)


def _hit_mid_run(tree: Path, cache: Path, hit, **streams) -> tuple[subprocess.Popen, float, dict]:
    """Start a cached sha1 scan of ``tree``, ``hit(proc, busy)`` it once a worker reads a
    big file (``busy``: worker pid -> file); (process, seconds to its end, leftovers)."""
    proc = start(["scan", tree, "-a", "sha1", "-j", "2", "--cache-dir", cache], **streams)
    try:
        busy = wait_for(lambda: files_open_by_workers(proc.pid, proc.pid, str(tree / "z")), 30)
        assert busy, "no worker reached the big files"
        sent = time.monotonic()
        hit(proc, busy)
        proc.wait(timeout=60)
        return proc, time.monotonic() - sent, leftovers(proc.pid, grace=20)
    finally:
        kill_group(proc)


def _kill_parent(proc: subprocess.Popen, busy: dict) -> None:
    time.sleep(0.3)  # the small files' answers reach the writer
    os.kill(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(90)
def test_sigkill_of_the_parent_while_filling_then_rerun(tmp_path):
    """SIGKILL of parhash (not its workers) while the first run fills the cache, after
    some batches were committed: the workers do not outlive it for long, and the next
    run finds an intact cache (no warning) and writes every digest right."""
    tree = make_slow_tree(tmp_path / "tree", small=3000, big=2, big_size=256 * MiB)
    cache = tmp_path / "cache"
    settle(tree)
    _proc, _took, left = _hit_mid_run(tree, cache, _kill_parent)
    assert not left, f"workers outlived their killed parent: {left}"
    again = scan(tree, "-a", "sha1", "--max-size", "1M", cache=cache)
    assert_clean(again)
    assert sums_map(again.stdout) == _reference_small(tree)
    assert warnings_of(again.stderr) == [], again.stderr
    trusted, _verified, read = counts(again.stderr)
    assert trusted > 0 and trusted + read == 3000, again.stderr


@pytest.mark.timeout(90)
def test_sigkill_of_a_worker_in_a_cached_run(tmp_path):
    """A pool worker killed in a run that trusts most of its files from the cache and
    reads the rest: no file lost, none twice, every digest right, and the next run
    trusts only what was read whole."""
    tree = make_slow_tree(tmp_path / "tree", small=2000, big=2, big_size=256 * MiB)
    cache = tmp_path / "cache"
    settle(tree)
    scan(tree, "-a", "sha1", "--max-size", "1M", cache=cache)  # the small files cached
    out = tmp_path / "out.sums"
    with open(out, "wb") as stdout:
        proc, _took, left = _hit_mid_run(
            tree, cache, lambda _proc, busy: os.kill(min(busy), signal.SIGKILL), stdout=stdout
        )
    assert not left, left
    assert proc.returncode == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == len(set(lines)) == 2002
    assert sums_map(out.read_bytes()) == _reference(tree, "sha1")
    again = scan(tree, "-a", "sha1", cache=cache)
    _check_against(again, tree, "sha1")
    assert counts(again.stderr)[0] >= 2000, again.stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("signum", "to_group", "expected"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["SIGINT-group", "SIGTERM-parent"],
)
def test_signal_during_a_cached_run(tmp_path, signum, to_group, expected):
    """Ctrl-C or SIGTERM while a cached run reads: the documented exit status within a
    generous deadline, no process left, and the cache serves the next run correctly."""
    tree = make_slow_tree(tmp_path / "tree", small=1500, big=2, big_size=2 * GiB)
    cache = tmp_path / "cache"
    settle(tree)
    stderr_path = tmp_path / "stderr"
    send = os.killpg if to_group else os.kill
    with open(stderr_path, "wb") as stderr:
        proc, took, left = _hit_mid_run(
            tree, cache, lambda proc, _busy: send(proc.pid, signum), stderr=stderr
        )
    err = stderr_path.read_text(errors="replace")
    assert proc.returncode == expected, err
    assert took < 20, took
    assert "Traceback" not in err, err
    assert not left, left
    again = scan(tree, "-a", "sha1", "--max-size", "1M", cache=cache)
    assert_clean(again)
    assert sums_map(again.stdout) == _reference_small(tree)
    assert warnings_of(again.stderr) == [], again.stderr


def _reference_small(tree: Path) -> dict[str, str]:
    return {str(p): file_digest(p, "sha1") for p in tree.glob("s*")}


# --------------------------------------------------------------------------- roots


@pytest.mark.timeout(90)
def test_root_spellings_bind_mounts_and_renames(tmp_path):
    """One tree reached as ``tree``, ``tree/``, ``./tree``, a symlink, its absolute path,
    a bind mount, nested with a subdirectory, and after ``mv tree tree2`` with a new tree
    of the same names, sizes and mtimes at the old path: every run's data is the uncached
    run's, and the new tree at the old path is read, not trusted. (The bind mount is a
    keyspace of its own: its real path differs; it is read once, then served.)"""
    tree = small_tree(tmp_path / "tree", files=15, dirs=2)
    (tmp_path / "link").symlink_to("tree")
    mount = tmp_path / "mnt"
    mount.mkdir()
    cache = tmp_path / "cache"
    settle(tree)
    subprocess.run(["mount", "--bind", tree, mount], check=True)
    try:
        for spelling in ("tree", "tree/", "./tree", "link", str(tree), "mnt"):
            result = same_as_uncached(spelling, "-a", "sha256", cache=cache, cwd=tmp_path)
            if spelling not in ("tree", "mnt"):  # one keyspace: the root's real path
                assert counts(result.stderr)[0] == 30, (spelling, result.stderr)
        same_as_uncached("tree", "tree/d1", "mnt/d0", cache=cache, cwd=tmp_path)
    finally:
        subprocess.run(["umount", mount], check=False)
    stamps = {p.relative_to(tree): p.stat() for p in tree.rglob("*") if p.is_file()}
    tree.rename(tmp_path / "tree2")
    for relative, st in stamps.items():  # another content, same size and mtime
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(255 - b for b in (tmp_path / "tree2" / relative).read_bytes()))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    settle(tree)
    for root in ("tree", "tree2"):
        result = same_as_uncached(root, "-a", "sha256", cache=cache, cwd=tmp_path)
        assert sums_map(result.stdout) == {
            f"{root}/{r}": digest(tmp_path / root / r) for r in stamps
        }


@pytest.mark.timeout(60)
def test_named_paths_from_other_working_directories(tmp_path):
    """``--files-from`` and file arguments with the same relative names, run from two
    working directories: each run hashes its own files (the named keyspace is absolute)."""
    cache = tmp_path / "cache"
    for side in ("one", "two"):
        small_tree(tmp_path / side, files=5, dirs=1)
        (tmp_path / side / "list").write_text("".join(f"d0/f{i:03d}\n" for i in range(5)))
    settle(tmp_path / "one", tmp_path / "two")
    for _ in range(2):
        for side in ("one", "two"):
            here = tmp_path / side
            same_as_uncached("--files-from", "list", "-a", "md5", cache=cache, cwd=here)
            result = same_as_uncached("d0/f001", "d0/f002", "-a", "md5", cache=cache, cwd=here)
            assert sums_map(result.stdout)["d0/f001"] == digest(here / "d0/f001", "md5")


# --------------------------------------------------------------------------- files


def _replace(path: Path, how: str) -> None:
    st = path.stat()
    if how == "directory":
        path.unlink()
        path.mkdir()
        (path / "inner").write_bytes(b"inner\n")
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "symlink":
        path.unlink()
        path.symlink_to("f000")
    elif how == "same-size-mtime-restored":
        data = path.read_bytes()
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(bytes(255 - b for b in data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "future-mtime":
        path.write_bytes(b"from the future\n")
        os.utime(path, (time.time() + 86400, time.time() + 86400))
    elif how == "future-then-back":
        os.utime(path, (time.time() + 86400, time.time() + 86400))
        path.write_bytes(path.read_bytes()[::-1] + b"!")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.timeout(90)
def test_files_that_change_kind_or_content_between_runs(tmp_path):
    """A cached file replaced by a directory, a FIFO or a symlink, rewritten to the same
    size with its mtime restored (the ctime tells), dated a day ahead (racy: never trusted
    while in the future), or dated ahead and back: each run's data is the uncached run's."""
    kinds = [
        "directory",
        "fifo",
        "symlink",
        "same-size-mtime-restored",
        "future-mtime",
        "future-then-back",
    ]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f000").write_bytes(b"target\n")
    for kind in kinds:
        (tree / kind).write_bytes(os.urandom(1000))
    cache = tmp_path / "cache"
    settle(tree)
    scan(tree, "-a", "sha256", cache=cache)
    for kind in kinds:
        _replace(tree / kind, kind)
    for _ in range(2):
        result = same_as_uncached(tree, "-a", "sha256", "-f", "jsonl", cache=cache, fmt="jsonl")
        records = {Path(r["path"]).name: r for r in jsonl_records(result.stdout)}
        for kind in ("same-size-mtime-restored", "future-mtime", "future-then-back"):
            assert records[kind]["hash"] == digest(tree / kind), kind
        settle(tree)


@pytest.mark.timeout(60)
def test_file_appended_to_while_read_is_never_trusted_stale(tmp_path):
    """A writer appends to a file while the cached run reads it: that run has an error
    record or a digest, and once the writer stops the cache answers with the digest of
    the final content, never of a prefix."""
    tree = tmp_path / "tree"
    tree.mkdir()
    growing = tree / "growing"
    growing.write_bytes(os.urandom(64 * MiB))
    cache = tmp_path / "cache"
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab") as f:
            while not stop.is_set():
                f.write(os.urandom(4096))
                f.flush()

    writer = threading.Thread(target=append)
    writer.start()
    try:
        for _ in range(3):
            result = scan(tree, "-a", "sha256", "-f", "jsonl", cache=cache)
            assert "Traceback" not in result.stderr, result.stderr
    finally:
        stop.set()
        writer.join()
    for _ in range(2):
        result = scan(tree, "-a", "sha256", "-f", "jsonl", cache=cache)
        assert_clean(result)
        (record,) = jsonl_records(result.stdout)
        assert record["hash"] == digest(growing), result.stderr
        settle(tree)


@pytest.mark.timeout(60)
def test_hard_links_through_the_cache(tmp_path):
    """Files with several links (nlink > 1), deduplicated or not: the cached runs' data is
    the uncached run's, also after one link is rewritten (all its names change)."""
    tree = small_tree(tmp_path / "tree", files=6, dirs=2)
    for i in range(3):
        os.link(tree / "d0" / f"f00{i + 1}", tree / "d1" / f"link{i}")
    cache = tmp_path / "cache"
    settle(tree)
    modes = ("--dedupe-links", "--no-dedupe-links")
    for _ in range(2):
        for dedupe in modes:
            same_as_uncached(tree, "-a", "sha256", dedupe, "--sort", cache=cache, sort=True)
    (tree / "d1" / "link0").write_bytes(b"rewritten through one name\n")
    for dedupe in modes:
        same_as_uncached(tree, "-a", "sha256", dedupe, "--sort", cache=cache, sort=True)
    settle(tree)
    for dedupe in modes:
        args = (tree, "-a", "sha256", dedupe, "--sort")
        result = same_as_uncached(*args, cache=cache, sort=True)
        assert sums_map(result.stdout)[str(tree / "d0" / "f001")] == digest(tree / "d1/link0")


# --------------------------------------------------------------------------- output options

#: Option sets run in this order on one cache (so later ones meet entries of earlier
#: keyspaces), each compared byte for byte with the same command without the cache.
OUTPUT_CASES = [
    ("sums", ["-a", "sha256,md5"]),
    ("sums", ["-a", "md5"]),
    ("sums", ["-a", "md5,sha256", "--tag"]),
    ("sums", ["-a", "sha256", "--min-size", "1K", "--max-size", "2K"]),
    ("sums", ["-a", "sha256", "-z", "--relative"]),
    ("json", ["-a", "blake2b,sha256", "-f", "json"]),
    ("csv", ["-a", "sha256", "-f", "csv", "--relative"]),
    ("jsonl", ["-a", "xxh3", "-f", "jsonl", "--max-size", "500"]),
]


@pytest.mark.timeout(90)
def test_output_options_are_byte_identical_through_the_cache(tmp_path):
    """Several algorithms, switched between runs on one cache, size filters over hits,
    every format, tags, NUL ends and relative paths: the cached runs (filling, then
    trusting) write the uncached run's bytes (``--sort``), the header excepted."""
    tree = small_tree(tmp_path / "tree", files=12, dirs=2)
    (tree / "d0" / "name with\nnewline").write_bytes(b"escaped in sums\n")
    cache = tmp_path / "cache"
    settle(tree)
    for fmt, args in OUTPUT_CASES:
        plain = data_of(scan(tree, "--sort", *args).stdout, fmt)
        for attempt in range(2):
            result = scan(tree, "--sort", *args, cache=cache)
            assert_clean(result)
            assert data_of(result.stdout, fmt) == plain, (args, attempt)
        assert counts(result.stderr)[2] == 0, (args, result.stderr)


# --------------------------------------------------------------------------- audit


def _audit(*args, cache=None, cwd=None):
    extra = ["--cache-dir", cache] if cache is not None else []
    return run_cli("audit", *args, *extra, cwd=cwd)


@pytest.mark.timeout(90)
def test_audit_with_the_cache_of_another_tree_and_host(tmp_path):
    """A manifest made on another host of another copy of the tree (``cp -a``: same names,
    sizes and mtimes, other inodes and ctimes), audited with a cache filled from this tree
    by scans and audits: the same report and the same ``--update``d manifest as without
    the cache: a file rewritten behind restored timestamps in the copy is ``corrupted``
    (its entry was made from the copy's content), and every class matches."""
    original = small_tree(tmp_path / "original", files=10, dirs=2)
    manifest = tmp_path / "m.jsonl"
    assert scan(original, "-f", "jsonl", "--relative", "-o", manifest).returncode == 0
    text = manifest.read_text()
    manifest.write_text(text.replace('"host": "', '"host": "elsewhere-', 1))
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", original, copy], check=True)
    victim = copy / "d0" / "f005"
    st = victim.stat()
    victim.write_bytes(bytes(255 - b for b in victim.read_bytes()))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    (copy / "d1" / "f001").unlink()
    (copy / "d1" / "new").write_bytes(b"new\n")
    cache = tmp_path / "cache"
    settle(copy)
    scan(copy, cache=cache)  # another keyspace (xxh3, absolute paths): must not matter
    reports = []
    for _ in range(3):
        for use in (None, cache):
            result = _audit(manifest, copy, "-f", "jsonl", "--fail-on", "none", cache=use)
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            reports.append(sorted(result.stdout.splitlines()))
    assert all(report == reports[0] for report in reports), reports
    assert b"corrupted" in b"".join(reports[0]), reports[0]
    updated = {}
    for use in (None, cache):
        target = tmp_path / f"updated-{use is not None}.jsonl"
        shutil.copy(manifest, target)
        result = _audit(target, copy, "--update", "--fail-on", "none", cache=use)
        assert result.returncode == 0, result.stderr
        updated[use is not None] = sorted(jsonl_records(target.read_bytes()), key=str)
    assert updated[True] == updated[False]


# --------------------------------------------------------------------------- rotation


@pytest.mark.timeout(60)
def test_budget_is_not_spent_on_deleted_files(tmp_path):
    """Entries of deleted files stay for ``TTL_RUNS`` runs with their old verification
    time: counted by the budget they were the stalest every run, and a 20% budget with
    ten deleted files of fifty verified nothing for twenty runs (fixed: the budget counts
    the entries the previous run saw). Every live file is re-read within 1 + 1/F runs."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(10):
        (tree / f"gone{i}").write_bytes(os.urandom(1000))
    cache = tmp_path / "cache"
    settle(tree)
    scan(tree, cache=cache)  # the doomed files: the stalest verifications
    for i in range(40):
        (tree / f"live{i:02d}").write_bytes(os.urandom(1000))
    settle(tree)
    scan(tree, cache=cache)
    for i in range(10):
        (tree / f"gone{i}").unlink()
    verified = []
    for _ in range(6):
        result = scan(tree, "--verify-budget", "20%", cache=cache)
        assert_clean(result)
        verified.append(counts(result.stderr)[1])
    assert sums_map(result.stdout) == sums_map(scan(tree).stdout)
    assert sum(verified) >= 40, verified


def _shift_verification(cache: Path, seconds: float) -> None:
    """Move every entry's verification time, as if it was made with the clock that far
    off (what a machine whose clock ran ahead, then was corrected, leaves behind)."""
    import sqlite3

    conn = sqlite3.connect(cache / "cache.sqlite3", isolation_level=None)
    try:
        conn.execute("UPDATE entries SET verified_ns = verified_ns + ?", (int(seconds * 1e9),))
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_verification_made_while_the_clock_ran_ahead_is_due(tmp_path):
    """A machine's clock a year ahead (a VM before NTP) when the cache was filled, then
    corrected: ``--verify-max-age 0`` (re-read every hit) must still re-read them."""
    tree = small_tree(tmp_path / "tree", files=10, dirs=1)
    cache = tmp_path / "cache"
    settle(tree)
    scan(tree, cache=cache)
    _shift_verification(cache, 365 * 86400)
    result = same_as_uncached(tree, cache=cache, only_cached=("--verify-max-age", "0"))
    assert counts(result.stderr)[:2] == (0, 10), result.stderr
