"""How ``parhash audit`` reads manifests (issue 10, items 4 and 17), through the real CLI.

Item 4: every field of every record is validated (a digest in upper case is the same
digest; anything malformed is exit 2 with FILE:LINE). Item 17: manifests audit must read:
of an empty tree, reformatted by ``jq``/``json.dumps(indent=2)``, a bare JSON array, csv
columns in any order, and a manifest on stdin or a FIFO, read once and streamed.

Manifests are built here from ``os.stat`` and hashlib/blake3 (or taken with ``parhash
scan`` and then reformatted by other tools); expected digests are computed here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from conftest import run_cli, write_tree
from test_audit import classes, events, run_all

TREE = {
    "a.txt": b"alpha\n",
    "b.txt": b"bravo bravo\n",
    "sub": {"c.bin": bytes(range(256))},
}
FIELDS = ("path", "size", "mtime", "algo", "hash", "error", "root")
FRESH = b"dropped in later\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def records(tree: Path, root: str = "tree", *, blake: bool = False) -> list[dict]:
    """Manifest records of ``tree`` as parhash documents them, made from os.stat and
    hashlib (not from parhash): sorted by path, ``root/relative`` paths."""
    out = []
    for dirpath, dirs, names in os.walk(tree):
        dirs.sort()
        for name in sorted(names):
            full = Path(dirpath) / name
            data = full.read_bytes()
            st = full.stat()
            record = {
                "path": f"{root}/{full.relative_to(tree).as_posix()}",
                "size": st.st_size,
                "mtime": st.st_mtime_ns,
                "algo": "sha256",
                "hash": sha256(data),
                "error": None,
                "root": root,
            }
            if blake:
                record["sha256"] = record["hash"]
                record["blake3"] = blake3.blake3(data).hexdigest()
            out.append(record)
    return out


def header(roots: list[str], base: Path) -> dict:
    """A header as the contract describes it, extra keys included (readers ignore them)."""
    return {
        "tool": "parhash",
        "tool_version": "0.1.0",
        "manifest_version": 1,
        "algo": "sha256",
        "algos": ["sha256"],
        "roots": roots,
        "roots_abs": [str(base / r) for r in roots],
        "host": "testhost",
        "relative": False,
        "options": {"exclude": [], "hidden": True},
        "started": "2026-01-01T00:00:00Z",
        "command": ["parhash", "scan"],
    }


def jsonl_text(recs: list[dict], head: dict | None = None) -> str:
    lines = ([json.dumps({"header": head})] if head else []) + [json.dumps(r) for r in recs]
    return "".join(line + "\n" for line in lines)


def csv_text(recs: list[dict], head: dict | None = None, columns=FIELDS, **kw) -> str:
    buf = io.StringIO()
    if head:
        buf.write("#parhash-header " + json.dumps(head, separators=(",", ":")) + "\n")
    writer = csv.writer(buf, lineterminator="\r\n", **kw)
    writer.writerow(columns)
    for r in recs:
        writer.writerow(["" if r.get(c) is None else r[c] for c in columns])
    return buf.getvalue()


def cli(base: Path, *args: str, **kw):
    return run_cli(*args, cwd=base, **kw)


def audit(base: Path, *args: str, **kw):
    return cli(base, "audit", "-j1", "-f", "jsonl", "--verbose", *args, **kw)


def one_error_line(result) -> str:
    """A fatal manifest problem: exit 2, nothing on stdout, exactly one stderr line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == b""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("parhash: error: "), lines[0]
    return lines[0]


ALL_UNCHANGED = {"unchanged": {"a.txt", "b.txt", "sub/c.bin"}}


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "tree", TREE)


def change_tree(tree: Path) -> dict[str, set[str]]:
    """Edit, remove and add one file each; the classes an audit must then report."""
    (tree / "a.txt").write_bytes(b"alpha, edited and longer\n")
    (tree / "b.txt").unlink()
    (tree / "new.txt").write_bytes(FRESH)
    return {
        "modified": {"a.txt"},
        "removed": {"b.txt"},
        "added": {"new.txt"},
        "unchanged": {"sub/c.bin"},
    }


