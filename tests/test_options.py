"""The scan/check/audit options, end to end through the real CLI (``python -m parhash``).

Every digest is compared with an independent implementation: hashlib / xxhash / blake3 in
this process, or the real peer tools (sha256sum, md5sum, xxhsum). Trees are built in
tmp_path; nothing here asserts on timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import random
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import xxhash
from conftest import csv_table, files_below, jsonl_records, run_cli, write_tree

KEYS = ["path", "size", "mtime", "algo", "hash", "error", "root"]

REFERENCE = {
    "sha256": lambda b: hashlib.sha256(b).hexdigest(),
    "md5": lambda b: hashlib.md5(b).hexdigest(),
    "xxh3": lambda b: xxhash.xxh3_64_hexdigest(b),
}

SUMMARY = re.compile(
    r"parhash: hashed (?P<files>[\d,]+) files?, [\d.]+ (?:B|kB|MB|GB|TB) in "
    r"[\d.]+ s \([\d.]+ (?:B|kB|MB|GB|TB)/s\), (?P<errors>[\d,]+) errors?"
)


# -- helpers ------------------------------------------------------------------------------


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed")
    return path


def jsonl(result) -> list[dict]:
    return jsonl_records(result.stdout)  # strict: JSON text must be valid UTF-8


def by_path(records: list[dict], strip: str = "") -> dict[bytes, dict]:
    """Records keyed by their path's exact bytes (minus ``strip``), no duplicates."""
    out: dict[bytes, dict] = {}
    for record in records:
        raw = os.fsencode(record["path"])
        assert raw.startswith(os.fsencode(strip)), raw
        key = raw[len(os.fsencode(strip)) :]
        assert key not in out, f"two records for {key!r}"
        out[key] = record
    return out


def assert_digests(records: dict[bytes, dict], contents: dict[bytes, bytes], algo: str) -> None:
    """Exactly the files of ``contents``, each with the right size and digest."""
    assert set(records) == set(contents)
    for name, record in records.items():
        assert record["error"] is None, (name, record)
        assert record["algo"] == algo
        assert record["size"] == len(contents[name]), name
        assert record["hash"] == REFERENCE[algo](contents[name]), name


def scanned(result, root: str = "tree/") -> set[bytes]:
    """Paths (relative to ``root``) of the records of a successful jsonl scan."""
    assert result.returncode == 0, result.stderr
    return set(by_path(jsonl(result), root))


def unescape_coreutils(line: bytes) -> tuple[bytes, bytes]:
    """(path, digest) of a ``hex  name`` line as sha256sum writes it."""
    escaped = line.startswith(b"\\")
    if escaped:
        line = line[1:]
    digest, _, name = line.partition(b"  ")
    if escaped:
        out, i = bytearray(), 0
        while i < len(name):
            if name[i : i + 1] == b"\\":
                out += {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}[name[i + 1 : i + 2]]
                i += 2
            else:
                out += name[i : i + 1]
                i += 1
        name = bytes(out)
    return name, digest


# -- --files-from / -0 ----------------------------------------------------------------------

#: Names a newline-separated list can carry (everything but a newline).
LINE_SAFE = {
    "with space.txt": b"space",
    " lead and trail ": b"spaces around",
    "back\\slash": b"backslash",
    b"bad-\xff\xfe.bin": b"not utf-8",
    "unicod\u00e9.txt": "\u00fcn\u00efc\u00f8d\u00e9".encode(),
    "empty": b"",
    "sub": {"deep.txt": b"deep", "also-deep.txt": b"not listed"},
    "unlisted.txt": b"never listed",
}
LISTED_LINES = [b"with space.txt", b" lead and trail ", b"back\\slash", b"bad-\xff\xfe.bin"]
LISTED_LINES += ["unicod\u00e9.txt".encode(), b"empty", b"sub/deep.txt"]


