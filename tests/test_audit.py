"""Tests of ``parhash audit``: a real tree in tmp_path, a manifest taken with ``parhash scan``,
then the tree changed by the test, then the audit.

What each class must contain comes from what the test did to the tree; digests are computed
here with xxhash/hashlib, never taken from an earlier parhash run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import xxhash
from conftest import run_cli, write_tree

from parhash.layout import MANIFEST_VERSION

CHANGE_CLASSES = ("added", "removed", "modified", "corrupted", "moved", "unreadable")


def xxh3(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def scan(base: Path, *args: str, root: str = "tree", fmt: str = "jsonl", out: str = "m.jsonl"):
    result = run_cli("scan", "-q", "-j1", root, "-f", fmt, "-o", out, *args, cwd=base)
    assert result.returncode == 0, result.stderr
    return base / out


def audit(base: Path, *args: str, fmt: str | None = None):
    extra = ["-f", fmt] if fmt else []
    return run_cli("audit", "-j1", *extra, *args, cwd=base)


def run_all(base: Path, calls: dict) -> dict:
    """Run independent ``parhash ARGS`` calls concurrently (each is mostly start-up time)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run_cli, *args, cwd=base) for key, args in calls.items()}
        return {key: future.result() for key, future in futures.items()}


def events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def classes(result) -> dict[str, set[str]]:
    """{class: {path, ...}} of a ``-f jsonl`` audit."""
    out: dict[str, set[str]] = {}
    for event in events(result):
        out.setdefault(event["class"], set()).add(event["path"])
    return out


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def rewrite_same_size(path: Path) -> tuple[bytes, bytes]:
    """Flip every byte of the file in place and give it back its mtime (bit rot)."""
    st = path.stat()
    old = path.read_bytes()
    new = bytes(b ^ 0xFF for b in old)
    with open(path, "r+b") as f:
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    return old, new


# -- every class, one tree ------------------------------------------------------------------

ORIGINAL = {
    "keep.txt": b"unchanged content\n",
    "gone.txt": b"this file will be removed\n",
    "grow.txt": b"short\n",
    "rot.bin": random.Random(11).randbytes(4096),
    "d1": {"moveme.dat": b"content that moves to another directory\n"},
    "d2": {"stay.txt": b"stays where it is\n"},
    "empty": b"",
}
GROWN = b"this file is now much longer than it was\n"
FRESH = b"a file that was not there\n"


@pytest.fixture(scope="module")
def changed(tmp_path_factory):
    """A tree with one change of each class since its jsonl manifest; audits only read it."""
    base = tmp_path_factory.mktemp("changed")
    tree = write_tree(base / "tree", ORIGINAL)
    t0 = 1_600_000_000_123_456_789  # every file gets a known mtime before the manifest
    for dirpath, _, names in os.walk(tree):
        for name in names:
            set_mtime(Path(dirpath) / name, t0)
    scan(base)
    (tree / "gone.txt").unlink()
    (tree / "grow.txt").write_bytes(GROWN)
    old_rot, new_rot = rewrite_same_size(tree / "rot.bin")
    os.rename(tree / "d1" / "moveme.dat", tree / "d2" / "moved.dat")
    (tree / "fresh.txt").write_bytes(FRESH)
    os.mkfifo(tree / "pipe")
    results = run_all(
        base,
        {
            "verbose": ("audit", "-j1", "m.jsonl", "-f", "jsonl", "--verbose"),
            "jsonl": ("audit", "-j1", "m.jsonl", "-f", "jsonl"),
            "json": ("audit", "-j1", "m.jsonl", "-f", "json"),
            "human": ("audit", "-j1", "m.jsonl", "--color", "never"),
        },
    )
    return t0, old_rot, new_rot, results


EXPECTED = {
    "added": {"fresh.txt"},
    "removed": {"gone.txt"},
    "modified": {"grow.txt"},
    "corrupted": {"rot.bin"},
    "moved": {os.path.join("d2", "moved.dat")},
    "unreadable": {"pipe"},
    "unchanged": {"keep.txt", os.path.join("d2", "stay.txt"), "empty"},
}


