"""Unit tests of parhash.walk.walk_directory on real trees in tmp_path."""

from __future__ import annotations

import inspect
import os
import socket
import sys
from pathlib import Path

from conftest import deadline, run_unprivileged

from parhash.model import FileRecord
from parhash.walk import WalkOptions, walk_directory


def walk(root: str | os.PathLike, limit: int = 10_000, **options) -> list[str | FileRecord]:
    """The walker's output as a list, bounded so that a looping walker fails the test."""
    items = []
    with deadline(5):
        for item in walk_directory(os.fspath(root), WalkOptions(**options)):
            items.append(item)
            assert len(items) <= limit, "walker produced too many items (loop?)"
    return items


def paths(items) -> list[str]:
    return [i for i in items if isinstance(i, str)]


def errors(items) -> dict[str, str]:
    out = {}
    for item in items:
        if isinstance(item, FileRecord):
            assert item.size is None and item.digest is None and item.mtime_ns is None
            assert item.error
            out[item.path] = item.error
    return out


def rel(items, root) -> list[str]:
    prefix = os.fspath(root) + os.sep
    out = []
    for p in paths(items):
        assert p.startswith(prefix), p
        out.append(p[len(prefix) :])
    return out


def reference_files(root: Path) -> set[str]:
    """Regular files below root by os.walk (no symlinks followed), relative to root."""
    found = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.add(os.path.relpath(full, root))
    return found


