"""The worker's read loop (parhash.hashing): every size threshold, the memory-mapped path,
files that change while read, O_NOATIME and its EPERM fallback, cold read-ahead, the syscalls
a small file costs (counted by strace) and the per-thread read state.

Digests are compared with hashlib/xxhash/blake3 (test_hashing.REFERENCE), never with
parhash's own output.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import deadline, evict_from_page_cache, run_cli, run_unprivileged, write_tree
from test_hashing import REFERENCE
from test_hostile import build_deep, remove_tree

from parhash import hashing
from parhash.algorithms import ALGORITHMS, get_algorithm
from parhash.hashing import (
    CHUNK_SIZE,
    MMAP_THRESHOLD,
    MMAP_WINDOW,
    HashSettings,
    hash_file,
    hash_files,
)

CHANGED = (None, None, None, "file changed while being read")

#: Every threshold the read loop has, and the sizes on either side of it.
SIZES = sorted(
    {
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        MMAP_THRESHOLD - 1,
        MMAP_THRESHOLD,
        MMAP_THRESHOLD + 1,
        MMAP_WINDOW - 1,
        MMAP_WINDOW,
        MMAP_WINDOW + 1,
        2 * MMAP_WINDOW + 4097,
    }
)

#: One algorithm of each family (xxHash, MD, SHA-1/2, SHA-3, BLAKE2, BLAKE3) for the sizes
#: that take long; every algorithm is run on the sizes up to MMAP_THRESHOLD + 1.
FAMILIES = ["xxh3", "xxh128", "md5", "sha1", "sha256", "sha512", "sha3-256", "blake2b", "blake3"]


def payload(size: int) -> bytes:
    """``size`` pseudo-random bytes; past 1 MiB a block of 1 MiB + 7 repeats (its period
    divides no window, so windows hashed out of order would not match)."""
    block = random.Random(size).randbytes(min(size, (1 << 20) + 7))
    return (block * (size // max(len(block), 1) + 1))[:size]


@pytest.fixture(scope="module")
def sized(tmp_path_factory) -> dict[int, tuple[str, bytes]]:
    directory = tmp_path_factory.mktemp("hotpath-sized")
    files = {}
    for size in SIZES:
        path = directory / f"f{size}"
        data = payload(size)
        path.write_bytes(data)
        files[size] = (str(path), data)
    return files


@pytest.fixture
def spy_map(monkeypatch) -> list[int]:
    """Sizes of the files hashed from a memory map (``_map_and_hash`` calls)."""
    mapped: list[int] = []
    real = hashing._map_and_hash

    def spy(fd, size, algos):
        mapped.append(size)
        return real(fd, size, algos)

    monkeypatch.setattr(hashing, "_map_and_hash", spy)
    return mapped


@pytest.fixture(params=["mapped", "read"])
def path_kind(request, monkeypatch, spy_map):
    """Both ways of reading a large file: mapped (files are quiet at once) or read (the
    files of the test are fresh, so the default quiet rule reads them)."""
    if request.param == "mapped":
        monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 0)
    else:
        monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 10**18)
    return request.param, spy_map


def _algos_for(size: int) -> list[str]:
    return sorted(ALGORITHMS) if size <= MMAP_THRESHOLD + 1 else FAMILIES


@pytest.mark.parametrize("size", SIZES)
def test_every_size_and_algorithm_matches_the_reference(size, sized, path_kind):
    kind, mapped = path_kind
    path, data = sized[size]
    mtime = os.stat(path).st_mtime_ns
    for name in _algos_for(size):
        expected = (size, mtime, REFERENCE[name](data), None)
        assert hash_file(path, get_algorithm(name), True) == expected
    maps = kind == "mapped" and size >= MMAP_THRESHOLD
    assert len(mapped) == (len(_algos_for(size)) if maps else 0)


@pytest.mark.parametrize("size", SIZES)
def test_several_algorithms_at_once_from_one_read(size, sized, path_kind):
    path, data = sized[size]
    names = ["sha256", "xxh3", "blake3", "md5"]
    result = hash_file(path, [get_algorithm(n) for n in names], False)
    digests = tuple(REFERENCE[n](data) for n in names)
    assert result == (size, os.stat(path).st_mtime_ns, digests, None)


def test_hash_files_keeps_order_across_sizes_and_errors(sized, tmp_path, path_kind):
    (tmp_path / "dir").mkdir()
    paths = [sized[s][0] for s in SIZES] + [str(tmp_path / "missing"), str(tmp_path / "dir")]
    paths = paths[::-1] + paths
    algos = [get_algorithm("xxh128"), get_algorithm("sha1")]
    results = hash_files(paths, algos, False, HashSettings(("xxh128", "sha1")), False)
    assert len(results) == len(paths)
    by_path = {path: data for path, data in sized.values()}
    for path, result in zip(paths, results, strict=True):
        if path.endswith("missing"):
            assert result == (None, None, None, "No such file or directory")
        elif path.endswith("dir"):
            assert result == (None, None, None, "not a regular file (directory)")
        else:
            data = by_path[path]
            expected = (REFERENCE["xxh128"](data), REFERENCE["sha1"](data))
            assert result == (len(data), os.stat(path).st_mtime_ns, expected, None)


def test_empty_and_special_files_are_never_mapped(tmp_path, monkeypatch, spy_map):
    monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 0)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = payload(MMAP_THRESHOLD + 5)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    with deadline(20):
        named = hash_file(str(fifo), get_algorithm("sha256"), True, named=True)
    writer.join()
    assert named[0] == len(data) and named[2] == hashlib.sha256(data).hexdigest()
    assert hash_file(str(empty), get_algorithm("sha256"), True)[2] == hashlib.sha256().hexdigest()
    assert spy_map == []


def test_recently_changed_large_file_is_read_not_mapped(tmp_path, spy_map):
    """The default quiet rule: a file changed in the last MMAP_QUIET_NS is read."""
    path = tmp_path / "fresh"
    data = payload(MMAP_THRESHOLD * 2)
    path.write_bytes(data)
    assert hash_file(str(path), get_algorithm("xxh3"), True)[2] == REFERENCE["xxh3"](data)
    assert spy_map == []


def test_a_file_that_shrank_before_it_was_mapped_is_read_instead(tmp_path, monkeypatch):
    """``_hash_mapped`` given the fstat of a bigger file (it shrank after the fstat): no
    SIGBUS, ``None`` (the caller reads the file and reports the change)."""
    monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 0)
    path = tmp_path / "shrinks"
    path.write_bytes(payload(3 * MMAP_WINDOW))
    fd = os.open(path, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        os.truncate(path, MMAP_WINDOW + 5)
        assert hashing._hash_mapped(fd, before, (get_algorithm("xxh3"),)) is None
    finally:
        os.close(fd)


# -- files that change while being read: a real writer process ------------------------------

#: Runs in a child: a writer process changes FILE continuously (MODE: grow, shrink or
#: rewrite) while this process hashes it; prints the result. A child, so that a SIGBUS (a
#: mapped file that shrank) would be a failed test, not a dead pytest.
CHANGE_DRIVER = textwrap.dedent(
    """
    import os, subprocess, sys
    from parhash import hashing
    from parhash.algorithms import get_algorithm
    path, mode, quiet = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hashing.MMAP_QUIET_NS = quiet
    command = [sys.executable, "-c", sys.argv[4], path, mode]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert writer.stdout.readline() == b"ready\\n"
    try:
        # Slow hashes, so that the read lasts long; tried again (up to 50 times) if the
        # writer was not scheduled while it lasted (2 shared cores): one change is enough.
        algos = [get_algorithm(n) for n in ("sha512", "sha3-256", "sha256", "md5")]
        for attempt in range(50):
            result = hashing.hash_file(path, algos, True)
            if result[3] is not None:
                break
        print(repr(result))
    finally:
        writer.kill()
        writer.wait()
    """
)

WRITER = textwrap.dedent(
    """
    import os, sys
    path, mode = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_WRONLY)
    size = os.fstat(fd).st_size
    first = True
    while True:
        if mode == "grow":
            os.pwrite(fd, b"+", size)
            size += 1
        elif mode == "shrink":  # a byte at a time: it takes seconds to empty 1 MiB
            size -= 1
            os.ftruncate(fd, size)
        else:
            os.pwrite(fd, os.urandom(1), (size * 7919) % max(size, 1))
        if first:
            print("ready", flush=True)
            first = False
    """
)


#: (size, quiet) cases: the read loop; a large file read (changed recently: the default
#: rule); the default rule itself, as a run uses it; a large file mapped (quiet at once).
CHANGE_CASES = [
    (MMAP_THRESHOLD - 1, 10**18),
    (64 << 20, 10**18),
    (64 << 20, None),
    (64 << 20, 0),
]


@pytest.mark.parametrize(
    ("mode", "size", "quiet"),
    [
        (mode, size, quiet)
        for mode in ("grow", "shrink", "rewrite")
        for size, quiet in CHANGE_CASES
        # a mapped file that shrinks while hashed may SIGBUS (see MMAP_QUIET_NS): not a case
        if not (mode == "shrink" and quiet == 0)
    ],
)
def test_file_changed_while_being_read_is_an_error(tmp_path, mode, size, quiet):
    path = tmp_path / "moving"
    path.write_bytes(payload(size))
    quiet = hashing.MMAP_QUIET_NS if quiet is None else quiet
    proc = subprocess.run(
        [sys.executable, "-c", CHANGE_DRIVER, str(path), mode, str(quiet), WRITER],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(CHANGED)


def test_shrinking_file_with_the_default_rule_through_the_cli(tmp_path):
    """A large file truncated again and again while ``parhash scan`` hashes it: an error
    record and exit 1, never a dead worker (no "worker" warning on stderr)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    path = tree / "log"
    path.write_bytes(payload(256 << 20))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "shrink"], stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout.readline() == b"ready\n"
        result = run_cli("scan", "-a", "sha512", "-f", "jsonl", tree)
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode == 1, result.stderr
    assert "file changed while being read" in result.text
    assert "worker" not in result.stderr


