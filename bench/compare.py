#!/usr/bin/env python3
"""parhash against its peers, side by side, on the same corpora and the same machine.

    python bench/compare.py --corpus small [--corpus mixed ...] [--runs 3] [--cold]
        [--corpus-dir DIR] [--tools parhash,xxhsum,...] [--parhash-args "..."]
        [--out bench/results] [--chart] [--tiny] [--startup-runs N]
    python bench/compare.py --targets OUT/*.json     # the targets section from saved runs
    python bench/compare.py --replot OUT/*.json      # only the chart

Corpora are built once with ../shared/make_corpus.py into --corpus-dir (default:
$PARHASH_BENCH_DIR or /tmp/parhash-bench) as DIR/<shape>/, and DIR/<shape>.complete (the
generator's JSON summary) marks a complete build. ``--corpus tiny`` (or ``--tiny``) builds a
200-file corpus here, without make_corpus.py, for smoke tests.

Every tool runs with stdout to /dev/null, interleaved per round (A B C, A B C, ...), --runs
rounds. Before each round the corpus is read once so the page cache is warm, and again
before a run if mincore(2) on a sample of it finds it dropped since; with --cold the caches
are dropped before every single run instead (root only). Per run: wall time, user+sys CPU
of the whole process tree (os.wait4 on it), and peak RSS: the largest VmHWM of the process and
its descendants, polled in /proc every 10 ms (bench/rss.py), and, when /usr/bin/time is
installed, the kernel's own maximum over the waited-for tree (GNU time %M), which cannot miss
short-lived processes. parhash rows run through bench/parent_cpu.py, which records the CPU
of parhash's main process alone: the report gives it per file, also net of start-up (the
same command on an empty directory, once per round), and the workers' CPU as the rest.

Rows beyond plain scans: ``check -a sha256 --quiet`` of a sums file of the corpus (and
``sha256sum -c``), ``audit`` of a jsonl manifest of the unchanged corpus (and
``hashdeep -a``), ``xargs -P8`` xxhsum; the fixtures they read are made once per corpus in
a scratch directory. Unless --cold, the start-up rows (``scan EMPTYDIR`` against
``python -I -c pass``) run first, --startup-runs rounds.

The report gives medians and every tool's median wall relative to parhash's, as Markdown on
stdout and in OUT/<corpus>[-cold]-<timestamp>.md (raw runs in .json), then the issue-11
targets, each met or missed by how much with its per-round spread, in
OUT/targets-<timestamp>.md (.json); --targets recomputes them from saved .json files, e.g.
a warm and a --cold invocation together. --chart also draws OUT/throughput.png (needs
matplotlib: pip install matplotlib).

Exit status: 0 done; 1 some tool exited non-zero in some run (still reported); 2 usage error,
corpus build failure, --cold without permission to drop caches, or --chart without matplotlib.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import mmap
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parent_cpu import read_usage
from rss import children, vm_hwm_kib

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

KNOWN_CORPORA = ("tiny", "small", "mixed", "medium", "large")
DEFAULT_CORPUS_DIR = os.environ.get("PARHASH_BENCH_DIR") or "/tmp/parhash-bench"
DEFAULT_MAKE_CORPUS = os.path.normpath(os.path.join(REPO, "..", "shared", "make_corpus.py"))
DROP_CACHES = "/proc/sys/vm/drop_caches"
VMSTAT = "/proc/vmstat"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Re-runs of a warm run during which the page cache was dropped. 3: with another
#: benchmark dropping it every 4-5 s (seen here), a 1 s run is clean 4 times in 5.
RETRIES = 3
TIME_BIN = "/usr/bin/time"
POLL_SECONDS = 0.01
BASELINE = "parhash"
PARENT_CPU = os.path.join(BENCH_DIR, "parent_cpu.py")


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tool:
    name: str
    shown: str  # the command as a reader would type it, with DIR for the corpus
    argv: list[str]  # with "{dir}" where the corpus goes, "{sums}" etc. for FIXTURES
    needs: tuple[str, ...] = ()  # executables that must be on PATH
    stderr_null: bool = False  # stderr to /dev/null (else kept in a temp file for the report)
    parent_cpu: bool = False  # a parhash run: through bench/parent_cpu.py (see run_once)
    fixtures: tuple[str, ...] = ()  # inputs made from the corpus once, before the rounds

    def command(self, subs: dict[str, str] | str, usage_file: str | None = None) -> list[str]:
        """argv with the placeholders filled (``subs`` as a str: the corpus directory).

        With ``usage_file``, a parhash row runs as ``python bench/parent_cpu.py FILE ...``
        instead of ``python -m parhash ...``: the same program, plus its own CPU in FILE.
        """
        if isinstance(subs, str):
            subs = {"dir": subs}
        argv = [subs.get(a[1:-1], a) if a.startswith("{") else a for a in self.argv]
        if usage_file and self.parent_cpu:
            assert argv[1:3] == ["-m", "parhash"], argv
            argv = [argv[0], PARENT_CPU, usage_file, *argv[3:]]
        return argv

    @property
    def has_twin(self) -> bool:
        """A scan row: the same command on an empty directory gives its start-up cost."""
        return self.parent_cpu and not self.fixtures and "{dir}" in self.argv


def xargs_tool(name: str, cmd: str, procs: int = 2) -> Tool:
    pipeline = f"find {{dir}} -type f -print0 | xargs -0 -P{procs} -n 1000 {cmd}"
    return Tool(
        name,
        pipeline.replace("{dir}", "DIR"),
        ["sh", "-c", pipeline.replace("{dir}", '"$1"'), "sh", "{dir}"],
        ("sh", "find", "xargs", cmd.split()[0]),
    )


def parhash_tool(name: str, args: list[str], shown: str, extra: list[str], **kw: object) -> Tool:
    """``python -m parhash ARGS EXTRA``; ``shown`` is ARGS as the report prints them."""
    shown_extra = "".join(" " + shlex.quote(a) for a in extra)
    argv = [sys.executable, "-m", "parhash", *args, *extra]
    return Tool(name, f"python -m parhash {shown}{shown_extra}", argv, parent_cpu=True, **kw)


def all_tools(parhash_args: list[str]) -> list[Tool]:
    py = sys.executable
    extra = parhash_args

    def parhash(name: str, args: list[str], shown: str, **kw) -> Tool:
        return parhash_tool(name, ["scan", "{dir}", *args], f"scan DIR {shown}", extra, **kw)

    return [
        parhash("parhash", ["-q"], "-q"),
        parhash("parhash-jsonl", ["-q", "-f", "jsonl"], "-q -f jsonl"),
        # --progress draws the bar whether or not stderr is a terminal (progress.py,
        # make_progress), so /dev/null measures the bar's own cost without a pty.
        parhash("parhash-progress", ["--progress"], "--progress 2>/dev/null", stderr_null=True),
        parhash("parhash-sha256", ["-q", "-a", "sha256"], "-q -a sha256"),
        parhash("parhash-blake3", ["-q", "-a", "blake3"], "-q -a blake3"),
        parhash_tool(
            "parhash-check",
            ["check", "-a", "sha256", "--quiet", "{sums}"],
            "check -a sha256 --quiet SUMS",
            extra,
            fixtures=("sums",),
        ),
        parhash_tool(
            "parhash-audit",
            ["audit", "{manifest}"],
            "audit MANIFEST",
            extra,
            fixtures=("manifest",),
        ),
        xargs_tool("xxhsum", "xxhsum -H3"),
        xargs_tool("xxhsum-P8", "xxhsum -H3", procs=8),
        xargs_tool("b3sum", "b3sum"),
        Tool(
            "rhash-crc32c",
            "rhash --crc32c -r DIR",
            ["rhash", "--crc32c", "-r", "{dir}"],
            ("rhash",),
        ),
        Tool(
            "rhash-sha256",
            "rhash --sha256 -r DIR",
            ["rhash", "--sha256", "-r", "{dir}"],
            ("rhash",),
        ),
        xargs_tool("md5sum", "md5sum"),
        xargs_tool("sha256sum", "sha256sum"),
        Tool(
            "sha256sum-check",
            "sha256sum -c --quiet SUMS",
            ["sha256sum", "-c", "--quiet", "{sums}"],
            ("sha256sum",),
            fixtures=("sums",),
        ),
        Tool(
            "hashdeep-md5",
            "hashdeep -r -c md5 DIR",
            ["hashdeep", "-r", "-c", "md5", "{dir}"],
            ("hashdeep",),
        ),
        Tool(
            "hashdeep-sha256",
            "hashdeep -r -c sha256 -j 2 DIR",
            ["hashdeep", "-r", "-c", "sha256", "-j", "2", "{dir}"],
            ("hashdeep",),
        ),
        Tool(
            "hashdeep-audit",
            "hashdeep -c md5 -a -k KNOWN -r DIR  (KNOWN: hashdeep -c md5 -r DIR)",
            ["hashdeep", "-c", "md5", "-a", "-k", "{known}", "-r", "{dir}"],
            ("hashdeep",),
            fixtures=("known",),
        ),
        Tool(
            "naive",
            "python bench/naive.py DIR  (os.walk list, Pool(2).map, read whole file, md5, "
            "json.dump)",
            [py, os.path.join(BENCH_DIR, "naive.py"), "{dir}"],
        ),
    ]


def startup_tools(parhash_args: list[str]) -> list[Tool]:
    """The start-up rows, run on an empty directory (the ``startup`` section)."""
    wrapped = parhash_tool("parhash-startup", ["scan", "{dir}"], "scan EMPTYDIR", parhash_args)
    direct = Tool(
        "parhash-startup-direct",
        wrapped.shown + "  (without bench/parent_cpu.py: the wrapper's own cost)",
        wrapped.argv,
    )
    python = Tool("python-startup", "python -I -c pass", [sys.executable, "-I", "-c", "pass"])
    return [wrapped, direct, python]


def select_tools(spec: list[str], tools: list[Tool]) -> list[Tool]:
    """Names from --tools: exact names, 'all', or a prefix ('rhash': both rhash variants)."""
    by_name = {t.name: t for t in tools}
    wanted: list[str] = []
    for token in (t.strip() for s in spec for t in s.split(",")):
        if not token:
            continue
        if token == "all":
            names = list(by_name)
        elif token in by_name:
            names = [token]
        else:
            names = [n for n in by_name if n.startswith(token + "-")]
            if not names:
                log(f"compare: unknown tool {token!r}; known: all, {', '.join(by_name)}")
                raise SystemExit(2)
        wanted += [n for n in names if n not in wanted]
    return [by_name[n] for n in wanted]


def missing_executables(tool: Tool) -> list[str]:
    return [exe for exe in tool.needs if shutil.which(exe) is None]


# --------------------------------------------------------------------------- corpora


def build_tiny(root: str, files: int = 200, seed: int = 7) -> dict:
    """``files`` files of 0..16 KiB in 8 directories (one of them 1 MiB), deterministic."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        d = os.path.join(root, f"d{i % 8}")
        os.makedirs(d, exist_ok=True)
        size = 1 << 20 if i == files - 1 else rng.randint(0, 16 * 1024)
        with open(os.path.join(d, f"f{i:04d}.bin"), "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    return {"shape": "tiny", "dir": root, "seed": seed, "files": files, "bytes": total, "dirs": 9}


def tree_size(root: str) -> tuple[int, int]:
    files = total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            files += 1
            total += st.st_size
    return files, total


def ensure_corpus(name: str, corpus_dir: str, make_corpus: str) -> dict:
    """Build DIR/<name> unless DIR/<name>.complete says it is complete; return its summary."""
    root = os.path.join(corpus_dir, name)
    stamp = root + ".complete"
    if os.path.exists(stamp):
        with open(stamp) as f:
            summary = json.load(f)
        if "files" not in summary or "bytes" not in summary:
            summary["files"], summary["bytes"] = tree_size(root)
        summary["dir"] = root
        return summary
    os.makedirs(corpus_dir, exist_ok=True)
    log(f"[{name}] building corpus in {root} ...")
    started = time.monotonic()
    if name == "tiny":
        shutil.rmtree(root, ignore_errors=True)
        summary = build_tiny(root)
    else:
        if not os.path.isfile(make_corpus):
            log(f"compare: corpus generator not found: {make_corpus} (see --make-corpus)")
            raise SystemExit(2)
        cmd = [sys.executable, make_corpus, name, root]
        if os.path.isdir(root) and os.listdir(root):
            cmd.append("--force")  # an interrupted build: same shape and seed, same bytes
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            log(f"compare: {shlex.join(cmd)} failed with status {proc.returncode}")
            raise SystemExit(2)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(stamp + ".tmp", "w") as f:
        json.dump(summary, f)
        f.write("\n")
    os.replace(stamp + ".tmp", stamp)
    log(f"[{name}] built in {time.monotonic() - started:.1f} s: {summary}")
    return summary


def warm_page_cache(root: str) -> float:
    """Read every file once (like ``cat`` to /dev/null); return the seconds it took."""
    started = time.monotonic()
    buf = bytearray(1 << 20)
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            except OSError:
                pass
    return time.monotonic() - started


def drop_caches() -> None:
    os.sync()
    with open(DROP_CACHES, "w") as f:
        f.write("3\n")


def corpus_files(root: str) -> list[str]:
    """Every regular file under ``root``, in a stable order (sorted per directory)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out += [os.path.join(dirpath, n) for n in sorted(filenames)]
    return out


# The page cache: a sample of the corpus is checked before every warm run, because this VM
# (and other users of the machine running --cold) drop it at any time; a round of every tool
# on the small corpus takes about 40 s. mincore(2) on a mapping of each sampled file says
# which of its pages are resident without reading them (about 5 us per file).

#: Files checked before each warm run: 256 spread over the corpus costs about 2 ms and
#: misses a drop only if it spared exactly the sampled files.
RESIDENT_SAMPLE = 256
#: Below this resident fraction of the sample, the corpus is read again before the run.
RESIDENT_MIN = 0.98


def sample_files(files: list[str], n: int = RESIDENT_SAMPLE) -> list[str]:
    step = max(1, len(files) // n)
    return files[::step][:n]


def _libc_mincore():
    """``(mmap, munmap, mincore)`` from libc via ctypes, or None where that fails."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mmap_, munmap, mincore = libc.mmap, libc.munmap, libc.mincore
    except (OSError, AttributeError):
        return None
    mmap_.restype = ctypes.c_void_p
    mmap_.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return mmap_, munmap, mincore


_MINCORE = _libc_mincore()


def resident_fraction(paths: list[str]) -> float | None:
    """Fraction of the pages of ``paths`` in the page cache; None if it cannot be told."""
    if _MINCORE is None:
        return None
    mmap_, munmap, mincore = _MINCORE
    page = mmap.PAGESIZE
    resident = total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                continue
            addr = mmap_(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if mincore(addr, size, vec) != 0:
                    return None
                resident += sum(b & 1 for b in bytes(vec))
                total += pages
            finally:
                munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else None


# Fixtures: the inputs of the check and audit rows, made once per corpus before the rounds,
# in the scratch directory (the corpus itself is never written).


def sums_line(digest: str, path: str) -> str:
    """One GNU ``sha256sum`` line; a name with a backslash or newline is escaped as
    coreutils does (a leading backslash marks the line)."""
    if "\\" in path or "\n" in path or "\r" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {path}\n"


def make_sums(root: str, out: str) -> None:
    """sha256 of every file, by hashlib (independent of the parhash under test)."""
    with open(out, "w", encoding="utf-8", errors="surrogateescape") as f:
        for path in corpus_files(root):
            with open(path, "rb") as src:
                f.write(sums_line(hashlib.file_digest(src, "sha256").hexdigest(), path))


def make_manifest(root: str, out: str) -> None:
    """A jsonl manifest by the parhash under test (its format is parhash's own)."""
    cmd = [sys.executable, "-m", "parhash", "scan", root, "-q", "-f", "jsonl", "-o", out]
    subprocess.run(cmd, check=True, cwd=REPO, stdin=subprocess.DEVNULL)


def make_known(root: str, out: str) -> None:
    """hashdeep's own known-hashes file, md5 like the hashdeep-md5 row."""
    with open(out, "wb") as f:
        subprocess.run(["hashdeep", "-c", "md5", "-r", root], check=True, stdout=f)


FIXTURES = {
    "sums": ("sums.sha256", make_sums),
    "manifest": ("manifest.jsonl", make_manifest),
    "known": ("known.hashdeep", make_known),
}


def prepare_fixtures(name: str, root: str, tools: list[Tool], scratch: str) -> dict[str, str]:
    """The fixtures ``tools`` need, as placeholder -> path."""
    wanted = sorted({f for t in tools for f in t.fixtures})
    out: dict[str, str] = {}
    where = os.path.join(scratch, name)
    os.makedirs(where, exist_ok=True)
    for key in wanted:
        filename, make = FIXTURES[key]
        path = os.path.join(where, filename)
        started = time.monotonic()
        try:
            make(root, path)
        except (OSError, subprocess.CalledProcessError) as e:
            log(f"compare: [{name}] cannot make the {key} fixture: {e}")
            raise SystemExit(2) from e
        log(f"[{name}] {key} fixture {path} made in {time.monotonic() - started:.1f} s")
        out[key] = path
    return out


# --------------------------------------------------------------------------- measuring


def child_pids(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (rss.children only reads the main thread's)."""
    kids = children(pid)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        if tid != str(pid):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    return kids


def tree_pids(root: int) -> list[int]:
    pids, todo = [root], [root]
    while todo:
        for kid in child_pids(todo.pop()):
            if kid not in pids:
                pids.append(kid)
                todo.append(kid)
    return pids


class PeakPoller(threading.Thread):
    """Max VmHWM over a process and its descendants, sampled every POLL_SECONDS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            for pid in tree_pids(self.pid):
                self.peak_kib = max(self.peak_kib, vm_hwm_kib(pid))
            self.samples += 1
            if self.done.wait(POLL_SECONDS):
                return

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak_kib


@dataclass
class Run:
    wall: float
    cpu: float  # user + sys of the whole waited-for process tree
    rss_polled_kib: int
    rss_kernel_kib: int | None  # GNU time %M: max ru_maxrss over the tree, exact
    status: int
    stderr_tail: str = ""
    parent_cpu: float | None = None  # parhash rows: its main process alone (parent_cpu.py)
    rewarmed: bool = False  # the page cache had been dropped: the corpus was read again
    disturbed: bool = False  # the page cache was dropped (by someone) during this run
    retries: int = 0  # disturbed runs thrown away before this one
    others_cores: float | None = None  # CPUs others kept busy meanwhile (others_cores())


def run_once(
    tool: Tool,
    subs: dict[str, str] | str,
    scratch: str,
    use_time: bool,
    poll: bool = True,
) -> Run:
    """One run of ``tool``: wall, tree CPU, peak RSS and, for parhash, the parent's CPU."""
    usage_file = os.path.join(scratch, "parent.usage") if tool.parent_cpu else None
    if usage_file and os.path.exists(usage_file):
        os.unlink(usage_file)
    argv = tool.command(subs, usage_file)
    time_out = os.path.join(scratch, "time.out")
    if use_time:
        argv = [TIME_BIN, "-f", "%M", "-o", time_out, "--", *argv]
    with tempfile.TemporaryFile(dir=scratch) as err:
        busy = busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if tool.stderr_null else err,
            cwd=REPO,
        )
        poller = PeakPoller(proc.pid)
        if poll:
            poller.start()
        _pid, wstatus, usage = os.wait4(proc.pid, 0)  # blocks: exact end of the wall time
        wall = time.perf_counter() - started
        busy_after = busy_seconds()
        proc.returncode = os.waitstatus_to_exitcode(wstatus)  # reaped here, not by Popen
        peak = poller.stop() if poll else 0
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    kernel = None
    if use_time:
        try:
            with open(time_out) as f:
                lines = f.read().split()  # "Command exited with non-zero status N" comes first
            kernel = int(lines[-1])
        except (OSError, ValueError, IndexError):
            kernel = None
    parent = None
    if usage_file:
        try:
            utime, stime, _maxrss = read_usage(usage_file)
            parent = utime + stime
        except (OSError, ValueError):
            parent = None  # left by os._exit (a signal, a closed pipe): reported as "-"
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_polled_kib=peak,
        rss_kernel_kib=kernel,
        status=proc.returncode,
        stderr_tail=tail if proc.returncode != 0 else "",
        parent_cpu=parent,
        others_cores=others_cores(busy, busy_after, usage, wall),
    )


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (/proc/stat, all CPUs)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def others_cores(before: float | None, after: float | None, usage, wall: float) -> float | None:
    """Cores the rest of the machine kept busy during a run: its busy CPU minus the run's
    own tree CPU, over the wall time. The noise gauge: 0 on an idle machine, and with 2
    cores anything near 1 means the run shared the CPUs with someone else."""
    if before is None or after is None or wall <= 0:
        return None
    own = usage.ru_utime + usage.ru_stime
    return max(0.0, (after - before - own) / wall)


@dataclass
class CorpusResult:
    corpus: str
    summary: dict
    mode: str
    started: str
    runs: dict[str, list[Run]] = field(default_factory=dict)
    warm_seconds: list[float] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)  # parhash_fingerprint() per round
    loadavg_before: str = ""
    loadavg_after: str = ""
    # Per scan row, per round: the parent CPU of the same command on an empty directory
    # (its start-up and shutdown), subtracted for the parent's CPU per file.
    startup_parent: dict[str, list[float | None]] = field(default_factory=dict)
    fixtures: dict[str, str] = field(default_factory=dict)

    def to_json(self, tools: list[Tool], extra: dict) -> dict:
        return {
            "corpus": self.corpus,
            "summary": self.summary,
            "mode": self.mode,
            "started": self.started,
            "commands": {t.name: t.shown for t in tools if t.name in self.runs},
            "runs": {k: [asdict(r) for r in v] for k, v in self.runs.items()},
            "startup_parent": self.startup_parent,
            "warm_seconds": self.warm_seconds,
            "parhash_fingerprints": self.fingerprints,
            "loadavg": [self.loadavg_before, self.loadavg_after],
            **extra,
        }

    @classmethod
    def from_json(cls, raw: dict) -> CorpusResult:
        res = cls(raw["corpus"], raw["summary"], raw["mode"], raw["started"])
        res.runs = {k: [Run(**r) for r in v] for k, v in raw["runs"].items()}
        res.startup_parent = raw.get("startup_parent", {})
        res.warm_seconds = raw.get("warm_seconds", [])
        res.fingerprints = raw.get("parhash_fingerprints", [])
        res.loadavg_before, res.loadavg_after = raw.get("loadavg", ["", ""])
        return res


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def bench_corpus(
    name: str,
    summary: dict,
    tools: list[Tool],
    args: argparse.Namespace,
    scratch: str,
    rounds: int | None = None,
    startup: bool = False,
) -> CorpusResult:
    """Interleaved rounds of ``tools`` on one corpus (``startup``: the empty directory, many
    short rounds, no GNU time wrapper, no RSS polling, no cache handling)."""
    root = summary["dir"]
    mode = "cold" if args.cold and not startup else "warm"
    result = CorpusResult(name, summary, mode, time.strftime("%Y-%m-%d %H:%M:%S %z"))
    result.runs = {t.name: [] for t in tools}
    twins = [] if startup else [t for t in tools if t.has_twin]
    result.startup_parent = {t.name: [] for t in twins}
    subs = {"dir": root}
    if not startup:
        result.fixtures = prepare_fixtures(name, root, tools, scratch)
        subs |= result.fixtures
    sample = [] if startup or args.cold else sample_files(corpus_files(root))
    result.loadavg_before = loadavg()
    use_time = os.access(TIME_BIN, os.X_OK) and not startup
    total = args.warmup + (rounds or args.runs)
    for rnd in range(total):
        discarded = rnd < args.warmup
        result.fingerprints.append(parhash_fingerprint())
        if mode == "warm" and not startup:
            result.warm_seconds.append(warm_page_cache(root))
        walls = []
        for tool in tools:
            run = clean_run(name, root, mode, sample, tool, subs, scratch, use_time, startup, args)
            if not discarded:
                result.runs[tool.name].append(run)
            flag = "" if run.status == 0 else f" (exit {run.status})"
            walls.append(f"{tool.name} {run.wall:.3f}{flag}")
        for tool in twins:  # page cache state does not matter for an empty directory
            twin = run_once(tool, {**subs, "dir": args.empty_dir}, scratch, False, poll=False)
            if not discarded:
                result.startup_parent[tool.name].append(twin.parent_cpu)
        label = "warm-up" if discarded else f"{rnd - args.warmup + 1}/{total - args.warmup}"
        if not startup or rnd == total - 1:
            log(f"[{name}] round {label}: " + ", ".join(walls))
    result.loadavg_after = loadavg()
    result.fingerprints.append(parhash_fingerprint())
    if len(set(result.fingerprints)) > 1:
        log(f"[{name}] WARNING: parhash changed during the runs: {result.fingerprints}")
    return result


def clean_run(
    name: str,
    root: str,
    mode: str,
    sample: list[str],
    tool: Tool,
    subs: dict[str, str],
    scratch: str,
    use_time: bool,
    startup: bool,
    args: argparse.Namespace,
) -> Run:
    """One run of ``tool``, warm: run again (up to --retries times) when someone dropped
    the page cache while it ran (another benchmark on the machine writing drop_caches: the
    kernel counts those in /proc/vmstat). The last run is kept, flagged, if none was clean."""
    for attempt in range(args.retries + 1):
        rewarmed = prepare_cache(name, root, mode, sample, tool)
        before = cache_drops()
        run = run_once(tool, subs, scratch, use_time, poll=not startup)
        run.rewarmed = rewarmed
        run.retries = attempt
        run.disturbed = mode == "warm" and not startup and cache_drops() != before
        if not run.disturbed:
            break
        log(f"[{name}] {tool.name}: the page cache was dropped during the run ({run.wall:.3f} s)")
    return run


def cache_drops() -> int | None:
    """How often anyone wrote /proc/sys/vm/drop_caches since boot (None: not counted)."""
    try:
        with open(VMSTAT) as f:
            for line in f:
                if line.startswith("drop_pagecache "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def prepare_cache(name: str, root: str, mode: str, sample: list[str], tool: Tool) -> bool:
    """Cold: drop the page cache. Warm: read the corpus again if the sample shows it was
    dropped since the round began; True when that happened."""
    if mode == "cold":
        drop_caches()
        return False
    if not sample:
        return False
    resident = resident_fraction(sample)
    if resident is None or resident >= RESIDENT_MIN:
        return False
    seconds = warm_page_cache(root)
    log(
        f"[{name}] page cache dropped ({resident:.0%} of the sample resident) before "
        f"{tool.name}: corpus read again in {seconds:.1f} s"
    )
    return True


# --------------------------------------------------------------------------- reporting


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def first_line(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0].strip() if text else "?"


def read_first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def git_head() -> str:
    """The checkout's commit, read from .git without running git."""
    git = os.path.join(REPO, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        path = os.path.join(git, ref)
        if os.path.exists(path):
            with open(path) as f:
                return f"{f.read().strip()[:12]} ({ref.rsplit('/', 1)[-1]})"
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                if line.rstrip().endswith(" " + ref):
                    return f"{line[:12]} ({ref.rsplit('/', 1)[-1]})"
    except OSError:
        pass
    return "?"


def parhash_fingerprint() -> str:
    """Digest of the parhash sources, pyproject.toml and its dependencies' versions.

    The checkout may change under a long benchmark (an editable install, other work going on);
    bench_corpus() takes this before every round and the report flags any change.
    """
    h = hashlib.sha256()
    pkg = os.path.join(REPO, "parhash")
    try:
        names = sorted(n for n in os.listdir(pkg) if n.endswith(".py"))
    except OSError:
        names = []
    for name in [*(os.path.join("parhash", n) for n in names), "pyproject.toml"]:
        h.update(name.encode() + b"\0")
        try:
            with open(os.path.join(REPO, name), "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"(missing)")
    for dep in ("typer", "click", "tqdm", "xxhash", "blake3", "pathspec"):
        h.update(f"{dep}={pkg_version(dep)};".encode())
    return h.hexdigest()[:12]


def machine_info(corpus_dir: str) -> dict[str, str]:
    mem = read_first("/proc/meminfo", "MemTotal")
    if mem.endswith(" kB") and mem[:-3].isdigit():
        mem = f"{int(mem[:-3]) / 1024**2:.1f} GiB"
    fs = first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", corpus_dir])
    if fs == "?":
        fs = first_line(["stat", "-f", "-c", "%T", corpus_dir])
    return {
        "nproc": f"{len(os.sched_getaffinity(0))} (os.cpu_count() {os.cpu_count()})",
        "CPU": read_first("/proc/cpuinfo", "model name"),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_version()} ({sys.executable})",
        "corpus file system": f"{corpus_dir} ({fs})",
        "parhash checkout": f"{REPO} @ {git_head()}",
    }


def pkg_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(tools: list[Tool]) -> dict[str, str]:
    names = {t.name.split("-")[0] for t in tools}
    out: dict[str, str] = {}
    if "parhash" in names:
        out["parhash"] = pkg_version("parhash")
        for dep in ("xxhash", "blake3", "typer", "tqdm"):
            out[f"python {dep}"] = pkg_version(dep)
    cmds = {
        "xxhsum": ["xxhsum", "--version"],
        "b3sum": ["b3sum", "--version"],
        "rhash": ["rhash", "--version"],
        "md5sum": ["md5sum", "--version"],
        "sha256sum": ["sha256sum", "--version"],
        "hashdeep": ["hashdeep", "-V"],
    }
    for name, cmd in cmds.items():
        if name in names and shutil.which(cmd[0]):
            out[name] = first_line(cmd)
    if any("xargs" in t.shown for t in tools):
        out["find"] = first_line(["find", "--version"])
        out["xargs"] = first_line(["xargs", "--version"])
    if os.access(TIME_BIN, os.X_OK):
        out["/usr/bin/time"] = first_line([TIME_BIN, "--version"])
    return out


def fingerprint_line(prints: list[str]) -> str:
    if len(set(prints)) <= 1:
        return (
            f"- parhash sources + dependency versions: `{prints[0] if prints else '?'}` "
            "before every round and after the last (unchanged)"
        )
    return (
        "- **WARNING: parhash (sources or dependency versions) changed during these runs**: "
        f"{' -> '.join(f'`{p}`' for p in prints)} (before each round, then after the last); "
        "the results mix versions"
    )


def cell(text: str) -> str:
    """Escape a Markdown table cell: a '|' even inside backticks would split the cell."""
    return text.replace("|", "\\|")


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def mib(kib: float | None) -> str:
    """KiB as MiB; None or 0 (not measured: the start-up rows are not polled) as '-'."""
    return "-" if not kib else f"{kib / 1024:.1f}"


def stats(runs: list[Run]) -> dict:
    kernel = [r.rss_kernel_kib for r in runs if r.rss_kernel_kib is not None]
    walls = [r.wall for r in runs]
    return {
        "wall": statistics.median(walls),
        "spread": (max(walls) - min(walls)) / statistics.median(walls),
        "cpu": statistics.median(r.cpu for r in runs),
        "rss_polled": max(r.rss_polled_kib for r in runs),
        "rss_kernel": max(kernel) if kernel else None,
        "failed": sum(r.status != 0 for r in runs),
        "others": median_of([r.others_cores for r in runs]),
    }


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def parent_stats(result: CorpusResult, name: str) -> dict | None:
    """The parent's CPU of a parhash row: total, per file, and per file net of start-up
    (each round's run minus the same round's run on an empty directory)."""
    runs = result.runs.get(name) or []
    parents = [r.parent_cpu for r in runs]
    if all(p is None for p in parents):
        return None
    files = result.summary["files"]
    twins = result.startup_parent.get(name) or [None] * len(runs)
    net = [p - t for p, t in zip(parents, twins, strict=True) if p is not None and t is not None]
    parent = median_of(parents)
    out = {
        "parent": parent,
        "workers": median_of([r.cpu - r.parent_cpu for r in runs if r.parent_cpu is not None]),
        "tree": statistics.median(r.cpu for r in runs),
        "startup": median_of(twins),
        "us_per_file": parent * 1e6 / files if files else None,
        "net_us_per_file": None,
        "net_runs": [],
    }
    if net and files:
        out["net_us_per_file"] = statistics.median(net) * 1e6 / files
        out["net_runs"] = [n * 1e6 / files for n in net]
    return out


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def render_parent(result: CorpusResult, ran: list[Tool]) -> list[str]:
    """The parent-CPU table: parhash's main process (RUSAGE_SELF, threads included, its
    workers excluded) against the tree's CPU."""
    rows = [(t.name, parent_stats(result, t.name)) for t in ran if t.parent_cpu]
    rows = [(n, p) for n, p in rows if p]
    if not rows:
        return []
    lines = [
        "",
        "## Parent process CPU (parhash rows)",
        "",
        "parhash ran as `python bench/parent_cpu.py FILE ARGS`: its own console entry point "
        "in-process, with `getrusage(RUSAGE_SELF)` (the main process and its threads, not "
        "its workers) written at exit. Workers = tree CPU (os.wait4) - parent. *Start-up* is "
        "the parent CPU of the same command on an empty directory, run once per round; "
        "*net* per file = (run - that round's start-up run) / files. Medians; net runs are "
        "per round.",
        "",
        "| tool | parent CPU (s) | workers CPU (s) | tree CPU (s) | parent / tree | "
        "parent us/file | start-up parent CPU (s) | net us/file | net us/file, runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, p in rows:
        share = p["parent"] / p["tree"] if p["tree"] else None
        net_runs = " ".join(f"{v:.2f}" for v in p["net_runs"]) or "-"
        lines.append(
            f"| {name} | {fmt(p['parent'])} | {fmt(p['workers'])} | {fmt(p['tree'])} | "
            f"{fmt(share, '.2f')} | {fmt(p['us_per_file'], '.2f')} | {fmt(p['startup'])} | "
            f"{fmt(p['net_us_per_file'], '.2f')} | {net_runs} |"
        )
    return lines


def cache_line(result: CorpusResult) -> str:
    if result.mode == "cold":
        return "- page cache: **cold**: `sync; echo 3 > /proc/sys/vm/drop_caches` before every run"
    if not result.warm_seconds:
        return "- page cache: not handled (start-up rows on an empty directory)"
    runs = [r for rs in result.runs.values() for r in rs]
    rewarmed = sum(r.rewarmed for r in runs)
    retried = sum(r.retries for r in runs)
    disturbed = [f"{n} #{i + 1}" for n, rs in result.runs.items() for i, r in enumerate(rs)]
    disturbed = [d for d, r in zip(disturbed, runs, strict=True) if r.disturbed]
    return (
        "- page cache: warm: every file read once right before each round "
        f"(took {', '.join(f'{w:.2f}' for w in result.warm_seconds)} s), and again before a "
        f"run when mincore(2) on {RESIDENT_SAMPLE} sampled files found less than "
        f"{RESIDENT_MIN:.0%} resident ({rewarmed} time(s) in these runs); a run during which "
        "someone dropped the cache (/proc/vmstat drop_pagecache) was run again "
        f"({retried} time(s)); still disturbed after the last retry, kept: "
        + (", ".join(disturbed) if disturbed else "none")
    )


def render(
    result: CorpusResult,
    tools: list[Tool],
    skipped: dict[str, str],
    machine: dict[str, str],
    versions: dict[str, str],
    args: argparse.Namespace,
) -> str:
    s = result.summary
    gb = s["bytes"] / 1e9
    ran = [t for t in tools if result.runs.get(t.name)]
    st = {t.name: stats(result.runs[t.name]) for t in ran}
    base = BASELINE if BASELINE in st else (ran[0].name if ran else None)
    rounds = len(result.runs[ran[0].name]) if ran else 0
    lines = [
        f"# parhash vs peers: corpus `{result.corpus}`",
        "",
        f"- corpus: {s['files']:,} files, {s['bytes']:,} bytes ({gb:.3f} GB), "
        f"`{s['dir']}` (shape {s.get('shape', result.corpus)}, seed {s.get('seed', '?')})",
        f"- started {result.started}; {rounds} run(s) per tool, interleaved per round "
        f"(A B C, A B C, ...)"
        + (f", after {args.warmup} discarded warm-up round(s)" if args.warmup else ""),
        cache_line(result),
        "- every tool's stdout to /dev/null; wall and CPU are medians; CPU is user+sys of the "
        "whole process tree (os.wait4); spread is (max - min) / median of the walls; "
        "*others' cores*: the median number of CPUs the rest of the machine kept busy during "
        "a run (/proc/stat busy time minus the run's own CPU, over its wall; 0 = idle "
        f"machine, {len(os.sched_getaffinity(0))} CPUs here); GB/s is corpus bytes / median wall",
        f"- load average before / after: {result.loadavg_before} / {result.loadavg_after}",
        fingerprint_line(result.fingerprints),
        f"- baseline for the ratios: `{base}`; `tool / {base}` > 1 means {base} is faster "
        f"by that factor, `{base} / tool` is its inverse",
        "",
        f"| tool | median wall (s) | runs (s) | spread | others' cores | CPU user+sys (s) | "
        "CPU / wall | "
        f"peak RSS, poll (MiB) | peak RSS, kernel (MiB) | GB/s | tool / {base} | "
        f"{base} / tool | exit |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in ran:
        x = st[t.name]
        bw = st[base]["wall"] if base else x["wall"]
        runs = " ".join(f"{r.wall:.3f}" for r in result.runs[t.name])
        n = len(result.runs[t.name])
        exit_txt = "0" if not x["failed"] else f"FAILED {x['failed']}/{n}"
        rate = f"{gb / x['wall']:.2f}" if s["bytes"] else "-"
        lines.append(
            f"| {t.name} | {x['wall']:.3f} | {runs} | {x['spread']:.0%} | "
            f"{fmt(x['others'], '.2f')} | {x['cpu']:.3f} | "
            f"{x['cpu'] / x['wall']:.2f} | {mib(x['rss_polled'])} | {mib(x['rss_kernel'])} | "
            f"{rate} | {fmt_ratio(x['wall'] / bw)} | {fmt_ratio(bw / x['wall'])} | "
            f"{exit_txt} |"
        )
    lines += [
        "",
        "Peak RSS is the largest single process of the tree, the maximum over the runs. "
        "*poll*: VmHWM of the process and its descendants read from /proc every "
        f"{POLL_SECONDS * 1000:.0f} ms (bench/rss.py; can miss processes that live less than "
        "that, e.g. one `xargs` batch). *kernel*: GNU time's %M, the kernel's ru_maxrss over "
        "every waited-for process of the tree (exact; '-' without /usr/bin/time). The tools "
        "ran under `/usr/bin/time -f %M`, which adds one fork+exec (~1 ms) to every tool alike"
        " (not the start-up rows: they run bare, and are not polled).",
    ]
    lines += render_parent(result, ran)
    lines += ["", "## Commands", "", "| tool | command |", "|---|---|"]
    lines += [f"| {t.name} | `{cell(t.shown)}` |" for t in ran]
    if result.fixtures:
        lines += ["", "Fixtures, made once before the rounds (outside the corpus):", ""]
        lines += [f"- {k.upper()}: `{v}` ({FIXTURE_HOW[k]})" for k, v in result.fixtures.items()]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {name}: {why}" for name, why in skipped.items()]
    failures = [
        (t.name, r) for t in ran for r in result.runs[t.name] if r.status != 0 and r.stderr_tail
    ]
    if failures:
        lines += ["", "## Failures", ""]
        for name, r in failures[:5]:
            lines += [f"- {name} exited {r.status}:", "", "```", r.stderr_tail.strip(), "```"]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "## Tool versions", ""]
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    lines += ["", f"Command: `{command_line()}`", ""]
    return "\n".join(lines)


def command_line() -> str:
    return "python bench/compare.py " + shlex.join(sys.argv[1:])


FIXTURE_HOW = {
    "sums": "`sha256sum` format, one line per corpus file, by hashlib",
    "manifest": "`python -m parhash scan DIR -q -f jsonl -o MANIFEST`, by the parhash under test",
    "known": "`hashdeep -c md5 -r DIR`",
}


def write_chart(results: list[CorpusResult], tools: list[Tool], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    results = [r for r in results if r.summary["bytes"]]  # not the start-up rows
    names = [t.name for t in tools if any(r.runs.get(t.name) for r in results)]
    wide = 3.0 + 0.35 * len(names) * max(1, len(results))
    fig, ax = plt.subplots(figsize=(min(16.0, max(8.0, wide)), 6.0))
    width = 0.8 / max(1, len(results))
    for i, res in enumerate(results):
        gb = res.summary["bytes"] / 1e9
        xs, heights = [], []
        for j, name in enumerate(names):
            runs = res.runs.get(name)
            if runs:
                xs.append(j + (i - (len(results) - 1) / 2) * width)
                heights.append(gb / statistics.median(r.wall for r in runs))
        label = f"{res.corpus}: {res.summary['files']:,} files, {gb:.2f} GB"
        bars = ax.bar(xs, heights, width, label=label)
        ax.bar_label(bars, fmt="%.2g", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    for tick in ax.get_xticklabels():
        if tick.get_text().startswith("parhash"):
            tick.set_fontweight("bold")
    ax.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel("GB/s = corpus bytes / median wall (log scale)")
    mode = "cold cache" if results and results[0].mode == "cold" else "warm page cache"
    nruns = len(next(iter(results[0].runs.values()))) if results and results[0].runs else 0
    ax.set_title(
        f"Hashing throughput, {mode}, {len(os.sched_getaffinity(0))} CPUs, median of {nruns} "
        "run(s); stdout to /dev/null",
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def replot(paths: list[str], tools: list[Tool], out: str) -> int:
    if importlib.util.find_spec("matplotlib") is None:
        log("compare: --replot needs matplotlib, a bench-only dependency: pip install matplotlib")
        return 2
    results = load_results(paths)
    known = {t.name for t in tools}
    extra = [Tool(n, n, []) for res in results for n in res.runs if n not in known]
    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "throughput.png")
    write_chart(results, tools + extra, png)
    log(f"compare: wrote {png}")
    return 0


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One line of issue 11's table: ``tool`` against ``peer`` on ``corpus`` in ``mode``.

    kind "ratio": median wall tool / peer must be <= limit; "speedup": peer / tool must be
    >= limit; "parent": the parent's CPU per file, net of start-up, must be <= limit (us).
    """

    label: str
    corpus: str
    tool: str
    peer: str | None
    limit: float
    kind: str = "ratio"
    mode: str = "warm"
    refs: tuple[str, ...] = ()  # shown for reference: their median wall and tool / ref
    show_rss: bool = False  # also give the tool's peak RSS (audit: its store must stay small)

    @property
    def wanted(self) -> str:
        if self.kind == "parent":
            return f"<= {self.limit:g} us/file"
        return f"{'>=' if self.kind == 'speedup' else '<='} {self.limit:.2f}x"


def issue11_targets() -> list[Target]:
    xx = "xxhsum (`xargs -P2 -n 1000 xxhsum -H3`)"
    out = [
        Target(f"small, xxh3 sums vs {xx}", "small", "parhash", "xxhsum", 0.90),
        Target(f"mixed, xxh3 sums vs {xx}", "mixed", "parhash", "xxhsum", 0.90),
        Target(
            "large, xxh3 sums vs xxhsum (4 files: one xxhsum process)",
            "large",
            "parhash",
            "xxhsum",
            0.90,
        ),
        Target(
            "large, sha256 vs `rhash --sha256 -r`", "large", "parhash-sha256", "rhash-sha256", 0.55
        ),
        Target(
            "mixed, cold (caches dropped before every run) vs xargs -P2 xxhsum",
            "mixed",
            "parhash",
            "xxhsum",
            0.75,
            mode="cold",
            refs=("xxhsum-P8",),
        ),
        Target(
            "small, textbook pattern (bench/naive.py) / parhash",
            "small",
            "parhash",
            "naive",
            5.0,
            "speedup",
        ),
        Target(
            "mixed, textbook pattern (bench/naive.py) / parhash",
            "mixed",
            "parhash",
            "naive",
            5.0,
            "speedup",
        ),
        Target(
            "start-up: `scan EMPTYDIR` vs `python -I -c pass`",
            "startup",
            "parhash-startup",
            "python-startup",
            3.5,
            refs=("parhash-startup-direct",),
        ),
        Target(
            "small, `check -a sha256 --quiet` of every file vs `scan -a sha256`",
            "small",
            "parhash-check",
            "parhash-sha256",
            1.10,
            refs=("sha256sum-check",),
        ),
        Target(
            "small, `audit` of the unchanged tree vs `scan -f jsonl`",
            "small",
            "parhash-audit",
            "parhash-jsonl",
            1.30,
            refs=("hashdeep-audit",),
            show_rss=True,
        ),
    ]
    for corpus in ("small", "mixed", "large"):
        out.append(
            Target(f"{corpus}, `-f jsonl` vs sums", corpus, "parhash-jsonl", "parhash", 1.10)
        )
    for corpus in ("small", "mixed", "large"):
        out.append(
            Target(f"{corpus}, `--progress` vs `-q`", corpus, "parhash-progress", "parhash", 1.05)
        )
    out += [
        Target("small, parent CPU per file, sums", "small", "parhash", None, 1.5, "parent"),
        Target("small, parent CPU per file, jsonl", "small", "parhash-jsonl", None, 1.5, "parent"),
    ]
    return out


def find_result(results: list[CorpusResult], corpus: str, mode: str) -> CorpusResult | None:
    """The last result for ``corpus`` in ``mode`` (later runs supersede earlier ones)."""
    found = [r for r in results if r.corpus == corpus and r.mode == mode]
    return found[-1] if found else None


def per_round(res: CorpusResult, tool: str, peer: str) -> list[float]:
    """tool / peer wall in each round: both ran in the same round, so the spread of these is
    the noise of the ratio itself."""
    return [a.wall / b.wall for a, b in zip(res.runs[tool], res.runs[peer], strict=True)]


def evaluate(target: Target, results: list[CorpusResult]) -> dict:
    row: dict = {"target": target.label, "corpus": target.corpus, "mode": target.mode}
    row |= {"tool": target.tool, "peer": target.peer, "kind": target.kind, "limit": target.limit}
    res = find_result(results, target.corpus, target.mode)
    needed = [target.tool] + ([target.peer] if target.peer else [])
    if res is None or any(not res.runs.get(n) for n in needed):
        row["value"] = None
        row["why"] = "not measured" + (f" (needs a {target.mode} run of `{target.corpus}`)")
        return row
    if target.kind == "parent":
        p = parent_stats(res, target.tool)
        value = p and p["net_us_per_file"]
        rounds = p["net_runs"] if p else []
        if value is None:
            row["value"] = None
            row["why"] = "no parent CPU recorded"
            return row
        row["gross_us_per_file"] = p["us_per_file"]
    else:
        tool, peer = (target.tool, target.peer)
        if target.kind == "speedup":
            tool, peer = peer, tool
        value = stats(res.runs[tool])["wall"] / stats(res.runs[peer])["wall"]
        rounds = per_round(res, tool, peer)
        row["walls"] = {n: stats(res.runs[n])["wall"] for n in needed}
    row["value"] = value
    row["rounds"] = rounds
    row["others_cores"] = median_of([r.others_cores for n in needed for r in res.runs[n]])
    if target.kind == "speedup":
        row["off"] = target.limit / value
        row["met_rounds"] = sum(r >= target.limit for r in rounds)
    else:
        row["off"] = value / target.limit
        row["met_rounds"] = sum(r <= target.limit for r in rounds)
    row["met"] = row["off"] <= 1
    tool_stats = stats(res.runs[target.tool])
    base = tool_stats["wall"]
    if target.show_rss:
        row["rss_kib"] = tool_stats["rss_kernel"] or tool_stats["rss_polled"]
    row["refs"] = {
        ref: {"wall": stats(res.runs[ref])["wall"], "ratio": base / stats(res.runs[ref])["wall"]}
        for ref in target.refs
        if res.runs.get(ref)
    }
    return row


def verdict(row: dict) -> str:
    if row["value"] is None:
        return row["why"]
    off = row["off"]
    if row["met"]:
        return f"**met** ({(1 - off):.0%} to spare)"
    return f"**missed** by {off - 1:.0%} (needs {off:.2f}x better)"


def measured(row: dict) -> str:
    if row["value"] is None:
        return "-"
    if row["kind"] == "parent":
        return f"{row['value']:.2f} us/file (gross {row['gross_us_per_file']:.2f})"
    walls = row["walls"]
    text = f"{row['value']:.2f}x ({walls[row['tool']]:.3f} s vs {walls[row['peer']]:.3f} s)"
    if row.get("rss_kib"):
        text += f", peak RSS {mib(row['rss_kib'])} MiB"
    for ref, r in row["refs"].items():
        text += f"; {ref} {r['wall']:.3f} s, {r['ratio']:.2f}x"
    return text


def noise(row: dict) -> str:
    rounds = row.get("rounds") or []
    if not rounds:
        return "-"
    unit = "" if row["kind"] == "parent" else "x"
    busy = row.get("others_cores")
    return (
        f"{min(rounds):.2f}-{max(rounds):.2f}{unit}; met in {row['met_rounds']}/{len(rounds)} "
        "rounds" + ("" if busy is None else f"; others busy {busy:.2f} cores")
    )


def render_targets(rows: list[dict], sources: list[str]) -> str:
    lines = [
        "# Issue 11 targets",
        "",
        "Ratios are median wall times (tool / peer; for the textbook pattern naive / parhash, "
        "higher is better). *Per round*: the same ratio within each interleaved round, min-max: "
        "the noise of the ratio itself; *others busy*: the median CPUs the rest of the machine "
        "used during these runs. Parent CPU per file is net of start-up (the same "
        "command on an empty directory, same round); gross = all of the parent's CPU / files.",
        "",
        "| target | wanted | measured | verdict | per round |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {cell(row['target'])} | {row_wanted(row)} | {cell(measured(row))} | "
            f"{verdict(row)} | {noise(row)} |"
        )
    met = sum(1 for r in rows if r["value"] is not None and r["met"])
    known = sum(1 for r in rows if r["value"] is not None)
    lines += ["", f"{met} of {known} measured targets met ({len(rows) - known} not measured).", ""]
    lines += [
        "From: " + ", ".join(f"`{s}`" for s in sources),
        "",
        f"Command: `{command_line()}`",
        "",
    ]
    return "\n".join(lines)


def row_wanted(row: dict) -> str:
    t = Target(row["target"], row["corpus"], row["tool"], row["peer"], row["limit"], row["kind"])
    return t.wanted


def write_targets(results: list[CorpusResult], sources: list[str], out: str, stamp: str) -> str:
    rows = [evaluate(t, results) for t in issue11_targets()]
    text = render_targets(rows, sources)
    print(text, flush=True)
    md = os.path.join(out, f"targets-{stamp}.md")
    with open(md, "w") as f:
        f.write(text)
    with open(os.path.join(out, f"targets-{stamp}.json"), "w") as f:
        json.dump({"targets": rows, "sources": sources}, f, indent=1)
        f.write("\n")
    return md


def load_results(paths: list[str]) -> list[CorpusResult]:
    results = []
    for path in paths:
        with open(path) as f:
            raw = json.load(f)
        if "runs" in raw:  # not a targets-*.json
            results.append(CorpusResult.from_json(raw))
    return results


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="SHAPE",
        help=f"corpus shape, repeatable or comma-separated: {', '.join(KNOWN_CORPORA)}",
    )
    ap.add_argument("--tiny", action="store_true", help="same as --corpus tiny (smoke test)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (default: 3)")
    ap.add_argument("--warmup", type=int, default=0, help="discarded rounds first (default: 0)")
    ap.add_argument(
        "--cold", action="store_true", help="drop the page cache before every run (root only)"
    )
    ap.add_argument(
        "--corpus-dir",
        default=DEFAULT_CORPUS_DIR,
        help="where corpora live (default: $PARHASH_BENCH_DIR or /tmp/parhash-bench)",
    )
    ap.add_argument(
        "--make-corpus",
        default=DEFAULT_MAKE_CORPUS,
        help=f"corpus generator (default: {DEFAULT_MAKE_CORPUS})",
    )
    ap.add_argument(
        "--tools",
        action="append",
        default=[],
        help="comma-separated tool names or prefixes (default: all); see --list-tools",
    )
    ap.add_argument("--list-tools", action="store_true", help="print the tools and exit")
    ap.add_argument(
        "--parhash-args",
        default="",
        help='extra arguments for every parhash run, e.g. "-j 2"',
    )
    ap.add_argument(
        "--out",
        default=os.path.join(REPO, "bench", "results"),
        help="directory for the reports (default: bench/results in the checkout)",
    )
    ap.add_argument(
        "--chart", action="store_true", help="also write OUT/throughput.png (needs matplotlib)"
    )
    ap.add_argument(
        "--replot",
        nargs="+",
        metavar="JSON",
        help="only redraw OUT/throughput.png from saved OUT/<corpus>-<timestamp>.json results",
    )
    ap.add_argument(
        "--startup-runs",
        type=int,
        default=None,
        metavar="N",
        help="rounds of the start-up rows (parhash scan EMPTYDIR vs python -I -c pass), run "
        "before the corpora unless --cold (default: 6 x --runs; 0: none; alone, without "
        "--corpus: only them)",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=RETRIES,
        metavar="N",
        help="warm: run a tool again, up to N times, when the page cache was dropped while it "
        f"ran (/proc/vmstat drop_pagecache; default: {RETRIES})",
    )
    ap.add_argument(
        "--targets",
        nargs="+",
        metavar="JSON",
        help="only print and write OUT/targets-<timestamp>.md from saved results (warm, cold "
        "and start-up runs of separate invocations together; the last of each kind counts)",
    )
    args = ap.parse_args(argv)
    corpora: list[str] = []
    for spec in [*args.corpus, *(["tiny"] if args.tiny else [])]:
        for name in (c.strip() for c in spec.split(",")):
            if name and name not in corpora:
                if name not in KNOWN_CORPORA:
                    ap.error(f"unknown corpus {name!r}; known: {', '.join(KNOWN_CORPORA)}")
                corpora.append(name)
    only_startup = bool(args.startup_runs) and not corpora
    if not corpora and not (args.list_tools or args.replot or args.targets or only_startup):
        ap.error("give at least one --corpus (or --tiny)")
    if args.runs < 1 or args.warmup < 0 or (args.startup_runs or 0) < 0:
        ap.error("--runs must be >= 1, --warmup and --startup-runs >= 0")
    if args.startup_runs is None:
        args.startup_runs = 6 * args.runs
    args.corpora = corpora
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = shlex.split(args.parhash_args)
    tools = all_tools(extra)
    if args.list_tools:
        for t in [*tools, *startup_tools(extra)]:
            print(f"{t.name:22} {t.shown}")
        return 0
    if args.replot:
        return replot(args.replot, tools, args.out)
    if args.targets:
        os.makedirs(args.out, exist_ok=True)
        md = write_targets(load_results(args.targets), args.targets, args.out, timestamp())
        log(f"compare: wrote {md}")
        return 0
    runnable, skipped = runnable_tools(args.tools or ["all"], tools)
    if not runnable:
        log("compare: no tool to run")
        return 2
    if args.chart and importlib.util.find_spec("matplotlib") is None:
        log("compare: --chart needs matplotlib, a bench-only dependency: pip install matplotlib")
        return 2
    if args.cold:
        try:
            drop_caches()
        except OSError as e:
            log(f"compare: --cold needs to write {DROP_CACHES} (root, not in a container): {e}")
            return 2

    corpus_dir = os.path.abspath(args.corpus_dir)
    summaries = {c: ensure_corpus(c, corpus_dir, args.make_corpus) for c in args.corpora}
    os.makedirs(args.out, exist_ok=True)
    stamp = timestamp()
    machine = machine_info(corpus_dir)
    startup = startup_tools(extra)
    versions = tool_versions(runnable + startup)
    with_startup = args.startup_runs > 0 and not args.cold and any(t.parent_cpu for t in runnable)
    results: list[CorpusResult] = []
    written: list[str] = []
    extra_json = {"machine": machine, "versions": versions, "skipped": skipped}
    with tempfile.TemporaryDirectory(prefix="parhash-compare-") as scratch:
        args.empty_dir = os.path.join(scratch, "empty")
        os.mkdir(args.empty_dir)
        jobs: list[tuple[str, dict, list[Tool], dict]] = []
        if with_startup:
            empty = {"shape": "startup", "dir": args.empty_dir, "files": 0, "bytes": 0}
            jobs.append(("startup", empty, startup, {"rounds": args.startup_runs, "startup": True}))
        jobs += [(c, summaries[c], runnable, {}) for c in args.corpora]
        for corpus, summary, job_tools, kw in jobs:
            res = bench_corpus(corpus, summary, job_tools, args, scratch, **kw)
            results.append(res)
            text = render(res, job_tools, skipped, machine, versions, args)
            print(text, flush=True)
            base = os.path.join(
                args.out, f"{corpus}{'-cold' if res.mode == 'cold' else ''}-{stamp}"
            )
            with open(base + ".md", "w") as f:
                f.write(text)
            with open(base + ".json", "w") as f:
                json.dump(res.to_json(job_tools, extra_json), f, indent=1)
                f.write("\n")
            written += [base + ".md", base + ".json"]
    written.append(
        write_targets(results, [os.path.basename(p) for p in written[1::2]], args.out, stamp)
    )
    if args.chart:
        png = os.path.join(args.out, "throughput.png")
        write_chart(results, runnable, png)
        written.append(png)
    for path in written:
        log(f"compare: wrote {path}")
    failed = any(r.status != 0 for res in results for runs in res.runs.values() for r in runs)
    return 1 if failed else 0


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def runnable_tools(spec: list[str], tools: list[Tool]) -> tuple[list[Tool], dict[str, str]]:
    """The selected tools that can run here, and why the others cannot."""
    skipped: dict[str, str] = {}
    runnable: list[Tool] = []
    for t in select_tools(spec, tools):
        missing = missing_executables(t)
        if missing:
            skipped[t.name] = f"not installed ({', '.join(missing)} not on PATH)"
        else:
            runnable.append(t)
    for name, why in skipped.items():
        log(f"compare: skipping {name}: {why}")
    return runnable, skipped


if __name__ == "__main__":
    sys.exit(main())
