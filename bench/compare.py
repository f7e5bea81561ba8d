#!/usr/bin/env python3
"""parhash against its peers, side by side, on the same corpora and the same machine.

    python bench/compare.py --corpus small [--corpus mixed ...] [--runs 3] [--cold]
        [--corpus-dir DIR] [--tools parhash,xxhsum,...] [--parhash-args "..."]
        [--out bench/results] [--chart] [--tiny]

Corpora are built once with ../shared/make_corpus.py into --corpus-dir (default:
$PARHASH_BENCH_DIR or /tmp/parhash-bench) as DIR/<shape>/, and DIR/<shape>.complete (the
generator's JSON summary) marks a complete build. ``--corpus tiny`` (or ``--tiny``) builds a
200-file corpus here, without make_corpus.py, for smoke tests.

Every tool runs with stdout to /dev/null, interleaved per round (A B C, A B C, ...), --runs
rounds. Before each round the corpus is read once so the page cache is warm; with --cold the
caches are dropped before every single run instead (root only). Per run: wall time, user+sys CPU
of the whole process tree (os.wait4 on it), and peak RSS: the largest VmHWM of the process and
its descendants, polled in /proc every 10 ms (bench/rss.py), and, when /usr/bin/time is
installed, the kernel's own maximum over the waited-for tree (GNU time %M), which cannot miss
short-lived processes. The report gives medians and every tool's median wall relative to
parhash's, as Markdown on stdout and in OUT/<corpus>-<timestamp>.md (raw runs in .json);
--chart also draws OUT/throughput.png (needs matplotlib: pip install matplotlib).

Exit status: 0 done; 1 some tool exited non-zero in some run (still reported); 2 usage error,
corpus build failure, --cold without permission to drop caches, or --chart without matplotlib.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
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
from rss import children, vm_hwm_kib

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

KNOWN_CORPORA = ("tiny", "small", "mixed", "medium", "large")
DEFAULT_CORPUS_DIR = os.environ.get("PARHASH_BENCH_DIR") or "/tmp/parhash-bench"
DEFAULT_MAKE_CORPUS = os.path.normpath(os.path.join(REPO, "..", "shared", "make_corpus.py"))
DROP_CACHES = "/proc/sys/vm/drop_caches"
TIME_BIN = "/usr/bin/time"
POLL_SECONDS = 0.01
BASELINE = "parhash"


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tool:
    name: str
    shown: str  # the command as a reader would type it, with DIR for the corpus
    argv: list[str]  # with the literal "{dir}" where the corpus path goes
    needs: tuple[str, ...] = ()  # executables that must be on PATH
    stderr_null: bool = False  # stderr to /dev/null (else kept in a temp file for the report)

    def command(self, root: str) -> list[str]:
        return [root if a == "{dir}" else a for a in self.argv]


def xargs_tool(name: str, cmd: str) -> Tool:
    pipeline = f"find {{dir}} -type f -print0 | xargs -0 -P2 -n 1000 {cmd}"
    return Tool(
        name,
        pipeline.replace("{dir}", "DIR"),
        ["sh", "-c", pipeline.replace("{dir}", '"$1"'), "sh", "{dir}"],
        ("sh", "find", "xargs", cmd.split()[0]),
    )


def all_tools(parhash_args: list[str]) -> list[Tool]:
    py = sys.executable
    extra = parhash_args
    shown_extra = "".join(" " + shlex.quote(a) for a in extra)

    def parhash(name: str, args: list[str], shown: str, **kw) -> Tool:
        argv = [py, "-m", "parhash", "scan", "{dir}", *args, *extra]
        return Tool(name, f"python -m parhash scan DIR {shown}{shown_extra}".rstrip(), argv, **kw)

    return [
        parhash("parhash", ["-q"], "-q"),
        parhash("parhash-jsonl", ["-q", "-f", "jsonl"], "-q -f jsonl"),
        parhash("parhash-progress", ["--progress"], "--progress 2>/dev/null", stderr_null=True),
        parhash("parhash-sha256", ["-q", "-a", "sha256"], "-q -a sha256"),
        parhash("parhash-blake3", ["-q", "-a", "blake3"], "-q -a blake3"),
        xargs_tool("xxhsum", "xxhsum -H3"),
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
            "naive",
            "python bench/naive.py DIR  (os.walk list, Pool(2).map, read whole file, md5, "
            "json.dump)",
            [py, os.path.join(BENCH_DIR, "naive.py"), "{dir}"],
        ),
    ]


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


def run_once(tool: Tool, root: str, scratch: str, use_time: bool) -> Run:
    argv = tool.command(root)
    time_out = os.path.join(scratch, "time.out")
    if use_time:
        argv = [TIME_BIN, "-f", "%M", "-o", time_out, "--", *argv]
    with tempfile.TemporaryFile(dir=scratch) as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if tool.stderr_null else err,
            cwd=REPO,
        )
        poller = PeakPoller(proc.pid)
        poller.start()
        _pid, wstatus, usage = os.wait4(proc.pid, 0)  # blocks: exact end of the wall time
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(wstatus)  # reaped here, not by Popen
        peak = poller.stop()
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
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_polled_kib=peak,
        rss_kernel_kib=kernel,
        status=proc.returncode,
        stderr_tail=tail if proc.returncode != 0 else "",
    )


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


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def bench_corpus(
    name: str, summary: dict, tools: list[Tool], args: argparse.Namespace, scratch: str
) -> CorpusResult:
    root = summary["dir"]
    mode = "cold" if args.cold else "warm"
    result = CorpusResult(name, summary, mode, time.strftime("%Y-%m-%d %H:%M:%S %z"))
    result.runs = {t.name: [] for t in tools}
    result.loadavg_before = loadavg()
    use_time = os.access(TIME_BIN, os.X_OK)
    rounds = args.warmup + args.runs
    for rnd in range(rounds):
        discarded = rnd < args.warmup
        result.fingerprints.append(parhash_fingerprint())
        if not args.cold:
            result.warm_seconds.append(warm_page_cache(root))
        walls = []
        for tool in tools:
            if args.cold:
                drop_caches()
            run = run_once(tool, root, scratch, use_time)
            if not discarded:
                result.runs[tool.name].append(run)
            flag = "" if run.status == 0 else f" (exit {run.status})"
            walls.append(f"{tool.name} {run.wall:.3f}{flag}")
        label = "warm-up" if discarded else f"{rnd - args.warmup + 1}/{args.runs}"
        log(f"[{name}] round {label}: " + ", ".join(walls))
    result.loadavg_after = loadavg()
    result.fingerprints.append(parhash_fingerprint())
    if len(set(result.fingerprints)) > 1:
        log(f"[{name}] WARNING: parhash changed during the runs: {result.fingerprints}")
    return result


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
    return "-" if kib is None else f"{kib / 1024:.1f}"


def stats(runs: list[Run]) -> dict:
    kernel = [r.rss_kernel_kib for r in runs if r.rss_kernel_kib is not None]
    return {
        "wall": statistics.median(r.wall for r in runs),
        "cpu": statistics.median(r.cpu for r in runs),
        "rss_polled": max(r.rss_polled_kib for r in runs),
        "rss_kernel": max(kernel) if kernel else None,
        "failed": sum(r.status != 0 for r in runs),
    }


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
    lines = [
        f"# parhash vs peers: corpus `{result.corpus}`",
        "",
        f"- corpus: {s['files']:,} files, {s['bytes']:,} bytes ({gb:.3f} GB), "
        f"`{s['dir']}` (shape {s.get('shape', result.corpus)}, seed {s.get('seed', '?')})",
        f"- started {result.started}; {args.runs} run(s) per tool, interleaved per round "
        f"(A B C, A B C, ...)"
        + (f", after {args.warmup} discarded warm-up round(s)" if args.warmup else ""),
        "- page cache: "
        + (
            "**cold**: `sync; echo 3 > /proc/sys/vm/drop_caches` before every run"
            if result.mode == "cold"
            else "warm: every file read once right before each round "
            f"(took {', '.join(f'{w:.2f}' for w in result.warm_seconds)} s)"
        ),
        "- every tool's stdout to /dev/null; wall and CPU are medians; CPU is user+sys of the "
        "whole process tree (os.wait4); GB/s is corpus bytes / median wall",
        f"- load average before / after: {result.loadavg_before} / {result.loadavg_after}",
        fingerprint_line(result.fingerprints),
        f"- baseline for the ratios: `{base}`; `tool / {base}` > 1 means {base} is faster "
        f"by that factor, `{base} / tool` is its inverse",
        "",
        f"| tool | median wall (s) | runs (s) | CPU user+sys (s) | CPU / wall | "
        f"peak RSS, poll (MiB) | peak RSS, kernel (MiB) | GB/s | tool / {base} | "
        f"{base} / tool | exit |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in ran:
        x = st[t.name]
        bw = st[base]["wall"] if base else x["wall"]
        runs = " ".join(f"{r.wall:.3f}" for r in result.runs[t.name])
        n = len(result.runs[t.name])
        exit_txt = "0" if not x["failed"] else f"FAILED {x['failed']}/{n}"
        lines.append(
            f"| {t.name} | {x['wall']:.3f} | {runs} | {x['cpu']:.3f} | "
            f"{x['cpu'] / x['wall']:.2f} | {mib(x['rss_polled'])} | {mib(x['rss_kernel'])} | "
            f"{gb / x['wall']:.2f} | {fmt_ratio(x['wall'] / bw)} | {fmt_ratio(bw / x['wall'])} | "
            f"{exit_txt} |"
        )
    lines += [
        "",
        "Peak RSS is the largest single process of the tree, the maximum over the runs. "
        "*poll*: VmHWM of the process and its descendants read from /proc every "
        f"{POLL_SECONDS * 1000:.0f} ms (bench/rss.py; can miss processes that live less than "
        "that, e.g. one `xargs` batch). *kernel*: GNU time's %M, the kernel's ru_maxrss over "
        "every waited-for process of the tree (exact; '-' without /usr/bin/time). The tools "
        "ran under `/usr/bin/time -f %M`, which adds one fork+exec (~1 ms) to every tool alike.",
        "",
        "## Commands",
        "",
        "| tool | command |",
        "|---|---|",
    ]
    lines += [f"| {t.name} | `{cell(t.shown)}` |" for t in ran]
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
    cmdline = "python bench/compare.py " + shlex.join(sys.argv[1:])
    lines += ["", f"Command: `{cmdline}`", ""]
    return "\n".join(lines)


def write_chart(results: list[CorpusResult], tools: list[Tool], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

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
    results = []
    for path in paths:
        with open(path) as f:
            raw = json.load(f)
        res = CorpusResult(raw["corpus"], raw["summary"], raw["mode"], raw["started"])
        res.runs = {k: [Run(**r) for r in v] for k, v in raw["runs"].items()}
        results.append(res)
    known = {t.name for t in tools}
    extra = [Tool(n, n, []) for res in results for n in res.runs if n not in known]
    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "throughput.png")
    write_chart(results, tools + extra, png)
    log(f"compare: wrote {png}")
    return 0


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
    args = ap.parse_args(argv)
    corpora: list[str] = []
    for spec in [*args.corpus, *(["tiny"] if args.tiny else [])]:
        for name in (c.strip() for c in spec.split(",")):
            if name and name not in corpora:
                if name not in KNOWN_CORPORA:
                    ap.error(f"unknown corpus {name!r}; known: {', '.join(KNOWN_CORPORA)}")
                corpora.append(name)
    if not corpora and not args.list_tools and not args.replot:
        ap.error("give at least one --corpus (or --tiny)")
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be >= 1 and --warmup >= 0")
    args.corpora = corpora
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = all_tools(shlex.split(args.parhash_args))
    if args.list_tools:
        for t in tools:
            print(f"{t.name:18} {t.shown}")
        return 0
    if args.replot:
        return replot(args.replot, tools, args.out)
    selected = select_tools(args.tools or ["all"], tools)
    skipped: dict[str, str] = {}
    runnable: list[Tool] = []
    for t in selected:
        missing = missing_executables(t)
        if missing:
            skipped[t.name] = f"not installed ({', '.join(missing)} not on PATH)"
        else:
            runnable.append(t)
    for name, why in skipped.items():
        log(f"compare: skipping {name}: {why}")
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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    machine = machine_info(corpus_dir)
    versions = tool_versions(runnable)
    results: list[CorpusResult] = []
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="parhash-compare-") as scratch:
        for corpus in args.corpora:
            res = bench_corpus(corpus, summaries[corpus], runnable, args, scratch)
            results.append(res)
            text = render(res, runnable, skipped, machine, versions, args)
            print(text, flush=True)
            md = os.path.join(args.out, f"{corpus}-{stamp}.md")
            with open(md, "w") as f:
                f.write(text)
            with open(os.path.join(args.out, f"{corpus}-{stamp}.json"), "w") as f:
                raw = {
                    "corpus": corpus,
                    "summary": res.summary,
                    "mode": res.mode,
                    "started": res.started,
                    "commands": {t.name: t.shown for t in runnable},
                    "runs": {k: [asdict(r) for r in v] for k, v in res.runs.items()},
                    "warm_seconds": res.warm_seconds,
                    "parhash_fingerprints": res.fingerprints,
                    "loadavg": [res.loadavg_before, res.loadavg_after],
                    "machine": machine,
                    "versions": versions,
                    "skipped": skipped,
                }
                json.dump(raw, f, indent=1)
                f.write("\n")
            written.append(md)
    if args.chart:
        png = os.path.join(args.out, "throughput.png")
        write_chart(results, runnable, png)
        written.append(png)
    for path in written:
        log(f"compare: wrote {path}")
    failed = any(r.status != 0 for res in results for runs in res.runs.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
