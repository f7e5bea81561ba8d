#!/usr/bin/env python3
"""Peak RSS of every parhash process for trees of growing size: it must stay flat.

    python bench/rss.py --files 20000 200000 [--dir /tmp/parhash-rss] [-- extra scan args]
    python bench/rss.py --files 100000 --per-dir 100000     # one flat directory
    python bench/rss.py --tree /tmp/corpus-small            # an existing tree

Builds (once) a tree of N tiny files per size (``--per-dir`` files per directory), or
takes ``--tree`` as it is, runs ``parhash scan`` on it with stdout to /dev/null, and polls
/proc for the peak resident set (VmHWM) of the parent and each worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def build_tree(root: str, files: int, per_dir: int = 1000) -> None:
    """``files`` files of 0..1023 bytes, ``per_dir`` per directory; reused if complete."""
    stamp = os.path.join(root, ".complete")
    if os.path.exists(stamp):
        return
    for i in range(files):
        d = os.path.join(root, f"d{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
            f.write(os.urandom(i % 1024))
    open(stamp, "w").close()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(root: str, extra: list[str]) -> tuple[float, int, int]:
    """Run one scan; return (seconds, parent peak KiB, largest worker peak KiB)."""
    return peak_rss(["scan", "-q", root, *extra])


def peak_rss(args: list[str]) -> tuple[float, int, int]:
    """Run ``parhash ARGS`` (stdout discarded); return (seconds, parent peak KiB, largest
    worker peak KiB), polling /proc every 20 ms."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "parhash", *args], stdout=subprocess.DEVNULL)
    parent = worker = 0
    while proc.poll() is None:
        parent = max(parent, vm_hwm_kib(proc.pid))
        for child in children(proc.pid):
            worker = max(worker, vm_hwm_kib(child))
        time.sleep(0.02)
    return time.monotonic() - started, parent, worker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--dir", default="/tmp/parhash-rss")
    ap.add_argument("--per-dir", type=int, default=1000, help="files per directory")
    ap.add_argument("--tree", help="measure this existing tree instead of building one")
    ap.add_argument("extra", nargs="*", help="extra arguments for parhash scan")
    args = ap.parse_args()
    print("| tree | seconds | parent peak RSS (MiB) | largest worker peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    if args.tree:
        trees = [(args.tree, args.tree)]
    else:
        trees = []
        for n in args.files:
            root = os.path.join(args.dir, f"{n}-{args.per_dir}")
            build_tree(root, n, args.per_dir)
            trees.append((f"{n:,} files, {args.per_dir:,} per directory", root))
    for label, root in trees:
        secs, parent, worker = measure(root, args.extra)
        print(f"| {label} | {secs:.2f} | {parent / 1024:.1f} | {worker / 1024:.1f} |")


if __name__ == "__main__":
    main()
