"""The executor seam, batching and hard links, in-process: a task in, a result out.

These are the fast tests of the pieces the CLI tests cover end to end: the worker's answer
to one task (bytes formatted like the reporters', counts, error records, rows, deferred
links), an executor's lost task, the pipeline's retry policy, how sources become tasks, and
how hard links are read once. Digests are computed here with xxhash/hashlib.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import threading
import time

import pytest
import xxhash

from parhash.batching import FIRST_BATCH, MAX_BATCH, Context, WalkProgress, make_tasks
from parhash.executor import InlineExecutor
from parhash.hashing import HashSettings
from parhash.links import LinkResolver
from parhash.model import Expected, FileRecord
from parhash.options import ScanOptions
from parhash.pipeline import WORKER_DIED, _Run
from parhash.report import Rendering
from parhash.sources import Source
from parhash.tasks import LostTask, Task, TaskResult, WorkSpec
from parhash.worker import run_task


def xxh3(data: bytes) -> str:
    return xxhash.xxh3_64(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path):
    """a (5 bytes), b (empty), sub/c (70 KiB), a FIFO, and a missing name."""
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "b").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(os.urandom(70 << 10))
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def task_of(tree, *groups, **kw) -> Task:
    root = str(tree)
    return Task(kw.pop("task_id", 1), root, tuple((p, tuple(n)) for p, n in groups), **kw)


# --------------------------------------------------------------------------- the worker side


def test_a_task_in_gives_bytes_counts_and_errors_out(tree):
    root = f"{tree}/"
    task = task_of(tree, (root, ["a", "b", "missing", "fifo"]), (f"{root}sub/", ["c"]))
    result = run_task(WorkSpec(HashSettings(("sha256",)), Rendering("sums", ("sha256",))), task)
    c = (tree / "sub" / "c").read_bytes()
    expected = f"{sha256(b'alpha')}  {root}a\n{sha256(b'')}  {root}b\n{sha256(c)}  {root}sub/c\n"
    assert result.task_id == 1
    assert result.data == expected.encode()
    assert result.files == 5  # the missing name and the FIFO are error records
    assert result.nbytes == 5 + len(c)
    assert result.errors == [
        (f"{root}missing", "No such file or directory"),
        (f"{root}fifo", "not a regular file (FIFO)"),
    ]
    assert result.rows is None and result.deferred is None


def test_jsonl_bytes_from_a_worker_are_one_object_per_file(tree):
    import json

    task = task_of(tree, (f"{tree}/", ["a", "missing"]))
    result = run_task(WorkSpec(HashSettings(), Rendering("jsonl", ("xxh3",))), task)
    lines = [json.loads(line) for line in result.data.decode().splitlines()]
    assert [(r["path"], r["hash"], r["error"], r["root"]) for r in lines] == [
        (f"{tree}/a", xxh3(b"alpha"), None, str(tree)),
        (f"{tree}/missing", None, "No such file or directory", str(tree)),
    ]


def test_rows_carry_every_field_and_several_digests(tree):
    task = task_of(tree, ("", [f"{tree}/a", f"{tree}/missing"]))
    result = run_task(WorkSpec(HashSettings(("sha256", "xxh3"))), task)
    mtime = os.stat(tree / "a").st_mtime_ns
    assert result.data == b""
    assert result.rows == [
        (0, 5, mtime, (sha256(b"alpha"), xxh3(b"alpha")), None),
        (1, None, None, None, "No such file or directory"),
    ]


def test_hard_links_are_deferred_and_read_when_asked(tree):
    os.link(tree / "a", tree / "a2")
    settings = HashSettings(dedupe_links=True)
    task = task_of(tree, (f"{tree}/", ["a", "b"]))
    result = run_task(WorkSpec(settings, Rendering("sums", ("xxh3",))), task)
    st = os.stat(tree / "a")
    assert result.deferred == [(0, st.st_dev, st.st_ino, 5, st.st_mtime_ns)]
    assert result.files == 1  # b only; a waits for its one read
    read = task_of(tree, ("", [f"{tree}/a"]), read_links=True)
    answer = run_task(WorkSpec(settings, Rendering("sums", ("xxh3",))), read)
    assert answer.deferred is None
    assert answer.data == f"XXH3 ({tree}/a) = {xxh3(b'alpha')}\n".encode()
    assert answer.rows == [(0, 5, st.st_mtime_ns, (xxh3(b"alpha"),), None)]


def test_size_filters_skip_without_a_record(tree):
    settings = HashSettings(min_size=1, max_size=10)
    result = run_task(WorkSpec(settings), task_of(tree, (f"{tree}/", ["a", "b"])))
    assert [row[0] for row in result.rows] == [0]  # b (0 bytes) is below --min-size
    assert result.files == 1


def test_a_task_is_self_contained_and_small(tree):
    import pickle

    names = [f"file-{i:05}" for i in range(1000)]
    task = task_of(tree, (f"{tree}/deep/dir/", names))
    blob = pickle.dumps(task)
    # the prefix once, then the names: no per-file copy of the directory
    assert len(blob) < sum(len(n) + 4 for n in names) + 200
    assert pickle.loads(blob) == task
    assert task.path_at(999) == f"{tree}/deep/dir/file-00999"
    # a single file keeps its directory (the hash cache keys on it)
    assert task.single(5, 9).groups == ((f"{tree}/deep/dir/", ("file-00005",)),)


def test_the_read_buffer_is_safe_from_two_threads(tree):
    """Two threads running tasks at once (a cluster worker's threads) get right digests."""
    big = os.urandom(3 << 20)
    for i in range(8):
        (tree / f"big{i}").write_bytes(big[i:] + bytes([i]))
    spec = WorkSpec(HashSettings(("sha256",)))
    out: dict[int, list] = {}

    def work(n):
        task = task_of(tree, (f"{tree}/", [f"big{i}" for i in range(8)]), task_id=n)
        out[n] = [run_task(spec, task).rows for _ in range(3)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = [sha256(big[i:] + bytes([i])) for i in range(8)]
    for rows_list in out.values():
        for rows in rows_list:
            assert [row[3][0] for row in rows] == want


# --------------------------------------------------------------------------- executors


def test_the_inline_executor_answers_every_task_and_the_injected_ones(tree):
    executor = InlineExecutor(WorkSpec(HashSettings()))
    tasks = [task_of(tree, ("", [f"{tree}/a"]), task_id=i) for i in range(3)]
    answers = []
    for answer in executor.results(tasks):
        answers.append(answer.task_id)
        if answer.task_id == 0:
            executor.inject(task_of(tree, ("", [f"{tree}/b"]), task_id=99))
    assert answers == [0, 99, 1, 2]


def test_a_pool_reports_the_task_its_dead_worker_held_as_lost(tree):
    """A named FIFO blocks its worker in open(); killing the worker loses that task."""
    from parhash.pool import PoolExecutor

    executor = PoolExecutor(WorkSpec(HashSettings()), 2, warn=lambda message: None)
    stuck = task_of(tree, ("", [f"{tree}/fifo"]), named=True, task_id=7)
    fine = task_of(tree, ("", [f"{tree}/a"]), task_id=8)
    before = set(_children())

    def kill_the_blocked_worker():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for pid in set(_children()) - before:
                if _blocked_on_fifo(pid, tree / "fifo"):
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_blocked_worker, daemon=True)
    killer.start()
    answers = {}
    try:
        for answer in executor.results([stuck, fine]):
            answers[answer.task_id] = answer
            if len(answers) == 2:
                break
    finally:
        executor.close()
    killer.join(5)
    assert isinstance(answers[7], LostTask) and answers[7].task == stuck
    assert isinstance(answers[8], TaskResult) and answers[8].files == 1
    assert set(_children()) <= before  # no worker left behind


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    found.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _blocked_on_fifo(pid: int, fifo) -> bool:
    """Whether ``pid`` is a worker stuck opening the FIFO: a FIFO's open waits in the
    kernel's ``wait_for_partner`` for the other end."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "partner" in f.read()
    except OSError:
        return False


# --------------------------------------------------------------------------- retry policy


class FakeExecutor:
    """Records what the pipeline injects; answers nothing by itself."""

    counters = None
    on_start = None

    def __init__(self) -> None:
        self.injected: list[Task] = []

    def inject(self, task: Task) -> None:
        self.injected.append(task)

    def close(self) -> None:
        pass


def run_of(executor, rendering=None, dedupe=True) -> tuple[_Run, dict]:
    contexts: dict[int, Context] = {}
    options = ScanOptions(dedupe_links=dedupe)
    return _Run(executor, options, rendering, itertools.count(100), contexts), contexts


def test_a_lost_task_is_retried_one_file_per_task_then_is_an_error(tree):
    executor = FakeExecutor()
    run, contexts = run_of(executor)
    entries = tuple(Expected(f"{tree}/{n}", "xxh3", "0" * 16, i + 1) for i, n in enumerate("ab"))
    walker_error = FileRecord(f"{tree}/x", str(tree), None, None, None, "Permission denied")
    task = task_of(tree, ("", [f"{tree}/a", f"{tree}/b"]), task_id=1)
    contexts[1] = Context(task, [walker_error], entries)
    chunk = run.answer(LostTask(task))
    assert chunk.records == [walker_error]  # what the parent held is not lost
    assert [t.groups for t in executor.injected] == [
        (("", (f"{tree}/a",)),),
        (("", (f"{tree}/b",)),),
    ]
    assert all(t.attempt == 1 for t in executor.injected)
    second = executor.injected[1]
    chunk = run.answer(LostTask(second))
    [record] = chunk.records
    assert (record.path, record.error, record.expected) == (f"{tree}/b", WORKER_DIED, entries[1])
    assert chunk.errors == [(f"{tree}/b", WORKER_DIED)]
    first = executor.injected[0]
    chunk = run.answer(run_task(WorkSpec(HashSettings()), first))
    assert [(r.path, r.digest, r.expected) for r in chunk.records] == [
        (f"{tree}/a", xxh3(b"alpha"), entries[0])
    ]
    assert not contexts  # every context was consumed


def test_a_lost_one_file_task_keeps_its_id(tree):
    executor = FakeExecutor()
    run, contexts = run_of(executor)
    task = task_of(tree, ("", [f"{tree}/a"]), task_id=5)
    contexts[5] = Context(task)
    run.answer(LostTask(task))
    assert [(t.task_id, t.attempt) for t in executor.injected] == [(5, 1)]


# --------------------------------------------------------------------------- batching


def listing_source(root: str, listings) -> Source:
    return Source(root, False, listings, listings=True)


def test_tasks_grow_from_the_first_size_to_the_largest_and_share_directories():
    listings = [(f"/r/d{i}/", [f"f{j}" for j in range(10)], []) for i in range(400)]
    contexts: dict[int, Context] = {}
    found = WalkProgress()
    tasks = list(
        make_tasks(
            [listing_source("/r", listings)], 2, found, HashSettings(), itertools.count(), contexts
        )
    )
    sizes = [t.count for t in tasks]
    assert sizes[0] == FIRST_BATCH
    assert max(sizes) == MAX_BATCH
    assert sum(sizes) == 4000 and found.files_found == 4000 and found.done
    assert len(tasks[-3].groups) > 1  # several directories in one task
    paths = [p for t in tasks for p in t.paths()]
    every = [f"/r/d{i}/f{j}" for i in range(400) for j in range(10)]
    # in walk order, but for the last task, dealt over the 2 workers
    assert paths[: -tasks[-1].count * 2] == every[: -tasks[-1].count * 2]
    assert sorted(paths) == sorted(every)
    assert set(contexts) == {t.task_id for t in tasks}


class CountingList(list):
    """A listing that counts the names its slices copy."""

    copied = 0

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if isinstance(index, slice):
            CountingList.copied += len(item)
            return CountingList(item)  # the rest of a listing is a listing too
        return item


def test_one_huge_directory_is_cut_into_tasks_copying_each_name_once():
    """A 200,000-name directory becomes tasks of MAX_BATCH; cutting it copies each name
    once (cutting the rest off again and again copies n**2 / MAX_BATCH names)."""
    names = CountingList(f"n{i}" for i in range(200_000))
    CountingList.copied = 0
    tasks = list(
        make_tasks(
            [listing_source("/r", [("/r/", names, [])])],
            2,
            WalkProgress(),
            HashSettings(),
            itertools.count(),
            {},
        )
    )
    assert sorted(n for t in tasks for _, group in t.groups for n in group) == sorted(names)
    assert max(t.count for t in tasks) == MAX_BATCH
    assert CountingList.copied == len(names)


def test_the_last_task_is_dealt_over_the_workers():
    listings = [("/r/", ["big1", "big2", "big3", "big4"], [])]
    tasks = list(
        make_tasks(
            [listing_source("/r", listings)],
            4,
            WalkProgress(),
            HashSettings(),
            itertools.count(),
            {},
        )
    )
    assert [list(t.paths()) for t in tasks] == [["/r/big1"], ["/r/big2"], ["/r/big3"], ["/r/big4"]]


def test_checksum_entries_keep_their_expected_digest_and_algorithm_per_task():
    entries = [Expected(f"/r/f{i}", "sha256" if i < 3 else "md5", "00", i) for i in range(5)]
    record = FileRecord("/r/gone", "/r", None, None, None, "missing")
    source = Source("sums", True, [*entries[:2], record, *entries[2:]], named=True)
    contexts: dict[int, Context] = {}
    tasks = list(
        make_tasks([source], 1, WalkProgress(), HashSettings(), itertools.count(), contexts)
    )
    assert [t.algos for t in tasks] == [("sha256",), ("md5",)]
    assert [contexts[t.task_id].expected for t in tasks] == [tuple(entries[:3]), tuple(entries[3:])]
    assert contexts[tasks[0].task_id].ready == [record]
    assert all(t.named for t in tasks)


# --------------------------------------------------------------------------- hard links


def test_links_are_read_once_and_every_path_gets_the_digest(tree):
    submitted: list[Context] = []
    resolver = LinkResolver(submitted.append, itertools.count(50))
    st = os.stat(tree / "a")
    link = (0, st.st_dev, st.st_ino, 5, st.st_mtime_ns)
    first = Context(task_of(tree, ("", [f"{tree}/a"]), task_id=1))
    second = Context(task_of(tree, ("", [f"{tree}/a-link"]), task_id=2))
    assert resolver.defer(first, link) == []
    assert resolver.defer(second, link) == []
    [read] = submitted  # one read for the inode
    assert read.task.read_links and read.task.task_id == 50
    row = (0, 5, st.st_mtime_ns, (xxh3(b"alpha"),), None)
    [other] = resolver.settle(50, [row])
    assert (other.path, other.digest) == (f"{tree}/a-link", xxh3(b"alpha"))
    third = Context(task_of(tree, ("", [f"{tree}/third"]), task_id=3))
    [known] = resolver.defer(third, link)  # remembered: no second read
    assert known.digest == xxh3(b"alpha") and len(submitted) == 1
    changed = (0, st.st_dev, st.st_ino, 6, st.st_mtime_ns)  # same inode, new size
    assert resolver.defer(third, changed) == [] and len(submitted) == 2


def test_a_failed_link_read_is_the_error_of_every_waiting_path(tree):
    submitted: list[Context] = []
    resolver = LinkResolver(submitted.append, itertools.count(50))
    link = (0, 1, 2, 5, 9)
    resolver.defer(Context(task_of(tree, ("", ["p1"]), task_id=1)), link)
    resolver.defer(Context(task_of(tree, ("", ["p2"]), task_id=2)), link)
    [record] = resolver.settle(50, [(0, None, None, None, "Permission denied")])
    assert (record.path, record.error) == ("p2", "Permission denied")
    third = Context(task_of(tree, ("", ["p3"]), task_id=3))
    assert resolver.defer(third, link) == []  # an error is not remembered: read again


# --------------------------------------------------------------------------- the fast path

HOSTILE_NAMES = [
    "plain.txt",
    "with space",
    "back\\slash",
    "new\nline",
    "carriage\rreturn",
    "caf\u00e9",
    os.fsdecode(b"not-utf8-\xff\xfe"),
    '"quoted"',
    "tab\tname",
    "(paren) = x",
]


@pytest.mark.parametrize("algo", ["xxh3", "sha256", "blake3", "xxh64", "md5"])
@pytest.mark.parametrize("fmt", ["sums", "jsonl", "json"])
def test_formatting_straight_from_read_results_is_byte_identical(tmp_path, algo, fmt):
    """The worker's no-record path prints exactly what the record path prints."""
    from parhash.report import formatter

    root = str(tmp_path)
    paths = [f"{root}/{name}" for name in HOSTILE_NAMES]
    raws = [(i * 7, 10**18 + i, f"{i:016x}" * 4, None) for i in range(len(paths))]
    records = [
        FileRecord(p, root, r[0], r[1], r[2], None) for p, r in zip(paths, raws, strict=True)
    ]
    for tag in (False, True):
        fast = formatter(Rendering(fmt, (algo,), tag=tag))
        assert fast.from_raw(paths, raws, root) == fast(records)
