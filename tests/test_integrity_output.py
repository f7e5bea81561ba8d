"""Issue 10, the output side: every byte written is checked (a full disk is one line and exit
2, a closed pipe is 141), ``-o`` never overwrites an input, keeps the replaced file's mode,
owner and hard links, ``-o -`` is stdout, a killed run leaves no temporary file behind, and
running out of a resource is one line and exit 2 instead of an internal error.

Every test runs the real CLI in a real process: real tmpfs mounts of 64 KiB for a full
disk, real pipes closed by the reader, real SIGKILL, real uid 65534 for permissions.
Expected digests come from hashlib, never from parhash's own earlier output.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from tests.conftest import NOBODY, run_cli

PARHASH = [sys.executable, "-m", "parhash"]
FULL = "No space left on device"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k"):
    """A real, tiny file system: writes past ``size`` fail with ENOSPC."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def long_tree(root: Path, count: int = 1500, name: int = 100) -> Path:
    """``count`` small files with ``name``-byte names: every format's output is far over
    64 KiB (and over a pipe's 64 KiB buffer), the tree itself is small."""
    root.mkdir()
    for i in range(count):
        (root / f"{i:05d}-{'n' * (name - 6)}").write_bytes(b"%d\n" % i)
    return root


def sha256_lines(root: Path, skip: tuple[str, ...] = ()) -> set[str]:
    """The sums lines sha256sum would print for every file below ``root`` (as reached from
    ``root``), computed with hashlib."""
    lines = set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in skip:
            lines.add(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path}")
    return lines


def stderr_lines(proc) -> list[str]:
    text = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
    return text.splitlines()


SCAN_FORMATS = [
    ["-a", "sha256"],
    ["-a", "sha256", "--sort"],
    ["-f", "jsonl"],
    ["-f", "jsonl", "--sort"],
    ["-f", "json"],
    ["-f", "json", "--sort"],
    ["-f", "csv"],
    ["-f", "csv", "--sort"],
]
FORMAT_IDS = [" ".join(f) for f in SCAN_FORMATS]


# --------------------------------------------------------------------------- item 1: full disk


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", SCAN_FORMATS, ids=FORMAT_IDS)
def test_scan_to_stdout_on_a_full_tmpfs_fails_with_one_line(tmp_path, fmt):
    tree = long_tree(tmp_path / "tree")
    assert_full_stdout_fails(tmp_path, ["scan", str(tree), *fmt, "-q", "-j", "2"])


def assert_full_stdout_fails(tmp_path: Path, argv: list[str]) -> None:
    """Run parhash with stdout on a 64 KiB tmpfs: one line like sha256sum's, exit 2."""
    with tmpfs(tmp_path / "full") as full, open(full / "out", "wb") as out:
        proc = subprocess.run([*PARHASH, *argv], stdout=out, stderr=subprocess.PIPE, timeout=110)
    assert stderr_lines(proc) == [f"parhash: write error: {FULL}"], proc.stderr
    assert proc.returncode == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", SCAN_FORMATS, ids=FORMAT_IDS)
def test_scan_to_an_output_file_on_a_full_tmpfs_keeps_the_old_file(tmp_path, fmt):
    tree = long_tree(tmp_path / "tree")
    with tmpfs(tmp_path / "full") as full:
        target = full / "manifest"
        target.write_bytes(b"previous manifest\n")
        proc = subprocess.run(
            [*PARHASH, "scan", str(tree), *fmt, "-q", "-o", str(target)],
            capture_output=True,
            timeout=110,
        )
        assert stderr_lines(proc) == [f"parhash: write error: {target}: {FULL}"], proc.stderr
        assert proc.returncode == 2
        assert target.read_bytes() == b"previous manifest\n"
        assert os.listdir(full) == ["manifest"]  # no temporary file left either


@pytest.mark.timeout(120)
def test_check_to_a_full_tmpfs_fails_with_one_line(tmp_path):
    tree = long_tree(tmp_path / "tree")
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sorted(sha256_lines(tree))))
    assert_full_stdout_fails(tmp_path, ["check", str(sums)])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["human", "jsonl", "json"])
