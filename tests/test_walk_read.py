"""What a walk enters and how a named path is read (issue 10 items 10, 14, 15, 17, 20).

Real processes throughout: the CLI in a subprocess, real pipes and FIFOs, bash process
substitution, real proc and sysfs mounts in a temporary tree (we are root; always
unmounted). Digests come from sha256sum run on the same input, or from hashlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import jsonl_records, run_cli, write_tree

PARHASH = [sys.executable, "-m", "parhash"]
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Stable pseudo files (configuration, not counters): their content does not move between
#: parhash's read and sha256sum's.
STABLE = ["/sys/kernel/mm/transparent_hugepage/enabled", "/proc/sys/kernel/ostype"]


def sha256sum(*args: str | os.PathLike, cwd: Path | None = None, stdin=None) -> dict[str, str]:
    """{path: digest} as sha256sum prints them (the independent reference)."""
    proc = subprocess.run(
        ["sha256sum", *map(os.fsdecode, args)],
        cwd=cwd,
        stdin=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    found = {}
    for line in proc.stdout.decode().splitlines():
        digest, name = line.split("  ", 1)
        found[name] = digest
    return found


def sums_lines(stdout: bytes) -> dict[str, str]:
    """{path: digest} of parhash's untagged sha256 lines."""
    return dict(reversed(line.split("  ", 1)) for line in stdout.decode().splitlines())


def records(stdout: bytes) -> list[dict]:
    return jsonl_records(stdout)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("parhash: warning:")]


@pytest.fixture
def data(tmp_path) -> bytes:
    """More than one 256 KiB read, so a pipe is read in many pieces."""
    content = random.Random(14).randbytes(700_001)
    (tmp_path / "f").write_bytes(content)
    return content


# ----------------------------------------------------------------- item 15: missing PATH


def test_missing_path_between_two_is_an_error_record_like_sha256sum(tmp_path):
    (tmp_path / "a").write_bytes(b"alpha\n")
    (tmp_path / "b").write_bytes(b"beta\n")
    result = run_cli("scan", "-a", "sha256", "a", "missing", "b", cwd=tmp_path)
    peer = subprocess.run(["sha256sum", "a", "missing", "b"], cwd=tmp_path, capture_output=True)
    assert result.returncode == peer.returncode == 1, result.stderr
    assert sums_lines(result.stdout) == sha256sum("a", "b", cwd=tmp_path)
    assert "parhash: warning: missing: No such file or directory" in warnings(result.stderr)
    assert "Traceback" not in result.stderr


def test_missing_path_is_a_record_in_jsonl(tmp_path):
    (tmp_path / "a").write_bytes(b"alpha\n")
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", "missing", "a", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    by_path = {r["path"]: r for r in records(result.stdout)}
    assert by_path["missing"]["error"] == "No such file or directory"
    assert by_path["missing"]["hash"] is None
    assert by_path["a"]["hash"] == hashlib.sha256(b"alpha\n").hexdigest()


