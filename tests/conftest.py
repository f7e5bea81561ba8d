"""Shared test helpers: run the real CLI in a subprocess, build trees in tmp_path."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def run_cli(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    input: bytes | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run ``python -m parhash ARGS`` as a real process; stdout (bytes) and stderr kept apart."""
    proc = subprocess.run(
        [sys.executable, "-m", "parhash", *map(os.fsdecode, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def cli():
    return run_cli


def write_tree(root: Path, spec: dict[str | bytes, bytes | dict]) -> Path:
    """Create files (bytes values) and directories (dict values) below ``root``.

    Keys may be ``bytes`` for names that are not valid UTF-8.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        path = os.path.join(os.fsencode(root), os.fsencode(name))
        if isinstance(value, dict):
            write_tree(Path(os.fsdecode(path)), value)
        else:
            with open(path, "wb") as f:
                f.write(value)
    return root


@pytest.fixture
def make_tree(tmp_path):
    def make(spec, name: str = "tree") -> Path:
        return write_tree(tmp_path / name, spec)

    return make


NOBODY = 65534


def run_unprivileged(func: Callable[[], object], cwd: str) -> object:
    """Run ``func`` in a forked child in ``cwd`` as uid/gid 65534 when we are root.

    Root ignores permission bits, so permission errors can only be observed by a process
    without privileges. The result (or the child's traceback) comes back through a pipe.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_fd)
            signal.alarm(10)  # never outlive a hung test
            os.chdir(cwd)  # as root: the ancestors of tmp_path are 0700
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            outcome = ("ok", func())
        except BaseException:
            outcome = ("error", traceback.format_exc())
        try:
            data = pickle.dumps(outcome)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    assert data, "unprivileged child died without a result"
    kind, value = pickle.loads(data)
    assert kind == "ok", value
    return value


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging) if the block blocks longer than ``seconds``.

    A raising SIGALRM handler interrupts a blocking open()/read() in the main thread.
    """

    def on_alarm(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def files_below(root: Path, base: Path | None = None) -> dict[bytes, bytes]:
    """{path relative to ``base`` (default: ``root``), as bytes: content} of every regular
    file below ``root``, found with os.walk on bytes names."""
    found = {}
    start = os.fsencode(base if base is not None else root)
    for dirpath, _dirs, names in os.walk(os.fsencode(root)):
        for name in names:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    found[os.path.relpath(full, start)] = f.read()
    return found


def jsonl_records(data: bytes | str) -> list[dict]:
    """The records of parhash's jsonl output: line 1, the manifest header (``{"header": H}``,
    no ``path`` key), is dropped. Split on "\\n" only: a name may hold U+2028 or U+0085."""
    import json

    text = data.decode("utf-8") if isinstance(data, bytes) else data
    objects = [json.loads(line) for line in text.split("\n") if line.strip()]
    if objects and "header" in objects[0] and "path" not in objects[0]:
        objects = objects[1:]
    return objects


def csv_table(text: str) -> list[list[str]]:
    """The rows of parhash's csv output from the column row on (the ``#parhash-header``
    line before it dropped)."""
    import csv
    import io

    if text.startswith("#parhash-header "):
        text = text.split("\r\n", 1)[1]
    return list(csv.reader(io.StringIO(text, newline="")))


def evict_from_page_cache(path) -> None:
    """Drop one file (only) from the page cache, so the next read finds it cold: fsync,
    then POSIX_FADV_DONTNEED (never the machine's whole cache, which other runs share)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