def test_every_class_reported_exactly(changed):
    t0, old_rot, new_rot, results = changed
    result = results["verbose"]
    assert result.returncode == 1, result.stderr
    assert classes(result) == EXPECTED
    by_path = {e["path"]: e for e in events(result)}
    assert len(by_path) == len(events(result))  # each path exactly once

    moved = by_path[os.path.join("d2", "moved.dat")]
    assert moved["from"] == os.path.join("d1", "moveme.dat")
    data = ORIGINAL["d1"]["moveme.dat"]
    assert moved["old"]["hash"] == moved["new"]["hash"] == xxh3(data)
    assert moved["new"]["size"] == len(data)

    rot = by_path["rot.bin"]
    assert rot["old"]["hash"] == xxh3(old_rot) and rot["new"]["hash"] == xxh3(new_rot)
    assert rot["old"]["size"] == rot["new"]["size"] == 4096
    assert rot["old"]["mtime"] == rot["new"]["mtime"] == t0

    grow = by_path["grow.txt"]
    assert (grow["old"]["size"], grow["new"]["size"]) == (len(ORIGINAL["grow.txt"]), len(GROWN))
    assert grow["new"]["hash"] == xxh3(GROWN)

    assert by_path["gone.txt"]["new"] is None
    assert by_path["gone.txt"]["old"]["hash"] == xxh3(ORIGINAL["gone.txt"])
    assert by_path["fresh.txt"]["old"] is None
    assert by_path["fresh.txt"]["new"]["hash"] == xxh3(FRESH)
    pipe = by_path["pipe"]
    assert pipe["new"]["hash"] is None and "FIFO" in pipe["new"]["error"]


def test_unchanged_listed_only_with_verbose(changed):
    result = changed[-1]["jsonl"]
    assert result.returncode == 1
    expected = {k: v for k, v in EXPECTED.items() if k != "unchanged"}
    assert classes(result) == expected


def test_json_is_one_document_with_counts(changed):
    result = changed[-1]["json"]
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    counts = doc["audit"]["counts"]
    assert counts == {k: len(v) for k, v in EXPECTED.items()}
    got: dict[str, set[str]] = {}
    for change in doc["changes"]:
        got.setdefault(change["class"], set()).add(change["path"])
    assert got == {k: v for k, v in EXPECTED.items() if k != "unchanged"}


def test_human_report_counts_then_classes(changed):
    result = changed[-1]["human"]
    assert result.returncode == 1
    lines = result.text.splitlines()
    assert lines[0].startswith("parhash audit of tree against m.jsonl")
    head = re.fullmatch(r"(\d+) changes: (.*)", lines[1])
    assert head, lines[1]
    assert int(head.group(1)) == 6
    assert sorted(head.group(2).split(", ")) == sorted(f"1 {c}" for c in CHANGE_CLASSES)
    assert lines[2] == "3 unchanged"
    for kind in CHANGE_CLASSES:
        (path,) = EXPECTED[kind]
        (at,) = [i for i, line in enumerate(lines) if line.startswith(f"{kind} (1)")]
        assert lines[at + 1].split()[0] == path, lines[at : at + 2]
    moved_at = next(i for i, line in enumerate(lines) if line.startswith("moved (1)"))
    assert "(from d1/moveme.dat)" in lines[moved_at + 1]
    assert not any(line.startswith("unchanged (") for line in lines)
    assert "\x1b[" not in result.text


# -- unchanged trees, other roots -----------------------------------------------------------

SMALL = {
    "a.txt": b"alpha\n",
    "b.bin": random.Random(5).randbytes(20_000),
    "sub": {"c.txt": b"charlie\n", "deeper": {"d": b"delta"}},
    "with space.txt": b"space",
}


def test_unchanged_tree(make_tree, tmp_path):
    make_tree(SMALL)
    scan(tmp_path)
    result = audit(tmp_path, "m.jsonl")
    assert result.returncode == 0, result.stderr
    lines = result.text.splitlines()
    assert lines[1] == "0 changes"
    assert lines[2] == "5 unchanged"


def test_explicit_root_audits_a_copy(make_tree, tmp_path):
    tree = make_tree(SMALL)
    scan(tmp_path)
    shutil.copytree(tree, tmp_path / "elsewhere" / "copy", copy_function=shutil.copy2)
    shutil.rmtree(tree)
    result = audit(tmp_path, "m.jsonl", "elsewhere/copy", "-v", fmt="jsonl")
    assert result.returncode == 0, result.stderr
    assert classes(result) == {
        "unchanged": {"a.txt", "b.bin", "sub/c.txt", "sub/deeper/d", "with space.txt"}
    }


def test_non_utf8_name(make_tree, tmp_path):
    make_tree({b"caf\xe9.txt": b"latin-1 name", "plain": b"p"})
    scan(tmp_path)
    result = audit(tmp_path, "m.jsonl")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.text.splitlines()[1] == "0 changes"


# -- --fail-on ------------------------------------------------------------------------------


FAIL_ON = {None: 1, "added": 0, "none": 0, "modified": 1, "added,modified": 1}


