"""``--cluster``: scan, check and audit on a real Dask cluster (issue 14).

One LocalCluster of 2 worker processes (1 thread each) is started here for the module and
reused (starting one costs about a second); the CLI reaches it as ``--cluster tcp://...``,
as it would reach a remote scheduler. Digests are compared with hashlib's, outputs with a
local run's. Faults are real: a worker process is SIGKILLed mid-run; a file kills every
worker that opens it through a test-side WorkerPlugin (the plugin patches ``os.open`` in the
workers, so parhash's own code has no hook). Skipped only when the dask extra is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import jsonl_records, run_cli, write_tree

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

#: A file whose name holds this takes SLOW_OPEN_S to open in a worker (a slow tree, so a
#: worker can be killed while it hashes); one holding POISON kills the worker opening it.
SLOW = "SLOWFILE"
POISON = "POISONFILE"
SLOW_OPEN_S = 0.05

#: Generous: a hang detector on 2 shared cores, never a speed assertion.
RUN_TIMEOUT = 100


class FileHooks(distributed.WorkerPlugin):
    """Test-side faults, installed in every worker (and again in each restarted one)."""

    name = "parhash-test-file-hooks"

    def setup(self, worker) -> None:
        real = os.open
        if getattr(real, "parhash_test_hook", False):
            return

        def hooked(path, flags, mode=0o777, *, dir_fd=None):
            name = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
            if POISON in name:
                os.kill(os.getpid(), signal.SIGKILL)
            if SLOW in name:
                time.sleep(SLOW_OPEN_S)
            return real(path, flags, mode, dir_fd=dir_fd)

        hooked.parhash_test_hook = True  # type: ignore[attr-defined]
        os.open = hooked


@contextlib.contextmanager
def own_cluster(allowed_failures: int):
    """A LocalCluster of 2 worker processes with the test's FileHooks, and a client of the
    test's own; one worker thread per task slot (``worker-saturation`` 1), so a worker's
    death hits only the unit it runs."""
    import dask

    config = {
        "distributed.scheduler.allowed-failures": allowed_failures,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(config):
        local = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=50,
        )
    client = distributed.Client(local, set_as_default=False)
    try:
        client.register_plugin(FileHooks())
        yield local, client
    finally:
        client.close()
        local.close()


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster: one worker death is retried by Dask (``allowed-failures``
    1). Only the kill test kills one of its workers: a nanny that restarts workers again
    and again can give up (seen after ~30 deaths), so the poison test has its own."""
    with own_cluster(allowed_failures=1) as made:
        yield made


@pytest.fixture
def address(cluster):
    """The scheduler's address, once both workers are up (a test may have killed one)."""
    local, client = cluster
    client.wait_for_workers(2, timeout=60)
    return local.scheduler_address


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TREE = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "big.bin": os.urandom(3 * 1024 * 1024 + 17),
    "sub": {"b.txt": b"beta\n", "deeper": {"c.txt": b"gamma" * 1000}},
    "caf\u00e9.txt": b"unicode name\n",
    "many": {f"f{i:03}": f"file {i}\n".encode() for i in range(300)},
}


def expected_digests(root: Path, base: Path) -> dict[str, str]:
    """{path as the CLI prints it (relative to ``base``): sha256} of every regular file."""
    found = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, base)] = sha256(f.read())
    return found


def records_by_path(stdout: bytes) -> list[tuple]:
    return sorted(
        (r["path"], r["size"], r["mtime"], r["hash"], r["error"]) for r in jsonl_records(stdout)
    )


def both(address: str, cwd: Path, *args: str):
    """``parhash ARGS`` through the cluster, then with the local pool (``-j 2``)."""
    there = run_cli(*args, "--cluster", address, cwd=cwd, timeout=RUN_TIMEOUT)
    return there, run_cli(*args, "-j", "2", cwd=cwd, timeout=RUN_TIMEOUT)


def test_scan_records_identical_to_a_local_scan(tmp_path, address):
    """Relative root (workers open it below the client's cwd), hard links (the one read is
    an injected task), a 3 MiB file and 300 small ones: the same sorted records as a local
    pool, and hashlib's digests."""
    write_tree(tmp_path / "tree", TREE)
    os.link(tmp_path / "tree/a.txt", tmp_path / "tree/sub/a-link")
    args = ("scan", "tree", "-a", "sha256", "-f", "jsonl")
    there, here = both(address, tmp_path, *args)
    assert there.returncode == 0, there.stderr
    assert here.returncode == 0, here.stderr
    assert records_by_path(there.stdout) == records_by_path(here.stdout)
    digests = {r["path"]: r["hash"] for r in jsonl_records(there.stdout)}
    assert digests == expected_digests(tmp_path / "tree", tmp_path)
    assert "Traceback" not in there.stderr


