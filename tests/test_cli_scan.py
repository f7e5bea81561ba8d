"""End-to-end tests of ``parhash scan`` through the real CLI (``python -m parhash``).

Every digest is checked against an independent implementation: the real peer tools
(sha256sum, md5sum, b3sum, xxhsum) or hashlib / xxhash / blake3 in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import xxhash
from conftest import csv_table, jsonl_records
from conftest import files_below as conftest_files_below

import parhash
from parhash.algorithms import ALGORITHMS
from parhash.model import FileRecord

KEYS = ["path", "size", "mtime", "algo", "hash", "error", "root"]

REFERENCE = {
    "md5": lambda b: hashlib.md5(b).hexdigest(),
    "sha256": lambda b: hashlib.sha256(b).hexdigest(),
    "blake3": lambda b: blake3.blake3(b).hexdigest(),
    "xxh3": lambda b: xxhash.xxh3_64_hexdigest(b),
    "xxh128": lambda b: xxhash.xxh3_128_hexdigest(b),
    "xxh64": lambda b: xxhash.xxh64_hexdigest(b),
    "xxh32": lambda b: xxhash.xxh32_hexdigest(b),
}

#: Names that ordinary tools print verbatim.
PLAIN_SPEC: dict[str | bytes, bytes | dict] = {
    "plain.txt": b"hello\n",
    "with space.txt": b"space",
    "-rf": b"dash",
    "--help": b"double dash",
    "tab\tname": b"tab",
    "unicodé-日本.txt": "ünïcødé 日本".encode(),
    b"latin1-\xe9\xff.bin": b"not utf-8",
    "empty": b"",
    "sub": {
        "nested": {"big.bin": random.Random(1).randbytes(300_000), "small": b"s"},
        "z": b"z",
    },
}

#: Plus the two characters coreutils escapes on a sums line.
ODD_SPEC: dict[str | bytes, bytes | dict] = {
    **PLAIN_SPEC,
    "back\\slash": b"backslash",
    "new\nline": b"newline",
    "both\\n\nmix": b"mix",
}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def files_below(root: Path) -> dict[bytes, bytes]:
    """Files below ``root`` keyed by the path tools print (relative to root's parent)."""
    return conftest_files_below(root, root.parent)


def tool(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def lines(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    assert data.endswith(sep) or not data
    return data.split(sep)[:-1]


def jsonl(result) -> list[dict]:
    return jsonl_records(result.stdout)  # strict: JSON must be valid UTF-8


def check_record(obj: dict, content: bytes, algo: str, root: str, *, base: Path) -> None:
    """One jsonl/json/csv record against independently computed values; ``base`` is the
    directory the CLI ran in (paths in records are as reached from there)."""
    path = os.path.join(os.fsencode(base), os.fsencode(obj["path"]))
    assert list(obj) == KEYS
    assert obj["size"] == len(content)
    assert obj["mtime"] == os.stat(path).st_mtime_ns
    assert isinstance(obj["mtime"], int)
    assert obj["algo"] == algo
    assert obj["hash"] == REFERENCE[algo](content)
    assert obj["error"] is None
    assert obj["root"] == root


#: b3sum 1.2.0 prints non-UTF-8 names lossily (U+FFFD) and refuses to check them.
B3SUM_SPEC = {k: v for k, v in ODD_SPEC.items() if k != b"latin1-\xe9\xff.bin"}


@pytest.fixture
def odd_tree(make_tree):
    return make_tree(ODD_SPEC)


@pytest.fixture
def plain_tree(make_tree):
    return make_tree(PLAIN_SPEC)


# -- sums output against the coreutils / b3sum tools --------------------------------------


@pytest.mark.parametrize(("algo", "program"), [("sha256", "sha256sum"), ("md5", "md5sum")])
@pytest.mark.parametrize("tag", [False, True])
def test_sums_equal_coreutils_output(cli, odd_tree, tmp_path, algo, program, tag):
    exe = need(program)
    files = sorted(files_below(odd_tree))
    flags = ["--tag"] if tag else []
    expected = tool(exe, *flags, *files, cwd=tmp_path).stdout
    result = cli("scan", "-q", "-j2", "-a", algo, *flags, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(lines(result.stdout)) == sorted(lines(expected))
    assert len(lines(result.stdout)) == len(files)


def test_sums_equal_b3sum_output(cli, make_tree, tmp_path):
    exe = need("b3sum")
    files = sorted(files_below(make_tree(B3SUM_SPEC)))
    expected = tool(exe, *files, cwd=tmp_path).stdout
    result = cli("scan", "-q", "-a", "blake3", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(lines(result.stdout)) == sorted(lines(expected))


SHA256_CHECK = ["sha256sum", "-c", "--strict"]
MD5_CHECK = ["md5sum", "-c", "--strict"]
B3_CHECK = ["b3sum", "--check"]  # b3sum has no BSD tag form


@pytest.mark.parametrize(
    ("algo", "argv", "tag"),
    [
        ("sha256", SHA256_CHECK, False),
        ("sha256", SHA256_CHECK, True),
        ("md5", MD5_CHECK, False),
        ("md5", MD5_CHECK, True),
        ("blake3", B3_CHECK, False),
    ],
)
def test_peer_tool_checks_parhash_sums(cli, make_tree, tmp_path, algo, argv, tag):
    exe = need(argv[0])
    tree = make_tree(B3SUM_SPEC if algo == "blake3" else ODD_SPEC)
    sums = tmp_path / "parhash.sums"
    flags = ["--tag"] if tag else []
    result = cli("scan", "-q", "-a", algo, *flags, "-o", sums, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checked = tool(exe, *argv[1:], sums.name, cwd=tmp_path)
    ok_lines = [line for line in lines(checked.stdout) if line.endswith(b": OK")]
    assert len(ok_lines) == len(files_below(tree))


@pytest.mark.parametrize(
    ("algo", "argv"), [("sha256", SHA256_CHECK), ("md5", MD5_CHECK), ("blake3", B3_CHECK)]
)
def test_peer_tool_checks_names_with_carriage_returns(cli, make_tree, tmp_path, algo, argv):
    """A name ending in CR must survive: coreutils strips a CR before the line's newline
    (DOS line endings) unless it is escaped, which is why sha256sum writes it as ``\\r``."""
    exe = need(argv[0])
    make_tree({"end\r": b"cr at end", "mid\rdle": b"cr inside", "plain": b"p"})
    sums = tmp_path / "parhash.sums"
    result = cli("scan", "-q", "-a", algo, "-o", sums, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checked = tool(exe, *argv[1:], sums.name, cwd=tmp_path, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_zero_terminated_equals_sha256sum_z(cli, odd_tree, tmp_path):
    exe = need("sha256sum")
    files = sorted(files_below(odd_tree))
    for flags in ([], ["--tag"]):
        expected = tool(exe, "-z", *flags, *files, cwd=tmp_path).stdout
        result = cli("scan", "-q", "-z", "-a", "sha256", *flags, "tree", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        records = lines(result.stdout, b"\0")
        assert sorted(records) == sorted(lines(expected, b"\0"))
        assert len(records) == len(files)
        assert not result.stdout.startswith(b"\\")
        assert any(b"new\nline" in r for r in records)  # not escaped


# -- the xxHash family --------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["xxh3", "xxh128", "xxh64", "xxh32", "blake3"])
def test_digests_match_python_modules(cli, odd_tree, tmp_path, algo):
    files = files_below(odd_tree)
    result = cli("scan", "-q", "-f", "jsonl", "-a", algo, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = jsonl(result)
    assert {os.fsencode(r["path"]) for r in records} == set(files)
    for record in records:
        check_record(record, files[os.fsencode(record["path"])], algo, "tree", base=tmp_path)


XXHSUM_FLAGS = {"xxh32": "-H0", "xxh64": "-H1", "xxh128": "-H2", "xxh3": "-H3"}


@pytest.mark.parametrize("algo", sorted(XXHSUM_FLAGS))
def test_xxh_matches_xxhsum(cli, plain_tree, tmp_path, algo):
    exe = need("xxhsum")
    files = files_below(plain_tree)
    # xxhsum 0.8.1 prints XXH3 in BSD tag form only; the others in both forms.
    for tag in (True,) if algo == "xxh3" else (False, True):
        tag_flags = ["--tag"] if tag else []
        expected = tool(exe, *tag_flags, XXHSUM_FLAGS[algo], *sorted(files), cwd=tmp_path).stdout
        result = cli("scan", "-q", "-a", algo, *tag_flags, "tree", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        got = lines(result.stdout)
        assert sorted(got) == sorted(lines(expected))
        # And each digest agrees with the xxhash module.
        assert len(got) == len(files)
        for line in got:
            if tag:
                match = re.fullmatch(rb"(XXH\d+) \((.*)\) = ([0-9a-f]+)", line, re.DOTALL)
                assert match, line
                assert match[1].decode() == ALGORITHMS[algo].tag
                name, digest = match[2], match[3]
            else:
                digest, name = line.split(b"  ", 1)
            assert digest.decode() == REFERENCE[algo](files[name])


def test_xxhsum_checks_parhash_xxh3_tag_output(cli, plain_tree, tmp_path):
    exe = need("xxhsum")
    sums = tmp_path / "parhash.xxh3"
    result = cli("scan", "-q", "--tag", "-a", "xxh3", "-o", sums, "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checked = tool(exe, "-c", sums.name, cwd=tmp_path)
    assert checked.stdout.count(b": OK") == len(files_below(plain_tree))


# -- structured formats -------------------------------------------------------------------


def test_jsonl_records(cli, odd_tree, tmp_path):
    files = files_below(odd_tree)
    result = cli("scan", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = jsonl(result)
    assert len(records) == len(files)
    assert {os.fsencode(r["path"]) for r in records} == set(files)
    for record in records:
        check_record(record, files[os.fsencode(record["path"])], "sha256", "tree", base=tmp_path)


def test_json_document(cli, odd_tree, tmp_path):
    files = files_below(odd_tree)
    result = cli("scan", "-f", "json", "-a", "SHA256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout.decode("utf-8"))
    assert doc["header"]["manifest_version"] == doc["header"]["version"] == 2
    assert doc["header"]["algo"] == "sha256"
    assert doc["header"]["roots"] == ["tree"]
    assert {os.fsencode(r["path"]) for r in doc["files"]} == set(files)
    for record in doc["files"]:
        check_record(record, files[os.fsencode(record["path"])], "sha256", "tree", base=tmp_path)
    assert doc["summary"]["files"] == len(files)
    assert doc["summary"]["errors"] == 0
    assert doc["summary"]["bytes"] == sum(len(c) for c in files.values())


def test_csv_rows(cli, odd_tree, tmp_path):
    files = files_below(odd_tree)
    result = cli("scan", "-f", "csv", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in files:
        assert name in result.stdout  # exact bytes, also for the non-UTF-8 name
    rows = csv_table(result.text)
    assert rows[0] == KEYS
    assert len(rows) == len(files) + 1
    for row in rows[1:]:
        obj = dict(zip(KEYS, row, strict=True))
        obj["size"] = int(obj["size"])
        obj["mtime"] = int(obj["mtime"])
        obj["error"] = obj["error"] or None
        check_record(obj, files[os.fsencode(obj["path"])], "sha256", "tree", base=tmp_path)


def test_json_of_empty_directory(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("scan", "-q", "-f", "json", "empty", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["files"] == []
    assert doc["summary"]["files"] == 0
    sums = cli("scan", "-q", "empty", cwd=tmp_path)
    assert (sums.returncode, sums.stdout) == (0, b"")


def test_empty_files(cli, make_tree, tmp_path):
    make_tree({"e1": b"", "d": {"e2": b""}})
    result = cli("scan", "-q", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = jsonl(result)
    assert sorted(r["path"] for r in records) == ["tree/d/e2", "tree/e1"]
    for record in records:
        check_record(record, b"", "sha256", "tree", base=tmp_path)


def test_deep_tree(cli, tmp_path):
    depth = 300
    deep = tmp_path.joinpath("tree", *["d"] * depth)
    deep.mkdir(parents=True)
    (deep / "bottom").write_bytes(b"at the bottom")
    result = cli("scan", "-q", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result)
    assert record["path"] == "/".join(["tree", *["d"] * depth, "bottom"])
    check_record(record, b"at the bottom", "sha256", "tree", base=tmp_path)


# -- arguments ----------------------------------------------------------------------------


def test_multiple_paths_including_a_file(cli, make_tree, tmp_path):
    make_tree({"a": b"1", "sub": {"b": b"2", "c": {"d": b"3"}}})
    make_tree({"f.txt": b"file arg", "ignored": b"x"}, name="other")
    args = ["tree/sub", "other/f.txt", "tree/a"]
    result = cli("scan", "-q", "-f", "jsonl", "-a", "sha256", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = {r["path"]: r for r in jsonl(result)}
    assert set(records) == {"tree/sub/b", "tree/sub/c/d", "other/f.txt", "tree/a"}
    check_record(records["tree/sub/b"], b"2", "sha256", "tree/sub", base=tmp_path)
    check_record(records["tree/sub/c/d"], b"3", "sha256", "tree/sub", base=tmp_path)
    check_record(records["other/f.txt"], b"file arg", "sha256", "other/f.txt", base=tmp_path)
    check_record(records["tree/a"], b"1", "sha256", "tree/a", base=tmp_path)


def test_leading_dash_names_as_arguments(cli, make_tree, tmp_path):
    tree = make_tree({"-rf": b"dash", "--version": b"dd"})
    exe = need("sha256sum")
    expected = tool(exe, "--", "-rf", "--version", cwd=tree).stdout
    result = cli("scan", "-q", "-a", "sha256", "--", "-rf", "--version", cwd=tree)
    assert result.returncode == 0, result.stderr
    assert sorted(lines(result.stdout)) == sorted(lines(expected))


def test_non_utf8_path_argument(cli, make_tree, tmp_path):
    make_tree({b"\xfe\xed": b"bytes"}, name="root-\udcff")  # directory b"root-\xff"
    root = os.fsdecode(b"root-\xff")
    result = cli("scan", "-q", "-f", "jsonl", "-a", "sha256", os.fsencode(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result)
    assert os.fsencode(record["path"]) == b"root-\xff/\xfe\xed"
    assert os.fsencode(record["root"]) == b"root-\xff"
    assert record["hash"] == hashlib.sha256(b"bytes").hexdigest()


def test_relative(cli, make_tree, tmp_path):
    make_tree({"a": b"1", "sub": {"b": b"2"}})
    make_tree({"f.txt": b"3"}, name="other")
    args = ["-q", "--relative", "-f", "jsonl", "-a", "sha256", "tree", "other/f.txt"]
    result = cli("scan", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = {r["path"]: (r["hash"], r["root"]) for r in jsonl(result)}
    assert got == {
        "a": (REFERENCE["sha256"](b"1"), "tree"),
        "sub/b": (REFERENCE["sha256"](b"2"), "tree"),
        "f.txt": (REFERENCE["sha256"](b"3"), "other/f.txt"),
    }
    # Relative sums lines check from inside the root.
    exe = need("sha256sum")
    sums = cli("scan", "-q", "--relative", "-a", "sha256", "tree", cwd=tmp_path)
    (tmp_path / "tree" / "rel.sums").write_bytes(sums.stdout)
    tool(exe, "-c", "--strict", "rel.sums", cwd=tmp_path / "tree")


def test_sort(cli, make_tree, tmp_path):
    # Walk order lists a directory's files before its subdirectories, so "zz" comes
    # before "aa/x" unless the output is sorted.
    tree = make_tree(
        {
            "zz": b"1",
            "B": b"2",
            "a-b": b"3",
            "aa": {"x": b"4", "y": {"z": b"5"}},
            b"\xff": b"6",
            "😀": b"7",
            **{f"f{i:03}": b"%d" % i for i in range(60)},
        }
    )
    files = files_below(tree)
    for fmt_args in (["-z"], ["-f", "jsonl"]):
        result = cli("scan", "-q", "--sort", "-j2", "-a", "sha256", *fmt_args, "tree", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        if fmt_args == ["-z"]:
            names = [r.split(b"  ", 1)[1] for r in lines(result.stdout, b"\0")]
        else:
            names = [os.fsencode(r["path"]) for r in jsonl(result)]
        assert names == sorted(files)


def test_output_file(cli, plain_tree, tmp_path):
    exe = need("sha256sum")
    out = tmp_path / "out.sha256"
    out.write_bytes(b"stale content that must disappear\n" * 100)
    result = cli("scan", "-a", "sha256", "-o", "out.sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    expected = tool(exe, *sorted(files_below(plain_tree)), cwd=tmp_path).stdout
    assert sorted(lines(out.read_bytes())) == sorted(lines(expected))
    assert sorted(os.listdir(tmp_path)) == ["out.sha256", "tree"]  # no temporary left over


def test_output_file_inside_scanned_tree(cli, plain_tree, tmp_path):
    """``parhash scan . -o manifest`` must not list its own temporary file."""
    exe = need("sha256sum")
    result = cli("scan", "-q", "-a", "sha256", "-o", "manifest.sha256", ".", cwd=plain_tree)
    assert result.returncode == 0, result.stderr
    manifest = (plain_tree / "manifest.sha256").read_bytes()
    assert b"parhash-tmp" not in manifest
    checked = tool(exe, "-c", "--strict", "manifest.sha256", cwd=plain_tree, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_output_into_missing_directory_is_fatal(cli, plain_tree, tmp_path):
    result = cli("scan", "-o", "no/such/dir/out", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("parhash: error:")
    assert "no/such/dir/out" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["tree"]


@pytest.mark.parametrize("extra", [[], ["tree"]])
def test_missing_root_is_an_error_record(cli, plain_tree, tmp_path, extra):
    """As sha256sum and b3sum: the other PATHs are hashed, the missing one is an error
    record (``missing-dir: No such file or directory``), exit 1 (issue 10 item 15)."""
    result = cli("scan", "-a", "sha256", "-f", "jsonl", *extra, "missing-dir", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"parhash: warning: missing-dir: {os.strerror(2)}" in result.stderr.splitlines()
    records = {r["path"]: r for r in jsonl(result)}
    missing = records.pop("missing-dir")
    assert missing["error"] == os.strerror(2) and missing["hash"] is None
    expected = {os.fsdecode(p) for p in files_below(plain_tree)} if extra else set()
    assert set(records) == expected and (records or not extra)
    for path, record in records.items():
        check_record(record, Path(tmp_path, path).read_bytes(), "sha256", "tree", base=tmp_path)


def test_unknown_algorithm_lists_valid_names(cli, plain_tree, tmp_path):
    result = cli("scan", "-a", "nope", "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "Traceback" not in result.stderr
    assert "nope" in result.stderr
    for name in ALGORITHMS:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.stderr), name


def test_algorithm_alias(cli, make_tree, tmp_path):
    make_tree({"a": b"alias"})
    result = cli("scan", "-q", "-a", "XXH3_64", "-f", "jsonl", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result)
    check_record(record, b"alias", "xxh3", "tree", base=tmp_path)


def test_fifo_in_tree(cli, make_tree, tmp_path):
    tree = make_tree({"a": b"1", "z": b"2", "d": {"b": b"3"}})
    os.mkfifo(tree / "m-fifo")
    result = cli("scan", "-j2", "-f", "jsonl", "-a", "sha256", "tree", cwd=tmp_path, timeout=20)
    assert result.returncode == 1, result.stderr
    records = {r["path"]: r for r in jsonl(result)}
    assert set(records) == {"tree/a", "tree/z", "tree/d/b", "tree/m-fifo"}
    fifo = records.pop("tree/m-fifo")
    assert "not a regular file" in fifo["error"]
    assert fifo["hash"] is None and fifo["size"] is None and fifo["mtime"] is None
    for path, record in records.items():
        check_record(record, Path(tmp_path, path).read_bytes(), "sha256", "tree", base=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "tree/m-fifo" in warnings[0]


def test_fifo_as_argument(tmp_path):
    """A FIFO named on the command line is read to EOF, as sha256sum reads it (issue 10
    item 14); met while walking it is still never opened (test_fifo_in_tree)."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "f").write_bytes(b"f")
    args = [sys.executable, "-m", "parhash", "scan", "-q", "-a", "sha256", "-f", "jsonl"]
    scan = subprocess.Popen([*args, "pipe", "f"], cwd=tmp_path, stdout=subprocess.PIPE)
    with open(tmp_path / "pipe", "wb") as writer:  # blocks until parhash opens it
        writer.write(b"through the pipe\n" * 1000)
    out, _ = scan.communicate(timeout=60)
    assert scan.returncode == 0
    records = {r["path"]: r for r in jsonl_records(out)}
    assert records["pipe"]["hash"] == hashlib.sha256(b"through the pipe\n" * 1000).hexdigest()
    assert records["pipe"]["size"] == 17_000 and records["pipe"]["error"] is None
    check_record(records["f"], b"f", "sha256", "f", base=tmp_path)


def test_exclude(cli, make_tree, tmp_path):
    make_tree(
        {
            "keep.txt": b"1",
            "debug.log": b"2",
            "build": {"out.o": b"3"},
            "src": {"main.c": b"4", "gen": {"g.c": b"5"}, "x.log": b"6"},
            "lib": {"src": {"gen": {"kept.c": b"7"}}},
        }
    )
    excludes = ["-e", "*.log", "--exclude", "build", "-e", "src/gen"]
    result = cli("scan", "-q", *excludes, "-f", "jsonl", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["path"] for r in jsonl(result)) == [
        "tree/keep.txt",
        "tree/lib/src/gen/kept.c",
        "tree/src/main.c",
    ]


def test_jobs_1_and_2_give_the_same_records(cli, make_tree, tmp_path):
    spec = {f"d{d}": {f"f{i}": b"%d-%d" % (d, i) for i in range(80)} for d in range(5)}
    tree = make_tree(spec)
    os.mkfifo(tree / "d2" / "pipe")
    runs = []
    for jobs in ("1", "2"):
        result = cli("scan", "-q", "-j", jobs, "-f", "jsonl", "-a", "md5", "tree", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        runs.append(sorted(json.dumps(r, sort_keys=True) for r in jsonl(result)))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 401
    files = files_below(tree)
    for line in runs[1]:
        record = json.loads(line)
        if record["error"] is None:
            assert record["hash"] == REFERENCE["md5"](files[os.fsencode(record["path"])])


@pytest.mark.parametrize("jobs", [1, 2])
def test_library_scan(odd_tree, jobs):
    files = files_below(odd_tree)
    base = os.fsencode(odd_tree.parent)
    records = list(parhash.scan([str(odd_tree)], algo="sha256", jobs=jobs))
    assert all(type(r) is FileRecord for r in records)
    assert len(records) == len(files)
    for record in records:
        assert record.ok and record.error is None
        rel = os.path.relpath(os.fsencode(record.path), base)
        assert record.digest == REFERENCE["sha256"](files[rel])
        assert record.size == len(files[rel])
        assert record.mtime_ns == os.stat(record.path).st_mtime_ns
        assert record.root == str(odd_tree)


def test_library_scan_errors(tmp_path):
    (record,) = parhash.scan([str(tmp_path / "missing")], jobs=1)
    assert record.error == os.strerror(2) and record.digest is None
    with pytest.raises(KeyError):
        list(parhash.scan([str(tmp_path)], algo="nope", jobs=1))


def test_stdout_carries_data_only(cli, odd_tree, tmp_path):
    result = cli("scan", "-a", "sha256", "tree", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = lines(result.stdout)
    assert len(records) == len(files_below(odd_tree))
    for line in records:
        assert re.fullmatch(rb"\\?[0-9a-f]{64}  .+", line, re.DOTALL), line
    summary = result.stderr.strip().splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(f"parhash: hashed {len(records)} files")
    assert summary[0].endswith(", 0 errors")


def test_quiet_prints_no_summary(cli, plain_tree, tmp_path):
    result = cli("scan", "-q", "tree", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(lines(result.stdout)) == len(files_below(plain_tree))