def assert_sees_changes(tree: Path, manifest: str) -> None:
    """Change the tree, audit it against ``manifest`` (of the tree before): each change is
    in its class, and the old digest of the edited file is the one hashlib computes."""
    expected = change_tree(tree)
    result = audit(tree.parent, manifest)
    assert result.returncode == 1, result.stderr
    assert classes(result) == expected
    (modified,) = [e for e in events(result) if e["class"] == "modified"]
    assert modified["old"]["hash"] == sha256(TREE["a.txt"])


# -- item 4: every field validated -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_upper_case_digest_is_the_same_digest(tree, fmt):
    """A Windows tool's upper-case hex is the right digest: unchanged, not corrupted."""
    base = tree.parent
    recs = records(tree)
    for r in recs:
        r["hash"] = r["hash"].upper()
    text = {
        "jsonl": lambda: jsonl_text(recs),
        "json": lambda: json.dumps(recs, indent=2),
        "csv": lambda: csv_text(recs),
    }[fmt]()
    (base / f"m.{fmt}").write_text(text)
    result = audit(base, f"m.{fmt}")
    assert result.returncode == 0, result.stderr
    assert classes(result) == ALL_UNCHANGED
    by_path = {e["path"]: e["old"]["hash"] for e in events(result)}
    assert by_path["a.txt"] == sha256(TREE["a.txt"])  # stored lower case


def _good_sha() -> str:
    return sha256(TREE["b.txt"])


#: name -> (field, bad value, word the message must contain). Record 2 (line 2) is broken.
BAD_JSON_FIELDS = {
    "hash-zz": ("hash", "zz", "hash"),
    "hash-number": ("hash", 12345, "hash"),
    "hash-list": ("hash", ["ab"], "hash"),
    "hash-one-short": ("hash", _good_sha()[:-1], "hash"),
    "hash-one-long": ("hash", _good_sha() + "0", "hash"),
    "hash-not-hex": ("hash", "g" * 64, "hash"),
    "hash-0x": ("hash", "0x" + _good_sha()[2:], "hash"),
    "hash-null-without-error": ("hash", None, "neither"),
    "hash-and-error": ("error", "Permission denied", "both"),
    "error-number": ("error", 5, "error"),
    "size-negative": ("size", -1, "size"),
    "size-float": ("size", 12.0, "size"),
    "size-bool": ("size", True, "size"),
    "size-string": ("size", "12", "size"),
    "size-10e29": ("size", 10**29, "size"),
    "size-30-digits": ("size", int("9" * 30), "size"),
    "size-2**63": ("size", 2**63, "size"),
    "mtime-float": ("mtime", 1.5, "mtime"),
    "mtime-string": ("mtime", "1600000000", "mtime"),
    "mtime-bool": ("mtime", False, "mtime"),
    "mtime-10e29": ("mtime", 10**29, "mtime"),
    "path-empty": ("path", "", "path"),
    "path-null": ("path", None, "path"),
    "path-number": ("path", 7, "path"),
    "path-nul": ("path", "tree/b\0.txt", "path"),
    "path-lone-surrogate": ("path", "tree/\ud800.txt", "path"),
    "root-null": ("root", None, "root"),
    "root-empty": ("root", "", "root"),
    "algo-unknown": ("algo", "sha999", "algo"),
    "algo-number": ("algo", 256, "algo"),
    "blake3-zz": ("blake3", "zz", "blake3"),
    "sha256-key-differs": ("sha256", "0" * 64, "sha256"),
}