# -- O_NOATIME -----------------------------------------------------------------------------


@pytest.fixture
def strictatime(tmp_path):
    """A tmpfs mounted strictatime (every read updates atime), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "strictatime,size=64m", "tmpfs", point], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", point], check=False)


OLD_ATIME_NS = 1_000_000_000_000_000_000  # 2001-09-09


def _files_with_old_atime(root: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    made = {}
    for name, size in sizes.items():
        data = payload(size)
        (root / name).write_bytes(data)
        os.utime(root / name, ns=(OLD_ATIME_NS, os.stat(root / name).st_mtime_ns))
        made[name] = data
    return made


def test_a_scan_leaves_atime_alone_on_a_strictatime_mount(strictatime):
    tree = strictatime / "tree"
    tree.mkdir()
    made = _files_with_old_atime(tree, {"small": 100, "chunk": CHUNK_SIZE + 9, "big": 3 << 20})
    probe = strictatime / "probe"  # the mount does update atime on a plain read
    probe.write_bytes(b"x")
    os.utime(probe, ns=(OLD_ATIME_NS, os.stat(probe).st_mtime_ns))
    probe.read_bytes()
    assert os.stat(probe).st_atime_ns != OLD_ATIME_NS
    result = run_cli("scan", "-a", "sha256", tree)
    assert result.returncode == 0, result.stderr
    for name, data in made.items():
        assert f"{hashlib.sha256(data).hexdigest()}  {tree / name}".encode() in result.stdout
        assert os.stat(tree / name).st_atime_ns == OLD_ATIME_NS, name


def test_a_mapped_file_keeps_its_atime_too(strictatime, monkeypatch, spy_map):
    monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 0)
    made = _files_with_old_atime(strictatime, {"big": MMAP_WINDOW + 3})
    path = str(strictatime / "big")
    assert hash_file(path, get_algorithm("xxh3"), True)[2] == REFERENCE["xxh3"](made["big"])
    assert spy_map == [MMAP_WINDOW + 3]
    assert os.stat(path).st_atime_ns == OLD_ATIME_NS


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files nobody reads")
def test_files_of_another_owner_fall_back_once_and_hash_correctly(tmp_path):
    """As nobody, files owned by root (readable): O_NOATIME is refused (EPERM), the open
    is retried without it, and the process stops asking: one extra open in all."""
    tree = tmp_path / "tree"
    contents = {f"f{i}": payload(i * 997) for i in range(30)}
    write_tree(tree, contents)
    tree.chmod(0o755)

    def hash_as_nobody():
        hashing._noatime = getattr(os, "O_NOATIME", 0)
        opens = []
        real_open = os.open

        def counting_open(path, flags, *args, **kwargs):
            opens.append(path)
            return real_open(path, flags, *args, **kwargs)

        os.open = counting_open
        try:
            names = sorted(contents)
            results = hash_files(names, [get_algorithm("sha256")], False, HashSettings(), False)
        finally:
            os.open = real_open
        return names, results, len(opens), hashing._noatime

    names, results, opens, noatime = run_unprivileged(hash_as_nobody, str(tree))
    for name, result in zip(names, results, strict=True):
        assert result[2] == hashlib.sha256(contents[name]).hexdigest()
    assert noatime == 0
    assert opens == len(names) + 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files nobody reads")
def test_a_scan_as_nobody_of_root_files_matches_hashlib(tmp_path):
    """``parhash.scan`` (the library's whole pipeline, in-process) run as nobody on root's
    files: every open of O_NOATIME is refused, the fallback hashes them all."""
    tree = tmp_path / "tree"
    contents = {f"f{i}": payload(i * 4001) for i in range(40)}
    write_tree(tree, contents)
    tree.chmod(0o755)

    import parhash

    list(parhash.scan([str(tree)], algo="sha256", jobs=1))  # imports what it needs (nobody
    # cannot read this interpreter's library), and it is root's scan: O_NOATIME is allowed

    def scan():
        return {(r.path, r.digest, r.error) for r in parhash.scan(["."], algo="sha256", jobs=1)}

    got = run_unprivileged(scan, str(tree))
    assert got == {(f"./{n}", hashlib.sha256(d).hexdigest(), None) for n, d in contents.items()}


# -- cold read-ahead -------------------------------------------------------------------------


def _evict(paths: list[Path]) -> None:
    """Drop these files (only) from the page cache: the next read finds them cold."""
    for path in paths:
        evict_from_page_cache(path)


@pytest.fixture
def spy_ahead(monkeypatch) -> list[int]:
    """Start index of every read-ahead a task engaged."""
    starts: list[int] = []

    class Spy(hashing._ReadAhead):
        def __init__(self, paths, start, flags, named):
            starts.append(start)
            super().__init__(paths, start, flags, named)

    monkeypatch.setattr(hashing, "_ReadAhead", Spy)
    return starts


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_cold_task_reads_ahead_and_gives_the_same_results(tmp_path, spy_ahead):
    tree = tmp_path / "cold"
    contents = {f"f{i:03d}": payload(i * 331 % 40000) for i in range(3 * hashing.READ_AHEAD)}
    write_tree(tree, contents)
    (tree / "sub").mkdir()
    os.mkfifo(tree / "fifo")
    (tree / "link").symlink_to(tree / "f001")
    names = sorted(contents)
    paths = [str(tree / n) for n in names]
    odd = [str(tree / "missing"), str(tree / "sub"), str(tree / "fifo"), str(tree / "link")]
    paths[5:5] = odd  # within the first read-ahead window
    files = [tree / n for n in names]
    _evict(files)
    fds = _open_fds()
    with deadline(20):
        results = hash_files(paths, [get_algorithm("md5")], False, HashSettings(("md5",)), False)
    assert _open_fds() == fds  # nothing opened ahead is left open
    assert spy_ahead and spy_ahead[0] <= 5  # the first cold read engaged it
    expected_odd = [
        "No such file or directory",
        "not a regular file (directory)",
        "not a regular file (FIFO)",
        "is a symbolic link (not followed)",
    ]
    for path, result in zip(paths, results, strict=True):
        if path in odd:
            assert result == (None, None, None, expected_odd[odd.index(path)])
        else:
            data = contents[os.path.basename(path)]
            digest = hashlib.md5(data).hexdigest()
            assert result == (len(data), os.stat(path).st_mtime_ns, digest, None)


def test_a_cold_named_task_reads_a_named_fifo_to_its_end(tmp_path, spy_ahead):
    """Named paths are read ahead with O_NONBLOCK and reopened by the reader: a named FIFO
    among them neither blocks the read-ahead nor loses its writer's data."""
    tree = tmp_path / "cold"
    contents = {f"f{i}": payload(5000 + i) for i in range(6)}
    write_tree(tree, contents)
    fifo = tree / "fifo"
    os.mkfifo(fifo)
    paths = [str(tree / n) for n in sorted(contents)]
    paths.insert(3, str(fifo))
    _evict([tree / n for n in contents])
    data = b"through the pipe" * 1000

    def write_later():
        time.sleep(0.5)
        fifo.write_bytes(data)

    writer = threading.Thread(target=write_later)
    writer.start()
    fds = _open_fds()
    with deadline(20):
        results = hash_files(paths, [get_algorithm("sha1")], True, HashSettings(("sha1",)), True)
    writer.join()
    assert _open_fds() == fds
    assert spy_ahead == [1]
    assert results[3][0] == len(data) and results[3][2] == hashlib.sha1(data).hexdigest()
    for path, result in zip(paths, results, strict=True):
        if path != str(fifo):
            assert result[2] == hashlib.sha1(contents[os.path.basename(path)]).hexdigest()


def test_a_warm_task_does_not_read_ahead(tmp_path, spy_ahead):
    contents = {f"f{i}": payload(i * 100) for i in range(50)}
    write_tree(tmp_path / "warm", contents)
    paths = [str(tmp_path / "warm" / n) for n in sorted(contents)]
    for path in paths:
        Path(path).read_bytes()
    hash_files(paths, [get_algorithm("xxh3")], False, HashSettings(), False)
    assert spy_ahead == []


# -- syscalls per small file, counted by strace ----------------------------------------------

STRACE = shutil.which("strace")

#: Syscalls that touch a file's data or inode, by what they do. Anything else (futex,
#: mmap of the allocator, pipe reads and writes of the pool) is per task or per run.
CLASSES = {
    "open": {"open", "openat", "openat2"},
    "stat": {"stat", "fstat", "newfstatat", "statx", "lstat"},
    "read": {"read", "readv", "pread64", "preadv", "preadv2"},
    "close": {"close"},
    "other": {"fadvise64", "lseek", "mincore", "readahead"},
}

#: What one small file may cost at most: open + fstat + one read + close, nothing else.
PER_FILE = {"open": 1, "stat": 1, "read": 1, "close": 1, "other": 0}

#: Per-run and per-task syscalls the difference of two runs may still hold (one more task,
#: a pipe read or two of the pool, a late import): generous, and still far below one more
#: syscall per file (900 here).
SLACK = 60


def _strace_counts(command: list[str], out: Path, cwd: Path) -> dict[str, int]:
    subprocess.run(
        [STRACE, "-f", "-c", "-o", str(out), *command],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    counts = dict.fromkeys(CLASSES, 0)
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        for name, members in CLASSES.items():
            if fields[-1] in members:
                counts[name] += int(fields[3])
    return counts


def _small_tree(root: Path, files: int) -> Path:
    rng = random.Random(files)
    spec = {f"f{i:05d}": rng.randbytes(rng.randrange(0, 16384)) for i in range(files)}
    spec.update({f"chunk{i}": payload(CHUNK_SIZE) for i in range(files // 10)})  # one read too
    write_tree(root, spec)
    for path in root.iterdir():
        path.read_bytes()  # warm: a cold task would read ahead (one fadvise per file)
    return root


def _per_file_excess(command_for, tmp_path: Path) -> dict[str, float]:
    few, many = 100, 1000
    trees = {n: _small_tree(tmp_path / f"t{n}", n) for n in (few, many)}
    counts = {n: _strace_counts(command_for(trees[n]), tmp_path / f"s{n}", tmp_path) for n in trees}
    files = {n: sum(1 for _ in trees[n].iterdir()) for n in trees}
    added = files[many] - files[few]
    excess = {}
    for name, allowed in PER_FILE.items():
        extra = counts[many][name] - counts[few][name] - allowed * added
        excess[name] = extra
    return {"added": added, **excess}


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_a_small_file_costs_open_fstat_read_close_in_the_worker(tmp_path):
    """``hash_files`` as a worker calls it, traced: the difference between 1,020 and 102
    files is 918 x (open + fstat + read + close), give or take ``SLACK`` in all."""
    script = textwrap.dedent(
        """
        import os, sys
        from parhash.algorithms import get_algorithm
        from parhash.hashing import HashSettings, hash_files
        root = sys.argv[1]
        paths = [os.path.join(root, n) for n in sorted(os.listdir(root))]
        results = hash_files(paths, [get_algorithm("xxh3")], False, HashSettings(), False)
        assert all(r[3] is None for r in results), results
        """
    )
    excess = _per_file_excess(lambda tree: [sys.executable, "-c", script, str(tree)], tmp_path)
    assert all(v <= SLACK for k, v in excess.items() if k != "added"), excess


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_a_small_file_costs_open_fstat_read_close_in_a_whole_scan(tmp_path):
    """``parhash scan -j 2`` traced with its workers (-f): per file, the whole run (walk,
    workers, output) makes no more file syscalls than open + fstat + read + close."""
    excess = _per_file_excess(
        lambda tree: [sys.executable, "-m", "parhash", "scan", "-j", "2", str(tree)], tmp_path
    )
    assert all(v <= SLACK for k, v in excess.items() if k != "added"), excess


# -- per-thread state -----------------------------------------------------------------------


def test_two_threads_hash_at_once_with_their_own_buffers(tmp_path, monkeypatch):
    """Each thread reads through its own buffer: a shared one would mix the chunks of two
    files read at once (the GIL is released in every read)."""
    monkeypatch.setattr(hashing, "MMAP_QUIET_NS", 0)
    sizes = [17, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5, MMAP_THRESHOLD + 7]
    sets = {}
    for who in ("a", "b"):
        directory = tmp_path / who
        directory.mkdir()
        rng = random.Random(who)
        sets[who] = {}
        for size in sizes:
            data = rng.randbytes(size)
            (directory / str(size)).write_bytes(data)
            sets[who][str(directory / str(size))] = hashlib.sha256(data).hexdigest()
    errors: list[str] = []
    states = set()
    start = threading.Barrier(2)

    def work(who: str) -> None:
        states.add(id(hashing._local.state))
        paths = list(sets[who]) * 3
        start.wait()
        for _ in range(20):
            results = hash_files(paths, [get_algorithm("sha256")], True, HashSettings(), False)
            got = [r[2] for r in results]
            if got != [sets[who][p] for p in paths]:
                errors.append(who)

    threads = [threading.Thread(target=work, args=(who,)) for who in sets]
    with deadline(60):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(states) == 2


def test_two_threads_open_paths_beyond_path_max_at_once(tmp_path):
    """The long-path opener is per thread: each keeps its own deep directory open."""
    made = {}
    for who in ("a", "b"):
        made[who] = build_deep(
            tmp_path / who, 1500, {1500: {b"x": who.encode() * 100, b"y": b"y" * (CHUNK_SIZE + 3)}}
        )
    errors: list[object] = []
    start = threading.Barrier(2)

    def work(who: str) -> None:
        paths = [os.fsdecode(p) for p in made[who]] * 5
        expected = [hashlib.md5(made[who][os.fsencode(p)]).hexdigest() for p in paths]
        start.wait()
        for _ in range(20):
            results = hash_files(paths, [get_algorithm("md5")], False, HashSettings(), False)
            if [r[2] for r in results] != expected:
                errors.append([r[3] for r in results])

    threads = [threading.Thread(target=work, args=(who,)) for who in made]
    try:
        with deadline(60):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        for who in made:
            remove_tree(tmp_path / who)
    assert errors == []


def test_a_thread_that_ends_closes_its_deep_directory(tmp_path):
    made = build_deep(tmp_path / "deep", 1500, {1500: {b"x": b"deep"}})
    path = os.fsdecode(next(iter(made)))
    fds = _open_fds()

    def work():
        assert hash_file(path, get_algorithm("md5"), False)[2] == hashlib.md5(b"deep").hexdigest()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    try:
        assert _open_fds() == fds
    finally:
        remove_tree(tmp_path / "deep")
