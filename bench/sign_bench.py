#!/usr/bin/env python3
"""Signed manifests (issue 13) measured against ssh-keygen, in the same run.

    python bench/sign_bench.py [--corpus small] [--runs 5] [--corpus-dir DIR]
        [--work /tmp/sign-bench] [--out bench/results]

With an ed25519 key made for the run (``ssh-keygen -t ed25519``), interleaved rounds of:

    scan       parhash scan DIR -f jsonl -o M                 the manifest, unsigned
    scan+sign  parhash scan DIR -f jsonl -o M --sign KEY      the same, signed (.sig + comment)
    sign       parhash sign M --key KEY                       reads M twice: hash + comment
    keygen-sign   ssh-keygen -Y sign -n parhash -f KEY M      the peer
    verify     parhash verify M --allowed-signers F
    keygen-verify ssh-keygen -Y verify -f F -I ops -n parhash -s M.sig < M

All warm (the corpus and the manifest are read once first). Reports the median of each row
and the ratios the issue's users care about: what --sign adds to a scan, and parhash's sign
and verify against ssh-keygen's on the same manifest. Markdown on stdout and in
OUT/sign-<timestamp>.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import DEFAULT_CORPUS_DIR


def timed(argv: list[str], stdin: str | None = None) -> float:
    """Wall seconds of one run; a failure stops the benchmark (a number of a failed run
    would be a lie)."""
    start = time.perf_counter()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as feed:
        proc = subprocess.run(argv, stdin=feed, capture_output=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.decode()}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="small")
    parser.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", default="/tmp/sign-bench")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    root = os.path.join(args.corpus_dir, args.corpus)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    key = os.path.join(args.work, "key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(f"{key}.pub") as f:
        public = " ".join(f.read().split()[:2])
    signers = os.path.join(args.work, "allowed_signers")
    with open(signers, "w") as f:
        f.write(f'ops namespaces="parhash" {public}\n')
    ph = [sys.executable, "-m", "parhash"]
    plain, signed, peer = (
        os.path.join(args.work, n) for n in ("plain.jsonl", "m.jsonl", "p.jsonl")
    )
    rows = {
        "scan": [*ph, "scan", root, "-f", "jsonl", "-o", plain, "-q"],
        "scan+sign": [*ph, "scan", root, "-f", "jsonl", "-o", signed, "-q", "--sign", key],
        "sign": [*ph, "sign", signed, "--key", key, "-q"],
        "keygen-sign": ["ssh-keygen", "-q", "-Y", "sign", "-n", "parhash", "-f", key, peer],
        "verify": [*ph, "verify", signed, "--allowed-signers", signers],
        "keygen-verify": [
            *("ssh-keygen", "-Y", "verify", "-f", signers, "-I", "ops"),
            *("-n", "parhash", "-s", f"{signed}.sig"),
        ],
    }
    timed(rows["scan"])  # warm the corpus
    timed(rows["scan+sign"])
    shutil.copy(signed, peer)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, argv in rows.items():
            if name == "keygen-sign" and os.path.exists(f"{peer}.sig"):
                os.unlink(f"{peer}.sig")  # ssh-keygen asks before it overwrites
            stdin = signed if name == "keygen-verify" else None
            times[name].append(timed(argv, stdin))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    size = os.path.getsize(signed)
    lines = [
        f"# Signed manifests: {args.corpus} ({size / 1e6:.1f} MB jsonl manifest), "
        f"{args.runs} interleaved rounds, warm",
        "",
        "| row | median s | min-max s |",
        "|---|---:|---:|",
    ]
    for name, ts in times.items():
        lines.append(f"| {name} | {med[name]:.3f} | {min(ts):.3f}-{max(ts):.3f} |")
    lines += [
        "",
        f"- --sign adds {med['scan+sign'] - med['scan']:.2f} s to the scan "
        f"({med['scan+sign'] / med['scan']:.2f}x)",
        f"- parhash sign / ssh-keygen -Y sign: {med['sign'] / med['keygen-sign']:.2f}x",
        f"- parhash verify / ssh-keygen -Y verify: {med['verify'] / med['keygen-verify']:.2f}x",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"sign-{stamp}.md"), "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