#: name -> (column, bad cell, word). Row 2 of the data (line 3) is broken.
BAD_CSV_CELLS = {
    "size-negative": ("size", "-5", "size"),
    "size-plus": ("size", "+12", "size"),
    "size-space": ("size", " 12", "size"),
    "size-underscore": ("size", "1_2", "size"),
    "size-exponent": ("size", "1e3", "size"),
    "size-30-digits": ("size", "9" * 30, "size"),
    "size-2**63": ("size", str(2**63), "size"),
    "mtime-float": ("mtime", "1.5", "mtime"),
    "mtime-30-digits": ("mtime", "9" * 30, "mtime"),
    "hash-zz": ("hash", "zz", "hash"),
    "hash-one-short": ("hash", _good_sha()[:-1], "hash"),
    "hash-and-error": ("error", "Permission denied", "both"),
    "no-hash-no-error": ("hash", "", "neither"),
    "path-empty": ("path", "", "path"),
    "root-empty": ("root", "", "root"),
    "algo-unknown": ("algo", "sha999", "algo"),
    "blake3-zz": ("blake3", "zz", "blake3"),
}


@pytest.fixture(scope="module")
def bad_field_audits(tmp_path_factory):
    """One manifest per bad field (jsonl and csv, with blake3 extra digests), all audited."""
    base = tmp_path_factory.mktemp("fields")
    tree = write_tree(base / "tree", TREE)
    recs = records(tree, blake=True)
    calls = {}
    for name, (key, value, _) in BAD_JSON_FIELDS.items():
        broken = [dict(r) for r in recs]
        broken[1][key] = value
        (base / f"{name}.jsonl").write_text(jsonl_text(broken))
        calls[f"{name}.jsonl"] = ("audit", "-j1", f"{name}.jsonl")
    columns = (*FIELDS, "sha256", "blake3")
    for name, (key, cell, _) in BAD_CSV_CELLS.items():
        rows = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in recs]
        rows[1][key] = cell
        (base / f"{name}.csv").write_text(csv_text(rows, columns=columns))
        calls[f"{name}.csv"] = ("audit", "-j1", f"{name}.csv")
    (base / "good.jsonl").write_text(jsonl_text(recs))
    (base / "good.csv").write_text(csv_text(recs, columns=columns))
    for name in ("good.jsonl", "good.csv"):
        calls[name] = ("audit", "-j1", "-f", "jsonl", "-v", name)
    return run_all(base, calls)


@pytest.mark.parametrize("name", ["good.jsonl", "good.csv"])
def test_well_formed_multi_algorithm_manifest_is_read(bad_field_audits, name):
    result = bad_field_audits[name]
    assert result.returncode == 0, result.stderr
    assert classes(result) == ALL_UNCHANGED


@pytest.mark.parametrize(
    "name", [f"{n}.jsonl" for n in BAD_JSON_FIELDS] + [f"{n}.csv" for n in BAD_CSV_CELLS]
)
def test_bad_field_is_fatal_with_file_and_line(bad_field_audits, name):
    stem, ext = name.rsplit(".", 1)
    word = (BAD_JSON_FIELDS if ext == "jsonl" else BAD_CSV_CELLS)[stem][2]
    line = one_error_line(bad_field_audits[name])
    expected_line = 2 if ext == "jsonl" else 3  # csv: the column row is line 1
    assert f" {name}:{expected_line}: " in line, line
    assert word in line, line
    assert len(line) < 300, line  # a huge bad value is not echoed whole


@pytest.mark.parametrize("with_header", [False, True])
def test_record_of_another_algorithm_names_its_line(tree, with_header):
    base = tree.parent
    recs = records(tree)
    recs[2].update(algo="md5", hash=hashlib.md5(TREE["sub"]["c.bin"]).hexdigest())
    head = header(["tree"], base) if with_header else None
    (base / "m.jsonl").write_text(jsonl_text(recs, head))
    message = one_error_line(audit(base, "m.jsonl"))
    line = 4 if with_header else 3
    assert f" m.jsonl:{line}: " in message and "md5" in message, message