# ------------------------------------------------------- item 14: named non-regular files


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_process_substitution_is_hashed_like_sha256sum(tmp_path, data, jobs):
    """``parhash scan <(cat f)``: /dev/fd/63 exists in parhash's own process only."""
    command = " ".join(PARHASH) + f" scan -q -j {jobs} -a sha256 <(cat f)"
    ours = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=60)
    peer = subprocess.run(["bash", "-c", "sha256sum <(cat f)"], cwd=tmp_path, capture_output=True)
    assert ours.returncode == 0, ours.stderr
    ((path, digest),) = sums_lines(ours.stdout).items()
    assert path.startswith("/dev/fd/")
    assert digest == peer.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_dev_stdin_from_a_pipe_is_hashed_like_sha256sum(tmp_path, data, jobs):
    """``cat f | parhash scan /dev/stdin``; a worker would read its own stdin (/dev/null)."""
    for name in ("/dev/stdin", "/proc/self/fd/0"):
        ours = subprocess.run(
            ["bash", "-c", " ".join(PARHASH) + f" scan -q -j {jobs} -a sha256 {name} < f"],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        with open(tmp_path / "f", "rb") as stdin:
            peer = sha256sum(name, stdin=stdin)
        assert ours.returncode == 0, ours.stderr
        cat = subprocess.Popen(["cat", "f"], cwd=tmp_path, stdout=subprocess.PIPE)
        piped = subprocess.run(
            [*PARHASH, "scan", "-q", "-j", jobs, "-a", "sha256", name],
            stdin=cat.stdout,
            capture_output=True,
            timeout=60,
        )
        cat.stdout.close()  # a parhash that did not read it must not block cat
        cat.wait(timeout=30)
        assert sums_lines(ours.stdout) == sums_lines(piped.stdout) == peer
        assert peer[name] == hashlib.sha256(data).hexdigest()


def test_dev_null_is_hashed_and_checked_like_sha256sum(tmp_path):
    result = run_cli("scan", "-a", "sha256", "/dev/null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sums_lines(result.stdout) == sha256sum("/dev/null") == {"/dev/null": EMPTY_SHA256}
    # coreutils' own b2sum test: `b2sum /dev/null | b2sum -c` verifies.
    (tmp_path / "SUMS").write_text(f"{EMPTY_SHA256}  /dev/null\n")
    checked = run_cli("check", "-a", "sha256", "SUMS", cwd=tmp_path)
    peer = subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True)
    assert checked.returncode == peer.returncode == 0, checked.stderr
    assert checked.stdout == peer.stdout == b"/dev/null: OK\n"


def _write_later(fifo: Path, payload: bytes, delay: float) -> threading.Thread:
    """Open ``fifo`` for writing only after ``delay``: a reader that did not wait for its
    writer (O_NONBLOCK) would have seen EOF and hashed nothing."""

    def write() -> None:
        time.sleep(delay)
        with open(fifo, "wb") as f:
            f.write(payload)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["argument", "files-from", "sums-file"])
def test_named_fifo_waits_for_its_writer_and_is_read_to_eof(tmp_path, data, how):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "list").write_text("pipe\n")
    (tmp_path / "SUMS").write_text(f"{digest}  pipe\n")
    args = {
        "argument": ["scan", "-q", "-j", "2", "-a", "sha256", "pipe"],
        "files-from": ["scan", "-q", "-j", "2", "-a", "sha256", "--files-from", "list"],
        "sums-file": ["check", "-j", "2", "-a", "sha256", "SUMS"],
    }[how]
    writer = _write_later(fifo, data, 1.0)
    result = run_cli(*args, cwd=tmp_path, timeout=60)
    writer.join(10)
    assert result.returncode == 0, result.stderr
    if how == "sums-file":
        assert result.stdout == b"pipe: OK\n"
    else:
        assert sums_lines(result.stdout) == {"pipe": digest}


def test_fifo_met_while_walking_is_still_never_opened(tmp_path):
    """The named-path rule is per source: a FIFO inside a walked tree stays an error record
    (opening it would block the run on a writer that never comes)."""
    tree = write_tree(tmp_path / "tree", {"a": b"a"})
    os.mkfifo(tree / "pipe")
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    by_path = {r["path"]: r for r in records(result.stdout)}
    assert by_path["tree/pipe"]["error"] == "not a regular file (FIFO)"
    assert by_path["tree/a"]["hash"] == hashlib.sha256(b"a").hexdigest()


def test_dev_stdin_in_a_files_from_list_reads_parhash_stdin(tmp_path, data):
    (tmp_path / "list").write_text("/dev/stdin\n")
    cat = subprocess.Popen(["cat", "f"], cwd=tmp_path, stdout=subprocess.PIPE)
    proc = subprocess.run(
        [*PARHASH, "scan", "-q", "-j", "2", "-a", "sha256", "--files-from", "list"],
        cwd=tmp_path,
        stdin=cat.stdout,
        capture_output=True,
        timeout=60,
    )
    cat.stdout.close()  # a parhash that did not read it must not block cat
    cat.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert sums_lines(proc.stdout) == {"/dev/stdin": hashlib.sha256(data).hexdigest()}


# ------------------------------------------------------------- item 10: pseudo filesystems


def test_named_pseudo_files_are_read_to_eof_like_sha256sum():
    """sysfs says 4096 bytes for every attribute and procfs 0: the size is what was read,
    never "changed while being read"."""
    assert os.stat(STABLE[0]).st_size == 4096  # what used to make it "changed"
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", *STABLE)
    peer = sha256sum(*STABLE)
    assert result.returncode == 0, result.stderr
    for record in records(result.stdout):
        with open(record["path"], "rb") as f:
            content = f.read()
        assert record["hash"] == peer[record["path"]], record
        assert record["size"] == len(content) and record["error"] is None


