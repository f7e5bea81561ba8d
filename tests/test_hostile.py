"""Hostile trees through the real CLI: special files, paths beyond PATH_MAX, names that break
naive parsers, files that vanish between the walk and the read, empty and error-only trees,
unlistable directories as an unprivileged user, and descriptor use over a long run.

Every test asserts: no hang (subprocess timeouts), no traceback, the right exit status, the
right error records, and a hashlib-computed digest for every regular file. Paths of the deep
tree are ~8,000 characters: messages show them by length and suffix only (``short``).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import json
import os
import random
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import CliResult, csv_table, jsonl_records, run_cli, run_unprivileged, write_tree

# The `unprivileged` fixture makes an interpreter reachable for user nobody (it lives below
# a 0700 /root here); it is shared with the process tests rather than copied.
from test_processes import unprivileged  # noqa: F401

import parhash
import parhash.pipeline  # imported now: run_unprivileged's child may not read it
import parhash.pool

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mknod, inotify and /proc")

PATH_MAX = 4096
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# --------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(path: str | bytes) -> str:
    """A path fit for an assertion message: whole if short, else its length and its end."""
    if len(path) <= 120:
        return repr(path)
    return f"<{len(path)} chars ...{path[-50:]!r}>"


def brief(text: str, lines: int = 8) -> str:
    """stderr for an assertion message, with every long line (a deep path) cut."""
    kept = [
        line if len(line) <= 200 else f"{line[:80]} ...<{len(line)} chars>... {line[-80:]}"
        for line in text.splitlines()[:lines]
    ]
    return "\n".join(kept)


def no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.stderr, brief(result.stderr, 40)
    assert "internal error" not in result.stderr, brief(result.stderr)


def parse_jsonl(data: bytes) -> list[dict]:
    """Split on b"\\n" only: a name may hold U+2028 or U+0085, which str.splitlines splits."""
    assert data == b"" or data.endswith(b"\n"), f"unterminated output: ...{data[-80:]!r}"
    return jsonl_records(data)


def scan_jsonl(*args: str | os.PathLike, cwd=None, timeout: float = 120):
    result = run_cli("scan", "-q", "-a", "sha256", "-f", "jsonl", *args, cwd=cwd, timeout=timeout)
    no_traceback(result)
    return result, parse_jsonl(result.stdout)


def by_path(records: list[dict]) -> dict[bytes, dict]:
    """{path bytes: record}; a path listed twice fails."""
    out: dict[bytes, dict] = {}
    for record in records:
        key = os.fsencode(record["path"])
        assert key not in out, f"listed twice: {short(key)}"
        out[key] = record
    return out


def assert_records(
    records: dict[bytes, dict], files: dict[bytes, bytes], errors: dict[bytes, str]
) -> None:
    """Exactly one record per file and per expected error: hashlib digests, exact errors."""
    unexpected = sorted(short(p) for p in records.keys() - files.keys() - errors.keys())
    missing = sorted(short(p) for p in (files.keys() | errors.keys()) - records.keys())
    assert not unexpected and not missing, (unexpected[:5], missing[:5])
    for path, content in files.items():
        record = records[path]
        assert record["error"] is None, (short(path), record["error"])
        assert record["size"] == len(content), short(path)
        assert record["hash"] == sha256(content), short(path)
    for path, message in errors.items():
        record = records[path]
        assert (record["error"], record["hash"], record["size"]) == (message, None, None), (
            short(path),
            record["error"],
        )


def bind_unix_socket(path: Path) -> socket.socket:
    """AF_UNIX addresses hold 108 bytes: bind by a name relative to the socket's directory."""
    sock = socket.socket(socket.AF_UNIX)
    old = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
        sock.listen()
    finally:
        os.chdir(old)
    return sock


class OpenWatch:
    """inotify IN_OPEN/IN_ACCESS watches on a few files: did anyone open them?"""

    IN_ACCESS = 0x1
    IN_OPEN = 0x20

    def __init__(self, paths: list[Path]) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.names: dict[int, str] = {}
        for path in paths:
            wd = self.libc.inotify_add_watch(
                self.fd, os.fsencode(path), self.IN_OPEN | self.IN_ACCESS
            )
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.names[wd] = path.name

    def opened(self) -> set[str]:
        found: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                wd, _mask, _cookie, length = (
                    int.from_bytes(data[offset + i : offset + i + 4], sys.byteorder)
                    for i in (0, 4, 8, 12)
                )
                found.add(self.names[wd])
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def run_parallel(calls: dict[str, tuple], cwd=None) -> dict[str, CliResult]:
    """Independent CLI runs at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            k: pool.submit(run_cli, *args, cwd=cwd, timeout=120) for k, args in calls.items()
        }
        return {k: f.result() for k, f in futures.items()}


def ok_lines(data: bytes) -> tuple[int, int, list[bytes]]:
    """(lines, lines ending ': OK', the others) of a check run's stdout."""
    lines = data.split(b"\n")
    assert lines[-1] == b"", "unterminated check output"
    lines = lines[:-1]
    bad = [line for line in lines if not line.endswith(b": OK")]
    return len(lines), len(lines) - len(bad), bad