@pytest.mark.parametrize("tagged", [False, True])
def test_sums_digest_of_the_wrong_length_is_fatal(tree, tagged):
    """A sums manifest's digests are checked against the algorithm's length too."""
    base = tree.parent
    lines = []
    for i, name in enumerate(["a.txt", "b.txt"]):
        digest = sha256((tree / name).read_bytes())[: 63 if i else 64]
        lines.append(f"SHA256 (tree/{name}) = {digest}" if tagged else f"{digest}  tree/{name}")
    (base / "m.sha256").write_text("\n".join(lines) + "\n")
    message = one_error_line(audit(base, "-a", "sha256", "m.sha256"))
    assert " m.sha256:2: " in message and "64 hex digits" in message, message


def test_bad_field_in_indented_json_names_the_records_line(tree):
    """json: the line where the bad record starts, in a document laid out by indent=2."""
    base = tree.parent
    recs = records(tree)
    recs[2]["size"] = -3
    text = json.dumps({"header": header(["tree"], base), "files": recs}, indent=2)
    (base / "m.json").write_text(text)
    lines = text.splitlines()
    path_line = next(i for i, t in enumerate(lines) if '"path": "tree/sub/c.bin"' in t)
    assert lines[path_line - 1].strip() == "{"
    message = one_error_line(audit(base, "m.json"))
    assert f" m.json:{path_line}: " in message and "size" in message, message  # 1-based


def test_names_that_are_not_utf8_and_odd_error_text(tmp_path):
    """A name with a byte that is not UTF-8 (JSON carries it as \\udcff) is a valid path;
    an error message with a lone surrogate is shown escaped, not a crash."""
    tree = write_tree(tmp_path / "tree", {**TREE, b"\xff-name": b"latin-1 name\n"})
    recs = records(tree)
    assert any("\udcff" in r["path"] for r in recs)
    gone = {**recs[0], "path": "tree/gone", "hash": None, "size": None, "error": "odd \ud800"}
    (tmp_path / "m.jsonl").write_text(jsonl_text([*recs, gone]))
    result = audit(tmp_path, "m.jsonl")
    assert result.returncode == 1, result.stderr
    found = classes(result)
    assert found.pop("removed") == {"gone"}
    assert found == {"unchanged": {"a.txt", "b.txt", "sub/c.bin", "\udcff-name"}}


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_deeply_nested_value_is_an_error_not_a_crash(tree, fmt):
    base = tree.parent
    deep = '{"path": ' + "[" * 100_000 + "]" * 100_000 + "}"
    good = json.dumps(records(tree)[0])
    text = f"{good}\n{deep}\n" if fmt == "jsonl" else f"[\n{good},\n{deep}\n]\n"
    (base / f"m.{fmt}").write_text(text)
    message = one_error_line(audit(base, f"m.{fmt}"))
    assert f" m.{fmt}:{2 if fmt == 'jsonl' else 3}: " in message, message


def test_pre_1970_mtime_is_a_valid_mtime(tree):
    """st_mtime_ns is negative for a file from before 1970: parhash writes it, so it must
    read it back (the one range that is signed)."""
    base = tree.parent
    old = -(10**18)  # 1938
    os.utime(tree / "a.txt", ns=(old, old))
    assert (tree / "a.txt").stat().st_mtime_ns == old
    result = cli(base, "scan", "-q", "-j1", "-a", "sha256", "tree", "-f", "jsonl", "-o", "m.jsonl")
    assert result.returncode == 0, result.stderr
    result = audit(base, "m.jsonl")
    assert result.returncode == 0, result.stderr
    assert classes(result) == ALL_UNCHANGED


# -- item 17: empty trees --------------------------------------------------------------------


def _drop_manifests(base: Path) -> dict[str, str]:
    """Manifests of the empty directory ``drop``, each with a header naming it."""
    head = header(["drop"], base)
    return {
        "jsonl": jsonl_text([], head),
        "csv": csv_text([], head),
        "json": json.dumps({"header": head, "files": [], "summary": {"files": 0}}, indent=2),
    }


