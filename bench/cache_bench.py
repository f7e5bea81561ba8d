#!/usr/bin/env python3
"""The hash cache (issue 12) measured: first run, re-run, 1% changed, audit, budget, size, RSS.

    python bench/cache_bench.py [--corpus small --corpus mixed] [--runs 5]
        [--corpus-dir DIR] [--work /tmp/cb-work] [--out bench/results]
    python bench/cache_bench.py --rss-only --rss-files 1000000 --rss-dir /tmp/cb-1m
    python bench/cache_bench.py --profile          # after the rounds: their filled cache
    python bench/cache_bench.py --combine OUT/cache-*.json   # pool saved rounds, report again

Per corpus, interleaved rounds of these rows (every parhash row: ``-f jsonl -o /dev/null``,
run through bench/parent_cpu.py like bench/compare.py's rows), each ``cold`` row after
``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only), each ``warm`` row with the corpus
read once into the page cache first (compare.py's rewarm, by mincore(2) on a sample):

    a   scan DIR                                    no cache          cold, warm
    b   scan DIR --cache --cache-dir FILL           emptied first     cold
    c   scan DIR --cache --cache-dir CACHE          filled            cold, warm
    d   find DIR -type f -newer STAMP               the issue's bound cold, warm
    e   scan COPY --cache --cache-dir COPYCACHE     1% of COPY's files rewritten first: cold
    f   audit MANIFEST [--cache --cache-dir ACACHE] without and with  cold
    g   scan DIR --cache --verify-budget 5%         its own cache     cold, warm

COPY is ``cp -a`` of the corpus under --work (the corpus itself is never written); each
round rewrites a different 1% of its files (same size, new bytes), then waits out the cache's
racy window (cache_policy.RACY_NS) so the new entries are trusted next time. The run before
the rounds that fills each cache waits out that window too.

Then: the size on disk per entry of CACHE after ``PRAGMA wal_checkpoint(TRUNCATE)``; and the
peak RSS (bench/rss.py: VmHWM of the parent and of the largest worker) of a cached first run
and re-run of the 100,000-file corpus and of a tree of --rss-files tiny files that this
script builds (rss.build_tree) on a tmpfs it mounts at --rss-dir and unmounts at the end.

--profile: where a cached re-run of the small corpus spends its time: each step alone in
us per file (stat, the range query, validity, formatting, the writer's seen_run UPDATEs),
the changes suggested for them measured against today's path, and cProfile of ``-j 1``
(main thread and the cache's writer thread), in OUT/cache-profile-<timestamp>.md.

Output: Markdown on stdout and in OUT/cache-<timestamp>.md, raw runs in OUT/cache-<timestamp>.json.
The targets (issue 12): c at least 10x faster than a on mixed, c no slower than d on small;
each with the ratio of medians and its range over rounds (ratio per round).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (
    DEFAULT_CORPUS_DIR,
    DEFAULT_MAKE_CORPUS,
    REPO,
    TIME_BIN,
    Run,
    Tool,
    cell,
    clean_run,
    corpus_files,
    ensure_corpus,
    loadavg,
    log,
    machine_info,
    parhash_fingerprint,
    parhash_tool,
    prepare_fixtures,
    sample_files,
    warm_page_cache,
)
from rss import build_tree, peak_rss

from parhash.algorithms import get_algorithm
from parhash.cache_lookup import CachedHashing, CacheSpec
from parhash.cache_policy import CACHE_FILE, RACY_NS, STAMP_LENGTH, stamp
from parhash.cache_store import _mark_seen, disk_size
from parhash.hashing import HashSettings
from parhash.report import Rendering, formatter

#: Share of the copy's files rewritten before each "e" run: the issue's "1% changed".
CHANGED_FRACTION = 0.01
#: Past the racy window: an entry hashed sooner after its file's mtime/ctime is re-read.
RACY_WAIT_S = RACY_NS / 1e9 + 0.5
JSONL = ["-f", "jsonl", "-o", "/dev/null"]


@dataclass(frozen=True)
class Row:
    """One measured command: a Tool, the page cache state it runs in, what to do first."""

    key: str  # the brief's letter + variant, e.g. "c-cold"
    tool: Tool
    mode: str  # "cold" | "warm"
    setup: str = ""  # "" | "empty-fill" | "change-copy"


def scan(name: str, args: list[str], shown: str, **kw) -> Tool:
    return parhash_tool(name, ["scan", "{dir}", *args], f"scan DIR {shown}", [], **kw)


def cache_args(which: str) -> list[str]:
    return ["--cache", "--cache-dir", "{" + which + "}"]


def tools() -> dict[str, Tool]:
    jsonl = " ".join(JSONL)
    audit = ["audit", "{manifest}"]
    return {
        "a": scan("scan", JSONL, jsonl),
        "b": scan("scan-fill", [*JSONL, *cache_args("fill")], f"{jsonl} --cache --cache-dir FILL"),
        "c": scan("scan-cached", [*JSONL, *cache_args("cache")], f"{jsonl} --cache --cache-dir C"),
        "d": Tool(
            "find-newer",
            "find DIR -type f -newer STAMP",
            ["find", "{dir}", "-type", "f", "-newer", "{stamp}"],
            ("find",),
        ),
        "e": parhash_tool(
            "scan-1pct-changed",
            ["scan", "{copy}", *JSONL, *cache_args("copycache")],
            f"scan COPY {jsonl} --cache --cache-dir CC",
            [],
        ),
        "f0": parhash_tool("audit", audit, "audit MANIFEST", [], fixtures=("manifest",)),
        "f1": parhash_tool(
            "audit-cached",
            [*audit, *cache_args("acache")],
            "audit MANIFEST --cache --cache-dir AC",
            [],
            fixtures=("manifest",),
        ),
        "g": scan(
            "scan-budget5",
            [*JSONL, *cache_args("bcache"), "--verify-budget", "5%"],
            f"{jsonl} --cache --cache-dir BC --verify-budget 5%",
        ),
    }


def rows(t: dict[str, Tool]) -> list[Row]:
    """Cold rows first (each after a drop), then warm rows (the corpus read once)."""
    return [
        Row("a-cold", t["a"], "cold"),
        Row("b-cold", t["b"], "cold", "empty-fill"),
        Row("c-cold", t["c"], "cold"),
        Row("d-cold", t["d"], "cold"),
        Row("e-cold", t["e"], "cold", "change-copy"),
        Row("f-audit-cold", t["f0"], "cold"),
        Row("f-audit-cached-cold", t["f1"], "cold"),
        Row("g-cold", t["g"], "cold"),
        Row("a-warm", t["a"], "warm"),
        Row("c-warm", t["c"], "warm"),
        Row("d-warm", t["d"], "warm"),
        Row("g-warm", t["g"], "warm"),
        Row("f-audit-warm", t["f0"], "warm"),
        Row("f-audit-cached-warm", t["f1"], "warm"),
    ]


# --------------------------------------------------------------------------- fixtures


def cache_path(directory: str) -> str:
    return os.path.join(directory, CACHE_FILE)


def run_quiet(argv: list[str]) -> str:
    """Run a parhash command to fill a cache; what it said, for the report: stderr (a scan's
    summary; its records go to -o) and stdout (audit's report, with its cache line)."""
    proc = subprocess.run(argv, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True)
    text = (proc.stderr + proc.stdout).decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        log(f"cache_bench: {' '.join(argv)} exited {proc.returncode}: {text[-500:]}")
        raise SystemExit(2)
    return text


def fill(tool: Tool, subs: dict[str, str]) -> str:
    """The tool's command once, after its cache is emptied, then the racy window waited."""
    for key in ("cache", "bcache", "acache", "copycache", "fill"):
        if "{" + key + "}" in tool.argv:
            shutil.rmtree(subs[key], ignore_errors=True)
    out = run_quiet(tool.command(subs))
    time.sleep(RACY_WAIT_S)
    return out


def make_copy(root: str, copy: str) -> list[str]:
    """``cp -a`` of the corpus; its files in a stable order."""
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", root, copy], check=True)
    return corpus_files(copy)


def change_files(files: list[str], rnd: int) -> int:
    """Rewrite a different ``CHANGED_FRACTION`` of ``files`` each round: same size, new
    bytes (so size is equal and mtime/ctime move, as a real edit). Returns bytes written."""
    picked = random.Random(rnd).sample(files, max(1, int(len(files) * CHANGED_FRACTION)))
    written = 0
    for path in picked:
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.write(os.urandom(size))
        written += size
    os.sync()
    time.sleep(RACY_WAIT_S)
    return written


def last_line(text: str) -> str:
    """The command's cache line (``cache: N trusted, ...``), else its last line."""
    lines = text.splitlines()
    said = [line for line in lines if "cache: " in line]
    return (said or lines or ["(nothing said)"])[-1]


def cache_entries(subs: dict[str, str], key: str, since_ns: int) -> str:
    """The cache a row used: its entries, and how many were read (verified_ns is the time of
    the last full read) since ``since_ns``
    (audit prints no cache counts of its own yet)."""
    which = {"c": "cache", "g": "bcache", "f1": "acache"}[key]
    conn = sqlite3.connect(cache_path(subs[which]))
    try:
        total, fresh = conn.execute(
            "SELECT count(*), coalesce(sum(verified_ns >= ?), 0) FROM entries", (since_ns,)
        ).fetchone()
    finally:
        conn.close()
    return f"cache {total:,} entries, {fresh:,} read by this run"


def checkpointed_size(path: str) -> dict:
    """Size on disk before and after ``PRAGMA wal_checkpoint(TRUNCATE)``, and entries."""
    before = disk_size(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    after = disk_size(path)
    return {
        "entries": entries,
        "bytes_before_checkpoint": before,
        "bytes_after_checkpoint": after,
        "pages": pages,
        "page_size": page_size,
        "bytes_per_entry": after / entries if entries else None,
    }


# --------------------------------------------------------------------------- rounds


@dataclass
class CorpusBench:
    corpus: str
    summary: dict
    commands: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    fills: dict[str, str] = field(default_factory=dict)  # the fill runs' summaries
    changed_bytes: list[int] = field(default_factory=list)
    size: dict = field(default_factory=dict)
    loadavg: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    final_summaries: dict[str, str] = field(default_factory=dict)


def load_results(paths: list[str]) -> tuple[dict[str, CorpusBench], list[dict]]:
    """Saved .json reports, pooled: each corpus's rounds of every file, one after another
    (every round of every invocation ran every row, interleaved); the last RSS section."""
    pooled: dict[str, CorpusBench] = {}
    rss: list[dict] = []
    for path in paths:
        with open(path) as f:
            raw = json.load(f)
        rss = raw.get("rss") or rss
        for name, saved in raw["corpora"].items():
            res = CorpusBench(**{**saved, "runs": {}})
            res.runs = {k: [Run(**r) for r in v] for k, v in saved["runs"].items()}
            if name not in pooled:
                pooled[name] = res
                continue
            into = pooled[name]
            for key, runs in res.runs.items():
                into.runs[key] += runs
            into.changed_bytes += res.changed_bytes
            into.loadavg += res.loadavg
            into.fingerprints += res.fingerprints
            into.size, into.final_summaries = res.size, res.final_summaries
    return pooled, rss


def bench_corpus(name: str, summary: dict, args: argparse.Namespace) -> CorpusBench:
    root = summary["dir"]
    t = tools()
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    subs = {"dir": root, "copy": os.path.join(work, "copy")}
    for key in ("cache", "bcache", "acache", "copycache", "fill"):
        subs[key] = os.path.join(work, key)
    subs["stamp"] = os.path.join(work, "stamp")
    with open(subs["stamp"], "w"):
        pass  # newer than every file of the corpus: find prints nothing, as on a quiet night
    subs |= prepare_fixtures(name, root, [t["f0"]], work)
    result = CorpusBench(name, summary)
    plan = rows(t)
    result.commands = {r.key: r.tool.shown for r in plan}
    result.runs = {r.key: [] for r in plan}
    log(f"[{name}] copying the corpus to {subs['copy']}")
    copy_files = make_copy(root, subs["copy"])
    for key in ("c", "g", "f1", "e"):
        result.fills[key] = fill(t[key], subs)
        log(f"[{name}] filled for {key}: {last_line(result.fills[key])}")
    sample = sample_files(corpus_files(root))
    use_time = os.access(TIME_BIN, os.X_OK)
    result.loadavg.append(loadavg())
    for rnd in range(args.runs):
        result.fingerprints.append(parhash_fingerprint())
        warmed = False
        walls = []
        for row in plan:
            if row.setup == "empty-fill":
                shutil.rmtree(subs["fill"], ignore_errors=True)
            elif row.setup == "change-copy":
                result.changed_bytes.append(change_files(copy_files, rnd))
            if row.mode == "warm" and not warmed:
                warm_page_cache(root)
                warmed = True
            run = clean_run(
                name, root, row.mode, sample, row.tool, subs, work, use_time, False, args
            )
            result.runs[row.key].append(run)
            walls.append(
                f"{row.key} {run.wall:.3f}" + ("" if run.status == 0 else f"!{run.status}")
            )
        log(f"[{name}] round {rnd + 1}/{args.runs}: " + ", ".join(walls))
    result.loadavg.append(loadavg())
    result.fingerprints.append(parhash_fingerprint())
    result.size = checkpointed_size(cache_path(subs["cache"]))
    for key in ("c", "g", "f1"):  # what the measured commands did, in their own words
        started_ns = time.time_ns()
        said = last_line(run_quiet(t[key].command(subs)))
        result.final_summaries[key] = f"{said} [{cache_entries(subs, key, started_ns)}]"
    return result


# --------------------------------------------------------------------------- RSS


def rss_rows(label: str, root: str, cache_dir: str) -> list[dict]:
    """Peak RSS of a scan without cache, a cached first run and a cached re-run."""
    out = []
    shutil.rmtree(cache_dir, ignore_errors=True)
    for what, extra in (
        ("no cache", []),
        ("cached first run", ["--cache", "--cache-dir", cache_dir]),
        ("cached re-run", ["--cache", "--cache-dir", cache_dir]),
    ):
        if what == "cached re-run":
            time.sleep(RACY_WAIT_S)
        secs, parent, worker = peak_rss(["scan", root, *JSONL, *extra])
        out.append(
            {
                "tree": label,
                "run": what,
                "seconds": secs,
                "parent_kib": parent,
                "worker_kib": worker,
            }
        )
        log(f"[rss] {label} {what}: {secs:.2f} s, parent {parent} KiB, worker {worker} KiB")
    size = checkpointed_size(cache_path(cache_dir))
    out[-1]["cache"] = size
    return out


def mount_tmpfs(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8g,nr_inodes=2m", "tmpfs", path], check=True
    )


def rss_bench(args: argparse.Namespace, small_dir: str | None) -> list[dict]:
    out = []
    if small_dir:
        out += rss_rows(
            "small corpus (100,000 files)", small_dir, os.path.join(args.work, "rss-small")
        )
    if not args.rss_files:
        return out
    mount_tmpfs(args.rss_dir)
    try:
        tree = os.path.join(args.rss_dir, "tree")
        started = time.monotonic()
        build_tree(tree, args.rss_files)
        log(f"[rss] built {args.rss_files:,} files in {time.monotonic() - started:.0f} s")
        time.sleep(RACY_WAIT_S)
        label = f"{args.rss_files:,} tiny files on tmpfs"
        out += rss_rows(label, tree, os.path.join(args.rss_dir, "cache"))
    finally:
        subprocess.run(["umount", args.rss_dir], check=False)
    return out


# --------------------------------------------------------------------------- profile


def cprofile_rerun(root: str, cache_dir: str, top: int) -> dict:
    """A cached re-run in this process with ``-j 1`` (the inline executor: walker, lookups,
    formatting and output on this thread) under cProfile, and the cache's writer thread
    under a profiler of its own (cProfile sees one thread)."""
    import cProfile
    import io
    import pstats

    import parhash
    from parhash import cache_store

    writer_prof = cProfile.Profile()
    original = cache_store._Writer.run

    def profiled_run(self) -> None:
        writer_prof.enable()
        try:
            original(self)
        finally:
            writer_prof.disable()

    cache_store._Writer.run = profiled_run
    argv = ["parhash", "scan", root, *JSONL, "--cache", "--cache-dir", cache_dir, "-j", "1"]
    saved, sys.argv = sys.argv, argv
    main_prof = cProfile.Profile()
    started = time.perf_counter()
    main_prof.enable()
    try:
        parhash.main()
    except SystemExit:
        pass
    finally:
        main_prof.disable()
        sys.argv = saved
        cache_store._Writer.run = original
    wall = time.perf_counter() - started
    out = {"command": "parhash " + " ".join(argv[1:]), "wall_profiled": wall}
    for label, prof in (("main thread", main_prof), ("writer thread", writer_prof)):
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(top)
        out[label] = {"total": sum(v[2] for v in stats.stats.values()), "text": text.getvalue()}
    return out


def _per_file(seconds: float, files: int) -> float:
    return seconds * 1e6 / files


#: Repeats of each profile step: the best is kept. 5: with other work on the 2 cores (load
#: average 4-8 seen here) the best of 3 still varied by 2x between invocations.
PROFILE_REPEAT = 5


def timed(fn, repeat: int = PROFILE_REPEAT) -> float:
    """The best of ``repeat`` runs of ``fn()`` (seconds): the cost without the noise."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _groups(root: str) -> tuple[str, dict[str, list[str]], list[str]]:
    """The root's prefix, its files per directory (sorted, as the walker groups them) and
    every path: the same work list for each step measured."""
    prefix = root.rstrip("/") + "/"
    groups: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if filenames:
            groups[dirpath + "/"] = sorted(filenames)
    return prefix, groups, [d + n for d, names in groups.items() for n in names]


def micro(root: str, db: str) -> list[tuple[str, float, str]]:
    """Each step of a cached re-run's per-file work alone, warm, in us per file, through
    parhash's own functions where it has one: what the cProfile numbers (inflated by its
    per-call overhead) are made of."""
    prefix, groups, paths = _groups(root)
    files = len(paths)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        root_id, run = conn.execute("SELECT id, runs FROM roots").fetchone()
    algos = (get_algorithm("xxh3"),)
    encoded = [
        (d, os.fsencode(d[len(prefix) :]), [os.fsencode(n) for n in names])
        for d, names in groups.items()
    ]

    def hashing() -> CachedHashing:
        # Task.cache: (root id, verification cutoff (-1: none due), prefix length, run).
        key = (root_id, -1, len(prefix), run + 1)
        return CachedHashing(CacheSpec(db), key, algos, False, HashSettings(), False)

    def walk() -> None:
        todo = [root]
        while todo:
            with os.scandir(todo.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        entry.is_file(follow_symlinks=False)

    def stat_full() -> None:
        for path in paths:
            os.stat(path, follow_symlinks=False)

    def stat_dir_fd() -> None:
        for d, names in groups.items():
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for n in names:
                    os.stat(n, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)

    def encode() -> None:
        for d, names in groups.items():
            os.fsencode(d[len(prefix) :])
            [os.fsencode(n) for n in names]

    fetched: dict[str, dict] = {}

    def fetch() -> None:
        cached = hashing()
        for d, directory, keys in encoded:
            fetched[d] = cached._fetch(directory, min(keys), max(keys))[0]

    fetch()
    stats = {p: os.stat(p, follow_symlinks=False) for p in paths}
    values = [
        (stats[d + os.fsdecode(name)], value)
        for d, entries in fetched.items()
        for name, value in entries.items()
    ]
    assert len(values) == files, (len(values), files)

    def validity() -> None:
        for st, value in values:
            value.startswith(stamp(st, True))

    fmt = formatter(Rendering("jsonl", ("xxh3",)))
    per_dir = []
    for d, names in groups.items():
        group_paths = [d + n for n in names]
        group_raws = [
            (
                stats[p].st_size,
                stats[p].st_mtime_ns,
                fetched[d][os.fsencode(n)][STAMP_LENGTH:].hex(),
                None,
            )
            for p, n in zip(group_paths, names, strict=True)
        ]
        per_dir.append((group_paths, group_raws))

    def format_() -> None:
        for group_paths, group_raws in per_dir:
            fmt.from_raw(group_paths, group_raws, root)

    seen: list = []

    def whole_group() -> None:
        cached = hashing()
        for d, names in groups.items():
            cached.hash_group(d, tuple(names), [d + n for n in names])
        assert cached.trusted == files, cached.trusted
        seen[:] = cached.seen

    steps = [
        ("walk: scandir + d_type, per file", walk, "parent (walker)"),
        ("os.stat(full path)", stat_full, "(before 9148290)"),
        ("os.stat(name, dir_fd=directory)", stat_dir_fd, "worker"),
        ("os.fsencode of the names", encode, "worker"),
        ("CachedHashing._fetch: range SELECT per directory", fetch, "worker"),
        ("value.startswith(stamp(st)): validity", validity, "worker"),
        ("jsonl from_raw", format_, "worker"),
        ("CachedHashing.hash_group whole (encode + fetch + stat + decide)", whole_group, "worker"),
    ]
    out = [(what, _per_file(timed(fn), files), where) for what, fn, where in steps]
    return out + seen_updates(db, root_id, seen, files)


def seen_updates(db: str, root_id: int, seen: list, files: int) -> list[tuple[str, float, str]]:
    """The parent writer's ``seen_run`` refresh of a re-run (``cache_store._mark_seen``,
    committed), on a copy of the cache: a new run (every entry rewritten), then the same
    run again (nothing to change: what a refresh every Nth run would cost the others)."""
    work = db + ".profile-copy"
    _remove_db(work)
    shutil.copyfile(db, work)
    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    out = []
    run = conn.execute("SELECT max(seen_run) FROM entries").fetchone()[0] + 1
    for label in ("a new run: every entry refreshed", "the same run: nothing to refresh"):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        _mark_seen(conn, root_id, run, seen)
        conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        wal = os.path.getsize(work + "-wal") if os.path.exists(work + "-wal") else 0
        what = f"writer: _mark_seen, {label} (WAL now {wal / 1e6:.1f} MB)"
        out.append((what, _per_file(seconds, files), "parent (writer thread)"))
    conn.close()
    _remove_db(work)
    return out


def _remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def profile_report(args: argparse.Namespace, summary: dict) -> list[str]:
    root = summary["dir"]
    cache_dir = os.path.join(args.work, summary["shape"], "cache")
    db = cache_path(cache_dir)
    if not os.path.exists(db):
        log(f"cache_bench: no filled cache at {db}: run the rounds first")
        raise SystemExit(2)
    files = summary["files"]
    steps = micro(root, db)
    prof = cprofile_rerun(root, cache_dir, args.profile_top)
    lines = [
        f"## Where a cached re-run's time goes ({summary['shape']}: {files:,} files, warm)",
        "",
        f"Each step alone (best of {PROFILE_REPEAT}, this process, warm; "
        "`bench/cache_bench.py --profile`):",
        "",
        "| step | where | us per file | s per run |",
        "|---|---|---:|---:|",
    ]
    for what, us, where in steps:
        lines.append(f"| {what} | {where} | {us:.2f} | {us * files / 1e6:.3f} |")
    lines += [
        "",
        f"cProfile of `{prof['command']}` (inline executor: one thread does the walk, the "
        f"lookups and the output; {prof['wall_profiled']:.2f} s under the profiler):",
        "",
    ]
    for label in ("main thread", "writer thread"):
        lines += [
            f"### {label}: {prof[label]['total']:.2f} s of profiled time",
            "",
            "```",
            prof[label]["text"].strip(),
            "```",
            "",
        ]
    return lines


# --------------------------------------------------------------------------- report


def med(runs: list[Run]) -> float:
    return statistics.median(r.wall for r in runs)


def row_stats(runs: list[Run]) -> dict:
    walls = [r.wall for r in runs]
    parents = [r.parent_cpu for r in runs if r.parent_cpu is not None]
    others = [r.others_cores for r in runs if r.others_cores is not None]
    kernel = [r.rss_kernel_kib for r in runs if r.rss_kernel_kib]
    return {
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "cpu": statistics.median(r.cpu for r in runs),
        "parent_cpu": statistics.median(parents) if parents else None,
        "others": statistics.median(others) if others else None,
        "rss_kib": max(kernel) if kernel else max(r.rss_polled_kib for r in runs),
        "failed": sum(r.status != 0 for r in runs),
    }


def best_ratio(res: CorpusBench, slow: str, fast: str) -> float:
    """min(slow) / min(fast): noise from other work on the machine only ever adds time."""
    return min(r.wall for r in res.runs[slow]) / min(r.wall for r in res.runs[fast])


def ratio(res: CorpusBench, slow: str, fast: str) -> tuple[float, float, float]:
    """Median(slow) / median(fast), and the min and max of the per-round ratios."""
    per_round = [
        s.wall / f.wall for s, f in zip(res.runs[slow], res.runs[fast], strict=True) if f.wall
    ]
    return med(res.runs[slow]) / med(res.runs[fast]), min(per_round), max(per_round)


def fmt_opt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def render_corpus(res: CorpusBench) -> list[str]:
    files = res.summary["files"]
    lines = [
        f"## {res.corpus}: {files:,} files, {res.summary['bytes'] / 1e6:,.0f} MB, "
        f"{len(next(iter(res.runs.values())))} interleaved rounds",
        "",
        f"- load average before / after: {res.loadavg[0]} / {res.loadavg[-1]}",
        "- parhash sources unchanged during the runs"
        if len(set(res.fingerprints)) == 1
        else f"- **WARNING: parhash changed during the runs** {res.fingerprints}",
        f"- e: {CHANGED_FRACTION:.0%} of the copy's files rewritten per round "
        f"(median {statistics.median(res.changed_bytes) / 1e6:.1f} MB)",
        "",
        "| row | command | page cache | wall median (s) | min-max | tree CPU (s) "
        "| parent CPU (s) | parent us/file | others' cores | peak RSS tree (MiB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, runs in res.runs.items():
        s = row_stats(runs)
        mode = key.rsplit("-", 1)[1]
        per_file = None if s["parent_cpu"] is None else s["parent_cpu"] * 1e6 / files
        flag = f" ({s['failed']} failed)" if s["failed"] else ""
        lines.append(
            f"| {key}{flag} | `{cell(res.commands[key])}` | {mode} | {s['median']:.3f} | "
            f"{s['min']:.3f}-{s['max']:.3f} | {s['cpu']:.2f} | {fmt_opt(s['parent_cpu'], '.2f')} "
            f"| {fmt_opt(per_file, '.1f')} | {fmt_opt(s['others'], '.2f')} "
            f"| {s['rss_kib'] / 1024:.1f} |"
        )
    lines += ["", "Ratios (median over median; per-round range):", ""]
    for slow, fast, what in (
        ("a-cold", "c-cold", "without cache / re-run with cache, cold"),
        ("a-warm", "c-warm", "without cache / re-run with cache, warm"),
        ("c-cold", "d-cold", "re-run with cache / find -newer, cold"),
        ("c-warm", "d-warm", "re-run with cache / find -newer, warm"),
        ("b-cold", "a-cold", "first run with cache / without cache, cold"),
        ("e-cold", "c-cold", "1% changed / unchanged re-run, cold"),
        ("a-cold", "e-cold", "without cache / 1% changed, cold"),
        ("f-audit-cold", "f-audit-cached-cold", "audit / audit --cache, cold"),
        ("f-audit-warm", "f-audit-cached-warm", "audit / audit --cache, warm"),
        ("g-cold", "c-cold", "--verify-budget 5% / plain re-run, cold"),
        ("g-warm", "c-warm", "--verify-budget 5% / plain re-run, warm"),
    ):
        r, lo, hi = ratio(res, slow, fast)
        lines.append(f"- {what}: **{r:.2f}x** ({lo:.2f}-{hi:.2f})")
    size = res.size
    lines += [
        "",
        f"Cache size on disk (C, {size['entries']:,} entries): "
        f"{size['bytes_before_checkpoint']:,} B before and {size['bytes_after_checkpoint']:,} B "
        f"after `PRAGMA wal_checkpoint(TRUNCATE)` ({size['pages']:,} pages of "
        f"{size['page_size']} B): **{size['bytes_per_entry']:.0f} B per entry**",
        "",
        "What the cached commands reported (one more run of each after the rounds):",
        "",
    ]
    for key, text in res.final_summaries.items():
        lines += [f"- {key}: `{cell(' / '.join(text.splitlines()))}`"]
    return lines


def render_targets(results: dict[str, CorpusBench]) -> list[str]:
    lines = ["## Targets (issue 12)", ""]
    if "mixed" in results:
        for mode in ("cold", "warm"):
            r, lo, hi = ratio(results["mixed"], f"a-{mode}", f"c-{mode}")
            verdict = "met" if r >= 10 else f"missed by {(1 - r / 10):.0%}"
            lines.append(
                f"- mixed, {mode}: re-run with cache {r:.1f}x faster than without "
                f"(target >= 10x): **{verdict}** (per round {lo:.1f}-{hi:.1f}x; best run over "
                f"best run {best_ratio(results['mixed'], f'a-{mode}', f'c-{mode}'):.1f}x)"
            )
    if "small" in results:
        for mode in ("cold", "warm"):
            r, lo, hi = ratio(results["small"], f"c-{mode}", f"d-{mode}")
            verdict = "met" if r <= 1 else f"missed by {r - 1:.0%}"
            lines.append(
                f"- small, {mode}: re-run with cache takes {r:.2f}x the time of find -newer "
                f"(target <= 1x): **{verdict}** (per round {lo:.2f}-{hi:.2f}x; best run over "
                f"best run {best_ratio(results['small'], f'c-{mode}', f'd-{mode}'):.2f}x)"
            )
    return [*lines, ""]


def render_rss(rss: list[dict]) -> list[str]:
    if not rss:
        return []
    lines = [
        "## Peak RSS (bench/rss.py: VmHWM polled every 20 ms; seconds are no timing: the page "
        "cache is as the runs before left it)",
        "",
        "| tree | run | seconds | parent peak (MiB) | largest worker peak (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rss:
        lines.append(
            f"| {r['tree']} | {r['run']} | {r['seconds']:.2f} | {r['parent_kib'] / 1024:.1f} "
            f"| {r['worker_kib'] / 1024:.1f} |"
        )
    for r in rss:
        if "cache" in r:
            c = r["cache"]
            lines.append(
                f"\n{r['tree']}: cache {c['bytes_after_checkpoint']:,} B after checkpoint for "
                f"{c['entries']:,} entries ({c['bytes_per_entry']:.0f} B per entry)"
            )
    return [*lines, ""]


def header(title: str, corpus_dir: str) -> tuple[list[str], dict[str, str]]:
    """The report's title, command line and machine (with the checkout's commit: compare.py
    reads .git as a directory, which a git worktree's is not)."""
    info = machine_info(corpus_dir)
    head = subprocess.run(
        ["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True
    )
    info["parhash checkout"] = f"{REPO} @ {head.stdout.decode().strip() or '?'}"
    lines = [
        f"# {title} ({time.strftime('%Y-%m-%d %H:%M %Z')})",
        "",
        f"`python bench/cache_bench.py {' '.join(sys.argv[1:])}`",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- load average: {loadavg()}",
        "",
    ]
    return lines, info


def write_text(out: str, prefix: str, text: str, raw: dict | None = None) -> None:
    """OUT/PREFIX-<timestamp>.md (and .json with ``raw``); the Markdown also on stdout."""
    print(text)
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    with open(base + ".md", "w") as f:
        f.write(text + "\n")
    if raw is not None:
        with open(base + ".json", "w") as f:
            json.dump(raw, f, indent=1)
            f.write("\n")
    log(f"cache_bench: wrote {base}.md" + (" and .json" if raw is not None else ""))


def write_report(results: dict[str, CorpusBench], rss: list[dict], args) -> None:
    lines, info = header("Hash cache benchmark", args.corpus_dir)
    lines += [
        "- cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before the run (dentries, inodes "
        "and pages: the corpus, the cache file); warm: the corpus read once before the warm rows",
        "- others' cores: CPU the rest of the machine kept busy during the run (2 cores here)",
        "",
        *render_targets(results),
    ]
    for res in results.values():
        lines += [*render_corpus(res), ""]
    lines += render_rss(rss)
    raw = {
        "machine": info,
        "corpora": {
            k: {**asdict(v), "runs": {n: [asdict(r) for r in rs] for n, rs in v.runs.items()}}
            for k, v in results.items()
        },
        "rss": rss,
    }
    write_text(args.out, "cache", "\n".join(lines), raw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="append", help="small, mixed (default: both)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    ap.add_argument("--make-corpus", default=DEFAULT_MAKE_CORPUS)
    ap.add_argument("--work", default="/tmp/cb-work", help="copies, caches, fixtures")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--retries", type=int, default=3, help="as compare.py --retries")
    ap.add_argument("--rss-files", type=int, default=0, help="e.g. 1000000 (0: skip)")
    ap.add_argument("--rss-dir", default="/tmp/cb-1m", help="tmpfs mount point for it")
    ap.add_argument("--rss-only", action="store_true", help="only the RSS section")
    ap.add_argument(
        "--profile", action="store_true", help="only the profile of a cached re-run (small)"
    )
    ap.add_argument("--profile-top", type=int, default=25, help="cProfile rows shown")
    ap.add_argument("--combine", nargs="+", metavar="JSON", help="pool saved runs' rounds")
    args = ap.parse_args()
    if args.combine:
        results, rss = load_results(args.combine)
        write_report(results, rss, args)
        return 0
    if os.geteuid() != 0:
        log("cache_bench: dropping the page cache needs root")
        return 2
    corpora = args.corpus or (["small"] if args.profile else ["small", "mixed"])
    results: dict[str, CorpusBench] = {}
    summaries = {c: ensure_corpus(c, args.corpus_dir, args.make_corpus) for c in corpora}
    if args.profile:
        lines, _info = header("Hash cache: profile of a cached re-run", args.corpus_dir)
        lines += profile_report(args, summaries[corpora[0]])
        write_text(args.out, "cache-profile", "\n".join(lines))
        return 0
    if not args.rss_only:
        for name in corpora:
            results[name] = bench_corpus(name, summaries[name], args)
    small = summaries["small"]["dir"] if "small" in summaries else None
    rss = rss_bench(args, small) if args.rss_only or args.rss_files else []
    write_report(results, rss, args)
    failed = any(r.status for res in results.values() for rs in res.runs.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