def test_local_cluster_of_the_run_itself(tmp_path):
    """``--cluster local:2`` starts and stops its own LocalCluster: sums identical to a
    local run, byte for byte once sorted, and no worker process left behind."""
    write_tree(tmp_path / "tree", TREE)
    there = run_cli("scan", "tree", "--cluster", "local:2", cwd=tmp_path, timeout=RUN_TIMEOUT)
    here = run_cli("scan", "tree", cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert there.returncode == 0, there.stderr
    assert sorted(there.stdout.splitlines()) == sorted(here.stdout.splitlines())
    assert len(there.stdout.splitlines()) == len(expected_digests(tmp_path / "tree", tmp_path))


def test_library_scan_on_the_cluster(tmp_path, address):
    import parhash

    root = write_tree(tmp_path / "tree", TREE)
    records = list(parhash.scan([str(root)], algo="sha256", cluster=address))
    got = {os.path.relpath(r.path, tmp_path): r.digest for r in records}
    assert got == expected_digests(root, tmp_path)
    assert all(r.error is None for r in records)


def test_files_from_on_the_cluster(tmp_path, address):
    """``--files-from`` with relative names and one missing: the same records as here."""
    write_tree(tmp_path / "tree", TREE)
    listed = "tree/a.txt\ntree/sub/b.txt\ntree/missing\ntree/big.bin\n"
    (tmp_path / "list").write_text(listed)
    args = ("scan", "-T", "list", "-a", "sha256", "-f", "jsonl")
    there, here = both(address, tmp_path, *args)
    assert there.returncode == here.returncode == 1
    assert records_by_path(there.stdout) == records_by_path(here.stdout)
    assert there.stderr.splitlines()[0] == here.stderr.splitlines()[0]


def test_check_through_the_cluster_matches_local(tmp_path, address):
    """One file corrupted, one removed: the same verdict lines and exit status."""
    root = write_tree(tmp_path / "tree", TREE)
    sums = run_cli("scan", "tree", "-a", "sha256", cwd=tmp_path)
    assert sums.returncode == 0, sums.stderr
    (tmp_path / "SUMS").write_bytes(sums.stdout)
    (root / "sub/b.txt").write_bytes(b"changed\n")
    (root / "many/f007").unlink()
    args = ("check", "-a", "sha256", "SUMS")
    there, here = both(address, tmp_path, *args)
    assert there.returncode == here.returncode == 1
    assert sorted(there.stdout.splitlines()) == sorted(here.stdout.splitlines())
    assert b"tree/sub/b.txt: FAILED" in there.stdout
    assert there.stderr.splitlines()[-2:] == here.stderr.splitlines()[-2:]


def test_audit_through_the_cluster_matches_local(tmp_path, address):
    """Modified, added and removed files: the same jsonl report and exit status; a clean
    tree exits 0 through the cluster."""
    root = write_tree(tmp_path / "tree", TREE)
    made = run_cli("scan", "tree", "-a", "sha256", "-f", "jsonl", "-o", "m.jsonl", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    clean = run_cli("audit", "m.jsonl", "--cluster", address, cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert clean.returncode == 0, clean.stderr
    (root / "a.txt").write_bytes(b"different length\n")
    (root / "new.txt").write_bytes(b"new\n")
    (root / "empty").unlink()
    args = ("audit", "m.jsonl", "-f", "jsonl")
    there, here = both(address, tmp_path, *args)
    assert there.returncode == here.returncode == 1
    assert there.stdout == here.stdout
    assert {(e["path"], e["class"]) for e in jsonl_records(there.stdout)} >= {
        ("a.txt", "modified"),
        ("new.txt", "added"),
        ("empty", "removed"),
    }


def slow_tree(root: Path, count: int) -> Path:
    """``count`` files in 4 directories, each SLOW_OPEN_S to open in a worker."""
    dirs: dict = {f"d{d}": {} for d in range(4)}
    for i in range(count):
        dirs[f"d{i % 4}"][f"{SLOW}{i:03}"] = f"{i}\n".encode()
    return write_tree(root, dirs)


@contextlib.contextmanager
def running_on(client, args: tuple[str, ...], cwd: Path) -> Iterator[subprocess.Popen]:
    """``parhash ARGS`` started, yielded once the cluster runs one of its tasks; killed at
    the end if it is still running (a hang fails the test, never the session)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhash", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not any(client.processing().values()):
            assert proc.poll() is None and time.monotonic() < deadline, "never started"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_killed_mid_run_loses_no_file(tmp_path, cluster, address):
    """SIGKILL one worker process while a slow tree is hashed: Dask runs its unit again on
    another worker; every file has its record and hashlib's digest, exit 0, no hang."""
    _, client = cluster
    root = write_tree(
        tmp_path / "tree", {f"{SLOW}{i:03}": f"content {i}\n".encode() for i in range(160)}
    )
    args = ("scan", "tree", "-a", "sha256", "-f", "jsonl", "--cluster", address)
    with running_on(client, args, tmp_path) as proc:
        time.sleep(0.3)  # inside a unit: each file takes SLOW_OPEN_S to open
        pids = client.run(os.getpid)
        busy = next(w for w, tasks in client.processing().items() if tasks)
        os.kill(pids[busy], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, stderr.decode()
    records = jsonl_records(stdout)
    assert len(records) == 160
    assert {r["path"]: r["hash"] for r in records} == expected_digests(root, tmp_path)


def test_a_unit_that_kills_every_worker_becomes_error_records(tmp_path):
    """A file that kills whatever worker opens it, on a cluster of its own where one death
    is a ``KilledWorker`` (``allowed-failures`` 0): its unit is lost, its files go again one
    per task, the poison file is an error record (exit 1); every file has exactly one
    record, and each one without an error has hashlib's digest (a file that shared a dying
    worker twice may be an error record too: as with the local pool, a file lost twice is
    one). The cluster still works afterwards."""
    spec = {f"ok{i}": f"fine {i}\n".encode() for i in range(5)}
    write_tree(tmp_path / "tree", {**spec, POISON: b"x"})
    with own_cluster(allowed_failures=0) as (local, client):
        address = local.scheduler_address
        run = run_cli(
            "scan", "tree", "-a", "sha256", "-f", "jsonl", "--cluster", address,
            cwd=tmp_path, timeout=RUN_TIMEOUT,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        records = jsonl_records(run.stdout)
        assert sorted(r["path"] for r in records) == sorted(f"tree/{n}" for n in (*spec, POISON))
        died = "worker process died while hashing this file"
        for record in records:
            name = record["path"].removeprefix("tree/")
            if name == POISON:
                assert record["error"] == died
            elif record["error"] is None:
                assert record["hash"] == sha256(spec[name])
            else:
                assert record["error"] == died
        assert "killed the workers that ran it" in run.stderr
        assert "Traceback" not in run.stderr
        client.wait_for_workers(2, timeout=60)
        assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
        again = run_cli(
            "scan", "tree/ok0", "-a", "sha256", "--cluster", address, cwd=tmp_path, timeout=60
        )
        assert again.returncode == 0, again.stderr
        assert again.stdout.split()[0].decode() == sha256(spec["ok0"])


def test_interrupt_cancels_the_futures_and_leaves_the_cluster_usable(tmp_path, cluster, address):
    """Ctrl-C (SIGINT) mid-run: exit 130, the run's tasks leave the scheduler, the cluster
    takes the next run."""
    _, client = cluster
    slow_tree(tmp_path / "tree", 200)
    with running_on(client, ("scan", "tree", "--cluster", address), tmp_path) as proc:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    deadline = time.monotonic() + 60
    while client.processing() and any(client.processing().values()):
        assert time.monotonic() < deadline, "the run's tasks stayed on the cluster"
        time.sleep(0.1)
    write_tree(tmp_path / "small", {"x": b"x"})
    again = run_cli("scan", "small", "--cluster", address, cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert again.returncode == 0, again.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    write_tree(tmp_path / "tree", {"a": b"a"})
    started = time.monotonic()
    run = run_cli(
        "scan", "tree", "--cluster", f"tcp://127.0.0.1:{free_port()}", cwd=tmp_path, timeout=60
    )
    assert time.monotonic() - started < 45  # a hang detector: CONNECT_TIMEOUT is 5 s
    assert run.returncode == 2
    assert run.stdout == b""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("parhash: error: cannot reach the Dask scheduler at tcp://")


@pytest.mark.parametrize("bad", ["foo", "local:0", "local:x", "tcp://"])
def test_bad_cluster_text_is_a_usage_error(tmp_path, bad):
    run = run_cli("scan", ".", "--cluster", bad, cwd=tmp_path)
    assert run.returncode == 2
    assert "Invalid value for '--cluster'" in run.stderr


BLOCK_DASK = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(f"blocked by the test: {name}")
        return None

sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("command", ["scan", "check", "audit"])
def test_cluster_without_the_extra_is_a_one_line_hint(tmp_path, command):
    """``distributed`` made unimportable (a sitecustomize on PYTHONPATH): ``--cluster``
    gives the hint and exit 2; a run without it never imports Dask and works."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site/sitecustomize.py").write_text(BLOCK_DASK)
    env = {"PYTHONPATH": str(tmp_path / "site")}
    write_tree(tmp_path / "tree", {"a": b"a"})
    made = run_cli("scan", "tree", "-f", "jsonl", "-o", "m.jsonl", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    sums = run_cli("scan", "tree", "-a", "sha256", "-o", "SUMS", cwd=tmp_path, env=env)
    assert sums.returncode == 0, sums.stderr
    target = {"scan": ("tree",), "check": ("-a", "sha256", "SUMS"), "audit": ("m.jsonl",)}[command]
    run = run_cli(command, *target, "--cluster", "local:2", cwd=tmp_path, env=env)
    assert run.returncode == 2
    assert run.stderr == (
        "parhash: error: --cluster needs the dask extra: pip install 'parhash[dask]'\n"
    )
    plain = run_cli(command, *target, cwd=tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr


def _worker_in_private_mount_namespace(hidden: Path, scheduler: str, log: Path):
    """A Dask worker that sees a tmpfs over ``hidden`` (so not what the client sees
    there), in a mount namespace of its own (``unshare -m -r``); None where this cannot be
    done (no unshare, no user namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "-m", "-r", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = (
        f'mount -t tmpfs none "{hidden}" && exec "{sys.executable}" -m distributed.cli.dask_worker '
        f"{scheduler} --nthreads 1 --no-dashboard --nworkers 1 --no-nanny"
    )
    return subprocess.Popen(
        [unshare, "-m", "-r", "sh", "-c", script], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def test_a_root_a_worker_does_not_see_is_one_line_and_exit_2(tmp_path):
    """A worker in a private mount namespace with a tmpfs over the tree's parent: the
    client sees the tree, the worker does not. One line naming the root and the worker,
    exit 2, nothing on stdout. (Needs unshare and user namespaces: otherwise skipped.)"""
    hidden = tmp_path / "hidden"
    write_tree(hidden / "tree", {"a": b"a"})
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(free_port()), "--no-dashboard", "--scheduler-file",
         str(tmp_path / "s.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "s.json").exists():
            assert time.monotonic() < deadline and sched.poll() is None, "no scheduler"
            time.sleep(0.1)
        import json

        address = json.loads((tmp_path / "s.json").read_text())["address"]
        worker = _worker_in_private_mount_namespace(hidden, address, tmp_path / "worker.log")
        if worker is None:
            pytest.skip("no private mount namespace here (unshare -m -r failed)")
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            workers = list(client.scheduler_info()["workers"])
        run = run_cli(
            "scan", "hidden/tree", "--cluster", address, cwd=tmp_path, timeout=RUN_TIMEOUT
        )
        assert run.returncode == 2, run.stderr
        assert run.stdout == b""
        assert run.stderr == (
            f"parhash: error: {tmp_path}/hidden/tree: not found on Dask worker {workers[0]} "
            "(every worker must mount the tree at the same path)\n"
        )
    finally:
        for proc in (worker, sched):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a container's PID 1 may never
    reap an orphan that already exited)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_ctrl_c_to_the_process_group_of_a_local_cluster(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: the LocalCluster's workers
    too. With a worker blocked on a named FIFO nobody writes to: exit 130, not one
    traceback on stderr (the workers ignore SIGINT), and no process of the run left."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhash", "scan", "fifo", "--cluster", "local:2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    writer = None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while writer is None:  # ENXIO until a worker has the FIFO open for reading
            assert proc.poll() is None and time.monotonic() < deadline, "never opened"
            with contextlib.suppress(OSError):
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 130, stderr.decode()
        assert stdout == b""
        assert b"Traceback" not in stderr, stderr.decode()
        deadline = time.monotonic() + 30
        while live_members(proc.pid):
            assert time.monotonic() < deadline, f"left running: {live_members(proc.pid)}"
            time.sleep(0.1)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cache_is_not_used_on_a_cluster(tmp_path, address):
    """``--cache --cluster``: one warning, the records of a run without the cache, and no
    cache written (workers elsewhere cannot read this host's database; Dask may run a
    task twice)."""
    write_tree(tmp_path / "tree", TREE)
    args = ("scan", "tree", "-a", "sha256", "-f", "jsonl")
    cached = ("--cache", "--cache-dir", str(tmp_path / "cache"))
    there = run_cli(*args, *cached, "--cluster", address, cwd=tmp_path, timeout=RUN_TIMEOUT)
    here = run_cli(*args, cwd=tmp_path, timeout=RUN_TIMEOUT)
    assert there.returncode == 0, there.stderr
    assert there.stderr.splitlines()[0] == (
        "parhash: warning: --cache is not used with --cluster: the workers read every file"
    )
    assert records_by_path(there.stdout) == records_by_path(here.stdout)
    assert not (tmp_path / "cache").exists()
