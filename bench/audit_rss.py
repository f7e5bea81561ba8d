#!/usr/bin/env python3
"""Peak RSS of ``parhash audit`` for manifests of growing size: it must stay bounded.

    python bench/audit_rss.py --files 100000 1000000 [--dir /tmp/parhash-rss]

For each size: builds (once) a tree of N tiny files, writes a jsonl manifest with
``parhash scan``, changes a few files (edit, delete, add), then runs ``parhash audit`` and
reports wall time and the peak resident set of the parent and of the largest worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rss import build_tree, peak_rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dir", default="/tmp/parhash-rss")
    args = ap.parse_args()
    print("| manifest entries | audit seconds | parent peak RSS (MiB) | worker peak RSS (MiB) |")
    print("|---:|---:|---:|---:|")
    for n in args.files:
        root = os.path.join(args.dir, str(n))
        build_tree(root, n)
        manifest = os.path.join(args.dir, f"manifest-{n}.jsonl")
        subprocess.run(
            [sys.executable, "-m", "parhash", "scan", "-q", root, "-f", "jsonl", "-o", manifest],
            check=True,
        )
        with open(os.path.join(root, "d0000", "f0000001"), "ab") as f:
            f.write(b"changed")
        secs, parent, worker = peak_rss(["audit", manifest, "--no-progress"])
        os.truncate(os.path.join(root, "d0000", "f0000001"), 1)  # restore the size for reruns
        print(f"| {n:,} | {secs:.2f} | {parent / 1024:.1f} | {worker / 1024:.1f} |")


if __name__ == "__main__":
    main()