@pytest.mark.parametrize(
    "fmt", ["jsonl", "csv", "json", "parhash-json", "parhash-jsonl", "parhash-csv"]
)
def test_manifest_of_an_empty_tree_then_a_file_dropped_in(tmp_path, fmt):
    """A drop folder that starts empty can be monitored: the header names its root."""
    (tmp_path / "drop").mkdir()
    if fmt.startswith("parhash-"):
        name = "m." + fmt.split("-")[1]
        result = cli(tmp_path, "scan", "-q", "drop", "-a", "sha256", "-f", name[2:], "-o", name)
        assert result.returncode == 0, result.stderr
    else:
        name = f"m.{fmt}"
        (tmp_path / name).write_text(_drop_manifests(tmp_path)[fmt])
    first = audit(tmp_path, name)
    assert (first.returncode, first.stdout) == (0, b""), first.stderr
    (tmp_path / "drop" / "new.txt").write_bytes(FRESH)
    second = audit(tmp_path, name)
    assert second.returncode == 1, second.stderr
    (added,) = events(second)
    assert (added["class"], added["path"]) == ("added", "new.txt")
    assert added["new"]["hash"] == sha256(FRESH)


HEADERLESS_EMPTY = {
    "zero-bytes.jsonl": "",
    "blank-lines.jsonl": "\n\n",
    "columns-only.csv": ",".join(FIELDS) + "\r\n",
    "array.json": "[]\n",
    "records-only.json": '{"files": []}',
    "zero-bytes.sha256": "",
}


@pytest.mark.parametrize("name", list(HEADERLESS_EMPTY))
def test_headerless_empty_manifest_needs_root(tmp_path, name):
    """No record and no header: nothing says which tree. Say to give ROOT; with it, audit."""
    (tmp_path / "drop").mkdir()
    (tmp_path / name).write_text(HEADERLESS_EMPTY[name])
    message = one_error_line(audit(tmp_path, name))
    assert name in message and "ROOT" in message, message
    (tmp_path / "drop" / "new.txt").write_bytes(FRESH)
    result = audit(tmp_path, "-a", "sha256", name, "drop")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {"added": {"new.txt"}}
    assert events(result)[0]["new"]["hash"] == sha256(FRESH)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_parhash_manifest_of_empty_tree_with_root(tmp_path, fmt):
    """parhash's own jsonl/csv of an empty tree (with or without a header) audits with ROOT."""
    (tmp_path / "drop").mkdir()
    result = cli(tmp_path, "scan", "-q", "drop", "-a", "sha256", "-f", fmt, "-o", f"m.{fmt}")
    assert result.returncode == 0, result.stderr
    (tmp_path / "drop" / "new.txt").write_bytes(FRESH)
    result = audit(tmp_path, f"m.{fmt}", "drop")
    assert result.returncode == 1, result.stderr
    assert classes(result) == {"added": {"new.txt"}}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_header_line_then_records(tree, fmt):
    base = tree.parent
    head = header(["tree"], base)
    recs = records(tree)
    text = jsonl_text(recs, head) if fmt == "jsonl" else csv_text(recs, head)
    (base / f"m.{fmt}").write_text(text)
    assert_sees_changes(tree, f"m.{fmt}")


def test_jsonl_header_only_on_the_first_line(tree):
    base = tree.parent
    recs = records(tree)
    lines = jsonl_text(recs).splitlines(keepends=True)
    lines.insert(1, json.dumps({"header": header(["tree"], base)}) + "\n")
    (base / "m.jsonl").write_text("".join(lines))
    message = one_error_line(audit(base, "m.jsonl"))
    assert " m.jsonl:2: " in message and "header" in message, message


# -- item 17: json however it is laid out ----------------------------------------------------


def _jq(*args: str):
    def reformat(src: Path, dst: Path) -> None:
        with open(dst, "wb") as out:
            subprocess.run(["jq", *args, ".", str(src)], stdout=out, check=True)

    return reformat


def _python(transform, **dump):
    def reformat(src: Path, dst: Path) -> None:
        dst.write_text(json.dumps(transform(json.loads(src.read_text())), **dump))

    return reformat