@pytest.fixture(scope="module")
def modified_only(tmp_path_factory):
    """A tree whose only change is a modification, audited with each --fail-on."""
    base = tmp_path_factory.mktemp("modified_only")
    write_tree(base / "tree", SMALL)
    scan(base)
    (base / "tree" / "a.txt").write_bytes(b"alpha, and more\n")
    audit_jsonl = ("audit", "-j1", "m.jsonl", "-f", "jsonl")
    calls = {f: (*audit_jsonl, *(["--fail-on", f] if f else [])) for f in FAIL_ON}
    calls["unknown"] = ("audit", "-j1", "m.jsonl", "--fail-on", "added,bogus")
    return run_all(base, calls)


@pytest.mark.parametrize("fail_on", list(FAIL_ON))
def test_fail_on(modified_only, fail_on):
    result = modified_only[fail_on]
    assert classes(result) == {"modified": {"a.txt"}}
    assert result.returncode == FAIL_ON[fail_on], result.stderr


def test_fail_on_unknown_class(modified_only):
    result = modified_only["unknown"]
    assert result.returncode == 2
    assert "bogus" in result.stderr
    assert result.stdout == b""


# -- --update, --exclude --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_update_rewrites_manifest(make_tree, tmp_path, fmt):
    tree = make_tree(SMALL)
    manifest = scan(tmp_path, fmt=fmt, out=f"m.{fmt}")
    inode = manifest.stat().st_ino
    (tree / "a.txt").write_bytes(b"changed\n")
    (tree / "sub" / "c.txt").unlink()
    (tree / "new.txt").write_bytes(b"new\n")
    first = audit(tmp_path, manifest.name, "--update", fmt="jsonl")
    assert first.returncode == 1, first.stderr
    assert classes(first) == {"modified": {"a.txt"}, "removed": {"sub/c.txt"}, "added": {"new.txt"}}
    assert manifest.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [manifest.name, "tree"]  # no temp left
    text = manifest.read_text()
    assert xxh3(b"changed\n") in text and xxh3(b"new\n") in text
    assert xxh3(SMALL["a.txt"]) not in text
    second = audit(tmp_path, manifest.name)
    assert second.returncode == 0, second.stderr
    assert second.text.splitlines()[1] == "0 changes"


def test_exclude(make_tree, tmp_path):
    tree = make_tree({**SMALL, "logs": {"old.log": b"old log\n"}, "x.tmp": b"tmp"})
    scan(tmp_path)
    (tree / "logs" / "old.log").unlink()
    (tree / "logs" / "new.log").write_bytes(b"new log\n")
    (tree / "x.tmp").unlink()
    (tree / "sub" / "y.tmp").write_bytes(b"another tmp")
    (tree / "sub" / "c.txt").write_bytes(b"charlie was modified\n")
    audit_jsonl = ("audit", "-j1", "m.jsonl", "-f", "jsonl")
    results = run_all(
        tmp_path,
        {
            "excluded": (*audit_jsonl, "--exclude", "logs", "--exclude", "*.tmp"),
            "all": audit_jsonl,
        },
    )
    assert classes(results["excluded"]) == {"modified": {"sub/c.txt"}}
    assert results["excluded"].returncode == 1
    assert classes(results["all"]) == {  # the exclusions did hide changes
        "modified": {"sub/c.txt"},
        "removed": {"logs/old.log", "x.tmp"},
        "added": {"logs/new.log", "sub/y.tmp"},
    }


# -- other manifest formats -----------------------------------------------------------------


def change_for_formats(tree: Path) -> None:
    rewrite_same_size(tree / "b.bin")
    (tree / "sub" / "c.txt").unlink()
    (tree / "added.txt").write_bytes(b"added\n")


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_json_and_csv_manifests(make_tree, tmp_path, fmt):
    tree = make_tree(SMALL)
    scan(tmp_path, fmt=fmt, out=f"manifest.{fmt}")
    change_for_formats(tree)
    result = audit(tmp_path, f"manifest.{fmt}", fmt="jsonl")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {
        "corrupted": {"b.bin"},
        "removed": {"sub/c.txt"},
        "added": {"added.txt"},
    }


def test_parhash_sums_manifest(make_tree, tmp_path):
    tree = make_tree(SMALL)
    scanned = run_cli("scan", "-q", "-j1", "-a", "sha256", "tree", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "x.sha256").write_bytes(scanned.stdout)
    change_for_formats(tree)
    result = audit(tmp_path, "x.sha256", "-v", fmt="jsonl")
    assert result.returncode == 1, result.stderr
    found = classes(result)
    assert found == {  # no size or mtime in a sums file: a same-size change is 'modified'
        "modified": {"b.bin"},
        "removed": {"sub/c.txt"},
        "added": {"added.txt"},
        "unchanged": {"a.txt", "sub/deeper/d", "with space.txt"},
    }
    (b_event,) = [e for e in events(result) if e["path"] == "b.bin"]
    assert b_event["new"]["hash"] == hashlib.sha256((tree / "b.bin").read_bytes()).hexdigest()