def audit_classes(result: CliResult) -> dict[str, set[bytes]]:
    """{class: {path bytes}} of an ``audit -f jsonl`` run."""
    out: dict[str, set[bytes]] = {}
    for event in parse_jsonl(result.stdout):
        out.setdefault(event["class"], set()).add(os.fsencode(event["path"]))
    return out


# --------------------------------------------------------------------------- special files


@pytest.fixture
def special_tree(tmp_path) -> Iterator[tuple[Path, dict[bytes, bytes], dict[bytes, str]]]:
    """Regular files next to a socket, a character device and a block device (we are root)."""
    if os.geteuid() != 0:
        pytest.skip("mknod of device nodes needs root")
    tree = tmp_path / "tree"
    spec = {
        "a.txt": b"alpha\n",
        "sub": {
            "big.bin": random.Random(3).randbytes(300_000),
            "deeper": {"empty": b""},
        },
        "z": b"zed",
    }
    write_tree(tree, spec)
    base = os.fsencode(tree)
    files = {
        base + b"/a.txt": spec["a.txt"],
        base + b"/sub/big.bin": spec["sub"]["big.bin"],
        base + b"/sub/deeper/empty": b"",
        base + b"/z": b"zed",
    }
    sock = bind_unix_socket(tree / "sub" / "sock")
    os.mknod(tree / "sub" / "chr", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(tree / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    errors = {
        base + b"/sub/sock": "not a regular file (socket)",
        base + b"/sub/chr": "not a regular file (character device)",
        base + b"/blk": "not a regular file (block device)",
    }
    try:
        yield tree, files, errors
    finally:
        sock.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_special_files_are_error_records_and_never_opened(special_tree, jobs):
    tree, files, errors = special_tree
    watch = OpenWatch([tree / "sub" / "chr", tree / "blk"])
    try:
        result, records = scan_jsonl(tree, "-j", jobs)
        opened_by_scan = watch.opened()
        # Control: the watch does see an open, so an empty set above means something.
        for node in (tree / "sub" / "chr", tree / "blk"):
            os.close(os.open(node, os.O_RDONLY | os.O_NONBLOCK))
        opened_by_us = watch.opened()
    finally:
        watch.close()
    assert result.returncode == 1, brief(result.stderr)
    assert_records(by_path(records), files, errors)
    assert opened_by_scan == set(), f"scan opened device nodes: {opened_by_scan}"
    assert opened_by_us == {"chr", "blk"}
    warnings = result.stderr.splitlines()
    for path, message in errors.items():
        assert f"parhash: warning: {os.fsdecode(path)}: {message}" in warnings, brief(result.stderr)


@pytest.mark.timeout(120)
def test_special_files_in_a_checksum_file_are_read_as_sha256sum_reads_them(special_tree, tmp_path):
    """A line names its file: a device node is read (issue 10 item 14; chr is /dev/null's
    1:3, blk an unbound loop device), a socket cannot be opened. The verdicts are
    sha256sum -c's on the same file."""
    _tree, files, errors = special_tree
    lines = [f"{sha256(content)}  {os.fsdecode(path)}\n" for path, content in files.items()]
    lines += [f"{EMPTY_SHA256}  {os.fsdecode(path)}\n" for path in errors]
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("".join(lines))
    result = run_cli("check", "-j", "2", sums, timeout=120)
    no_traceback(result)
    peer = subprocess.run(["sha256sum", "-c", sums], capture_output=True, timeout=60)
    assert result.returncode == peer.returncode == 1, brief(result.stderr)
    out = set(result.stdout.split(b"\n")[:-1])
    assert out == set(peer.stdout.split(b"\n")[:-1])
    socket = os.fsencode(next(p for p, why in errors.items() if "socket" in why))
    assert socket + b": FAILED open or read" in out
    assert {p + b": OK" for p in files} | {p + b": OK" for p in errors if p != socket} <= out
    assert "WARNING: 1 listed file could not be read" in result.stderr, brief(result.stderr)


@pytest.mark.timeout(120)
def test_special_files_audit_as_unreadable_only(special_tree, tmp_path):
    tree, files, errors = special_tree
    manifest = tmp_path / "m.jsonl"
    taken = run_cli("scan", "-q", "-j1", "-a", "sha256", "-f", "jsonl", tree, "-o", manifest)
    assert taken.returncode == 1, brief(taken.stderr)  # the manifest holds the error records
    runs = run_parallel(
        {
            "default": ("audit", "-j1", "-f", "jsonl", "--verbose", manifest),
            "lenient": ("audit", "-j1", "-f", "jsonl", "--fail-on", "modified", manifest),
        }
    )
    for result in runs.values():
        no_traceback(result)
    base = os.fsencode(tree) + b"/"
    assert audit_classes(runs["default"]) == {
        "unreadable": {p[len(base) :] for p in errors},
        "unchanged": {p[len(base) :] for p in files},
    }
    assert runs["default"].returncode == 1
    assert runs["lenient"].returncode == 0, brief(runs["lenient"].stderr)


# --------------------------------------------------------------------------- beyond PATH_MAX

SEGMENT = b"ddd"
DEEP = 2000


def build_deep(
    root: Path,
    depth: int,
    files: dict[int, dict[bytes, bytes]],
    symlinks: dict[int, dict[bytes, bytes]] | None = None,
    fifos: dict[int, list[bytes]] | None = None,
) -> dict[bytes, bytes]:
    """A chain of ``depth`` directories named ddd, built with *at() calls (a path beyond
    PATH_MAX fails in one piece); returns {full path bytes: content} of the files made."""
    root.mkdir()
    base = os.fsencode(root)
    made: dict[bytes, bytes] = {}
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth + 1):
            if level:
                os.mkdir(SEGMENT, dir_fd=fd)
                child = os.open(SEGMENT, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
            here = base + b"/ddd" * level
            for name, content in files.get(level, {}).items():
                out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
                try:
                    view = memoryview(content)
                    while view:
                        view = view[os.write(out, view) :]
                finally:
                    os.close(out)
                made[here + b"/" + name] = content
            for name, target in (symlinks or {}).get(level, {}).items():
                os.symlink(target, name, dir_fd=fd)
            for name in (fifos or {}).get(level, []):
                os.mkfifo(name, dir_fd=fd)
    finally:
        os.close(fd)
    return made


def open_deep(path: bytes, flags: int) -> int:
    """Open a path of any length one component at a time (the test's own, not parhash's)."""
    parts = path.split(b"/")
    fd = os.open(b"/" if path.startswith(b"/") else b".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            if part:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def remove_tree(root: Path) -> None:
    """rm -r for a tree deeper than PATH_MAX and than the recursion limit (shutil.rmtree
    recurses): each subdirectory is moved up to the top, emptied there, removed."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    moved = 0
    try:
        pending = os.listdir(top)
        while pending:
            name = pending.pop()
            try:
                os.unlink(name, dir_fd=top)
                continue
            except IsADirectoryError:
                pass
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            try:
                for child in os.listdir(sub):
                    try:
                        os.unlink(child, dir_fd=sub)
                    except IsADirectoryError:
                        moved += 1
                        new = f".rm-{moved}"
                        os.rename(child, new, src_dir_fd=sub, dst_dir_fd=top)
                        pending.append(new)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(root)


def deep_key(path: bytes, base: bytes) -> str:
    """'L<level>/<rest>' for a path of the deep tree (level: how many ddd directories lead
    to it), or a short description of another path."""
    if not path.startswith(base + b"/"):
        return f"unexpected {short(path)}"
    rest, level = path[len(base) :], 0
    while rest.startswith(b"/ddd/"):
        rest, level = rest[4:], level + 1
    return f"L{level}{rest.decode(errors='replace')}"


def deep_files(base_len: int) -> dict[int, dict[bytes, bytes]]:
    """Files of the deep tree: the top, every 10th level, the middle, the bottom (larger than
    one read), and files whose full path is 4094..4098 bytes (PATH_MAX counts the NUL)."""
    rng = random.Random(2000)
    files: dict[int, dict[bytes, bytes]] = {1: {b"top": b"top\n"}}
    for level in range(10, DEEP, 10):
        files.setdefault(level, {})[b"f%04d" % level] = b"level %d\n" % level * (level % 7)
    files.setdefault(1000, {})[b"mid"] = rng.randbytes(1000)
    files.setdefault(DEEP, {})[b"bottom"] = rng.randbytes(300_000)
    edge = (PATH_MAX - 16 - base_len) // 4
    for total in range(PATH_MAX - 2, PATH_MAX + 3):
        length = total - base_len - 4 * edge - 1
        name = (b"edge%d-" % total).ljust(length, b"x")
        assert len(name) == length
        files.setdefault(edge, {})[name] = b"%d bytes of path\n" % total
    return files


@pytest.fixture(scope="module")
def deep_tree(tmp_path_factory) -> Iterator[tuple[Path, dict[bytes, bytes]]]:
    root = tmp_path_factory.mktemp("deep") / "t"
    try:
        made = build_deep(root, DEEP, deep_files(len(os.fsencode(root))))
        longest = max(len(p) for p in made)
        assert longest > 8000, longest
        lengths = {len(p) for p in made}
        assert lengths >= set(range(PATH_MAX - 2, PATH_MAX + 3)), sorted(lengths)[:20]
        yield root, made
    finally:
        if root.exists():
            remove_tree(root)


@pytest.fixture
def deep_root(tmp_path) -> Iterator[Path]:
    """Where a test builds its own deep tree; removed here, as pytest's rmtree recurses."""
    root = tmp_path / "t"
    try:
        yield root
    finally:
        if root.exists():
            remove_tree(root)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("flags", [(), ("-L",), ("-x",), ("-L", "-x")], ids=str)
def test_deep_tree_beyond_path_max_is_hashed(deep_tree, flags, jobs):
    root, made = deep_tree
    result, records = scan_jsonl(root, "-j", jobs, *flags)
    assert result.returncode == 0, brief(result.stderr)
    assert result.stderr == "", brief(result.stderr)
    base = os.fsencode(root)
    got = by_path(records)
    assert sorted(deep_key(p, base) for p in got) == sorted(deep_key(p, base) for p in made)
    assert_records(got, made, {})
    assert all(r["root"] == str(root) for r in records)


@pytest.mark.timeout(180)
def test_deep_tree_audit_and_check_against_its_own_manifests(deep_tree, tmp_path):
    root, made = deep_tree
    taken = run_parallel(
        {
            "jsonl": ("scan", "-q", "-j2", "-a", "sha256", "-f", "jsonl", root, "-o", "m.jsonl"),
            "sums": ("scan", "-q", "-j2", "-a", "sha256", root, "-o", "m.sha256"),
        },
        cwd=tmp_path,
    )
    for result in taken.values():
        no_traceback(result)
        assert result.returncode == 0, brief(result.stderr)
    runs = run_parallel(
        {
            "audit": ("audit", "-j2", "-f", "json", "m.jsonl"),
            "check": ("check", "-j2", "m.sha256"),
        },
        cwd=tmp_path,
    )
    for result in runs.values():
        no_traceback(result)
    audit = runs["audit"]
    assert audit.returncode == 0, brief(audit.stderr)
    doc = json.loads(audit.stdout)
    counts = doc["audit"]["counts"]
    assert counts.pop("unchanged") == len(made)
    assert set(counts.values()) == {0}, counts
    assert doc["changes"] == []
    check = runs["check"]
    assert check.returncode == 0, brief(check.stderr)
    total, ok, bad = ok_lines(check.stdout)
    assert (total, ok) == (len(made), len(made)), [short(line) for line in bad[:3]]


@pytest.mark.timeout(180)
def test_deep_tree_audit_finds_the_changed_deep_files(deep_root, tmp_path):
    root = deep_root
    rng = random.Random(5)
    made = build_deep(
        root,
        1500,
        {
            3: {b"shallow": b"shallow\n"},
            1100: {b"grows": b"short\n", b"same": rng.randbytes(5000)},
            1500: {b"rots": rng.randbytes(70_000)},
        },
    )
    base = os.fsencode(root)
    taken = run_cli(
        "scan", "-q", "-j2", "-a", "sha256", "-f", "jsonl", root, "-o", "m.jsonl", cwd=tmp_path
    )
    assert taken.returncode == 0, brief(taken.stderr)
    grows = base + b"/ddd" * 1100 + b"/grows"
    rots = base + b"/ddd" * 1500 + b"/rots"
    fd = open_deep(grows, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"and longer now\n")
    finally:
        os.close(fd)
    fd = open_deep(rots, os.O_RDWR)
    try:
        before = os.fstat(fd)
        os.pwrite(fd, bytes(b ^ 0xFF for b in made[rots][:100]), 0)
        os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot: same size, mtime
    finally:
        os.close(fd)
    result = run_cli("audit", "-j2", "-f", "jsonl", "--verbose", "m.jsonl", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 1, brief(result.stderr)
    found = {
        kind: sorted(deep_key(base + b"/" + p, base) for p in paths)
        for kind, paths in audit_classes(result).items()
    }
    assert found == {
        "modified": ["L1100/grows"],
        "corrupted": ["L1500/rots"],
        "unchanged": ["L1100/same", "L3/shallow"],
    }


def build_linked(root: Path, depth: int, links: dict[bytes, bytes]) -> bytes:
    """A chain ``depth`` deep whose last directory holds a file, a FIFO, a subdirectory with
    a file, and ``links``; returns that directory's path (with a trailing slash)."""
    build_deep(root, depth, {depth: {b"target": b"the target\n"}}, links, {depth: [b"fifo"]})
    here = os.fsencode(root) + b"/ddd" * depth + b"/"
    fd = open_deep(here + b".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.mkdir(b"sub", dir_fd=fd)
        out = os.open(b"sub/inner", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"inner\n")
        os.close(out)
    finally:
        os.close(fd)
    return here


DEPTHS = pytest.mark.parametrize("depth", [3, 1100], ids=["shallow", "beyond-PATH_MAX"])


@pytest.mark.timeout(120)
@DEPTHS
def test_followed_symlinks_to_files_and_directories_deep_in_the_tree(deep_root, depth):
    """-L at any depth: links to files and directories are followed, a loop is detected."""
    links = {b"link": b"target", b"dirlink": b"sub", b"loop": b"."}
    here = build_linked(deep_root, depth, {depth: links})
    assert (len(here) > PATH_MAX) == (depth > 3)
    result, records = scan_jsonl(deep_root, "-L", "-j1", "-e", "fifo")
    assert result.returncode == 1, brief(result.stderr)
    got = by_path(records)
    shown = {deep_key(p, os.fsencode(deep_root)): got[p]["error"] for p in got}
    assert shown == {
        f"L{depth}/target": None,
        f"L{depth}/link": None,
        f"L{depth}/sub/inner": None,
        f"L{depth}/dirlink/inner": None,
        f"L{depth}/loop": "file system loop: a symbolic link leads back to a parent",
    }
    files = {here + b"target": b"the target\n", here + b"link": b"the target\n"}
    files |= {here + b"sub/inner": b"inner\n", here + b"dirlink/inner": b"inner\n"}
    loop = {here + b"loop": "file system loop: a symbolic link leads back to a parent"}
    assert_records(got, files, loop)


@pytest.mark.timeout(120)
@DEPTHS
def test_followed_broken_symlinks_deep_in_the_tree(deep_root, depth):
    """-L at any depth: a dangling link and a link to a FIFO get the same error records
    whether or not their path fits in PATH_MAX."""
    links = {b"dangling": b"nowhere", b"to-fifo": b"fifo"}
    here = build_linked(deep_root, depth, {depth: links})
    result, records = scan_jsonl(deep_root, "-L", "-j1", "-e", "sub")
    assert result.returncode == 1, brief(result.stderr)
    got = by_path(records)
    shown = {deep_key(p, os.fsencode(deep_root)): got[p]["error"] for p in got}
    assert shown == {
        f"L{depth}/target": None,
        f"L{depth}/fifo": "not a regular file (FIFO)",
        f"L{depth}/dangling": "dangling symbolic link",
        f"L{depth}/to-fifo": "not a regular file (FIFO)",
    }
    errors = {
        here + b"fifo": "not a regular file (FIFO)",
        here + b"dangling": "dangling symbolic link",
        here + b"to-fifo": "not a regular file (FIFO)",
    }
    assert_records(got, {here + b"target": b"the target\n"}, errors)


# --------------------------------------------------------------------------- names

UTF8_255 = [
    b"a" * 255,
    ("é" * 127 + "a").encode(),
    ("日" * 85).encode(),
    ("😀" * 63 + "abc").encode(),
    b"\xff" * 255,
]
ODD_NAMES = [
    b"tab\tname",
    b"\ttab-first",
    b"new\nline",
    b"\nnewline-first",
    b"newline-last\n",
    b"back\\slash",
    b"\\",
    b"\\n-not-a-newline",
    b"cr\rname",
    b"cr-last\r",
    b"crlf\r\nname",
    b"-",
    b"-rf",
    b"--help",
    b" leading space",
    b"trailing space ",
    b" ",
    b"   ",
    b"\xff\xfe invalid utf-8",
    b"latin-1 caf\xe9",
    b"truncated \xe6\x97",
    b"encoded surrogate \xed\xa0\x80",
    "line separator \u2028 and paragraph \u2029".encode(),
    "next line \x85 (C1)".encode(),
    b"vt\x0b ff\x0c fs\x1c",
    b"\x1b[31mred\x1b[0m",
    b"del\x7f",
    "rtl \u202e override".encode(),
    b'quote " and comma , and semicolon ;',
    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  fake line",
    b"SHA256 (fake) = 00",
    b"*star",
    b"#hash",
    b"{not json}",
    "combining e\u0301 and zwj \u200d".encode(),
]
#: Directories with odd names, each holding files with odd names too.
ODD_DIRS = {b"\n": [b"-", b" "], b"    ": [b"\xff", b"\\"], b"-d\r": [b"x\ty"], b"\xc3": [b"\xc3("]}


@pytest.fixture
def names_tree(tmp_path) -> tuple[Path, dict[bytes, bytes]]:
    tree = tmp_path / "tree"
    tree.mkdir()
    base = os.fsencode(tree)
    made: dict[bytes, bytes] = {}
    for name in UTF8_255 + ODD_NAMES:
        made[base + b"/" + name] = b"content of " + name
    for directory, names in ODD_DIRS.items():
        os.mkdir(base + b"/" + directory)
        for name in names:
            made[base + b"/" + directory + b"/" + name] = b"in " + directory + b": " + name
    for path, content in made.items():
        with open(path, "wb") as f:
            f.write(content)
    listed = {base + b"/" + n for n in os.listdir(base) if n not in ODD_DIRS}
    listed |= {base + b"/" + d + b"/" + n for d in ODD_DIRS for n in os.listdir(base + b"/" + d)}
    assert listed == set(made)  # the file system kept every name byte for byte
    assert all(len(name) == 255 for name in UTF8_255)
    return tree, made


@pytest.mark.timeout(120)
def test_hostile_names_round_trip_through_every_format(names_tree, tmp_path):
    tree, made = names_tree
    runs = run_parallel(
        {
            fmt: ("scan", "-q", "-j2", "-a", "sha256", "-f", fmt, tree, "-o", f"out.{fmt}")
            for fmt in ("jsonl", "csv", "json")
        },
        cwd=tmp_path,
    )
    for result in runs.values():
        no_traceback(result)
        assert result.returncode == 0, brief(result.stderr)
    jsonl = by_path(parse_jsonl((tmp_path / "out.jsonl").read_bytes()))
    assert_records(jsonl, made, {})
    with open(tmp_path / "out.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = csv_table(f.read())
    header, *rows = rows
    column = {name: i for i, name in enumerate(header)}
    from_csv = {
        os.fsencode(row[column["path"]]): (int(row[column["size"]]), row[column["hash"]])
        for row in rows
    }
    assert len(from_csv) == len(rows)
    assert from_csv == {p: (len(c), sha256(c)) for p, c in made.items()}
    doc = json.loads((tmp_path / "out.json").read_bytes())
    assert by_path(doc["files"]).keys() == made.keys()
    assert_records(by_path(doc["files"]), made, {})
    assert doc["summary"]["files"] == len(made) and doc["summary"]["errors"] == 0


@pytest.mark.timeout(120)
def test_hostile_names_sums_then_check(names_tree, tmp_path):
    tree, made = names_tree
    taken = run_cli("scan", "-q", "-j2", "-a", "sha256", tree, "-o", "SHA256SUMS", cwd=tmp_path)
    assert taken.returncode == 0, brief(taken.stderr)
    result = run_cli("check", "-j2", "SHA256SUMS", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 0, brief(result.stderr)
    total, ok, bad = ok_lines(result.stdout)
    assert (total, ok) == (len(made), len(made)), bad[:5]


@pytest.mark.timeout(120)
def test_hostile_names_audit_unchanged_with_every_manifest_format(names_tree, tmp_path):
    tree, made = names_tree
    formats = ("jsonl", "csv", "json")
    taken = run_parallel(
        {f: ("scan", "-q", "-j1", "-a", "sha256", "-f", f, tree, "-o", f"m.{f}") for f in formats},
        cwd=tmp_path,
    )
    assert {k: r.returncode for k, r in taken.items()} == dict.fromkeys(formats, 0)
    runs = run_parallel(
        {f: ("audit", "-j1", "-f", "jsonl", "--verbose", f"m.{f}") for f in formats},
        cwd=tmp_path,
    )
    keys = {p[len(os.fsencode(tree)) + 1 :] for p in made}
    for fmt, result in runs.items():
        no_traceback(result)
        assert result.returncode == 0, (fmt, brief(result.stderr))
        assert audit_classes(result) == {"unchanged": keys}, fmt


# --------------------------------------------------------------------------- walk/read races


def hash_with_sha256(paths: tuple[str, ...]) -> list[tuple]:
    """The worker's read of a task's files, as it calls it."""
    from parhash.algorithms import get_algorithm
    from parhash.hashing import HashSettings, hash_files

    return hash_files(paths, [get_algorithm("sha256")], False, HashSettings(algos=("sha256",)))


def test_file_removed_between_listing_and_reading_hash_files(tmp_path):
    contents = {name: f"{name} content\n".encode() for name in ("a", "b", "c")}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    paths = tuple(str(tmp_path / name) for name in contents)
    (tmp_path / "b").unlink()  # listed, then gone before the worker opens it
    a, b, c = hash_with_sha256(paths)
    assert b[:3] == (None, None, None)
    assert b[3] == "No such file or directory"
    for result, name in ((a, "a"), (c, "c")):
        size, _mtime, digest, error = result
        assert (size, digest, error) == (len(contents[name]), sha256(contents[name]), None)


def test_files_changed_after_the_walk_listed_them(tmp_path):
    """A library scan with jobs=1 is lazy: when its first record arrives, the directory has
    been listed but the last batches are not hashed yet (300 files: more than the first
    batches hold). Then four of the last files vanish or change type."""
    tree = tmp_path / "tree"
    tree.mkdir()
    contents = {f"f{i:03}": b"file %d\n" % i * (i % 50) for i in range(300)}
    for name, data in contents.items():
        (tree / name).write_bytes(data)
    stream = parhash.scan([str(tree)], algo="sha256", jobs=1)
    records = [next(stream)]
    (tree / "f296").unlink()
    (tree / "f297").unlink()
    os.mkfifo(tree / "f297")
    (tree / "f298").unlink()
    (tree / "f298").mkdir()
    (tree / "f299").unlink()
    (tree / "f299").symlink_to("f000")
    started = time.monotonic()
    records.extend(stream)
    assert time.monotonic() - started < 60  # the FIFO did not block the read
    got = {os.path.basename(r.path): r for r in records}
    assert len(got) == len(records) == 300
    expected_errors = {
        "f296": "No such file or directory",
        "f297": "not a regular file (FIFO)",
        "f298": "not a regular file (directory)",
        "f299": "is a symbolic link (not followed)",
    }
    assert {n: r.error for n, r in got.items() if r.error} == expected_errors
    for name, data in contents.items():
        if name not in expected_errors:
            assert (got[name].size, got[name].digest) == (len(data), sha256(data)), name


# --------------------------------------------------------------------------- degenerate trees


def parse_output(fmt: str, data: bytes) -> tuple[list[tuple[bytes, int | None, str | None]], dict]:
    """(path bytes, size, hash) per record of any output format, and what else it says."""
    if fmt == "sums":
        assert data == b"" or data.endswith(b"\n")
        rows = []
        for line in data.split(b"\n")[:-1]:
            digest, sep, path = line.partition(b"  ")
            assert sep and len(digest) == 64, line
            rows.append((path, None, digest.decode()))
        return rows, {}
    if fmt == "jsonl":
        records = parse_jsonl(data)
        return [(os.fsencode(r["path"]), r["size"], r["hash"]) for r in records], {
            "errors": {os.fsencode(r["path"]): r["error"] for r in records if r["error"]}
        }
    if fmt == "json":
        doc = json.loads(data)
        records = doc["files"]
        rows = [(os.fsencode(r["path"]), r["size"], r["hash"]) for r in records]
        errors = {os.fsencode(r["path"]): r["error"] for r in records if r["error"]}
        return rows, {"errors": errors, "summary": doc["summary"]}
    text = data.decode("utf-8", "surrogateescape")
    header, *table = csv_table(text)
    col = {name: i for i, name in enumerate(header)}
    rows = [
        (
            os.fsencode(r[col["path"]]),
            int(r[col["size"]]) if r[col["size"]] else None,
            r[col["hash"]] or None,
        )
        for r in table
    ]
    errors = {os.fsencode(r[col["path"]]): r[col["error"]] for r in table if r[col["error"]]}
    return rows, {"errors": errors}


def scan_every_format(tree: Path) -> dict[str, CliResult]:
    return run_parallel(
        {
            fmt: ("scan", "-q", "-j2", "-a", "sha256", "-f", fmt, tree)
            for fmt in ("sums", "jsonl", "json", "csv")
        }
    )


def make_empty_dirs(tree: Path) -> None:
    for rel in ("a/b/c", "a/d", "e", "f/g/h/i/j"):
        (tree / rel).mkdir(parents=True)


@pytest.mark.timeout(120)
def test_tree_of_only_empty_directories_in_every_format(tmp_path):
    tree = tmp_path / "tree"
    make_empty_dirs(tree)
    for fmt, result in scan_every_format(tree).items():
        no_traceback(result)
        assert result.returncode == 0, (fmt, brief(result.stderr))
        rows, extra = parse_output(fmt, result.stdout)
        assert rows == [], fmt
        if fmt == "json":
            assert extra["summary"]["files"] == 0 and extra["summary"]["errors"] == 0
        if fmt == "sums":
            assert result.stdout == b""


@pytest.mark.timeout(120)
def test_tree_of_only_empty_files_in_every_format(tmp_path):
    tree = tmp_path / "tree"
    make_empty_dirs(tree)
    names = ["empty", "a/b/c/empty", "a/d/-", "f/g/h/i/j/ ", "e/.hidden"]
    for name in names:
        (tree / name).write_bytes(b"")
    paths = {os.fsencode(tree / name) for name in names}
    for fmt, result in scan_every_format(tree).items():
        no_traceback(result)
        assert result.returncode == 0, (fmt, brief(result.stderr))
        rows, extra = parse_output(fmt, result.stdout)
        assert sorted(r[0] for r in rows) == sorted(paths), fmt
        assert {r[2] for r in rows} == {EMPTY_SHA256}, fmt
        if fmt != "sums":
            assert {r[1] for r in rows} == {0}, fmt
        if fmt == "json":
            assert extra["summary"]["files"] == 5 and extra["summary"]["errors"] == 0


@pytest.mark.timeout(120)
def test_tree_of_only_special_files_in_every_format(tmp_path):
    tree = tmp_path / "tree"
    make_empty_dirs(tree)
    os.mkfifo(tree / "a" / "fifo")
    sock = bind_unix_socket(tree / "e" / "sock")
    errors = {
        os.fsencode(tree / "a" / "fifo"): "not a regular file (FIFO)",
        os.fsencode(tree / "e" / "sock"): "not a regular file (socket)",
    }
    if os.geteuid() == 0:
        os.mknod(tree / "a" / "b" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(tree / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        errors[os.fsencode(tree / "a" / "b" / "null")] = "not a regular file (character device)"
        errors[os.fsencode(tree / "loop")] = "not a regular file (block device)"
    (tree / "f" / "link").symlink_to("nowhere")  # not followed: skipped, no record
    try:
        results = scan_every_format(tree)
    finally:
        sock.close()
    for fmt, result in results.items():
        no_traceback(result)
        assert result.returncode == 1, (fmt, brief(result.stderr))
        rows, extra = parse_output(fmt, result.stdout)
        if fmt == "sums":
            assert result.stdout == b""
            continue
        assert {r[1:] for r in rows} == {(None, None)}, fmt
        assert extra["errors"] == errors, fmt
        if fmt == "json":
            assert extra["summary"]["files"] == len(errors)
            assert extra["summary"]["errors"] == len(errors)
    assert sorted(results["sums"].stderr.splitlines()) == sorted(
        f"parhash: warning: {os.fsdecode(p)}: {m}" for p, m in errors.items()
    )


# --------------------------------------------------------------------------- permissions


def _locked_tree(tree: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Siblings next to directories nobody can list (000, --x) or search (r--), deep down."""
    files = {
        "top.txt": b"top\n",
        "a/b/c/ok.txt": b"ok\n",
        "a/b/c/zz.bin": random.Random(9).randbytes(100_000),
        "a/b/sibling/file": b"sibling\n",
        "a/b/c/locked/secret": b"secret\n",
        "a/b/c/xonly/secret": b"secret\n",
        "a/b/c/ronly/one": b"1\n",
        "a/b/c/ronly/two": b"2\n",
        "z/last": b"last\n",
    }
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    for dirpath, _dirnames, filenames in os.walk(tree):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    (tree / "a/b/c/locked").chmod(0o000)
    (tree / "a/b/c/xonly").chmod(0o111)
    (tree / "a/b/c/ronly").chmod(0o444)
    readable = {
        rel: data
        for rel, data in files.items()
        if not rel.startswith(("a/b/c/locked", "a/b/c/xonly", "a/b/c/ronly"))
    }
    errors = {
        "a/b/c/locked": "cannot list directory: Permission denied",
        "a/b/c/xonly": "cannot list directory: Permission denied",
        "a/b/c/ronly/one": "Permission denied",
        "a/b/c/ronly/two": "Permission denied",
    }
    return readable, errors


def _unlock(tree: Path) -> None:
    for rel in ("a/b/c/locked", "a/b/c/xonly", "a/b/c/ronly"):
        (tree / rel).chmod(0o755)


@pytest.mark.timeout(60)
def test_unlistable_directories_deep_inside_library_scan_as_nobody(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    readable, errors = _locked_tree(tree)

    def scan_as_nobody():
        return [
            (r.path, r.size, r.digest, r.error) for r in parhash.scan(["."], algo="sha256", jobs=1)
        ]

    try:
        found = run_unprivileged(scan_as_nobody, str(tree))
    finally:
        _unlock(tree)
    got = {path[2:]: (size, digest, error) for path, size, digest, error in found}
    assert len(got) == len(found)
    assert got == {
        **{rel: (len(data), sha256(data), None) for rel, data in readable.items()},
        **{rel: (None, None, message) for rel, message in errors.items()},
    }


@pytest.mark.timeout(120)
def test_unlistable_directories_deep_inside_cli_as_nobody(unprivileged):  # noqa: F811
    tree = unprivileged.home / "tree"
    tree.mkdir()
    readable, errors = _locked_tree(tree)
    try:
        proc = unprivileged.run(["scan", "-q", "-j2", "-a", "sha256", "-f", "jsonl", "tree"])
    finally:
        _unlock(tree)
    stderr = proc.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, f"[{unprivileged.how}] {stderr}"
    got = by_path(parse_jsonl(proc.stdout))
    assert_records(
        got,
        {os.fsencode(f"tree/{rel}"): data for rel, data in readable.items()},
        {os.fsencode(f"tree/{rel}"): message for rel, message in errors.items()},
    )
    assert sorted(stderr.splitlines()) == sorted(
        f"parhash: warning: tree/{rel}: {message}" for rel, message in errors.items()
    )


# --------------------------------------------------------------------------- descriptors

FD_LIMIT = 64


def _process_tree(pid: int) -> set[int]:
    """The pid and its children (every thread's children: a pool may fork from a thread)."""
    pids = {pid}
    for children in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in Path(children).read_text().split())
    return pids


def _fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None  # exited between listing and counting


def scan_with_slow_reader(tree: Path) -> tuple[int, bytes, str, int, dict[int, list[int]]]:
    """``scan -j2`` with stdout read 4 KiB every few ms; descriptor counts per process
    sampled every 20 ms until it exits."""
    with open(tree.parent / "stderr.txt", "w+b") as stderr:
        argv = ["scan", "-q", "-j2", "-a", "sha256", "-f", "jsonl", str(tree)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "parhash", *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        chunks: list[bytes] = []

        def read_slowly() -> None:
            while data := proc.stdout.read1(4096):  # type: ignore[union-attr]
                chunks.append(data)
                time.sleep(0.004)

        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        samples: dict[int, list[int]] = {}
        deadline = time.monotonic() + 150
        try:
            while proc.poll() is None:
                assert time.monotonic() < deadline, "scan hung"
                for pid in _process_tree(proc.pid):
                    count = _fd_count(pid)
                    if count is not None:
                        samples.setdefault(pid, []).append(count)
                time.sleep(0.02)
            reader.join(30)
            assert not reader.is_alive()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
        return proc.returncode, b"".join(chunks), err, proc.pid, samples


@pytest.fixture
def wide_tree(tmp_path) -> tuple[Path, dict[bytes, bytes]]:
    tree = tmp_path / "tree"
    made: dict[bytes, bytes] = {}
    for d in range(200):
        directory = tree / f"d{d:03}" / ("sub" if d % 2 else "")
        directory.mkdir(parents=True, exist_ok=True)
        for f in range(25):
            data = b"%d/%d\n" % (d, f) * (f % 5)
            (directory / f"f{f:02}").write_bytes(data)
            made[os.fsencode(directory / f"f{f:02}")] = data
    assert len(made) == 5000
    return tree, made


@pytest.mark.timeout(240)
@pytest.mark.parametrize("shape", ["wide", "deep"])
def test_open_descriptors_stay_bounded(request, shape):
    tree, made = request.getfixturevalue(f"{shape}_tree")
    code, stdout, stderr, pid, samples = scan_with_slow_reader(tree)
    assert "Traceback" not in stderr, brief(stderr)
    assert code == 0, brief(stderr)
    assert_records(by_path(parse_jsonl(stdout)), made, {})
    main = samples.get(pid, [])
    assert len(main) >= 10, f"the run was too short to sample ({len(main)} samples)"
    workers = [child for child in samples if child != pid]
    assert len(workers) >= 2, f"saw {len(workers)} worker processes"
    peaks = {pid: max(counts) for pid, counts in samples.items()}
    assert max(peaks.values()) < FD_LIMIT, peaks
