"""Property tests: random trees with hostile names and random contents, hashed by parhash and
checked against hashlib; every output format parses back to the same records; sums files
verify with ``check``; ``audit`` sees no change in an unchanged tree and exactly the one
file a test changed.

Each example builds its tree in a fresh ``tempfile.mkdtemp`` directory, removed afterwards.
Library properties get many examples; CLI properties (~0.5 s per run) get a few.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from conftest import CliResult, csv_table, jsonl_records, run_cli
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import parhash

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
LIBRARY = settings(max_examples=50, deadline=None, suppress_health_check=HEALTH)
LIBRARY_POOL = settings(max_examples=6, deadline=None, suppress_health_check=HEALTH)
CLI = settings(max_examples=6, deadline=None, suppress_health_check=HEALTH)

# --------------------------------------------------------------------------- strategies

#: Characters that break naive parsers of sums, csv, json or lines.
NASTY = [" ", "\\", "\n", "\r", "\t", "-", "é", "日", "😀", "\u2028", "\x85", '"', ",", "*", "#"]
NASTY += ["\x1b", "\x7f", "\u202e", ".", "(", ") = ", "  "]


def _usable(name: bytes) -> bool:
    return (
        0 < len(name) <= 100
        and name not in (b".", b"..")
        and b"/" not in name
        and b"\0" not in name
    )


text_names = st.lists(
    st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8", exclude_characters="/\0")),
    min_size=1,
    max_size=10,
).map(lambda parts: "".join(parts).encode())
#: Raw bytes, 0x80-0xff included: names that are not UTF-8 (os.fsdecode keeps them).
byte_names = st.binary(min_size=1, max_size=12).map(
    lambda b: b.replace(b"/", b"\xaf").replace(b"\0", b"\x80")
)
fixed_names = st.sampled_from([b"-", b"-rf", b" ", b"  ", b"\\", b"a\nb", b"\r", b"\xff", b"..."])
names = st.one_of(text_names, byte_names, fixed_names).filter(_usable)

contents = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda size, seed: random.Random(seed).randbytes(size),
        st.integers(0, 70_000),
        st.integers(0, 2**32 - 1),
    ),
)

#: A tree: {name: bytes (a file) or dict (a directory)}, random depth and fan-out.
trees = st.recursive(
    st.dictionaries(names, contents, max_size=5),
    lambda children: st.dictionaries(names, st.one_of(contents, children), max_size=5),
    max_leaves=15,
)

# --------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(directory: bytes, tree: dict) -> dict[bytes, bytes]:
    """Create ``tree`` below ``directory``; {path relative to it: content} of every file."""
    files: dict[bytes, bytes] = {}
    for name, value in tree.items():
        path = directory + b"/" + name
        if isinstance(value, dict):
            os.mkdir(path)
            files.update({name + b"/" + rel: data for rel, data in build(path, value).items()})
        else:
            with open(path, "wb") as f:
                f.write(value)
            files[name] = value
    return files


@contextmanager
def built(tree: dict) -> Iterator[tuple[str, bytes, dict[bytes, bytes]]]:
    """(scratch directory, tree root as bytes, {relative path: content}); removed after."""
    scratch = tempfile.mkdtemp(prefix="parhash-prop-")
    try:
        root = os.fsencode(os.path.join(scratch, "tree"))
        os.mkdir(root)
        yield scratch, root, build(root, tree)
    finally:
        shutil.rmtree(scratch)


def expected_records(root: bytes, files: dict[bytes, bytes]) -> dict[bytes, tuple[int, str]]:
    return {root + b"/" + rel: (len(data), sha256(data)) for rel, data in files.items()}


def library_records(root: bytes, jobs: int) -> dict[bytes, tuple[int, str]]:
    records = list(parhash.scan([os.fsdecode(root)], algo="sha256", jobs=jobs))
    assert [r.error for r in records if r.error] == []
    got = {os.fsencode(r.path): (r.size, r.digest) for r in records}
    assert len(got) == len(records), "a file was listed twice"
    return got


def run_all(calls: dict[str, tuple], cwd: str) -> dict[str, CliResult]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(run_cli, *args, cwd=cwd, timeout=60) for k, args in calls.items()}
        return {k: f.result() for k, f in futures.items()}


def assert_clean(result: CliResult, code: int = 0) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr


def jsonl_lines(data: bytes) -> list[dict]:
    """Split on b"\\n" only: names may hold U+2028 or U+0085 (str.splitlines splits those)."""
    assert data == b"" or data.endswith(b"\n")
    return jsonl_records(data)


def parsed(fmt: str, path: str) -> list[tuple[bytes, int, str]]:
    """(path bytes, size, hash) of every record of a jsonl, csv or json output file."""
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            header, *rows = csv_table(f.read())
        col = {name: i for i, name in enumerate(header)}
        return [(os.fsencode(r[col["path"]]), int(r[col["size"]]), r[col["hash"]]) for r in rows]
    with open(path, "rb") as f:
        data = f.read()
    records = jsonl_lines(data) if fmt == "jsonl" else json.loads(data)["files"]
    return [(os.fsencode(r["path"]), r["size"], r["hash"]) for r in records]


# --------------------------------------------------------------------------- library


@LIBRARY
@given(tree=trees)
def test_library_scan_hashes_every_file_once(tree):
    with built(tree) as (_scratch, root, files):
        assert library_records(root, jobs=1) == expected_records(root, files)


@LIBRARY_POOL
@given(tree=trees)
def test_library_scan_with_a_process_pool(tree):
    with built(tree) as (_scratch, root, files):
        assert library_records(root, jobs=2) == expected_records(root, files)


# --------------------------------------------------------------------------- CLI


@CLI
@given(tree=trees)
def test_jsonl_csv_and_json_parse_back_to_the_same_records(tree):
    with built(tree) as (scratch, root, files):
        formats = ("jsonl", "csv", "json")
        runs = run_all(
            {
                fmt: ("scan", "-q", "-j1", "-a", "sha256", "-f", fmt, root, "-o", f"out.{fmt}")
                for fmt in formats
            },
            cwd=scratch,
        )
        expected = {
            (path, size, digest) for path, (size, digest) in expected_records(root, files).items()
        }
        for fmt in formats:
            assert_clean(runs[fmt])
            rows = parsed(fmt, os.path.join(scratch, f"out.{fmt}"))
            assert len(rows) == len(files), fmt
            assert set(rows) == expected, fmt


@CLI
@given(tree=trees)
def test_sums_then_check_round_trip(tree):
    with built(tree) as (scratch, root, files):
        taken = run_cli("scan", "-q", "-j1", "-a", "sha256", root, "-o", "SHA256SUMS", cwd=scratch)
        assert_clean(taken)
        with open(os.path.join(scratch, "SHA256SUMS"), "rb") as f:
            assert f.read().count(b"\n") == len(files)
        result = run_cli("check", "-j1", "SHA256SUMS", cwd=scratch, timeout=60)
        if not files:  # coreutils: a checksum file without a line is a failure
            assert_clean(result, 1)
            assert result.stdout == b""
            return
        assert_clean(result)
        lines = result.stdout.split(b"\n")
        assert lines.pop() == b""
        assert len(lines) == len(files)
        assert [line for line in lines if not line.endswith(b": OK")] == []


@CLI
@given(
    tree=trees,
    pick=st.integers(0, 10**6),
    same_size=st.booleans(),
    keep_mtime=st.booleans(),
)
def test_audit_sees_nothing_then_exactly_the_changed_file(tree, pick, same_size, keep_mtime):
    with built(tree) as (scratch, root, files):
        assume(files)
        taken = run_cli(
            "scan", "-q", "-j1", "-a", "sha256", "-f", "jsonl", root, "-o", "m.jsonl", cwd=scratch
        )
        assert_clean(taken)
        unchanged = run_cli("audit", "-j1", "-f", "jsonl", "m.jsonl", cwd=scratch)
        assert_clean(unchanged)
        assert unchanged.stdout == b""

        rel = sorted(files)[pick % len(files)]
        path = root + b"/" + rel
        old = files[rel]
        before = os.stat(path)
        new = bytes(b ^ 0xFF for b in old) if same_size and old else old + b"\0changed"
        with open(path, "r+b") as f:
            f.write(new)
        if keep_mtime:
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        same_stat = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

        result = run_cli("audit", "-j1", "-f", "jsonl", "m.jsonl", cwd=scratch)
        assert_clean(result, 1)
        events = jsonl_lines(result.stdout)
        assert [(e["class"], os.fsencode(e["path"])) for e in events] == [
            ("corrupted" if same_stat else "modified", rel)
        ]
        assert events[0]["new"]["hash"] == sha256(new)
        assert events[0]["old"]["hash"] == sha256(old)