REFORMATS = {
    "jq": _jq(),  # two-space indent, one key per line
    "jq-sort-keys": _jq("-S"),  # the header now comes after the records
    "jq-compact": _jq("-c"),  # the whole document on one line
    "indent2": _python(lambda doc: doc, indent=2),
    "indent-tab": _python(lambda doc: doc, indent="\t"),
    "array": _python(lambda doc: doc["files"], indent=2),
    "array-one-line": _python(lambda doc: doc["files"]),
    "records-key": _python(lambda doc: {"header": doc["header"], "records": doc["files"]}),
}


@pytest.mark.parametrize("how", list(REFORMATS))
def test_reformatted_json_manifest(tree, how):
    base = tree.parent
    result = cli(base, "scan", "-q", "-j1", "-a", "sha256", "tree", "-f", "json", "-o", "m.json")
    assert result.returncode == 0, result.stderr
    REFORMATS[how](base / "m.json", base / "r.json")
    assert (base / "r.json").read_bytes() != (base / "m.json").read_bytes()
    assert_sees_changes(tree, "r.json")


@pytest.mark.parametrize(
    "name, text, word",
    [
        ("cut.json", lambda t: t[: len(t) // 2], "truncated"),
        ("cut-at-record.json", lambda t: t[: t.index('"path": "tree/b.txt"') - 1], "truncated"),
        ("trailing.json", lambda t: t + "\n{}\n", "after"),
        ("two-arrays.json", lambda t: t[:-2] + ', "records": []}', "second"),
        ("no-array.json", lambda t: t[: t.index('"files"')] + '"summary": {}}', "files"),
        ("number.json", lambda t: t.replace('"size": 6', '"size": ' + "9" * 5000, 1), "JSON"),
    ],
)
def test_broken_json_document(tree, name, text, word):
    base = tree.parent
    recs = records(tree)
    good = json.dumps({"header": header(["tree"], base), "files": recs}, indent=2)
    (base / name).write_text(text(good))
    message = one_error_line(audit(base, name))
    assert f" {name}:" in message and word in message, message


def test_json_memory_bounded_by_a_record_not_the_document(tmp_path):
    """A large ``json.dumps(indent=2)`` manifest is streamed: the audit's peak RSS grows by
    far less than the document (json.load would hold all of it, several times over)."""
    (tmp_path / "tree").mkdir()

    def peak_kib(count: int) -> int:
        name = f"big-{count}.json"
        with open(tmp_path / name, "w") as f:
            f.write('{\n  "header": ' + json.dumps(header(["tree"], tmp_path)) + ',\n  "files": [')
            for i in range(count):
                record = {
                    "path": f"tree/d{i // 1000:04d}/file-{i:08d}.dat",
                    "size": i,
                    "mtime": 1_600_000_000_000_000_000 + i,
                    "algo": "sha256",
                    "hash": f"{i:064x}",
                    "error": None,
                    "root": "tree",
                }
                f.write(("," if i else "") + "\n" + json.dumps(record, indent=2))
            f.write("\n  ]\n}\n")
        size = (tmp_path / name).stat().st_size
        code = (
            "import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        args = [sys.executable, "-m", "parhash", "audit", "-j1", "--fail-on", "none", name]
        out = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, timeout=600
        )
        returncode, kib = map(int, out.stdout.split())
        assert returncode == 0, out.stderr
        return kib, size

    small, _ = peak_kib(1_000)
    large, size = peak_kib(500_000)
    assert size > 100 << 20  # the document: more than 100 MiB of text
    # Measured: 26 MiB at 1,000 records, 60-70 MiB from 100,000 to 1,000,000 (the SQLite
    # page cache and the report fill up, then stay); json.load would need over 500 MiB.
    assert (large - small) * 1024 < size // 2, (small, large, size)


# -- item 17: csv columns by name ------------------------------------------------------------


def test_csv_columns_in_any_order_and_quoted(tree):
    base = tree.parent
    result = cli(base, "scan", "-q", "-j1", "-a", "sha256", "tree", "-f", "csv", "-o", "m.csv")
    assert result.returncode == 0, result.stderr
    text = (base / "m.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text[text.index("path,") :], newline="")))
    columns = ("note", *reversed(FIELDS))
    for row in rows:
        row["note"] = "a column parhash does not know"
    (base / "r.csv").write_text(csv_text(rows, columns=columns, quoting=csv.QUOTE_ALL))
    assert_sees_changes(tree, "r.csv")


@pytest.mark.parametrize("column", FIELDS)
def test_csv_missing_column_is_fatal(tree, column):
    base = tree.parent
    columns = tuple(c for c in FIELDS if c != column)
    (base / "m.csv").write_text(csv_text(records(tree), columns=columns))
    message = one_error_line(audit(base, "m.csv"))
    assert " m.csv:1: " in message and repr(column) in message, message


# -- item 17: stdin and FIFOs, read once -----------------------------------------------------


def _manifests(tree: Path) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """Each manifest format of ``tree`` as bytes, with the options its audit needs."""
    base = tree.parent
    recs = records(tree)
    sums = subprocess.run(
        ["sha256sum", "tree/a.txt", "tree/b.txt", "tree/sub/c.bin"],
        cwd=base,
        capture_output=True,
        check=True,
    ).stdout
    return {
        "jsonl": (jsonl_text(recs).encode(), ()),
        "json": (
            json.dumps({"header": header(["tree"], base), "files": recs}, indent=2).encode(),
            (),
        ),
        "csv": (csv_text(recs).encode(), ()),
        "sums": (sums, ("-a", "sha256")),
        "hashdeep": (
            subprocess.run(
                ["hashdeep", "-r", "-c", "md5,sha256", "tree"],
                cwd=base,
                capture_output=True,
                check=True,
            ).stdout,
            (),
        ),
    }


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "sums", "hashdeep"])
def test_manifest_on_stdin(tree, fmt):
    data, options = _manifests(tree)[fmt]
    expected = change_tree(tree)
    result = audit(tree.parent, *options, "-", input=data)
    assert result.returncode == 1, result.stderr
    assert classes(result) == expected


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "sums", "hashdeep"])
def test_manifest_from_process_substitution(tree, fmt):
    """``audit <(cat m)``: a pipe that can be read once; read twice, the records are gone."""
    base = tree.parent
    data, options = _manifests(tree)[fmt]
    (base / "m.data").write_bytes(data)
    expected = change_tree(tree)
    script = 'exec "$0" -m parhash audit -j1 -f jsonl -v "$@" <(cat m.data)'
    proc = subprocess.run(
        ["bash", "-c", script, sys.executable, *options],
        cwd=base,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    found: dict[str, set[str]] = {}
    for line in proc.stdout.decode().splitlines():
        event = json.loads(line)
        found.setdefault(event["class"], set()).add(event["path"])
    assert found == expected


def test_manifest_from_a_named_fifo(tree):
    """A FIFO opened twice would block the second time (the writer is gone): one open."""
    base = tree.parent
    data, _ = _manifests(tree)["json"]
    (base / "m.json").write_bytes(data)
    os.mkfifo(base / "fifo")
    writer = subprocess.Popen(["sh", "-c", "cat m.json > fifo"], cwd=base)
    try:
        result = run_cli("audit", "-j1", "-f", "jsonl", "-v", "fifo", cwd=base, timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert result.returncode == 0, result.stderr
    assert classes(result) == ALL_UNCHANGED


def test_update_refused_without_a_file_to_rewrite(tree):
    base = tree.parent
    data, _ = _manifests(tree)["jsonl"]
    (base / "m.jsonl").write_bytes(data)
    before = sorted(os.listdir(base))
    message = one_error_line(audit(base, "--update", "-", input=data))
    assert "--update" in message and "stdin" in message, message
    proc = subprocess.run(
        ["bash", "-c", 'exec "$0" -m parhash audit --update <(cat m.jsonl)', sys.executable],
        cwd=base,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    assert re.fullmatch(rb"parhash: error: /dev/fd/\d+: --update [^\n]*\n", proc.stderr), (
        proc.stderr
    )
    assert sorted(os.listdir(base)) == before  # no file named "-", nothing written
    assert (base / "m.jsonl").read_bytes() == data


# -- a JSON header after the records (jq -S, sort_keys=True); --update of a peer's format ----

SORTERS = {"jq-S": _jq("-S"), "sort-keys": _python(lambda doc: doc, indent=2, sort_keys=True)}


def _sorted_manifest(tree: Path, how: str) -> Path:
    """``scan -e logs -f json``, reformatted so "header" sorts after "files"; ``tree/logs``
    holds what the recorded selection leaves out."""
    write_tree(tree / "logs", {"l.log": b"log line\n"})
    base = tree.parent
    result = cli(base, "scan", "-q", "-j1", "-a", "sha256", "tree", "-e", "logs", "-f", "json")
    assert result.returncode == 0, result.stderr
    (base / "m.json").write_bytes(result.stdout)
    SORTERS[how](base / "m.json", base / "s.json")
    text = (base / "s.json").read_text()
    assert text.index('"header"') > text.index('"files"'), text[:200]
    return base / "s.json"


@pytest.mark.parametrize("how", list(SORTERS))
@pytest.mark.parametrize("via", ["file", "stdin", "pipe"])
def test_json_header_after_the_records_is_honoured(tree, how, via):
    """The recorded ``-e logs`` applies wherever the header sits: logs/l.log is not added."""
    base = tree.parent
    _sorted_manifest(tree, how)
    if via == "file":
        result = audit(base, "s.json")
    elif via == "stdin":
        result = audit(base, "-", input=(base / "s.json").read_bytes())
    else:
        script = 'exec "$0" -m parhash audit -j1 -f jsonl -v <(cat s.json)'
        result = subprocess.run(
            ["bash", "-c", script, sys.executable], cwd=base, capture_output=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert classes(result) == ALL_UNCHANGED


@pytest.mark.parametrize("how", list(SORTERS))
def test_update_of_a_sorted_json_manifest_keeps_its_header(tree, how):
    """--update keeps the header's options and leaves the excluded files out."""
    base = tree.parent
    manifest = _sorted_manifest(tree, how)
    recorded = json.loads(manifest.read_text())["header"]["options"]
    assert recorded["exclude"] == ["logs"]
    expected = change_tree(tree)
    result = audit(base, "s.json", "--update", "-q")
    assert result.returncode == 1, result.stderr
    assert classes(result) == expected
    doc = json.loads(manifest.read_text())
    assert doc["header"]["options"] == recorded
    found = {r["path"]: r["hash"] for r in doc["files"]}
    want = {
        f"tree/{name}": sha256((tree / name).read_bytes())
        for name in ("a.txt", "new.txt", "sub/c.bin")
    }
    assert found == want
    again = audit(base, "s.json")
    assert again.returncode == 0, again.stderr
    assert classes(again) == {"unchanged": {"a.txt", "new.txt", "sub/c.bin"}}


@pytest.mark.parametrize("fmt", ["hashdeep", "sums"])
def test_update_of_a_peer_manifest_is_refused(tree, fmt):
    """No parhash header to carry over: exit 2, one line, before any scan; file untouched."""
    base = tree.parent
    if fmt == "hashdeep":
        made = subprocess.run(["hashdeep", "-r", "tree"], cwd=base, capture_output=True)
        name = "hdu.txt"
    else:
        made = subprocess.run(["sha256sum", "tree/a.txt"], cwd=base, capture_output=True)
        name = "m.sha256"
    assert made.returncode == 0, made.stderr
    (base / name).write_bytes(made.stdout)
    (tree / "new.txt").write_bytes(FRESH)
    before = sorted(os.listdir(base))
    message = one_error_line(cli(base, "audit", name, "--update", "-q"))
    assert f"{name}: a {fmt}" in message and "--update" in message, message
    assert "-f jsonl" in message, message
    assert (base / name).read_bytes() == made.stdout
    assert sorted(os.listdir(base)) == before