def listed_contents(tree: Path, names: list[bytes]) -> dict[bytes, bytes]:
    contents = {}
    for name in names:
        with open(os.path.join(os.fsencode(tree), name), "rb") as f:
            contents[name] = f.read()
    return contents


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_files_from_newline_list_hashes_exactly_the_listed_paths(make_tree, tmp_path, source):
    tree = make_tree(LINE_SAFE)
    listing = b"\n".join(LISTED_LINES) + b"\n\n"  # a blank line is no path
    if source == "file":
        (tmp_path / "list.txt").write_bytes(listing)
        result = run_cli(
            "scan", "-j1", "-a", "sha256", "-f", "jsonl", "-T", "../list.txt", cwd=tree
        )
    else:
        result = run_cli(
            "scan", "-j1", "-a", "sha256", "-f", "jsonl", "--files-from", "-", cwd=tree,
            input=listing,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = by_path(jsonl(result))
    assert_digests(records, listed_contents(tree, LISTED_LINES), "sha256")
    assert b"unlisted.txt" not in records and b"sub/also-deep.txt" not in records


#: Names only a NUL-separated list can carry.
NUL_NAMES = {
    "new\nline.txt": b"newline",
    "\nleading-newline": b"leading newline",
    "trailing-newline\n": b"trailing newline",
    "both\\n\nmix": b"backslash-n and newline",
    "with space.txt": b"space",
    "back\\slash": b"backslash",
    b"bad-\xff\n\xfe.bin": b"not utf-8, with a newline",
    "sub": {"deep\nname": b"deep", "unlisted": b"not listed"},
    "unlisted.txt": b"never listed",
}
NUL_LISTED = [
    b"new\nline.txt",
    b"\nleading-newline",
    b"trailing-newline\n",
    b"both\\n\nmix",
    b"with space.txt",
    b"back\\slash",
    b"bad-\xff\n\xfe.bin",
    b"sub/deep\nname",
]


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_files_from_null_separated_names_with_newlines(make_tree, tmp_path, source):
    tree = make_tree(NUL_NAMES)
    listing = b"\0".join(NUL_LISTED) + b"\0"
    if source == "file":
        (tmp_path / "list0").write_bytes(listing)
        args = ["--files-from", "../list0", "-0"]
        result = run_cli("scan", "-j1", "-a", "sha256", "-f", "jsonl", *args, cwd=tree)
    else:
        args = ["-T", "-", "--null"]
        result = run_cli(
            "scan", "-j1", "-a", "sha256", "-f", "jsonl", *args, cwd=tree, input=listing
        )
    assert result.returncode == 0, result.stderr
    records = by_path(jsonl(result))
    assert_digests(records, listed_contents(tree, NUL_LISTED), "sha256")


def test_files_from_without_null_given_a_nul_separated_list(make_tree):
    """``find -print0 | parhash scan -T -`` with -0 forgotten: the list splits at the newline
    and the names keep their NUL bytes. No such path can exist: error records (exit 1)
    like any other path that does not exist, never an internal error."""
    tree = make_tree({"new\nline.txt": b"x", "new": b"n"})
    result = run_cli("scan", "-j1", "-f", "jsonl", "-T", "-", cwd=tree, input=b"new\nline.txt\0")
    assert "internal error" not in result.stderr
    assert result.returncode == 1, result.stderr
    records = by_path(jsonl(result))
    assert records.pop(b"new")["hash"] == REFERENCE["xxh3"](b"n")
    assert records and all(r["error"] and r["hash"] is None for r in records.values())


def test_files_from_missing_path_and_directory_are_error_records(make_tree):
    tree = make_tree({"good.txt": b"good", "adir": {"inside": b"i"}})
    listing = b"good.txt\nmissing.txt\nadir\n"
    result = run_cli(
        "scan", "-j1", "-f", "jsonl", "-a", "sha256", "-T", "-", cwd=tree, input=listing
    )
    assert result.returncode == 1, result.stderr
    records = by_path(jsonl(result))
    assert set(records) == {b"good.txt", b"missing.txt", b"adir"}
    assert records[b"good.txt"]["hash"] == REFERENCE["sha256"](b"good")
    assert records[b"good.txt"]["error"] is None
    for name in (b"missing.txt", b"adir"):
        assert records[name]["hash"] is None and records[name]["size"] is None
        assert records[name]["error"]
    assert "No such file or directory" in records[b"missing.txt"]["error"]
    assert "directory" in records[b"adir"]["error"]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert any("missing.txt" in line for line in warnings), result.stderr
    assert any("adir" in line for line in warnings), result.stderr
    assert SUMMARY.search(result.stderr).group("errors") == "2"


def test_files_from_with_relative_keeps_the_listed_directories(make_tree, tmp_path):
    """Listed paths belong to the root '.', so --relative prints them as listed: two files
    of the same name in different directories must stay apart (and checkable)."""
    make_tree({"sub": {"same.txt": b"one"}, "other": {"same.txt": b"two"}, "top.txt": b"t"})
    listing = b"tree/sub/same.txt\ntree/other/same.txt\ntree/top.txt\n"
    sums = tmp_path / "listed.sha256"
    result = run_cli(
        "scan", "-j1", "-a", "sha256", "--relative", "-T", "-", "-o", sums, cwd=tmp_path,
        input=listing,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(sums.read_bytes().split(b"\n")[:-1]) == sorted(
        [
            f"{REFERENCE['sha256'](b'one')}  tree/sub/same.txt".encode(),
            f"{REFERENCE['sha256'](b'two')}  tree/other/same.txt".encode(),
            f"{REFERENCE['sha256'](b't')}  tree/top.txt".encode(),
        ]
    )


def test_files_from_missing_list_is_a_usage_error(tmp_path):
    result = run_cli("scan", "-j1", "--files-from", tmp_path / "no-such-list", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "no-such-list" in result.stderr
    assert "Traceback" not in result.stderr


def test_find_print0_pipeline_equals_xargs_sha256sum(make_tree, tmp_path):
    need("sha256sum")
    need("xargs")
    tree = make_tree({**NUL_NAMES, "nested": {"a": {"b": b"nested"}, "empty": b""}})
    os.mkfifo(tree / "a-fifo")  # find -type f leaves it out
    parhash = f"{shlex.quote(sys.executable)} -m parhash scan --files-from - -0 -a sha256 -j2 -q"
    ours = subprocess.run(
        f"find tree -type f -print0 | {parhash}",
        shell=True, cwd=tmp_path, capture_output=True, timeout=60,
    )  # fmt: skip
    theirs = subprocess.run(
        "find tree -type f -print0 | xargs -0 sha256sum",
        shell=True, cwd=tmp_path, capture_output=True, timeout=60,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stderr
    our_lines = ours.stdout.split(b"\n")[:-1]
    their_lines = theirs.stdout.split(b"\n")[:-1]
    assert len(their_lines) == len(files_below(tree))
    assert {unescape_coreutils(x) for x in our_lines} == {
        unescape_coreutils(x) for x in their_lines
    }
    assert sorted(our_lines) == sorted(their_lines)


# -- PATH '-' (stdin) and the default PATH --------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 300 * 1024, 5 * 1024 * 1024])
def test_stdin_equals_sha256sum_dash(tmp_path, size):
    need("sha256sum")
    data = os.urandom(size)
    result = run_cli("scan", "-", "-a", "sha256", "-j1", cwd=tmp_path, input=data)
    expected = subprocess.run(["sha256sum", "-"], input=data, capture_output=True, check=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.stdout
    assert SUMMARY.search(result.stderr).group("files") == "1"


def test_stdin_mixed_with_a_file_equals_sha256sum(make_tree, tmp_path):
    need("sha256sum")
    tree = make_tree({"file.txt": b"a file\n", "d": {"x": b"x"}})
    data = b"from stdin\n" * 1000
    result = run_cli("scan", "-", "file.txt", "-a", "sha256", "-j1", cwd=tree, input=data)
    expected = subprocess.run(
        ["sha256sum", "-", "file.txt"], input=data, capture_output=True, check=True, cwd=tree
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.stdout


def test_stdin_with_several_algorithms_equals_tagged_coreutils(tmp_path):
    need("sha256sum")
    need("md5sum")
    data = os.urandom(70_000)
    result = run_cli("scan", "-", "-a", "sha256,md5", "-j1", cwd=tmp_path, input=data)
    sha = subprocess.run(["sha256sum", "--tag", "-"], input=data, capture_output=True, check=True)
    md5 = subprocess.run(["md5sum", "--tag", "-"], input=data, capture_output=True, check=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == sha.stdout + md5.stdout


def test_no_path_and_stdin_not_a_terminal_walks_the_current_directory(make_tree):
    tree = make_tree({"a.txt": b"a", "sub": {"b.txt": b"b"}, ".hidden": b"h"})
    result = run_cli("scan", "-j1", "-a", "sha256", "-f", "jsonl", cwd=tree, input=b"")
    assert result.returncode == 0, result.stderr
    records = by_path(jsonl(result), "./")
    assert_digests(records, files_below(tree), "sha256")
    assert all(r["root"] == "." for r in records.values())


# -- several algorithms --------------------------------------------------------------------

MULTI = {"a.txt": b"alpha\n", "empty": b"", "big.bin": os.urandom(600_000), "d": {"c": b"c"}}


def test_several_algorithms_jsonl(make_tree, tmp_path):
    tree = make_tree(MULTI)
    result = run_cli("scan", "-a", "sha256,xxh3,md5", "-f", "jsonl", "-j1", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = by_path(jsonl(result), "tree/")
    contents = files_below(tree)
    assert_digests(records, contents, "sha256")
    for name, record in records.items():
        assert list(record) == [*KEYS, "sha256", "xxh3", "md5"]
        for algo in ("sha256", "xxh3", "md5"):
            assert record[algo] == REFERENCE[algo](contents[name]), (name, algo)


def test_several_algorithms_csv_columns(make_tree, tmp_path):
    tree = make_tree(MULTI)
    result = run_cli("scan", "-a", "sha256,xxh3,md5", "-f", "csv", "-j1", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = csv_table(result.stdout.decode("utf-8"))
    assert rows[0] == [*KEYS, "sha256", "xxh3", "md5"]
    contents = files_below(tree)
    assert len(rows) == 1 + len(contents)
    for row in rows[1:]:
        record = dict(zip(rows[0], row, strict=True))
        data = contents[os.fsencode(record["path"].removeprefix("tree/"))]
        assert record["algo"] == "sha256"
        assert record["hash"] == record["sha256"] == REFERENCE["sha256"](data)
        assert record["xxh3"] == REFERENCE["xxh3"](data)
        assert record["md5"] == REFERENCE["md5"](data)
        assert int(record["size"]) == len(data)


def test_several_algorithms_sums_are_tagged_and_verify(make_tree, tmp_path):
    tree = make_tree({**MULTI, "with space": b"s", "back\\slash": b"b", "new\nline": b"n"})
    sums = tmp_path / "tree.sums"
    result = run_cli("scan", "-a", "sha256,xxh3,md5", "-j1", "-o", sums, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = sums.read_bytes()
    lines = text.split(b"\n")[:-1]
    contents = files_below(tree)
    assert len(lines) == 3 * len(contents)
    expected = set()
    for name, data in contents.items():
        for tag, algo in (("SHA256", "sha256"), ("XXH3", "xxh3"), ("MD5", "md5")):
            # as each algorithm's tool escapes: xxhsum 0.8.1 leaves a backslash verbatim
            escaped = b"\n" in name or (b"\\" in name and algo != "xxh3")
            shown = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") if escaped else name
            marker = b"\\" if escaped else b""
            digest = REFERENCE[algo](data).encode()
            expected.add(marker + tag.encode() + b" (tree/" + shown + b") = " + digest)
    assert set(lines) == expected
    # one line per algorithm per file, in the order given
    tags = [line.lstrip(b"\\").split(b" ", 1)[0] for line in lines]
    assert tags == [b"SHA256", b"XXH3", b"MD5"] * len(contents)

    check = run_cli("check", "-j1", sums, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    # a file listed once per algorithm has the algorithm named in each verdict (issue 10)
    verdicts = check.stdout.split(b"\n")[:-1]
    tags = [line.rsplit(b": OK (", 1)[1] for line in verdicts if b": OK (" in line]
    assert tags == [b"SHA256)", b"XXH3)", b"MD5)"] * len(contents)
    assert b"FAILED" not in check.stdout

    need("sha256sum")
    need("md5sum")
    for tag, program in (("SHA256", "sha256sum"), ("MD5", "md5sum")):
        peer = subprocess.run(
            f"grep -a '^\\\\\\?{tag} ' tree.sums | {program} -c --strict",
            shell=True, cwd=tmp_path, capture_output=True, timeout=30,
        )  # fmt: skip
        assert peer.returncode == 0, peer.stdout + peer.stderr
        assert peer.stdout.count(b": OK") == len(contents)

    # a corrupted file is caught by all three digests
    (tree / "a.txt").write_bytes(b"ALPHA\n")
    check = run_cli("check", "-j1", sums, cwd=tmp_path)
    assert check.returncode == 1
    assert check.stdout.count(b"tree/a.txt: FAILED") == 3


def test_xxhsum_checks_the_xxh3_lines(make_tree, tmp_path):
    need("xxhsum")
    tree = make_tree(MULTI)
    result = run_cli("scan", "-a", "sha256,xxh3", "-j1", "-q", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    xxh3_lines = b"".join(
        line + b"\n" for line in result.stdout.split(b"\n") if line.startswith(b"XXH3 (")
    )
    assert xxh3_lines.count(b"\n") == len(files_below(tree))
    (tmp_path / "x.xxh3").write_bytes(xxh3_lines)
    peer = subprocess.run(["xxhsum", "-c", "x.xxh3"], cwd=tmp_path, capture_output=True)
    assert peer.returncode == 0, peer.stdout + peer.stderr


def test_repeated_algorithm_names_collapse_to_one(make_tree, tmp_path):
    tree = make_tree({"a": b"a", "b": b"bb"})
    spec = "sha256,SHA256, sha256"
    result = run_cli("scan", "-a", spec, "-f", "jsonl", "-j1", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = by_path(jsonl(result), "tree/")
    assert_digests(records, files_below(tree), "sha256")
    assert all(list(r) == KEYS for r in records.values())
    sums = run_cli("scan", "-a", spec, "-j1", "--sort", "tree", cwd=tmp_path)
    assert sums.stdout == (
        f"{REFERENCE['sha256'](b'a')}  tree/a\n{REFERENCE['sha256'](b'bb')}  tree/b\n".encode()
    )


@pytest.mark.parametrize("spec", ["sha256,nope", "md6,sha256,xxh3"])
def test_unknown_name_in_the_algorithm_list_is_a_usage_error(make_tree, tmp_path, spec):
    make_tree({"a": b"a"})
    result = run_cli("scan", "-a", spec, "-j1", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "sha256" in result.stderr and "blake3" in result.stderr  # lists the valid names
    assert "Traceback" not in result.stderr


# -- hard links ----------------------------------------------------------------------------

BIG = 8 * 1024 * 1024

#: Runs the CLI in this very process and reports the bytes it read (``rchar`` counts every
#: read/readv/pread of the process) on stderr at exit.
RCHAR_WRAPPER = """
import atexit, sys

def report():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                sys.stderr.write("RCHAR=" + line.split()[1] + "\\n")

atexit.register(report)
sys.argv = ["parhash", *sys.argv[1:]]
from parhash.cli import main
main()
"""


@pytest.fixture
def linked_tree(tmp_path):
    """A file with three links in three directories, and a normal file."""
    tree = write_tree(tmp_path / "tree", {"a": {}, "b": {"deeper": {}}, "c": {}})
    big = os.urandom(BIG)
    (tree / "a" / "big").write_bytes(big)
    os.link(tree / "a" / "big", tree / "b" / "deeper" / "link2")
    os.link(tree / "a" / "big", tree / "c" / "link3")
    (tree / "normal.txt").write_bytes(b"just one link\n")
    assert os.stat(tree / "a" / "big").st_nlink == 3
    return tree


def _rchar_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    if not os.path.exists("/proc/self/io"):
        pytest.skip("no /proc/self/io")
    wrapper = tmp_path / "rchar_wrapper.py"
    wrapper.write_text(RCHAR_WRAPPER)
    proc = subprocess.run(
        [sys.executable, str(wrapper), *args], cwd=tmp_path, capture_output=True, timeout=60
    )
    found = re.findall(rb"RCHAR=(\d+)", proc.stderr)
    assert len(found) == 1, proc.stderr
    return proc, int(found[0])


def test_hard_links_are_read_once(linked_tree, tmp_path):
    contents = files_below(linked_tree)
    assert len(contents) == 4
    runs = {}
    for flag in ("--dedupe-links", "--no-dedupe-links", "--jobs=1"):  # the last: default
        proc, rchar = _rchar_run(
            tmp_path, "scan", "-j1", "-a", "sha256,md5", "-f", "jsonl", flag, "tree"
        )
        assert proc.returncode == 0, proc.stderr
        records = by_path(jsonl_records(proc.stdout), "tree/")
        assert_digests(records, contents, "sha256")
        for name, record in records.items():
            assert record["md5"] == REFERENCE["md5"](contents[name])
            assert (
                record["mtime"] == os.stat(os.path.join(os.fsencode(linked_tree), name)).st_mtime_ns
            )
        runs[flag] = (records, rchar)
    assert runs["--dedupe-links"][0] == runs["--no-dedupe-links"][0]
    deduped, full = runs["--dedupe-links"][1], runs["--no-dedupe-links"][1]
    assert full >= 3 * BIG  # the no-dedupe run read every path
    assert deduped >= BIG  # the dedupe run read the inode once ...
    assert full - deduped >= 2 * BIG - 256 * 1024  # ... and not the other two links
    assert runs["--jobs=1"][0] == runs["--dedupe-links"][0]
    assert full - runs["--jobs=1"][1] >= 2 * BIG - 256 * 1024  # dedupe is the default


@pytest.fixture
def many_links_tree(tmp_path):
    """Many linked inodes spread over directories (links in different batches and workers),
    links to files outside the tree, and plain files."""
    tree = write_tree(tmp_path / "tree", {f"d{i}": {} for i in range(6)})
    outside = tmp_path / "outside"
    outside.mkdir()
    for n in range(60):
        data = f"inode {n}\n".encode() * (n + 1)
        first = tree / f"d{n % 6}" / f"f{n:03d}"
        first.write_bytes(data)
        for k in range(1, 1 + n % 3):
            os.link(first, tree / f"d{(n + k) % 6}" / f"link{n:03d}-{k}")
        if n % 5 == 0:
            os.link(first, outside / f"out{n}")
    for n in range(40):
        (tree / f"d{n % 6}" / f"plain{n:03d}").write_bytes(os.urandom(n * 37))
    return tree


def test_hard_links_with_two_workers(many_links_tree, tmp_path):
    contents = files_below(many_links_tree)
    results = {}
    for flag in ("--dedupe-links", "--no-dedupe-links"):
        result = run_cli("scan", "-j2", "-a", "sha256", "-f", "jsonl", flag, "tree", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        records = by_path(jsonl(result), "tree/")
        assert_digests(records, contents, "sha256")
        results[flag] = records
    assert results["--dedupe-links"] == results["--no-dedupe-links"]


def test_hard_links_with_two_workers_big_file(linked_tree, tmp_path):
    result = run_cli("scan", "-j2", "-a", "sha256", "-f", "jsonl", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_digests(by_path(jsonl(result), "tree/"), files_below(linked_tree), "sha256")


# -- walk filters --------------------------------------------------------------------------

DEPTH = {
    "f0": b"0",
    "d1": {"f1": b"1", "d2": {"f2": b"2", "d3": {"f3": b"3"}}},
    "e1": {"g1": b"g"},
}


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        ("1", {b"f0"}),
        ("2", {b"f0", b"d1/f1", b"e1/g1"}),
        ("3", {b"f0", b"d1/f1", b"e1/g1", b"d1/d2/f2"}),
    ],
)
def test_max_depth(make_tree, tmp_path, depth, expected):
    make_tree(DEPTH)
    assert scanned(run_cli("scan", "-j1", "-f", "jsonl", "-d", depth, "tree", cwd=tmp_path)) == (
        expected
    )


def test_max_depth_zero_is_a_usage_error(make_tree, tmp_path):
    make_tree(DEPTH)
    result = run_cli("scan", "-j1", "--max-depth", "0", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""


SIZES = [0, 1, 1023, 1024, 1025, 1536, 1537, 10**6, 10**6 + 1, 2**20 - 1, 2**20, 2**20 + 1]


@pytest.fixture(scope="module")
def sized_tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("sizes")
    tree = write_tree(base / "tree", {f"s{n}": os.urandom(n) for n in SIZES})
    return base, tree


@pytest.mark.parametrize(
    ("options", "low", "high"),
    [
        (["--min-size", "1K"], 1024, None),
        (["--max-size", "1K"], None, 1024),
        (["--min-size", "1024", "--max-size", "1025"], 1024, 1025),
        (["--min-size", "1KiB", "--max-size", "1.5K"], 1024, 1536),
        (["--min-size", "1M", "--max-size", "1MiB"], 2**20, 2**20),
        (["--min-size", "1m", "--max-size", "1048576"], 2**20, 2**20),
        (["--max-size", "1MB"], None, 10**6),
        (["--min-size", "1MB", "--max-size", "1000001"], 10**6, 10**6 + 1),
    ],
)
def test_size_filters(sized_tree, options, low, high):
    base, tree = sized_tree
    result = run_cli("scan", "-j1", "-a", "sha256", "-f", "jsonl", *options, "tree", cwd=base)
    assert result.returncode == 0, result.stderr
    expected = {
        f"s{n}".encode() for n in SIZES if (low is None or n >= low) and (high is None or n <= high)
    }
    contents = {name: data for name, data in files_below(tree).items() if name in expected}
    assert_digests(by_path(jsonl(result), "tree/"), contents, "sha256")


def test_size_filter_gigabytes(tmp_path):
    """Sparse files one byte either side of 1 GiB; only the one of exactly 1G is hashed."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name, size in (("below", 2**30 - 1), ("exact", 2**30), ("above", 2**30 + 1)):
        with open(tree / name, "wb") as f:
            f.truncate(size)
    result = run_cli(
        "scan", "-j1", "-f", "jsonl", "--min-size", "1G", "--max-size", "1G", "tree", cwd=tmp_path
    )
    records = by_path(jsonl(result), "tree/")
    assert result.returncode == 0, result.stderr
    assert set(records) == {b"exact"}
    zeros, hasher = bytes(1 << 20), xxhash.xxh3_64()
    for _ in range(1024):
        hasher.update(zeros)
    assert records[b"exact"]["hash"] == hasher.hexdigest()
    assert records[b"exact"]["size"] == 2**30


@pytest.mark.parametrize(
    "option",
    [["--min-size", "10X"], ["--max-size", "1.2.3K"]],
)
def test_bad_size_is_a_usage_error(make_tree, tmp_path, option):
    make_tree({"a": b"a"})
    result = run_cli("scan", "-j1", *option, "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert option[0] in result.stderr
    assert "Traceback" not in result.stderr


HIDDEN = {
    "visible.txt": b"v",
    ".dotfile": b"d",
    ".hdir": {"inside.txt": b"in a hidden dir", "deeper": {"x": b"x"}},
    "d": {".hidden-in-d": b"h", "shown": b"s", ".hd": {"y": b"y"}},
}


def test_hidden_default_includes_dot_names(make_tree, tmp_path):
    tree = make_tree(HIDDEN)
    result = run_cli("scan", "-j1", "-a", "sha256", "-f", "jsonl", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_digests(by_path(jsonl(result), "tree/"), files_below(tree), "sha256")
    assert len(files_below(tree)) == 7


def test_no_hidden_skips_dot_files_and_prunes_dot_directories(make_tree, tmp_path):
    make_tree(HIDDEN)
    # a FIFO inside a hidden directory would be an error record if the walker went in
    os.mkfifo(tmp_path / "tree" / ".hdir" / "a-fifo")
    os.mkfifo(tmp_path / "tree" / ".fifo")
    result = run_cli("scan", "-j1", "-f", "jsonl", "--no-hidden", "tree", cwd=tmp_path)
    assert scanned(result) == {b"visible.txt", b"d/shown"}
    assert "fifo" not in result.stderr.lower()


EXCLUDED = {
    "keep.txt": b"k",
    "# not a comment.txt": b"named like a comment line",
    "drop.tmp": b"t",
    "cache": {"big.txt": b"pruned with its directory"},
    "src": {"a.py": b"a", "a.pyc": b"compiled", "cache": {"x": b"x"}, "notes.md": b"n"},
    "docs": {"top.md": b"excluded by path", "inner": {"deep.md": b"d"}},
}


def test_exclude_from_files(make_tree, tmp_path):
    make_tree(EXCLUDED)
    (tmp_path / "ex1").write_text(
        "# comment lines and blank lines are skipped\n# not a comment.txt\n\n   \n*.tmp\ncache\n"
    )
    (tmp_path / "ex2").write_text("*.pyc\r\ndocs/*.md\r\n")
    result = run_cli(
        "scan", "-j1", "-f", "jsonl", "--exclude-from", "ex1", "--exclude-from", "ex2",
        "-e", "notes.md", "tree", cwd=tmp_path,
    )  # fmt: skip
    # fnmatch's '*' crosses '/': docs/*.md also takes docs/inner/deep.md (README: "** works too")
    assert scanned(result) == {b"keep.txt", b"# not a comment.txt", b"src/a.py"}


def test_exclude_from_missing_file_is_a_usage_error(make_tree, tmp_path):
    make_tree(EXCLUDED)
    result = run_cli("scan", "-j1", "--exclude-from", "no-such-file", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "no-such-file" in result.stderr
    assert "Traceback" not in result.stderr


GITIGNORE_TREE = {
    ".gitignore": (
        b"# a comment\n"
        b"*.log\n"
        b"!keep.log\n"
        b"build/\n"
        b"/top.txt\n"
        b"secret\n"
        b"docs/*.md\n"
        b"logs/*\n"
        b"!logs/keep.txt\n"
    ),
    "a.txt": b"a",
    "a.log": b"ignored",
    "keep.log": b"re-included",
    "top.txt": b"anchored: ignored at the root only",
    "secret": b"ignored",
    "build": {"out.o": b"ignored dir", "keep.o": b"ignored dir"},
    "docs": {"a.md": b"ignored", "readme.txt": b"kept", "deep": {"b.md": b"kept: * stops at /"}},
    "logs": {"x.txt": b"ignored", "keep.txt": b"re-included"},
    "sub": {
        ".gitignore": b"*.tmp\n!x.log\n",
        "top.txt": b"kept",
        "build": b"a file, not a directory: kept",
        "x.log": b"re-included by the deeper file",
        "y.log": b"ignored by the root file",
        "z.tmp": b"ignored",
        "secret": {"inner.txt": b"ignored with its directory"},
        "deeper": {"w.tmp": b"ignored", "v.txt": b"kept"},
    },
    "other": {"z.tmp": b"kept: sub's rules stop at sub"},
    ".git": {"HEAD": b"ref: refs/heads/main\n", "objects": {"ab": {"cdef": b"blob"}}},
}
GITIGNORE_KEPT = {
    b".gitignore",
    b"a.txt",
    b"keep.log",
    b"docs/readme.txt",
    b"docs/deep/b.md",
    b"logs/keep.txt",
    b"sub/.gitignore",
    b"sub/top.txt",
    b"sub/build",
    b"sub/x.log",
    b"sub/deeper/v.txt",
    b"other/z.tmp",
}


def test_gitignore(make_tree, tmp_path):
    tree = make_tree(GITIGNORE_TREE)
    result = run_cli(
        "scan", "-j1", "-a", "sha256", "-f", "jsonl", "--gitignore", "tree", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    contents = {k: v for k, v in files_below(tree).items() if k in GITIGNORE_KEPT}
    assert_digests(by_path(jsonl(result), "tree/"), contents, "sha256")


def test_without_gitignore_everything_is_hashed(make_tree, tmp_path):
    tree = make_tree(GITIGNORE_TREE)
    result = run_cli("scan", "-j1", "-a", "sha256", "-f", "jsonl", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    contents = files_below(tree)
    assert b".git/HEAD" in contents and b"a.log" in contents
    assert_digests(by_path(jsonl(result), "tree/"), contents, "sha256")


AUDITED = {
    "a.txt": b"a",
    ".dot": b"dot",
    ".hdir": {"x": b"x"},
    "d": {"y": b"y", "skip.tmp": b"t", ".z": b"z", "e": {"deep": b"deep"}},
    "cache": {"c": b"c"},
}


@pytest.mark.parametrize(
    ("options", "admitted"),
    [
        (["--no-hidden"], 5),  # a.txt d/y d/skip.tmp d/e/deep cache/c
        (["--max-depth", "1"], 2),  # a.txt .dot
        (["--exclude-from", "ex"], 5),  # a.txt .dot .hdir/x d/y d/.z
    ],
)
def test_audit_with_walk_filters_on_an_unchanged_tree(make_tree, tmp_path, options, admitted):
    make_tree(AUDITED)
    (tmp_path / "ex").write_text("# skip these\n*.tmp\n\ncache\nd/e\n")
    manifest = tmp_path / "m.jsonl"
    taken = run_cli("scan", "-j1", "-q", "-f", "jsonl", "-o", manifest, "tree", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert len(jsonl_records(manifest.read_bytes())) == 8
    result = run_cli("audit", "-j1", "-f", "json", *options, manifest, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr.encode()
    report = json.loads(result.stdout)
    counts = report["audit"]["counts"]
    assert counts == {
        "added": 0, "removed": 0, "modified": 0, "corrupted": 0, "moved": 0,
        "unreadable": 0, "unchanged": admitted,
    }  # fmt: skip
    assert report["changes"] == []


# -- at a terminal -------------------------------------------------------------------------


def test_summary_line(make_tree, tmp_path):
    make_tree({"a": b"a" * 1000, "b": b"", "c": {"d": b"d" * 500}})
    result = run_cli("scan", "-j1", "tree", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    match = SUMMARY.fullmatch(lines[0])
    assert match, lines[0]
    assert match.group("files") == "3" and match.group("errors") == "0"
    assert "1.50 kB" in lines[0]
    assert run_cli("scan", "-j1", "-q", "tree", cwd=tmp_path).stderr == ""


def test_errors_listed_once_when_stderr_is_not_a_terminal(make_tree, tmp_path):
    """Issue 10 item 23: each error is one warning; a log file gets no second copy under
    the summary (tests/test_ux.py covers the terminal where the warnings scrolled away)."""
    tree = make_tree({"ok1": b"1", "ok2": b"22"})
    fifos = [f"fifo{i:02d}" for i in range(12)]
    for name in fifos:
        os.mkfifo(tree / name)
    result = run_cli("scan", "-j1", "tree", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    summary = [i for i, line in enumerate(lines) if SUMMARY.fullmatch(line)]
    assert len(summary) == 1, result.stderr
    match = SUMMARY.fullmatch(lines[summary[0]])
    assert match.group("files") == "2" and match.group("errors") == "12"
    assert lines[summary[0] + 1 :] == []
    for name in fifos:
        warning = f"parhash: warning: tree/{name}: not a regular file (FIFO)"
        assert lines[: summary[0]].count(warning) == 1, result.stderr
    assert sum(f"tree/{name}" in result.stderr for name in fifos) == len(fifos)
    records = by_path(jsonl(run_cli("scan", "-j1", "-f", "jsonl", "tree", cwd=tmp_path)), "tree/")
    assert sum(1 for r in records.values() if r["error"]) == 12


def test_hostile_names_are_escaped_on_stderr_only(make_tree, tmp_path):
    tree = make_tree({"ok": b"ok"})
    evil = "evil\x1b[31mred\nline"
    os.mkfifo(tree / evil)
    os.mkfifo(os.path.join(os.fsencode(tree), b"bad-\xff-\x07"))
    result = run_cli("scan", "-j1", "-f", "jsonl", "--color", "never", "tree", cwd=tmp_path)
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\ufffd" not in result.stderr  # no raw invalid UTF-8 either
    assert "tree/evil\\x1b[31mred\\nline: not a regular file (FIFO)" in result.stderr
    assert "tree/bad-\\xff-\\x07: not a regular file (FIFO)" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    records = by_path(jsonl(result), "tree/")
    assert set(records) == {b"ok", os.fsencode(evil), b"bad-\xff-\x07"}
    assert records[os.fsencode(evil)]["path"] == "tree/" + evil
    # sums on stdout keep the exact bytes too (escaped the coreutils way, not sanitized)
    (tree / "also\x1b[0m").write_bytes(b"e")
    sums = run_cli("scan", "-j1", "-a", "sha256", "tree", cwd=tmp_path)
    assert f"{REFERENCE['sha256'](b'e')}  tree/also\x1b[0m\n".encode() in sums.stdout


def run_with_tty_stderr(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bytes]:
    """Run the CLI with stderr on a pseudo-terminal; returns (exit code, stderr bytes)."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhash", *args],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        env=environment,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks)


@pytest.fixture
def fifo_tree(make_tree):
    tree = make_tree({"ok": b"ok"})
    os.mkfifo(tree / "pipe")
    return tree


@pytest.mark.parametrize(
    ("color", "env", "colored"),
    [("always", {}, True), ("auto", {}, False)],
)
def test_color_on_a_pipe(fifo_tree, tmp_path, color, env, colored):
    result = run_cli("scan", "-j1", "--color", color, "tree", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "warning" in result.stderr
    assert ("\x1b[" in result.stderr) is colored, result.stderr


@pytest.mark.parametrize(
    ("color", "env", "colored"),
    [
        ("auto", {}, True),
        ("auto", {"NO_COLOR": "1"}, False),
        ("never", {}, False),
        ("always", {"NO_COLOR": "1"}, True),
    ],
)
def test_color_on_a_terminal(fifo_tree, tmp_path, color, env, colored):
    code, stderr = run_with_tty_stderr(
        ["scan", "-j1", "--no-progress", "--color", color, "tree"], tmp_path, env
    )
    assert code == 1
    assert b"warning" in stderr and b"1 error" in stderr
    assert (b"\x1b[" in stderr) is colored, stderr


def test_bad_color_choice_is_a_usage_error(fifo_tree, tmp_path):
    result = run_cli("scan", "-j1", "--color", "sometimes", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""


# -- --version, completion, help ------------------------------------------------------------


def test_version(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    import xxhash

    assert text.strip() == (
        f"parhash {version('parhash')} (xxhash {version('xxhash')}, "
        f"libxxhash {xxhash.XXHASH_VERSION}, blake3 {version('blake3')})"
    )
    import parhash

    assert parhash.__version__ == version("parhash")


def _bash_completes(script: bytes, words: str, cword: int, tmp_path: Path) -> list[str]:
    """Source a completion script in bash and ask it to complete ``words``."""
    need("bash")
    (tmp_path / "completion.bash").write_bytes(script)
    program = f"""
source ./completion.bash
fn=$(complete -p parhash | sed -E 's/.* -F ([^ ]+) .*/\\1/')
COMP_WORDS=({words}); COMP_CWORD={cword}
"$fn" parhash
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=tmp_path, capture_output=True, timeout=30, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split()


def _console_script() -> str:
    candidate = Path(sys.executable).parent / "parhash"
    if candidate.exists():
        return str(candidate)
    return need("parhash")


def test_show_completion_of_the_parhash_command(tmp_path):
    script = subprocess.run(
        [_console_script(), "--show-completion", "bash"],
        capture_output=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert b"parhash" in script.stdout
    assert b"_PARHASH_COMPLETE=complete_bash" in script.stdout
    assert re.search(rb"^complete .* parhash$", script.stdout, re.M), script.stdout
    assert "scan" in _bash_completes(script.stdout, "parhash sc", 1, tmp_path)
    assert "--files-from" in _bash_completes(script.stdout, "parhash scan --files-f", 2, tmp_path)


def test_completion_env_variable(tmp_path):
    env = {"_PARHASH_COMPLETE": "complete_bash", "COMP_WORDS": "parhash au", "COMP_CWORD": "1"}
    proc = subprocess.run(
        [_console_script()], capture_output=True, timeout=30, cwd=tmp_path,
        env={**os.environ, **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [b"audit"]


def test_show_completion_through_python_m(tmp_path):
    """``python -m parhash --show-completion bash`` must print a usable script: one that
    registers completion for ``parhash`` through a valid environment variable."""
    result = run_cli("--show-completion", "bash", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"parhash" in result.stdout
    assert re.search(rb"^complete .* parhash$", result.stdout, re.M), result.stdout
    assert b"_PARHASH_COMPLETE=complete_bash" in result.stdout, result.stdout


@pytest.mark.parametrize("command", ["scan", "check", "audit"])
def test_help_has_examples(tmp_path, command):
    result = run_cli(command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "Examples:" in text
    examples = text.split("Examples:", 1)[1]
    commands = [
        line.strip()
        for line in examples.splitlines()
        if line.strip().startswith("parhash ") or "| parhash " in line
    ]
    assert len(commands) >= 2, text
    assert any(f"parhash {command}" in line for line in commands), commands


def test_hdd_reads_one_directory_in_inode_order(tmp_path):
    """--hdd: one reader, and each directory's files in inode order (creation order here),
    not name order; without it, -j1 walks names in sorted order."""
    tree = tmp_path / "t"
    tree.mkdir()
    names = [f"f{i:02d}" for i in range(30)]
    rng = random.Random(7)
    created = names[:]
    rng.shuffle(created)
    for name in created:
        (tree / name).write_bytes(name.encode())
    by_inode = sorted(names, key=lambda n: os.stat(tree / n).st_ino)
    assert by_inode != names  # the test means something only if the orders differ

    hdd = run_cli("scan", "--hdd", "-q", "-a", "sha256", tree)
    assert hdd.returncode == 0, hdd.stderr
    order = [line.split("  ", 1)[1].rsplit("/", 1)[1] for line in hdd.text.splitlines()]
    assert order == by_inode
    for line in hdd.text.splitlines():
        digest, path = line.split("  ", 1)
        assert digest == hashlib.sha256(os.path.basename(path).encode()).hexdigest()

    plain = run_cli("scan", "-j1", "-q", "-a", "sha256", tree)
    assert [line.rsplit("/", 1)[1] for line in plain.text.splitlines()] == names
