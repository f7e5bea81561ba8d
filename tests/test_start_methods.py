"""The CLI under the spawn and forkserver start methods (forkserver is Python 3.14's default).

The rest of the suite runs the pool with the platform default, which is fork on Linux before
3.14. Here a fresh interpreter forces another start method, makes ``os.fork`` raise in the
parent, and runs the console-script entry point in-process: the workers can only get what
they need by pickling, never by inheriting the parent's memory.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import jsonl_records

from parhash.hashing import CHUNK_SIZE

START_METHODS = [
    pytest.param(
        method,
        marks=pytest.mark.skipif(
            method not in multiprocessing.get_all_start_methods(),
            reason=f"no {method} start method on this platform",
        ),
    )
    for method in ("spawn", "forkserver")
]

# Runs in a new interpreter: ``python -c DRIVER METHOD ARGS...`` is ``parhash ARGS...``
# with the pool's processes started by METHOD. A fork in this process would mean parhash
# depends on the fork start method, so it is an error.
DRIVER = textwrap.dedent(
    """
    import multiprocessing
    import os
    import sys

    method = sys.argv[1]
    multiprocessing.set_start_method(method, force=True)


    def no_fork():
        raise RuntimeError(f"os.fork() called under the {method} start method")


    os.fork = no_fork

    from parhash.cli import main

    sys.argv = ["parhash", *sys.argv[2:]]
    main()
    """
)

#: Sizes around the worker's read buffer (one-shot hash vs. streaming) and the empty file.
SIZES = [
    0,
    1,
    100,
    4095,
    4096,
    65536,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE + 7,
]
FILE_COUNT = 50


def run_driver(method: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, method, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PARHASH_DEBUG": "1"},  # a bug shows its traceback
    )


def build_tree(root: Path) -> dict[Path, bytes]:
    """FILE_COUNT files of assorted sizes in nested directories; returns path -> content."""
    rng = random.Random(20240601)
    dirs = [root, root / "a", root / "a" / "deep er", root / "b", root / "ünï"]
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(FILE_COUNT):
        size = SIZES[i % len(SIZES)] if i < 2 * len(SIZES) else rng.randrange(0, 20_000)
        path = dirs[i % len(dirs)] / f"file {i:02d}.bin"
        data = rng.randbytes(size)
        path.write_bytes(data)
        files[path] = data
    return files


@pytest.mark.parametrize("method", START_METHODS)
def test_scan_hashes_every_file_once(tmp_path, method):
    tree = tmp_path / "tree"
    files = build_tree(tree)

    proc = run_driver(
        method, "scan", str(tree), "-a", "sha256", "-j", "2", "-f", "jsonl", cwd=tmp_path
    )

    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    records = jsonl_records(proc.stdout)
    counts = Counter(r["path"] for r in records)
    assert counts == Counter(str(path) for path in files), stderr
    for record in records:
        data = files[Path(record["path"])]
        assert record["error"] is None, record
        assert record["algo"] == "sha256"
        assert record["size"] == len(data), record["path"]
        assert record["hash"] == hashlib.sha256(data).hexdigest(), record["path"]
    assert f"hashed {FILE_COUNT} files" in stderr and "0 errors" in stderr, stderr


def test_check_under_spawn(tmp_path):
    tree = tmp_path / "tree"
    files = build_tree(tree)
    sums = tmp_path / "tree.sha256"
    # Names relative to the tree, where check runs: "hex  name" lines, as sha256sum writes.
    named = {path.relative_to(tree).as_posix(): data for path, data in files.items()}
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in named.items()]
    sums.write_text("".join(lines), encoding="utf-8")

    proc = run_driver("spawn", "check", "-a", "sha256", "-j", "2", str(sums), cwd=tree)

    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    assert sorted(proc.stdout.decode().splitlines()) == sorted(f"{n}: OK" for n in named), stderr
    assert "WARNING" not in stderr, stderr