def test_sha256sum_manifest(make_tree, tmp_path):
    exe = shutil.which("sha256sum")
    if exe is None:
        pytest.skip("sha256sum is not installed")
    tree = make_tree(SMALL)
    files = sorted(
        os.path.relpath(os.path.join(d, n), tmp_path) for d, _, ns in os.walk(tree) for n in ns
    )
    made = subprocess.run([exe, *files], cwd=tmp_path, capture_output=True, check=True)
    (tmp_path / "list.txt").write_bytes(made.stdout)
    change_for_formats(tree)
    os.rename(tree / "with space.txt", tree / "sub" / "renamed.txt")
    result = audit(tmp_path, "list.txt", "-a", "sha256", fmt="jsonl")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {
        "modified": {"b.bin"},
        "removed": {"sub/c.txt"},
        "added": {"added.txt"},
        "moved": {"sub/renamed.txt"},
    }
    (moved,) = [e for e in events(result) if e["class"] == "moved"]
    assert moved["from"] == "with space.txt"


# -- manifests that cannot be trusted -------------------------------------------------------


def make_manifests(base: Path) -> None:
    """good.jsonl, good.json and good.csv of the same tree, to be broken."""
    write_tree(base / "tree", SMALL)
    scans = run_all(
        base,
        {
            fmt: ("scan", "-q", "-j1", "tree", "-f", fmt, "-o", f"good.{fmt}")
            for fmt in ("jsonl", "json", "csv")
        },
    )
    for result in scans.values():
        assert result.returncode == 0, result.stderr


def _truncated_jsonl(base: Path) -> bytes:
    data = (base / "good.jsonl").read_bytes()
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2]


def _bad_json_line(base: Path) -> bytes:
    lines = (base / "good.jsonl").read_bytes().splitlines(keepends=True)
    return b"".join([lines[0], b'{"path": "tree/x", "size": \n', *lines[1:]])


def _missing_key(base: Path) -> bytes:
    lines = (base / "good.jsonl").read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    del record["hash"]
    return b"".join([lines[0], json.dumps(record).encode() + b"\n", *lines[2:]])


def _json_before_summary(base: Path) -> bytes:
    lines = (base / "good.json").read_bytes().splitlines(keepends=True)
    assert lines[-1].startswith(b'"summary"')
    return b"".join(lines[:4])  # header, "files": [, two records; cut at a line end


def _json_version_99(base: Path) -> bytes:
    data = (base / "good.json").read_bytes()
    current = f'"manifest_version": {MANIFEST_VERSION},'.encode()
    assert data.count(current) == 1
    return data.replace(current, b'"manifest_version": 99,')


def _csv_bad_size(base: Path) -> bytes:
    lines = (base / "good.csv").read_bytes().splitlines(keepends=True)
    cells = lines[2].split(b",")
    cells[1] = b"12x"
    return b"".join([lines[0], lines[1], b",".join(cells), *lines[3:]])


#: name -> (make the bad manifest, line the message must name (None: no line to name),
#:          words the message must contain)
BROKEN = {
    "truncated.jsonl": (_truncated_jsonl, 3, "incomplete"),
    "bad-line.jsonl": (_bad_json_line, 2, "JSON"),
    "missing-key.jsonl": (_missing_key, 2, "'hash'"),
    "truncated.json": (_json_before_summary, 4, "summary"),
    "version99.json": (_json_version_99, 1, "99"),
    "bad-size.csv": (_csv_bad_size, 3, "size"),
    # header-less and empty: nothing names the tree, so ROOT is asked for
    "empty.jsonl": (lambda base: b"", None, "ROOT"),
}


@pytest.fixture(scope="module")
def broken_audits(tmp_path_factory):
    """Each broken manifest, made from good ones, and the audit of it."""
    base = tmp_path_factory.mktemp("manifests")
    make_manifests(base)
    for name, (make, _, _) in BROKEN.items():
        (base / name).write_bytes(make(base))
    return run_all(base, {name: ("audit", "-j1", name) for name in BROKEN})


@pytest.mark.parametrize("name", list(BROKEN))
def test_malformed_manifest(broken_audits, name):
    _, line, words = BROKEN[name]
    result = broken_audits[name]
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    assert "Traceback" not in result.stderr
    lines = [text for text in result.stderr.splitlines() if text.strip()]
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    if line is None:
        assert f"{name}:" in lines[0]
    else:
        located = re.search(rf"{re.escape(name)}:(\d+)", lines[0])
        assert located, f"no line number in: {lines[0]}"
        # the line where the problem is (truncation: the last line, or the one after it)
        assert int(located.group(1)) in (line, line + 1), lines[0]