def test_audit_to_a_full_tmpfs_fails_with_one_line(tmp_path, fmt):
    tree = long_tree(tmp_path / "tree")
    manifest = tmp_path / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-q", "-o", manifest).returncode == 0
    assert_full_stdout_fails(tmp_path, ["audit", str(manifest), "-v", "-f", fmt])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])  # a sums file: --update refuses
def test_audit_update_on_a_full_tmpfs_keeps_the_old_manifest(tmp_path, fmt):
    with tmpfs(tmp_path / "full") as full:
        tree = full / "tree"
        tree.mkdir()
        for i in range(5):  # a tmpfs page each: 20 of the 64 KiB
            (tree / f"{i:03d}").write_bytes(b"%d\n" % i)
        manifest = full / f"m.{fmt}"
        assert run_cli("scan", tree, "-f", fmt, "-q", "-o", manifest).returncode == 0
        before = manifest.read_bytes()
        for i in range(600):  # empty files take no page: the disk fills only on --update
            (tree / f"{i:05d}-{'n' * 94}").write_bytes(b"")
        args = ["audit", manifest, "--update", "--fail-on", "none"]
        proc = run_cli(*args)
        assert stderr_lines(proc)[-1] == f"parhash: write error: {manifest}: {FULL}"
        assert [line for line in stderr_lines(proc) if line.startswith("parhash:")] == [
            f"parhash: write error: {manifest}: {FULL}"
        ], proc.stderr
        assert proc.returncode == 2
        assert manifest.read_bytes() == before
        assert sorted(os.listdir(full)) == ["m." + fmt, "tree"]


@pytest.mark.timeout(60)
def test_a_closed_stdout_is_a_write_error_as_for_sha256sum(tmp_path):
    """``parhash scan t >&-``: sha256sum says ``write error: Bad file descriptor``, exit 1;
    parhash says the same with its exit 2 for a write error."""
    tree = long_tree(tmp_path / "tree", 3)
    proc = subprocess.run(
        [*PARHASH, "scan", str(tree), "-a", "sha256", "-q"],
        preexec_fn=lambda: os.close(1),
        stderr=subprocess.PIPE,
        timeout=50,
    )
    peer = subprocess.run(
        ["sha256sum", str(next(tree.iterdir()))],
        preexec_fn=lambda: os.close(1),
        stderr=subprocess.PIPE,
    )
    assert stderr_lines(peer) == ["sha256sum: write error: Bad file descriptor"]
    assert stderr_lines(proc) == ["parhash: write error: Bad file descriptor"], proc.stderr
    assert proc.returncode == 2


@pytest.mark.timeout(120)
def test_a_hard_linked_output_on_a_full_disk_keeps_its_old_content(tmp_path):
    """The in-place copy reserves its space first: the complete temporary file fits, the
    copy does not, and the target (and its other link) keep every old byte."""
    tree = tmp_path / "t"
    tree.mkdir()
    for i in range(300):
        (tree / f"{i:04d}-{'n' * 50}").write_bytes(b"%d" % i)
    with tmpfs(tmp_path / "full") as full:
        target = full / "out.sums"
        target.write_bytes(b"old\n")
        os.link(target, full / "other-link")
        proc = run_cli("scan", tree, "-a", "sha256", "-q", "-o", target)
        assert stderr_lines(proc) == [f"parhash: write error: {target}: {FULL}"], proc.stderr
        assert proc.returncode == 2
        assert target.read_bytes() == b"old\n" and target.stat().st_nlink == 2
        assert sorted(os.listdir(full)) == ["other-link", "out.sums"]


# --------------------------------------------------------------------------- item 1: closed pipe