def test_named_sysfs_directory_is_walked_and_matches_sha256sum():
    root = "/sys/kernel/mm/transparent_hugepage"
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", root)
    assert result.returncode in (0, 1), result.stderr
    found = records(result.stdout)
    assert len(found) > 3
    hashed = {r["path"]: r["hash"] for r in found if r["error"] is None}
    peer = sha256sum(*hashed)
    assert hashed == peer
    assert not [r for r in found if r["error"] == "file changed while being read"]


def test_proc_self_is_this_run_and_never_hangs():
    """``scan /proc/self`` lists the parent's own entries and reads them in the parent (a
    worker's /proc/self is another process); pagemap, which has no useful end, is an error
    record past the read limit instead of a 256 GiB read."""
    proc = subprocess.Popen(
        [*PARHASH, "scan", "-f", "jsonl", "-a", "sha256", "-j", "2", "/proc/self"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # mem, pagemap, clear_refs...: real error records
    by_path = {r["path"]: r for r in records(out)}
    cmdline = "\0".join(proc.args) + "\0"
    assert by_path["/proc/self/cmdline"]["hash"] == hashlib.sha256(cmdline.encode()).hexdigest()
    assert by_path["/proc/self/cmdline"]["size"] == len(cmdline.encode())
    main_thread = by_path[f"/proc/self/task/{proc.pid}/comm"]
    assert main_thread["error"] is None and main_thread["size"] > 0
    assert "longer than 64 MiB" in by_path["/proc/self/pagemap"]["error"]
    errors = {r["error"] for r in by_path.values()}
    assert "file changed while being read" not in errors


def test_dev_zero_named_stops_at_the_limit():
    """A named file on a pseudo filesystem that never ends is an error record, not a hang."""
    result = run_cli("scan", "-f", "jsonl", "/dev/zero", "/dev/null", timeout=120)
    assert result.returncode == 1, result.stderr
    by_path = {r["path"]: r for r in records(result.stdout)}
    assert "longer than 64 MiB" in by_path["/dev/zero"]["error"]
    assert by_path["/dev/null"]["error"] is None and by_path["/dev/null"]["size"] == 0


@pytest.fixture
def mounted_tree(tmp_path):
    """A tree with proc, sysfs and a bind mount of /proc inside it (always unmounted)."""
    tree = write_tree(tmp_path / "tree", {"a": b"alpha", "d": {"b": b"beta"}})
    mounts = []
    try:
        for name, command in (
            ("p", ["mount", "-t", "proc", "proc"]),
            ("s", ["mount", "-t", "sysfs", "sysfs"]),
            ("d/bound", ["mount", "--bind", "/proc"]),
        ):
            (tree / name).mkdir()
            subprocess.run([*command, tree / name], check=True, capture_output=True)
            mounts.append(tree / name)
        yield tree
    finally:
        for point in reversed(mounts):
            subprocess.run(["umount", "-l", point], check=False)


def test_walk_does_not_enter_proc_or_sysfs_mounts(mounted_tree, tmp_path):
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", "-j", "2", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    by_path = {r["path"]: r["hash"] for r in records(result.stdout)}
    assert by_path == sha256sum("tree/a", "tree/d/b", cwd=tmp_path)
    told = warnings(result.stderr)
    assert sorted(told) == [
        "parhash: warning: tree/d/bound: proc filesystem, not entered (name it as a PATH "
        "to hash it)",
        "parhash: warning: tree/p: proc filesystem, not entered (name it as a PATH to hash it)",
        "parhash: warning: tree/s: sysfs filesystem, not entered (name it as a PATH to hash it)",
    ]
    assert "0 errors, 3 pseudo-filesystem mounts not entered" in result.stderr


def test_pseudo_mount_named_as_root_is_walked(mounted_tree, tmp_path):
    """Named, a sysfs mount is hashed: here one stable directory of it, against sha256sum."""
    root = "tree/s/kernel/mm/transparent_hugepage"
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", root, cwd=tmp_path)
    found = records(result.stdout)
    hashed = {r["path"]: r["hash"] for r in found if r["error"] is None}
    assert f"{root}/enabled" in hashed
    assert hashed == sha256sum(*hashed, cwd=tmp_path)
    assert not [r for r in found if r["error"] == "file changed while being read"]


# ------------------------------------------------------------ item 17: a path named twice


@pytest.mark.parametrize(
    "paths",
    [
        [".", "."],
        ["tree", "./tree"],
        ["tree", "tree/sub"],
        ["tree/sub", "tree"],
        ["tree", "tree/a"],
    ],
)
def test_path_named_twice_or_nested_is_listed_once(tmp_path, paths):
    tree = write_tree(tmp_path / "tree", {"a": b"alpha", "b": b"beta", "sub": {"c": b"gamma"}})
    os.link(tree / "a", tree / "a-link")  # a hard link of a named file is another path
    cwd = tmp_path if paths != [".", "."] else tree
    result = run_cli("scan", "-f", "jsonl", "-a", "sha256", *paths, cwd=cwd)
    assert result.returncode == 0, result.stderr
    listed = [r["path"] for r in records(result.stdout)]
    assert len(listed) == len(set(listed)), listed
    real = sorted(os.path.realpath(os.path.join(cwd, p)) for p in listed)
    expected = sorted(str(p) for p in tree.rglob("*") if p.is_file())
    assert real == expected
    for record in records(result.stdout):
        content = Path(cwd, record["path"]).read_bytes()
        assert record["hash"] == hashlib.sha256(content).hexdigest()
    if os.path.samefile(os.path.join(cwd, paths[0]), os.path.join(cwd, paths[1])):
        assert warnings(result.stderr) == [
            f"parhash: warning: {paths[1]}: "
            + (
                "named twice, scanned once"
                if paths[0] == paths[1]
                else f"same as {paths[0]}, scanned once"
            )
        ]


def test_manifest_of_overlapping_roots_audits_clean(tmp_path):
    write_tree(tmp_path / "tree", {"a": b"alpha", "sub": {"c": b"gamma"}})
    made = run_cli("scan", "-q", "-f", "jsonl", "-o", "m.jsonl", "tree", "tree/sub", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    audited = run_cli("audit", "m.jsonl", cwd=tmp_path)
    assert audited.returncode == 0, audited.stdout.decode() + audited.stderr


def test_followed_symlink_into_sysfs_is_not_entered(tmp_path):
    """Under -L the walk reaches directories through links: a link into /sys is a mount it
    does not enter either (it is told by st_dev, not by path)."""
    tree = write_tree(tmp_path / "tree", {"a": b"alpha"})
    (tree / "sysl").symlink_to("/sys/kernel/mm")
    result = run_cli("scan", "-L", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in records(result.stdout)] == ["tree/a"]
    assert warnings(result.stderr) == [
        "parhash: warning: tree/sysl: sysfs filesystem, not entered (name it as a PATH to hash it)"
    ]


# ------------------------------------------------------- item 20: a moved directory


@pytest.fixture
def moved_tree(tmp_path):
    """1,000 files in photos/ (some in a subdirectory), renamed with os.rename to
    archive/photos; of part/'s three files two moved to part2/ (a partial move)."""
    spec = {f"f{i:04d}.jpg": b"photo %d" % i for i in range(990)}
    spec["2020"] = {f"s{i}.jpg": b"sub %d" % i for i in range(10)}
    tree = write_tree(
        tmp_path / "tree",
        {"photos": spec, "part": {n: n.encode() * 3 for n in "abc"}, "keep": b"keep"},
    )
    made = run_cli(
        "scan", "-q", "-f", "jsonl", "-a", "sha256", "-o", "m.jsonl", "tree", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    (tree / "archive").mkdir()
    os.rename(tree / "photos", tree / "archive" / "photos")
    (tree / "part2").mkdir()
    for name in "ab":
        os.rename(tree / "part" / name, tree / "part2" / name)
    moved = sorted(
        os.path.relpath(os.path.join(d, f), tree)
        for d, _, names in os.walk(tree / "archive" / "photos")
        for f in names
    )
    assert len(moved) == 1000
    return tmp_path, moved


def _section(report: str, title: str) -> list[str]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1 : end]


def test_moved_directory_is_one_line_in_the_human_report(moved_tree):
    base, _moved = moved_tree
    result = run_cli("audit", "m.jsonl", cwd=base)
    report = result.stdout.decode()
    assert result.returncode == 1, report + result.stderr
    assert "1,002 changes: 1,002 moved" in report
    assert _section(report, "moved (1,002)") == [
        "  archive/photos/  (from photos/: a directory of 1,000 files)",
        "  part2/a  (from part/a)",
        "  part2/b  (from part/b)",
    ]


def test_moved_directory_lists_its_files_with_verbose(moved_tree):
    base, moved = moved_tree
    report = run_cli("audit", "--verbose", "m.jsonl", cwd=base).stdout.decode()
    lines = _section(report, "moved (1,002)")
    assert lines[0] == "  archive/photos/  (from photos/: a directory of 1,000 files)"
    files = [line for line in lines if line.startswith("    ")]
    expected = [f"    {p}  (from {p.removeprefix('archive/')})" for p in moved]
    assert files == expected


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_moved_directory_entry_in_json(moved_tree, fmt):
    base, moved = moved_tree
    result = run_cli("audit", "-f", fmt, "m.jsonl", cwd=base)
    text = result.stdout.decode()
    changes = json.loads(text)["changes"] if fmt == "json" else records(result.stdout)
    (directory,) = [c for c in changes if c["class"] == "moved-directory"]
    assert directory["path"] == "archive/photos" and directory["from"] == "photos"
    assert directory["count"] == 1000 and directory["files"] == moved
    files = {c["path"]: c["from"] for c in changes if c["class"] == "moved"}
    assert len(files) == 1002  # every file keeps its own entry
    assert all(files[p] == p.removeprefix("archive/") for p in moved)


# ------------------------------------------ directory moves with empty files (review D4)


@pytest.fixture
def moved_with_empties(tmp_path):
    """a/ holds three empty files (one with a non-UTF-8 name, one in a subdirectory) and
    two non-empty ones; a/ is renamed to b/ with os.rename after the scan."""
    spec = {"e1": b"", b"\xffe2": b"", "sub": {"e3": b"", "n2": b"two"}, "n1": b"one"}
    tree = write_tree(tmp_path / "tree", {"a": spec, "keep": b"keep"})
    made = run_cli(
        "scan", "-q", "-f", "jsonl", "-a", "sha256", "-o", "m.jsonl", "tree", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    os.rename(tree / "a", tree / "b")
    moved = sorted(
        os.path.relpath(os.path.join(os.fsencode(d), f), os.fsencode(tree))
        for d, _, names in os.walk(os.fsencode(tree / "b"))
        for f in names
    )
    assert len(moved) == 5
    return tmp_path, [os.fsdecode(p) for p in moved]


def test_directory_move_counts_its_empty_files(moved_with_empties):
    base, _moved = moved_with_empties
    result = run_cli("audit", "m.jsonl", cwd=base)
    report = result.stdout.decode("utf-8", "surrogateescape")
    assert "5 changes: 5 moved" in report, report
    assert "removed" not in report and "added" not in report, report
    assert _section(report, "moved (5)") == ["  b/  (from a/: a directory of 5 files)"]
    strict = run_cli("audit", "--fail-on", "removed,added", "m.jsonl", cwd=base)
    assert strict.returncode == 0, strict.stdout.decode() + strict.stderr


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_directory_move_with_empty_files_in_json(moved_with_empties, fmt):
    base, moved = moved_with_empties
    result = run_cli("audit", "-f", fmt, "m.jsonl", cwd=base)
    text = result.stdout.decode("utf-8", "surrogateescape")
    if fmt == "json":
        document = json.loads(text)
        changes = document["changes"]
        counts = document["audit"]["counts"]
        assert counts["moved"] == 5 and counts["removed"] == counts["added"] == 0, counts
    else:
        changes = [json.loads(line) for line in text.splitlines()]
    assert {c["class"] for c in changes} == {"moved", "moved-directory"}, changes
    (directory,) = [c for c in changes if c["class"] == "moved-directory"]
    assert directory["count"] == 5 and directory["files"] == moved
    files = {c["path"]: c["from"] for c in changes if c["class"] == "moved"}
    assert files == {p: "a" + p[1:] for p in moved}


# ------------------------------------- replaced content is a move, not corruption (D3)


def _rotation_tree(base: Path) -> dict[str, bytes]:
    """current/ and new/ with three files each, same sizes and one mtime, scanned."""
    spec = {
        d: {f"f{i}": b"%s-%d\n" % (v, i) for i in (1, 2, 3)}
        for d, v in [("current", b"v1"), ("new", b"v2")]
    }
    tree = write_tree(base / "m9", spec)
    for d in spec:
        for name in spec[d]:
            os.utime(tree / d / name, ns=(1_767_225_600 * 10**9,) * 2)
    made = run_cli("scan", "-q", "-f", "jsonl", "-a", "sha256", "-o", "m.jsonl", "m9", cwd=base)
    assert made.returncode == 0, made.stderr
    return {f"{d}/{n}": data for d, files in spec.items() for n, data in files.items()}


def test_rotated_directories_are_moves_not_corruption(tmp_path):
    before = _rotation_tree(tmp_path)
    tree = tmp_path / "m9"
    os.rename(tree / "current", tree / "previous")
    os.rename(tree / "new", tree / "current")
    result = run_cli("audit", "-f", "json", "m.jsonl", cwd=tmp_path)
    document = json.loads(result.stdout)
    counts = document["audit"]["counts"]
    assert counts["moved"] == 6 and counts["corrupted"] == 0, counts
    assert counts["removed"] == counts["added"] == counts["modified"] == 0, counts
    moves = {c["path"]: c["from"] for c in document["changes"] if c["class"] == "moved"}
    # Independently: each path's content now, found under its old path in the manifest.
    now = {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    expected = {path: next(k for k, v in before.items() if v == data) for path, data in now.items()}
    assert moves == expected
    for change in document["changes"]:
        if change["class"] == "moved":
            assert change["new"]["hash"] == hashlib.sha256(now[change["path"]]).hexdigest()


def test_bit_flip_with_restored_mtime_is_still_corrupted_next_to_a_rotation(tmp_path):
    """current/f2 rots after the rotation: same size and mtime as the manifest's
    current/f2, content that no manifest entry had, so corrupted; new/f2's content is
    nowhere now (removed); the other five paths are still moves."""
    _rotation_tree(tmp_path)
    tree = tmp_path / "m9"
    os.rename(tree / "current", tree / "previous")
    os.rename(tree / "new", tree / "current")
    victim = tree / "current" / "f2"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[0] ^= 0x01
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = run_cli("audit", "-f", "jsonl", "m.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    changes = records(result.stdout)
    by_class: dict[str, list[str]] = {}
    for change in changes:
        by_class.setdefault(change["class"], []).append(change["path"])
    assert by_class["corrupted"] == ["current/f2"], changes
    assert by_class["removed"] == ["new/f2"], changes
    assert sorted(by_class["moved"]) == [
        "current/f1",
        "current/f3",
        "previous/f1",
        "previous/f2",
        "previous/f3",
    ]
    (rot,) = [c for c in changes if c["class"] == "corrupted"]
    assert rot["new"]["hash"] == hashlib.sha256(bytes(data)).hexdigest()


# ------------------------------ a directory move with an edited file still groups (D5)


@pytest.fixture
def moved_and_edited(tmp_path):
    """31 files in src/, renamed to dst/ with os.rename, then dst/f5 appended to."""
    tree = write_tree(tmp_path / "tree", {"src": {f"f{i}": b"c%d\n" % i for i in range(31)}})
    made = run_cli(
        "scan", "-q", "-f", "jsonl", "-a", "sha256", "-o", "m.jsonl", "tree", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    os.rename(tree / "src", tree / "dst")
    with open(tree / "dst" / "f5", "ab") as f:
        f.write(b"changed\n")
    return tmp_path, tree


def test_directory_move_with_one_edited_file_is_grouped(moved_and_edited):
    base, _tree = moved_and_edited
    report = run_cli("audit", "m.jsonl", cwd=base).stdout.decode()
    assert "31 changes: 1 modified, 30 moved" in report, report
    assert _section(report, "moved (30)") == [
        "  dst/  (from src/: a directory of 30 files; 1 did not follow: src/f5)"
    ]
    (edited,) = _section(report, "modified (1)")
    assert edited.startswith("  dst/f5  from src/f5; size 3 -> 11"), edited


def test_directory_move_exceptions_in_json(moved_and_edited):
    base, tree = moved_and_edited
    result = run_cli("audit", "-f", "json", "m.jsonl", cwd=base)
    document = json.loads(result.stdout)
    assert document["audit"]["counts"]["removed"] == document["audit"]["counts"]["added"] == 0
    changes = document["changes"]
    (directory,) = [c for c in changes if c["class"] == "moved-directory"]
    assert directory["count"] == 30 and directory["exceptions"] == ["src/f5"]
    (modified,) = [c for c in changes if c["class"] == "modified"]
    assert modified["path"] == "dst/f5" and modified["from"] == "src/f5"
    expected = hashlib.sha256((tree / "dst" / "f5").read_bytes()).hexdigest()
    assert modified["new"]["hash"] == expected