def build(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    return root


ORDER_FILES = [
    "b",
    "a",
    "C",
    "10",
    "9",
    "_x",
    "z/y/2",
    "z/y/1",
    "z/a",
    "m/k",
    "m/j/deep",
    "A/only",
]


def test_walk_order_is_sorted_and_independent_of_creation_order(tmp_path):
    forward = build(tmp_path / "t", ORDER_FILES)
    backward = build(tmp_path / "u", list(reversed(ORDER_FILES)))
    first = rel(walk(forward), forward)
    assert first == rel(walk(forward), forward)  # repeatable
    assert first == rel(walk(backward), backward)  # not readdir order
    assert set(first) == set(ORDER_FILES)
    # Within each directory, the files it contains directly come in sorted name order.
    by_dir: dict[str, list[str]] = {}
    for p in first:
        by_dir.setdefault(os.path.dirname(p), []).append(os.path.basename(p))
    for names in by_dir.values():
        assert names == sorted(names)
    # Depth first: everything below one directory is listed in one contiguous run.
    for directory in ("z", "z/y", "m", "m/j", "A"):
        inside = [i for i, p in enumerate(first) if p.startswith(directory + "/")]
        assert inside == list(range(inside[0], inside[-1] + 1)), directory
    # Sibling subtrees are visited in sorted order of their directory names.
    firsts = [min(i for i, p in enumerate(first) if p.startswith(d + "/")) for d in "Amz"]
    assert firsts == sorted(firsts)


def test_files_below_nested_dirs_and_empty_dirs(tmp_path):
    root = build(tmp_path / "t", ["top", "a/one", "a/b/two", "a/b/c/d/three", "e/f/four"])
    (root / "empty" / "deeper").mkdir(parents=True)
    items = walk(root)
    assert errors(items) == {}
    assert set(rel(items, root)) == reference_files(root)
    assert len(paths(items)) == 5


def test_paths_are_reached_from_the_root_argument(tmp_path, monkeypatch):
    build(tmp_path / "t", ["x", "d/y"])
    monkeypatch.chdir(tmp_path)
    assert sorted(paths(walk("t"))) == ["t/d/y", "t/x"]
    assert sorted(paths(walk("t/"))) == ["t/d/y", "t/x"]
    monkeypatch.chdir(tmp_path / "t")
    assert sorted(paths(walk("."))) == ["./d/y", "./x"]


def test_error_records_carry_the_root(tmp_path):
    root = build(tmp_path / "t", ["f"])
    os.mkfifo(root / "p")
    records = [i for i in walk(root) if isinstance(i, FileRecord)]
    assert len(records) == 1
    assert records[0].root == str(root)
    assert records[0].path == str(root / "p")


def make_symlinks(root: Path) -> None:
    build(root, ["real/file", "plain"])
    (root / "to_file").symlink_to("plain")
    (root / "to_dir").symlink_to("real")
    (root / "outside").symlink_to(root.parent / "elsewhere")
    build(root.parent / "elsewhere", ["far"])


def test_symlinks_are_skipped_by_default(tmp_path):
    root = tmp_path / "t"
    make_symlinks(root)
    (root / "dangling").symlink_to("nowhere")
    items = walk(root)
    assert errors(items) == {}
    assert sorted(rel(items, root)) == ["plain", "real/file"]


def test_symlinks_are_followed_with_follow_symlinks(tmp_path):
    root = tmp_path / "t"
    make_symlinks(root)
    items = walk(root, follow_symlinks=True)
    assert errors(items) == {}
    assert sorted(rel(items, root)) == [
        "outside/far",
        "plain",
        "real/file",
        "to_dir/file",
        "to_file",
    ]


def test_symlink_loop_to_ancestor_is_an_error_record(tmp_path):
    root = build(tmp_path / "t", ["a/b/file", "top"])
    (root / "a" / "b" / "up").symlink_to("../..")  # back to the root
    (root / "a" / "self").symlink_to(".")  # back to a
    items = walk(root, follow_symlinks=True)
    assert sorted(rel(items, root)) == ["a/b/file", "top"]
    errs = errors(items)
    assert set(errs) == {str(root / "a" / "b" / "up"), str(root / "a" / "self")}
    for message in errs.values():
        assert "loop" in message


def test_symlink_to_itself_is_an_error_record(tmp_path):
    root = build(tmp_path / "t", ["ok"])
    (root / "me").symlink_to("me")
    (root / "ping").symlink_to("pong")
    (root / "pong").symlink_to("ping")
    items = walk(root, follow_symlinks=True)
    assert rel(items, root) == ["ok"]
    errs = errors(items)
    assert set(errs) == {str(root / n) for n in ("me", "ping", "pong")}
    for message in errs.values():
        assert message == os.strerror(40)  # ELOOP: Too many levels of symbolic links


def test_dangling_symlink_is_an_error_record_when_following(tmp_path):
    root = build(tmp_path / "t", ["ok"])
    (root / "dangling").symlink_to("nowhere")
    items = walk(root, follow_symlinks=True)
    assert rel(items, root) == ["ok"]
    assert errors(items) == {str(root / "dangling"): "dangling symbolic link"}


def test_fifo_is_an_error_record(tmp_path):
    root = build(tmp_path / "t", ["a", "z", "d/inner"])
    os.mkfifo(root / "m_fifo")
    os.mkfifo(root / "d" / "fifo2")
    items = walk(root)
    assert sorted(rel(items, root)) == ["a", "d/inner", "z"]
    assert errors(items) == {
        str(root / "m_fifo"): "not a regular file (FIFO)",
        str(root / "d" / "fifo2"): "not a regular file (FIFO)",
    }


def test_socket_is_an_error_record(tmp_path, monkeypatch):
    root = build(tmp_path / "t", ["a"])
    monkeypatch.chdir(root)  # AF_UNIX paths are short: bind by a relative name
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        items = walk(root)
    assert rel(items, root) == ["a"]
    assert errors(items) == {str(root / "sock"): "not a regular file (socket)"}


def test_symlink_to_fifo_when_following_is_not_a_regular_file(tmp_path):
    """-L resolves the link: the target exists, so this is a FIFO, not a dangling link."""
    root = build(tmp_path / "t", ["a"])
    os.mkfifo(root / "fifo")
    (root / "link").symlink_to("fifo")
    items = walk(root, follow_symlinks=True)
    assert rel(items, root) == ["a"]
    errs = errors(items)
    assert errs[str(root / "fifo")] == "not a regular file (FIFO)"
    assert errs[str(root / "link")] == "not a regular file (FIFO)"


EXCLUDE_TREE = [
    "keep.py",
    "drop.pyc",
    "sub/drop2.pyc",
    "sub/keep2.py",
    ".git/config",
    ".git/objects/ab/cd",
    "sub/.git/HEAD",
    "src/gen/out.c",
    "src/gen/deeper/x.c",
    "src/main.c",
    "src/generated.c",
    "other/src/gen/kept.c",
    "top.txt",
    "sub/top.txt",
    "build/a.o",
    "build/lib/b.o",
]


def test_exclude_by_name_at_any_depth(tmp_path):
    root = build(tmp_path / "t", EXCLUDE_TREE)
    items = walk(root, exclude=("*.pyc", ".git"))
    assert errors(items) == {}
    assert set(rel(items, root)) == {
        p for p in EXCLUDE_TREE if not p.endswith(".pyc") and ".git/" not in p
    }


def test_exclude_by_relative_path_prunes_only_that_directory(tmp_path):
    root = build(tmp_path / "t", EXCLUDE_TREE)
    items = walk(root, exclude=("src/gen", "/top.txt"))
    got = set(rel(items, root))
    assert got == set(EXCLUDE_TREE) - {"src/gen/out.c", "src/gen/deeper/x.c", "top.txt"}
    assert "other/src/gen/kept.c" in got  # path patterns are anchored at the root
    assert "sub/top.txt" in got


def test_exclude_path_glob(tmp_path):
    root = build(tmp_path / "t", EXCLUDE_TREE)
    items = walk(root, exclude=("build/*",))
    assert set(rel(items, root)) == {p for p in EXCLUDE_TREE if not p.startswith("build/")}


def test_excluded_directory_is_never_listed(tmp_path):
    """An excluded directory that cannot be listed gives no error: it was pruned, not read."""
    root = build(tmp_path / "t", ["keep", "sub/keep2", "sub/.cache/x", "vendor/y"])
    for locked in (root / "sub" / ".cache", root / "vendor"):
        locked.chmod(0)

    def run():
        with_excludes = walk(".", exclude=(".cache", "vendor"))
        without = walk(".")
        return [(paths(with_excludes), errors(with_excludes)), (paths(without), errors(without))]

    try:
        (kept, kept_errors), (control, control_errors) = run_unprivileged(run, root)
    finally:
        for locked in (root / "sub" / ".cache", root / "vendor"):
            locked.chmod(0o755)
    assert sorted(kept) == ["./keep", "./sub/keep2"]
    assert kept_errors == {}
    # The control run shows that listing the locked directories would have been an error.
    assert sorted(control) == ["./keep", "./sub/keep2"]
    assert set(control_errors) == {"./sub/.cache", "./vendor"}


def test_unlistable_directory_is_an_error_record(tmp_path):
    root = build(tmp_path / "t", ["a", "locked/secret", "z/b"])
    (root / "locked").chmod(0)

    def run():
        items = walk(".")
        return paths(items), errors(items)

    try:
        found, errs = run_unprivileged(run, root)
    finally:
        (root / "locked").chmod(0o755)
    assert sorted(found) == ["./a", "./z/b"]
    assert errs == {"./locked": "cannot list directory: Permission denied"}


def test_unlistable_root_is_an_error_record(tmp_path):
    root = build(tmp_path / "t", ["a"])
    root.chmod(0)
    try:
        items = run_unprivileged(lambda: walk("t"), tmp_path)
    finally:
        root.chmod(0o755)
    assert len(items) == 1
    assert isinstance(items[0], FileRecord)
    assert items[0].path == "t"
    assert items[0].error == "cannot list directory: Permission denied"


def test_missing_root_is_an_error_record(tmp_path):
    items = walk(tmp_path / "missing")
    assert errors(items) == {
        str(tmp_path / "missing"): "cannot list directory: No such file or directory"
    }


def test_deep_tree_is_walked_without_recursion(tmp_path):
    depth = 300
    root = tmp_path / "t"
    deep = root.joinpath(*["d"] * depth)
    deep.mkdir(parents=True)
    (deep / "bottom").write_bytes(b"x")
    (root / "d" / "top").write_bytes(b"y")
    # Leave far fewer free frames than the tree is deep: a recursive walker would fail here.
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        items = walk(root)
    finally:
        sys.setrecursionlimit(old_limit)
    assert errors(items) == {}
    assert sorted(rel(items, root)) == sorted(["/".join(["d"] * depth + ["bottom"]), "d/top"])