def _closed_pipe_cases():
    cases = [(["scan", "{tree}", *fmt], " ".join(["scan", *fmt])) for fmt in SCAN_FORMATS]
    cases.append((["check", "{sums}"], "check"))
    for fmt in ("human", "jsonl", "json"):
        cases.append((["audit", "{manifest}", "-v", "-f", fmt], f"audit -f {fmt}"))
    return cases


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipe")
    # 600 records (under the 1,024 that --sort and the audit renderers write at once) of
    # 200-byte names: the whole output can be one write(2) larger than the pipe, which the
    # reader's close cuts short; a short count then must not pass for success.
    tree = long_tree(base / "tree", 600, 200)
    sums = base / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sorted(sha256_lines(tree))))
    manifest = base / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-q", "-o", manifest).returncode == 0
    return {"tree": str(tree), "sums": str(sums), "manifest": str(manifest)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "args", [c[0] for c in _closed_pipe_cases()], ids=[c[1] for c in _closed_pipe_cases()]
)
def test_a_reader_that_goes_away_is_a_quiet_141(inputs, args):
    """``| head -1``: the output is far larger than the pipe, so parhash is still writing
    when the reader closes its end."""
    argv = [a.format(**inputs) for a in args]
    proc = subprocess.Popen(
        [*PARHASH, *argv, *(["-q"] if argv[0] == "scan" else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = os.read(proc.stdout.fileno(), 100)  # one read, then hang up like head -c 100
    proc.stdout.close()
    _, err = proc.communicate(timeout=100)
    assert first
    assert err.decode(errors="replace") == ""
    assert proc.returncode == 141


# --------------------------------------------------------------------------- item 3: -o is an input


def _refusal_cases(tmp_path: Path) -> list[tuple[list[str], Path]]:
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "data.txt").write_bytes(b"data in the tree\n")
    (tree / "sub" / "deep.txt").write_bytes(b"deep data\n")
    keep = tmp_path / "keep.txt"
    keep.write_bytes(b"keep me\n")
    (tmp_path / "via-symlink").symlink_to(tree / "data.txt")
    os.link(tree / "sub" / "deep.txt", tmp_path / "hard-link")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside, linked from the tree\n")
    (tree / "sub" / "to-outside").symlink_to(outside)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"t/data.txt\n")
    return [
        (["scan", "keep.txt", "-o", "keep.txt"], keep),
        (["scan", "t", "-o", "t/data.txt"], tree / "data.txt"),
        (["scan", "t", "-o", "t/sub/../data.txt"], tree / "data.txt"),
        (["scan", "t", "-o", "via-symlink"], tree / "data.txt"),
        (["scan", "t", "-o", "hard-link"], tree / "sub" / "deep.txt"),
        (["scan", "-L", "t", "-o", "outside.txt"], outside),
        (["scan", "--files-from", "list.txt", "-o", "list.txt"], listing),
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", range(7))
def test_output_that_is_an_input_is_refused_before_hashing(tmp_path, case):
    args, victim = _refusal_cases(tmp_path)[case]
    before = victim.read_bytes()
    proc = run_cli(*args, "-a", "sha256", cwd=tmp_path)
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("parhash: error: -o "), proc.stderr
    assert "refusing to overwrite an input" in lines[0]
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert victim.read_bytes() == before


@pytest.mark.timeout(60)
def test_a_new_output_file_inside_the_tree_is_allowed_and_never_listed(tmp_path):
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (tree / name).write_bytes(name.encode() * 100)
    proc = run_cli("scan", "t", "-a", "sha256", "-o", "t/new.sums", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = set((tree / "new.sums").read_text().splitlines())
    expected = {
        f"{hashlib.sha256((tree / n).read_bytes()).hexdigest()}  t/{n}" for n in ("a", "b", "sub/c")
    }
    assert written == expected


# ---------------------------------------------------------------- item 21: mode, owner, links


def alpha_tree(tmp_path: Path) -> Path:
    """``t/`` holding one file ``a``."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"alpha\n")
    return tree


def _give_to_nobody(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o600)


@pytest.mark.timeout(60)
def test_output_keeps_the_mode_and_owner_of_the_file_it_replaces(tmp_path):
    tree = alpha_tree(tmp_path)
    target = tmp_path / "out.sums"
    target.write_bytes(b"old\n")
    _give_to_nobody(target)
    proc = run_cli("scan", tree, "-a", "sha256", "-o", target)
    assert proc.returncode == 0, proc.stderr
    st = target.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o600", NOBODY, NOBODY)
    assert set(target.read_text().splitlines()) == sha256_lines(tree)


@pytest.mark.timeout(60)
def test_audit_update_keeps_the_mode_and_owner_of_the_manifest(tmp_path):
    tree = alpha_tree(tmp_path)
    manifest = tmp_path / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-a", "sha256", "-o", manifest).returncode == 0
    _give_to_nobody(manifest)
    (tree / "b").write_bytes(b"beta\n")
    proc = run_cli("audit", manifest, "--update", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    st = manifest.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o600", NOBODY, NOBODY)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    got = {r["path"]: r["hash"] for r in records if "path" in r}  # past the header line
    assert got == {
        str(tree / n): hashlib.sha256((tree / n).read_bytes()).hexdigest() for n in ("a", "b")
    }


@pytest.mark.timeout(60)
def test_output_keeps_a_hard_link_to_the_file_it_replaces(tmp_path):
    tree = alpha_tree(tmp_path)
    target = tmp_path / "out.sums"
    target.write_bytes(b"old content that is longer than the new one will be, by far\n" * 20)
    other = tmp_path / "other-name"
    os.link(target, other)
    inode = target.stat().st_ino
    proc = run_cli("scan", tree, "-a", "sha256", "-o", target)
    assert proc.returncode == 0, proc.stderr
    assert target.stat().st_ino == inode and target.stat().st_nlink == 2
    assert other.read_bytes() == target.read_bytes()
    assert set(target.read_text().splitlines()) == sha256_lines(tree)
    assert sorted(os.listdir(tmp_path)) == ["other-name", "out.sums", "t"]


def shared_workdir(tmp_path: Path) -> Path:
    """``w/``, writable by everyone, holding a readable file ``a``."""
    work = tmp_path / "w"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(work, 0o777)
    (work / "a").write_bytes(b"alpha\n")
    os.chmod(work / "a", 0o644)
    return work


def _run_main_in_child(args: list[str], cwd: Path, *, nproc: int | None = None) -> tuple:
    """The CLI's ``main()`` in a forked child as uid 65534 (the interpreter is not
    executable for nobody here, so no exec): real privileges, real rlimits. Returns
    (exit status, stdout bytes, stderr text)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "wb", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "wb", closefd=False), write_through=True)
            signal.alarm(50)
            os.chdir(cwd)
            # The interpreter lives below /root (0700 here): everything the command will
            # import is imported while still root.
            for module in ("cli", "pipeline", "pool", "report", "progress", "walk", "links"):
                importlib.import_module(f"parhash.{module}")
            import multiprocessing.pool  # noqa: F401

            import tqdm  # noqa: F401

            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            if nproc is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            from parhash.cli import main

            sys.argv = ["parhash", *args]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with open(out_r, "rb") as out, open(err_r, "rb") as err:
        stdout = out.read()
        stderr = err.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stdout, stderr


