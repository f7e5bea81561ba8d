#!/usr/bin/env python3
"""Run parhash in this process and record the CPU of this process alone, not its workers.

    python bench/parent_cpu.py OUT scan DIR -q ...

The same as ``python -m parhash scan DIR -q ...`` (same entry point, same arguments, same
exit status, same output), but when the interpreter exits, ``getrusage(RUSAGE_SELF)`` is
written to OUT as one line "utime stime maxrss_kib": the user and system CPU of parhash's
main process and all its threads, without its children (the workers). bench/compare.py
runs every parhash row through it and takes the workers' CPU as the tree's CPU
(``os.wait4``) minus this.

Why atexit and not only a ``try/finally`` around ``main()``: the handler is registered
before parhash is imported, so it runs after every atexit handler parhash and
multiprocessing register (they run last-in, first-out), and the parent's share of the
pool's shutdown is counted too. It runs on every normal exit, ``SystemExit`` included
(that is how typer ends a command); a run that leaves by ``os._exit`` (parhash does that
after a signal or a closed stdout) writes nothing, and compare.py reports the run without
a parent CPU. Cost: importing ``resource`` and one ``getrusage`` (well under a
millisecond; compare.py's start-up rows show it against ``python -m parhash``).
"""

from __future__ import annotations

import atexit
import os
import resource
import sys


def write_usage(path: str) -> None:
    """Write this process's own CPU (seconds) and peak RSS (KiB) to ``path``, atomically
    (plain text: importing json at exit would cost more than the measurement)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(path + ".tmp", "w") as f:
        f.write(f"{usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss}\n")
    os.replace(path + ".tmp", path)


def read_usage(path: str) -> tuple[float, float, int]:
    """(utime, stime, maxrss_kib) as ``write_usage`` wrote them."""
    with open(path) as f:
        utime, stime, maxrss = f.read().split()
    return float(utime), float(stime), int(maxrss)


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: parent_cpu.py OUT PARHASH-ARGS...", file=sys.stderr)
        raise SystemExit(2)
    out = sys.argv.pop(1)
    atexit.register(write_usage, out)
    # As ``python -m parhash``: the working directory, not bench/, leads the import path,
    # so the checkout compare.py runs in (its cwd) is the parhash that runs.
    sys.path[0] = os.getcwd()
    sys.argv[0] = "parhash"
    from parhash import main as parhash_main

    parhash_main()


if __name__ == "__main__":  # spawn/forkserver workers import this file as __mp_main__
    main()
