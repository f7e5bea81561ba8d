"""Issue 10, items 2, 5 and 6: the manifest header, and an audit that repeats the baseline.

- ``--update`` never thins the baseline: what this run did not reach (another selection, a
  subtree named as ROOT, an unreadable file or directory) is written back as it was; every
  algorithm, the path style and the header's options survive; what cannot be kept is
  refused with exit 2.
- The manifest records its selection and ``audit`` applies it (options override it).
- The manifest records the absolute root and the host; the recorded tree is audited from
  any directory.

Every run is a real ``python -m parhash`` process; permission cases run as user nobody
(``setpriv``); digests are computed here with hashlib and b3sum, never taken from parhash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import NOBODY, jsonl_records, run_cli, write_tree

TREE = {
    "a.txt": b"alpha\n",
    "big.bin": bytes(range(256)) * 16,  # 4 KiB: above --max-size 1K
    ".dot": b"hidden file\n",
    ".hid": {"h.txt": b"in a hidden directory\n"},
    "logs": {"x.log": b"log line\n"},
    "sub": {"c.txt": b"charlie\n", "deep": {"d.txt": b"delta\n"}},
    ".gitignore": b"*.log\n",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b3sum(path: Path) -> str:
    out = subprocess.run(["b3sum", "--no-names", path], capture_output=True, check=True)
    return out.stdout.decode().strip()


def scan(base: Path, *args: str, out: str = "m.jsonl", root: str = "tree") -> Path:
    result = run_cli("scan", "-q", "-j1", "-a", "sha256", root, "-o", out, *args, cwd=base)
    assert result.returncode == 0, result.stderr
    return base / out


def audit(base: Path | str, *args: str):
    return run_cli("audit", "-j1", "--no-progress", *args, cwd=base)


def manifest(path: Path) -> tuple[dict, dict[str, dict]]:
    """(header, {path: record}) of a jsonl manifest (header ``{}`` if it has none)."""
    data = path.read_bytes()
    header = json.loads(data.split(b"\n", 1)[0]).get("header", {})
    return header, {r["path"]: r for r in jsonl_records(data)}


def classes(result) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event in jsonl_records(result.stdout):
        found.setdefault(event["class"], set()).add(event["path"])
    return found


@pytest.fixture
def work():
    """A directory nobody can reach by its absolute path (tmp_path's ancestors are 0700,
    and the audit resolves the manifest's directory to write beside it)."""
    path = Path(tempfile.mkdtemp(prefix="parhash-baseline-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def as_nobody(base: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m parhash ARGS`` as uid/gid 65534 (root reads every file: a permission
    error is only seen without privileges); ``cwd`` is entered before the switch."""
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-m",
            "parhash",
            *args,
        ],
        cwd=base,
        capture_output=True,
        timeout=120,
    )


# -- item 2: --update never thins the baseline ---------------------------------------------

ALL = {
    "tree/a.txt",
    "tree/big.bin",
    "tree/.dot",
    "tree/.hid/h.txt",
    "tree/logs/x.log",
    "tree/sub/c.txt",
    "tree/sub/deep/d.txt",
    "tree/.gitignore",
}

#: audit arguments -> the manifest paths that run does not reach.
NARROWER = {
    "exclude": (("--exclude", "logs"), {"tree/logs/x.log"}),
    "exclude-from": (("--exclude-from", "globs"), {"tree/logs/x.log", "tree/big.bin"}),
    "max-depth": (
        ("--max-depth", "1"),
        ALL - {"tree/a.txt", "tree/big.bin", "tree/.dot", "tree/.gitignore"},
    ),
    "no-hidden": (("--no-hidden",), {"tree/.dot", "tree/.hid/h.txt", "tree/.gitignore"}),
    "max-size": (("--max-size", "1K"), {"tree/big.bin"}),
    "min-size": (("--min-size", "7"), {"tree/a.txt", "tree/sub/deep/d.txt", "tree/.gitignore"}),
    "gitignore": (("--gitignore",), {"tree/logs/x.log"}),
    "subtree-root": (("tree/sub",), ALL - {"tree/sub/c.txt", "tree/sub/deep/d.txt"}),
}


@pytest.mark.parametrize("case", list(NARROWER))
def test_update_keeps_what_this_run_does_not_reach(tmp_path, case):
    args, unreached = NARROWER[case]
    tree = write_tree(tmp_path / "tree", TREE)
    (tmp_path / "globs").write_text("logs\n# a comment\n*.bin\n")
    before_header, before = manifest(scan(tmp_path, "-f", "jsonl"))
    assert set(before) == ALL
    # One change inside every selection above, one outside most of them.
    (tree / "sub" / "c.txt").write_bytes(b"charlie, changed\n")
    (tree / "logs" / "x.log").write_bytes(b"log line, changed\n")
    result = audit(tmp_path, "m.jsonl", "--update", *args)
    assert result.returncode in (0, 1), result.stderr
    header, after = manifest(tmp_path / "m.jsonl")
    assert set(after) == ALL  # nothing dropped
    for path in unreached:  # exactly as it was: stale digests included
        assert after[path] == before[path], path
    for path in ALL - unreached:
        data = (tmp_path / path).read_bytes()
        assert after[path]["hash"] == sha256(data), path
    assert header["options"] == before_header["options"]
    assert header["roots"] == ["tree"] and header["algos"] == ["sha256"]
    if unreached:
        assert "--update kept" in result.stderr


def test_update_keeps_every_algorithm_and_the_relative_path_style(tmp_path):
    tree = write_tree(tmp_path / "tree", TREE)
    run = run_cli(
        "scan", "-q", "-j1", "-a", "sha256,blake3", "--relative", "-f", "jsonl", "tree",
        "-o", "m.jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (tree / "a.txt").write_bytes(b"alpha, changed\n")
    result = audit(tmp_path, "m.jsonl", "--update", "-e", "logs")
    assert result.returncode == 1, result.stderr
    header, after = manifest(tmp_path / "m.jsonl")
    assert header["algos"] == ["sha256", "blake3"] and header["relative"] is True
    assert set(after) == {p.removeprefix("tree/") for p in ALL}  # relative, as recorded
    for path, record in after.items():
        assert record["root"] == "tree"
        assert record["sha256"] == record["hash"] == sha256((tree / path).read_bytes())
        assert record["blake3"] == b3sum(tree / path), path


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_update_of_json_and_csv_keeps_header_options(tmp_path, fmt):
    tree = write_tree(tmp_path / "tree", TREE)
    scan(tmp_path, "-f", fmt, "-e", "*.log", "--max-depth", "2", out=f"m.{fmt}")
    (tree / "a.txt").write_bytes(b"alpha, changed\n")
    result = audit(tmp_path, f"m.{fmt}", "--update", "-e", "*.log", "-e", "big.bin")
    assert result.returncode == 1, result.stderr
    text = (tmp_path / f"m.{fmt}").read_text()
    if fmt == "json":
        doc = json.loads(text)
        header, records = doc["header"], doc["files"]
        assert doc["summary"]["files"] == len(records)
    else:
        first, rest = text.split("\n", 1)
        header = json.loads(first.removeprefix("#parhash-header "))
        lines = rest.splitlines()[1:]
        records = [{"path": line.split(",")[0], "hash": line.split(",")[4]} for line in lines]
    assert header["options"]["exclude"] == ["*.log"]
    assert header["options"]["max_depth"] == 2
    by_path = {r["path"]: r["hash"] for r in records}
    assert by_path["tree/a.txt"] == sha256(b"alpha, changed\n")
    assert by_path["tree/big.bin"] == sha256(TREE["big.bin"])  # kept, not dropped
    assert "tree/logs/x.log" not in by_path and "tree/sub/deep/d.txt" not in by_path


def test_unreadable_file_keeps_its_digest_and_corruption_is_caught_later(work):
    tree = write_tree(work / "tree", {"a.txt": b"alpha\n", "secret.bin": b"precious data\n"})
    scan(work, "-f", "jsonl")
    tree.chmod(0o777)
    (work / "m.jsonl").chmod(0o666)
    secret = tree / "secret.bin"
    secret.chmod(0o600)  # root's: nobody cannot read it
    st = secret.stat()
    updated = as_nobody(work, "audit", "-j1", "m.jsonl", "--update", "-f", "jsonl")
    stderr = updated.stderr.decode()
    assert updated.returncode == 1, stderr
    events = {e["path"]: e for e in jsonl_records(updated.stdout)}
    assert events["secret.bin"]["class"] == "unreadable"
    assert "previous digest of 1 file" in stderr
    _, after = manifest(work / "m.jsonl")
    assert after["tree/secret.bin"]["hash"] == sha256(b"precious data\n")
    assert after["tree/secret.bin"]["error"] is None
    # Silent corruption while it was unreadable: same size, same mtime.
    secret.write_bytes(b"PRECIOUS DATA\n")
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    secret.chmod(0o644)
    later = audit(work, "m.jsonl", "-f", "jsonl")
    assert later.returncode == 1, later.stderr
    assert classes(later) == {"corrupted": {"secret.bin"}}


def test_unlistable_directory_keeps_its_files(work):
    tree = write_tree(work / "tree", {"a.txt": b"a\n", "vault": {"x": b"x\n", "y": b"y\n"}})
    scan(work, "-f", "jsonl")
    _, before = manifest(work / "m.jsonl")
    tree.chmod(0o777)
    (work / "m.jsonl").chmod(0o666)
    (tree / "vault").chmod(0o700)
    result = as_nobody(work, "audit", "-j1", "m.jsonl", "--update", "-f", "jsonl")
    assert result.returncode == 1, result.stderr.decode()
    found = classes(result)
    assert found == {"unreadable": {"vault"}}  # not two files removed
    _, after = manifest(work / "m.jsonl")
    assert after["tree/vault/x"] == before["tree/vault/x"]
    assert after["tree/vault/y"] == before["tree/vault/y"]


REFUSED = {
    "sums manifest": ("sums", (), "sums file"),
    "wider exclude": ("jsonl", ("-e", "other"), "without -e logs"),
    "wider depth": ("jsonl", ("--max-depth", "3"), "--max-depth 3"),
    "hidden again": ("jsonl", ("--hidden",), "--hidden"),
    "follow links": ("jsonl", ("-L",), "-L"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_update_that_cannot_keep_everything_is_refused(tmp_path, case):
    fmt, args, words = REFUSED[case]
    write_tree(tmp_path / "tree", TREE)
    out = "m.sha256" if fmt == "sums" else "m.jsonl"
    scan_args = () if fmt == "sums" else ("-f", "jsonl", "-e", "logs", "-d", "2", "--no-hidden")
    target = scan(tmp_path, *scan_args, out=out)
    before = target.read_bytes()
    result = audit(tmp_path, out, "--update", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parhash: error: "), result.stderr
    assert words in lines[0]
    assert result.stdout == b""
    assert target.read_bytes() == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out, "tree"])


# -- item 5: the recorded selection is applied -----------------------------------------------

#: scan arguments -> (how the title names them, paths they leave out, what a new
#: logs/new.log of 12 bytes is then: added or not seen at all)
SELECTIONS = {
    "gitignore": (("--gitignore",), "--gitignore", {"logs/x.log"}, set()),
    "exclude": (
        ("-e", "logs", "-e", "*.bin"),
        "-e logs -e '*.bin'",
        {"logs/x.log", "big.bin"},
        set(),
    ),
    "min-size": (
        ("--min-size", "7"),
        "--min-size 7",
        {"a.txt", "sub/deep/d.txt", ".gitignore"},
        {"logs/new.log"},
    ),
    "max-depth": (
        ("--max-depth", "1"),
        "--max-depth 1",
        {"logs/x.log", "sub/c.txt", "sub/deep/d.txt", ".hid/h.txt"},
        set(),
    ),
    "no-hidden": (
        ("--no-hidden",),
        "--no-hidden",
        {".dot", ".gitignore", ".hid/h.txt"},
        {"logs/new.log"},
    ),
}


@pytest.mark.parametrize("case", list(SELECTIONS))
def test_recorded_selection_is_applied(tmp_path, case):
    args, flags, left_out, added = SELECTIONS[case]
    tree = write_tree(tmp_path / "tree", TREE)
    scan(tmp_path, "-f", "jsonl", *args)
    _, recorded = manifest(tmp_path / "m.jsonl")
    assert set(recorded) == {p for p in ALL if p.removeprefix("tree/") not in left_out}
    (tree / "logs" / "new.log").write_bytes(b"another log\n")
    machine = audit(tmp_path, "m.jsonl", "-f", "jsonl")
    assert machine.returncode == (1 if added else 0), machine.stderr
    assert classes(machine) == ({"added": added} if added else {})
    human = audit(tmp_path, "m.jsonl", "--color", "never")
    title = human.text.splitlines()[0]
    assert f"selection from the manifest: {flags}" in title, title


def test_options_on_audit_override_the_recorded_selection(tmp_path):
    write_tree(tmp_path / "tree", TREE)
    scan(tmp_path, "-f", "jsonl", "--gitignore", "--max-size", "1K")
    both = audit(tmp_path, "m.jsonl", "-f", "jsonl", "--max-size", "1M")
    assert both.returncode == 1, both.stderr
    assert classes(both) == {"added": {"big.bin"}}  # .log files still ignored
    human = audit(tmp_path, "m.jsonl", "--max-size", "1M", "--color", "never")
    title = human.text.splitlines()[0]
    assert "selection from the manifest: --gitignore" in title and "given: --max-size" in title


def test_audit_accepts_every_scan_selection_option(tmp_path):
    write_tree(tmp_path / "tree", TREE)
    scan(tmp_path, "-f", "jsonl")
    (tmp_path / "globs").write_text("logs\n")
    result = audit(
        tmp_path, "m.jsonl", "-f", "jsonl", "--gitignore", "--min-size", "1", "--max-size",
        "1G", "--max-depth", "9", "--hidden", "--exclude-from", "globs", "-e", "nothing",
        "-L", "-x",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert classes(result) == {}


# -- item 6: the recorded tree, wherever audit runs ----------------------------------------


def test_relative_root_audits_the_recorded_tree_from_another_directory(tmp_path):
    write_tree(tmp_path / "home" / "tree", {"a.txt": b"a\n", "b.txt": b"b\n"})
    scan(tmp_path / "home", "-f", "jsonl")
    decoy = write_tree(tmp_path / "elsewhere" / "tree", {"other.txt": b"not it\n"})
    result = audit(decoy.parent, "../home/m.jsonl", "-f", "jsonl", "-v")
    assert result.returncode == 0, result.stderr
    assert classes(result) == {"unchanged": {"a.txt", "b.txt"}}
    human = audit(decoy.parent, "../home/m.jsonl", "--color", "never")
    assert str(tmp_path / "home" / "tree") in human.text.splitlines()[0]
    # An explicit ROOT still wins: the decoy is a different tree.
    explicit = audit(decoy.parent, "../home/m.jsonl", "tree", "-f", "jsonl")
    assert classes(explicit) == {"removed": {"a.txt", "b.txt"}, "added": {"other.txt"}}


def test_header_records_absolute_root_and_host(tmp_path):
    write_tree(tmp_path / "tree", {"a.txt": b"a\n"})
    for fmt in ("jsonl", "csv", "json"):
        scan(tmp_path, "-f", fmt, out=f"m.{fmt}")
    jsonl_header = json.loads((tmp_path / "m.jsonl").read_text().split("\n", 1)[0])["header"]
    csv_first = (tmp_path / "m.csv").read_text().split("\n", 1)[0]
    csv_header = json.loads(csv_first.removeprefix("#parhash-header "))
    json_header = json.loads((tmp_path / "m.json").read_text())["header"]
    for header in (jsonl_header, csv_header, json_header):
        assert header["roots"] == ["tree"]
        assert header["roots_abs"] == [str(tmp_path / "tree")]
        assert header["host"] == socket.gethostname()
        assert header["options"]["exclude"] == [] and header["options"]["dedupe_links"]


def test_other_host_is_one_warning_and_the_audit_goes_on(tmp_path):
    write_tree(tmp_path / "tree", {"a.txt": b"a\n"})
    path = scan(tmp_path, "-f", "jsonl")
    first, rest = path.read_text().split("\n", 1)
    doc = json.loads(first)
    doc["header"]["host"] = "elsewhere.example"
    path.write_text(json.dumps(doc) + "\n" + rest)
    result = audit(tmp_path, "m.jsonl")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "elsewhere.example" in line]
    assert len(warnings) == 1 and warnings[0].startswith("parhash: warning: ")
    assert socket.gethostname() in warnings[0]


def test_missing_recorded_root_is_one_clear_line(tmp_path):
    write_tree(tmp_path / "home" / "tree", {"a.txt": b"a\n"})
    scan(tmp_path / "home", "-f", "jsonl")
    shutil.rmtree(tmp_path / "home" / "tree")
    write_tree(tmp_path / "other" / "tree", {"a.txt": b"a\n"})
    result = audit(tmp_path / "other", "../home/m.jsonl")
    assert result.returncode == 2
    assert result.stdout == b""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("parhash: error: ")
    assert str(tmp_path / "home" / "tree") in line and "ROOT" in line


def test_header_less_manifest_audits_as_before(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.txt": b"a\n", "b.txt": b"b\n"})
    path = scan(tmp_path, "-f", "jsonl")
    first, rest = path.read_text().split("\n", 1)
    if "header" in json.loads(first):
        path.write_text(rest)  # a version-1 jsonl: no header
    (tree / "b.txt").write_bytes(b"bb\n")
    result = audit(tmp_path, "m.jsonl", "-f", "jsonl")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {"modified": {"b.txt"}}


@pytest.mark.parametrize(
    "args", [("-e", "sub/deep"), ("--max-depth", "2"), ("--gitignore",)], ids=str
)
def test_subtree_root_counts_the_recorded_selection_from_the_recorded_root(tmp_path, args):
    tree = write_tree(tmp_path / "tree", TREE)
    (tree / ".gitignore").write_bytes(b"*.log\ndeep/\n")  # a parent's rule for the subtree
    scan(tmp_path, "-f", "jsonl", *args)
    _, recorded = manifest(tmp_path / "m.jsonl")
    assert "tree/sub/deep/d.txt" not in recorded
    (tree / "sub" / "c.txt").write_bytes(b"charlie, changed\n")
    result = audit(tmp_path, "m.jsonl", "tree/sub", "-f", "jsonl", "--update")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {"modified": {"sub/c.txt"}}  # deep/d.txt is not 'added'
    _, after = manifest(tmp_path / "m.jsonl")
    assert set(after) == set(recorded)
    assert after["tree/sub/c.txt"]["hash"] == sha256(b"charlie, changed\n")


DAMAGED = {
    "roots_abs not a list": ("roots_abs", "tree"),
    "max_depth a string": ("options", {"max_depth": "2"}),
    "exclude not globs": ("options", {"exclude": [1]}),
    "unknown algorithm": ("algo", "md6"),
    "newer version": ("version", 99),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_header_is_one_line_naming_line_1(tmp_path, case):
    key, value = DAMAGED[case]
    write_tree(tmp_path / "tree", {"a.txt": b"a\n"})
    path = scan(tmp_path, "-f", "jsonl")
    first, rest = path.read_text().split("\n", 1)
    doc = json.loads(first)
    if key == "options":
        doc["header"]["options"].update(value)
    else:
        doc["header"][key] = value
    path.write_text(json.dumps(doc) + "\n" + rest)
    result = audit(tmp_path, "m.jsonl")
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("parhash: error: m.jsonl:1: "), line


def test_json_report_names_the_selection_applied(tmp_path):
    write_tree(tmp_path / "tree", TREE)
    scan(tmp_path, "-f", "jsonl", "-e", "logs")
    result = audit(tmp_path, "m.jsonl", "-f", "json", "--max-depth", "1")
    assert result.returncode == 0, result.stderr
    selection = json.loads(result.stdout)["audit"]["selection"]
    assert selection["exclude"] == ["logs"] and selection["max_depth"] == 1


def test_root_naming_one_of_several_roots_audits_only_that_one(tmp_path):
    write_tree(tmp_path / "a", {"x": b"x\n"})
    b = write_tree(tmp_path / "b", {"y": b"y\n"})
    run = run_cli(
        "scan", "-q", "-j1", "-a", "sha256", "-f", "jsonl", "a", "b", "-o", "m.jsonl", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    _, before = manifest(tmp_path / "m.jsonl")
    (tmp_path / "a" / "x").write_bytes(b"x, changed\n")
    (b / "y").write_bytes(b"y, changed\n")  # not audited this time
    result = audit(tmp_path, "m.jsonl", "a", "-f", "jsonl", "--update")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {"modified": {"a/x"}}
    header, after = manifest(tmp_path / "m.jsonl")
    assert header["roots"] == ["a", "b"]
    assert after["a/x"]["hash"] == sha256(b"x, changed\n")
    assert after["b/y"] == before["b/y"]