@pytest.mark.timeout(60)
def test_a_user_who_cannot_chown_keeps_the_owner_by_writing_in_place(tmp_path):
    """As nobody, replacing a group-writable file of root's: ``>`` keeps root as owner, and
    so must ``-o`` (a rename would give the file to nobody)."""
    work = shared_workdir(tmp_path)
    target = work / "out.sums"
    target.write_bytes(b"old\n")
    os.chown(target, 0, NOBODY)
    os.chmod(target, 0o664)
    code, _, err = _run_main_in_child(
        ["scan", "a", "-a", "sha256", "-j", "1", "-o", "out.sums"], work
    )
    assert code == 0, err
    st = target.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o664", 0, NOBODY)
    digest = hashlib.sha256(b"alpha\n").hexdigest()
    assert target.read_text() == f"{digest}  a\n"
    assert sorted(os.listdir(work)) == ["a", "out.sums"]


# --------------------------------------------------------------------------- item 23: -o -


@pytest.mark.timeout(60)
def test_output_dash_means_stdout(tmp_path):
    alpha_tree(tmp_path)
    proc = run_cli("scan", "t", "-a", "sha256", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256(b"alpha\n").hexdigest()
    assert proc.text.splitlines() == [f"{digest}  t/a"]
    assert not (tmp_path / "-").exists()
    # The device name still works as before (written directly, not replaced).
    same = run_cli("scan", "t", "-a", "sha256", "-o", "/dev/stdout", cwd=tmp_path)
    assert (same.returncode, same.stdout) == (0, proc.stdout), same.stderr


# --------------------------------------------------------------------------- item 8: no leftovers


def _wait(predicate, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _has_anonymous_output(pid: int, directory: Path) -> bool:
    """Whether ``pid`` holds an open file in ``directory`` that has no name."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(str(directory) + "/") and target.endswith("(deleted)"):
                    return True
    return False


def _kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def start_blocked_scan(tmp_path: Path, parhash: list[str]) -> tuple[subprocess.Popen, Path]:
    """A scan to ``out/x.sums`` whose ``--files-from -`` list is a pipe left open: the run
    stays alive, output open, until killed. Its own session, for the clean-up."""
    (tmp_path / "a").write_bytes(b"alpha\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [*parhash, "scan", "--files-from", "-", "-q", "-o", str(out / "x.sums")],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc.stdin.write(b"a\n")
    proc.stdin.flush()
    return proc, out


@pytest.mark.timeout(90)
def test_sigkill_during_a_scan_leaves_no_temporary_output(tmp_path):
    proc, out = start_blocked_scan(tmp_path, PARHASH)
    try:
        assert _wait(lambda: _has_anonymous_output(proc.pid, out) or os.listdir(out))
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_session(proc)
    assert os.listdir(out) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("update", [False, True], ids=["audit", "audit-update"])
def test_sigkill_during_an_audit_leaves_nothing_in_tmpdir(tmp_path, update):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "small").write_bytes(b"small\n")
    manifest_dir = tmp_path / "m"
    manifest_dir.mkdir()
    manifest = manifest_dir / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-a", "sha512", "-o", manifest).returncode == 0
    with open(tree / "zbig", "wb") as f:  # a slow source: hashing it takes seconds
        f.truncate(4 << 30)
        f.write(b"end")
    private = tmp_path / "tmpdir"
    private.mkdir()
    proc = subprocess.Popen(
        [*PARHASH, "audit", str(manifest), "-j", "2", *(["--update"] if update else [])],
        env={**os.environ, "TMPDIR": str(private)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Under way: some process of the run holds the big file open.
        assert _wait(lambda: _session_reads(proc.pid, str(tree / "zbig")), 60)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_session(proc)
    assert os.listdir(private) == []
    assert os.listdir(manifest_dir) == ["m.jsonl"]


def _session_reads(sid: int, path: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.getsid(int(pid)) != sid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                        return True
    return False


@pytest.mark.timeout(60)
def test_the_next_run_removes_temporary_files_of_dead_runs_only(tmp_path):
    """The fallback without O_TMPFILE names its temporary file and holds an flock on it;
    a later run into the same directory removes the unlocked (dead) ones."""
    (tmp_path / "a").write_bytes(b"alpha\n")
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".x.sums.0badc0de.parhash-tmp"
    dead.write_bytes(b"half a manifest of a run killed by SIGKILL")
    live = out / ".x.sums.11ve11ve.parhash-tmp"
    live.write_bytes(b"being written by a run that is alive")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(live),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        proc = run_cli("scan", "a", "-a", "sha256", "-o", out / "x.sums", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(out)) == [live.name, "x.sums"]
    finally:
        holder.kill()
        holder.wait()


#: parhash where the platform has no O_TMPFILE (as on NFS, FUSE, vfat, or old kernels):
#: the named, locked temporary file of the fallback.
WITHOUT_O_TMPFILE = [
    sys.executable,
    "-c",
    "import os, sys; del os.O_TMPFILE; from parhash.cli import main; main()",
]


@pytest.mark.timeout(90)
def test_without_o_tmpfile_a_killed_run_is_cleaned_up_by_the_next(tmp_path):
    proc, out = start_blocked_scan(tmp_path, WITHOUT_O_TMPFILE)
    try:
        assert _wait(lambda: len(os.listdir(out)) == 1)
        (name,) = os.listdir(out)
        assert name.startswith(".x.sums.") and name.endswith(".parhash-tmp")
        fd = os.open(out / name, os.O_RDONLY)
        try:  # the live run holds its lock: no sweep may take the file
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_session(proc)
    assert os.listdir(out) == [name]  # SIGKILL: nobody could remove it
    again = subprocess.run(
        [*WITHOUT_O_TMPFILE, "scan", "a", "-a", "sha256", "-o", str(out / "y.sums")],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert os.listdir(out) == ["y.sums"]
    digest = hashlib.sha256(b"alpha\n").hexdigest()
    assert (out / "y.sums").read_text() == f"{digest}  a\n"


# --------------------------------------------------------------------------- item 9: resources


@pytest.mark.timeout(180)
def test_a_full_tmpdir_during_audit_is_one_line_and_exit_2(tmp_path):
    """200,000 manifest entries do not fit SQLite's 16 MiB page cache: the temporary
    database spills into TMPDIR, a 64 KiB tmpfs here."""
    tree = alpha_tree(tmp_path)
    manifest = tmp_path / "m.jsonl"
    with open(manifest, "w") as f:
        for i in range(200_000):
            path = f"{tree}/d{i % 100}/file-{i:07d}-{'x' * 60}"
            f.write(
                json.dumps(
                    {
                        "path": path,
                        "size": 10,
                        "mtime": 1,
                        "algo": "sha256",
                        "hash": hashlib.sha256(b"%d" % i).hexdigest(),
                        "error": None,
                        "root": str(tree),
                    }
                )
                + "\n"
            )
    with tmpfs(tmp_path / "full") as full:
        proc = run_cli("audit", manifest, "-f", "jsonl", env={"TMPDIR": str(full)}, timeout=170)
        assert os.listdir(full) == []
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (
        f"parhash: error: audit's temporary database in {full}: database or disk is full"
    )
    assert proc.returncode == 2


@pytest.mark.timeout(60)
def test_no_thread_can_start_is_one_line_and_exit_2(tmp_path):
    """RLIMIT_NPROC of 1 for uid 65534: the writer thread cannot start
    (``RuntimeError: can't start new thread``)."""
    work = shared_workdir(tmp_path)
    args = ["scan", "a", "-a", "sha256", "-j", "1", "-q", "-o", "out.sums"]
    code, stdout, err = _run_main_in_child(args, work, nproc=1)
    assert err.splitlines() == [
        "parhash: error: cannot start a thread (can't start new thread): "
        "a process, thread or memory limit was reached"
    ], err
    assert code == 2
    assert stdout == b""
    assert os.listdir(work) == ["a"]


# ---------------------------------------------- review: inputs named by --files-from


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_output_listed_in_files_from_is_never_overwritten(tmp_path, via):
    """A path listed in --files-from is an input like a PATH: ``-o`` naming it fails the
    run (exit 2, one line) and the file keeps its data (found in review: it was replaced
    by its own checksum line, exit 0)."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "data.txt").write_bytes(b"precious\n")
    (tree / "b").write_bytes(b"other\n")
    listing = b"t/b\nt/data.txt\n"
    (tmp_path / "list").write_bytes(listing)
    args = ["scan", "-a", "sha256", "-o", "t/data.txt", "--files-from"]
    if via == "file":
        result = run_cli(*args, "list", cwd=tmp_path)
    else:
        result = run_cli(*args, "-", cwd=tmp_path, input=listing)
    assert result.returncode == 2, result.stderr
    assert (tree / "data.txt").read_bytes() == b"precious\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("parhash: error:")]
    assert len(errors) == 1 and "t/data.txt" in errors[0], result.stderr
    assert sorted(os.listdir(tree)) == ["b", "data.txt"]  # no temporary file left


def test_output_through_a_hard_link_listed_in_files_from_is_refused(tmp_path):
    (tmp_path / "data").write_bytes(b"precious\n")
    os.link(tmp_path / "data", tmp_path / "alias")
    result = run_cli("scan", "-o", "alias", "-T", "-", cwd=tmp_path, input=b"data\n")
    assert result.returncode == 2, result.stderr
    assert (tmp_path / "data").read_bytes() == b"precious\n"


def test_a_new_output_with_files_from_is_written(tmp_path):
    (tmp_path / "a").write_bytes(b"alpha\n")
    args = ("scan", "-a", "sha256", "-o", "new.sums", "-T", "-")
    result = run_cli(*args, cwd=tmp_path, input=b"a\n")
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(b"alpha\n").hexdigest()
    assert (tmp_path / "new.sums").read_bytes() == f"{digest}  a\n".encode()


def test_output_that_is_the_exclude_from_file_is_refused(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_bytes(b"a")
    (tmp_path / "ex").write_bytes(b"*.log\n")
    result = run_cli("scan", "t", "--exclude-from", "ex", "-o", "ex", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (tmp_path / "ex").read_bytes() == b"*.log\n"
