"""Unit tests of parhash.report on hand-built FileRecord lists written to io.BytesIO."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket

import pytest

from parhash.layout import FIELDS, MANIFEST_VERSION
from parhash.model import FileRecord, Summary
from parhash.report import (
    CsvReporter,
    JsonlReporter,
    JsonReporter,
    SortedReporter,
    SumsReporter,
    display_path,
    make_reporter,
)

KEYS = ["path", "size", "mtime", "algo", "hash", "error", "root"]

NON_UTF8 = b"tree/caf\xe9 \xff.bin"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ok(path: str, data: bytes, root: str = "tree", mtime: int = 1_700_000_000_123_456_789):
    return FileRecord(path, root, len(data), mtime, sha(data), None)


def bad(path: str, message: str, root: str = "tree"):
    return FileRecord(path, root, None, None, None, message)


RECORDS = [
    ok("tree/a.txt", b"alpha"),
    ok("tree/sub/empty", b"", mtime=5),
    bad("tree/fifo", "not a regular file (FIFO)"),
    ok(os.fsdecode(NON_UTF8), b"latin"),
    ok("tree/new\nline", b"nl"),
    ok("tree/back\\slash", b"bs"),
    ok("tree/unicodé 日本", b"uni"),
    ok('tree/comma, "quote"', b"csv"),
]


def render(fmt: str, records=RECORDS, *, batches=None, roots=("tree",), **kwargs) -> bytes:
    """Run one reporter through begin / write (per batch) / close, return the bytes."""
    stream = io.BytesIO()
    reporter = make_reporter(fmt, stream, "sha256", **kwargs)
    reporter.begin(list(roots))
    summary = Summary()
    for batch in batches if batches is not None else [records]:
        reporter.write(list(batch))
        for record in batch:
            summary.add(record)
    reporter.close(summary)
    return stream.getvalue()


def expected_sums_line(record: FileRecord) -> bytes:
    name = os.fsencode(record.path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + record.digest.encode() + b"  " + name + b"\n"
    return record.digest.encode() + b"  " + name + b"\n"


# -- sums ---------------------------------------------------------------------------------


def test_make_reporter_types():
    stream = io.BytesIO()
    assert type(make_reporter("sums", stream, "sha256")) is SumsReporter
    assert type(make_reporter("jsonl", stream, "sha256")) is JsonlReporter
    assert type(make_reporter("json", stream, "sha256")) is JsonReporter
    assert type(make_reporter("csv", stream, "sha256")) is CsvReporter
    assert type(make_reporter("csv", stream, "sha256", sort=True)) is SortedReporter
    with pytest.raises(ValueError):
        make_reporter("xml", stream, "sha256")
    with pytest.raises(KeyError):
        make_reporter("sums", stream, "nope")


def test_sums_lines_exact_bytes_and_errors_omitted():
    out = render("sums")
    expected = b"".join(expected_sums_line(r) for r in RECORDS if r.ok)
    assert out == expected
    assert b"fifo" not in out
    assert b"  " + NON_UTF8 + b"\n" in out  # the raw, non-UTF-8 bytes of the name


def test_sums_tag_form():
    records = [ok("tree/a b", b"1"), ok("tree/x\ny", b"2")]
    out = render("sums", records, tag=True)
    assert out == (
        f"SHA256 (tree/a b) = {sha(b'1')}\n\\SHA256 (tree/x\\ny) = {sha(b'2')}\n".encode()
    )


def test_sums_tag_uses_the_algorithm_tag():
    stream = io.BytesIO()
    reporter = make_reporter("sums", stream, "blake2b", tag=True)
    reporter.write([FileRecord("f", ".", 1, 1, "ab", None)])
    reporter.close(Summary())
    assert stream.getvalue() == b"BLAKE2b (f) = ab\n"


def test_sums_zero_form():
    records = [ok("tree/x\ny", b"2"), ok(os.fsdecode(b"tree/\\\xfe"), b"3")]
    out = render("sums", records, zero=True)
    assert out == sha(b"2").encode() + b"  tree/x\ny\0" + sha(b"3").encode() + b"  tree/\\\xfe\0"


# -- jsonl --------------------------------------------------------------------------------


def parse_jsonl(out: bytes) -> list[dict]:
    text = out.decode("utf-8")  # strict: JSON text must be valid UTF-8
    assert text.endswith("\n")
    header, *records = [json.loads(line) for line in text.splitlines()]
    assert list(header) == ["header"]  # line 1 is the manifest header, then the records
    return records


def expected_object(record: FileRecord, path: str | None = None) -> dict:
    return {
        "path": record.path if path is None else path,
        "size": record.size,
        "mtime": record.mtime_ns,
        "algo": "sha256",
        "hash": record.digest,
        "error": record.error,
        "root": record.root,
    }


def test_jsonl_records():
    objects = parse_jsonl(render("jsonl"))
    assert len(objects) == len(RECORDS)
    for obj, record in zip(objects, RECORDS, strict=True):
        assert list(obj) == KEYS
        assert obj == expected_object(record)
        assert os.fsencode(obj["path"]) == os.fsencode(record.path)


def test_jsonl_non_utf8_path_round_trips_through_escapes():
    record = ok(os.fsdecode(NON_UTF8), b"x", root=os.fsdecode(b"tr\xeee"))
    out = render("jsonl", [record])
    assert b"\\udce9" in out and b"\\udcff" in out
    (obj,) = parse_jsonl(out)
    assert os.fsencode(obj["path"]) == NON_UTF8
    assert os.fsencode(obj["root"]) == b"tr\xeee"


def test_jsonl_many_batches_and_empty_batch():
    out = render("jsonl", batches=[RECORDS[:3], [], RECORDS[3:]])
    assert [o["path"] for o in parse_jsonl(out)] == [r.path for r in RECORDS]


def test_fields_constant_matches_documented_keys():
    assert list(FIELDS) == KEYS


# -- json ---------------------------------------------------------------------------------


def test_json_document():
    out = render("json", batches=[RECORDS[:2], [], RECORDS[2:5], RECORDS[5:]])
    doc = json.loads(out.decode("utf-8"))
    header = doc["header"]
    assert header["manifest_version"] == header["version"] == MANIFEST_VERSION == 2
    assert header["algo"] == "sha256"
    assert header["roots"] == ["tree"]
    assert doc["files"] == [expected_object(r) for r in RECORDS]
    assert list(doc["files"][0]) == KEYS
    summary = doc["summary"]
    assert summary["files"] == len(RECORDS)
    assert summary["errors"] == 1
    assert summary["bytes"] == sum(r.size for r in RECORDS if r.ok)


def test_json_empty_is_valid():
    doc = json.loads(render("json", []).decode("utf-8"))
    assert doc["files"] == []
    assert doc["summary"]["files"] == 0
    assert doc["summary"]["errors"] == 0


def test_json_non_utf8_path_and_root():
    root = os.fsdecode(b"r\xf0ot")
    record = ok(os.fsdecode(NON_UTF8), b"x", root=root)
    doc = json.loads(render("json", [record], roots=[root]).decode("utf-8"))
    assert os.fsencode(doc["files"][0]["path"]) == NON_UTF8
    assert os.fsencode(doc["files"][0]["root"]) == b"r\xf0ot"
    assert [os.fsencode(r) for r in doc["header"]["roots"]] == [b"r\xf0ot"]


# -- csv ----------------------------------------------------------------------------------


def parse_csv(out: bytes) -> list[list[str]]:
    """The column row and the records (the ``#parhash-header`` line checked and dropped)."""
    text = out.decode("utf-8", "surrogateescape")
    first, rest = text.split("\r\n", 1)
    assert first.startswith("#parhash-header {")
    return list(csv.reader(io.StringIO(rest, newline="")))


def test_csv_rows():
    rows = parse_csv(render("csv"))
    assert rows[0] == KEYS
    assert len(rows) == len(RECORDS) + 1
    for row, record in zip(rows[1:], RECORDS, strict=True):
        assert row == [
            record.path,
            "" if record.size is None else str(record.size),
            "" if record.mtime_ns is None else str(record.mtime_ns),
            "sha256",
            record.digest or "",
            record.error or "",
            record.root,
        ]


def test_csv_non_utf8_path_is_byte_exact():
    record = ok(os.fsdecode(NON_UTF8), b"x")
    out = render("csv", [record])
    assert NON_UTF8 in out  # the raw bytes, not an escape
    rows = parse_csv(out)
    assert os.fsencode(rows[1][0]) == NON_UTF8


def test_csv_empty_has_header_only():
    assert parse_csv(render("csv", [])) == [KEYS]


# -- sorted -------------------------------------------------------------------------------

# In code point order "\udcff" (a lone 0xff byte) sorts before an emoji; in byte order
# 0xf0 (the emoji's first byte) sorts before 0xff. "-" (0x2d) sorts before "/" (0x2f).
SORT_NAMES = [
    os.fsdecode(b"tree/\xff"),
    "tree/😀",
    "tree/a/b",
    "tree/a-b",
    "tree/B",
    "tree/a",
    "tree/\u00e9",
    "tree/z",
]


@pytest.mark.parametrize("fmt", ["sums", "jsonl", "csv", "json"])
def test_sorted_reporter_orders_by_path_bytes(fmt):
    records = [ok(name, name.encode("utf-8", "surrogateescape")) for name in SORT_NAMES]
    out = render(fmt, batches=[records[:3], records[3:]], sort=True)
    expected = sorted(os.fsencode(n) for n in SORT_NAMES)
    if fmt == "sums":
        got = [line.split(b"  ", 1)[1] for line in out.split(b"\n")[:-1]]
    elif fmt == "jsonl":
        got = [os.fsencode(o["path"]) for o in parse_jsonl(out)]
    elif fmt == "csv":
        got = [os.fsencode(row[0]) for row in parse_csv(out)[1:]]
    else:
        got = [os.fsencode(o["path"]) for o in json.loads(out)["files"]]
    assert got == expected


def test_sorted_reporter_sorts_by_displayed_relative_path():
    records = [
        ok("b-root/a", b"1", root="b-root"),
        ok("a-root/z", b"2", root="a-root"),
        ok("a-root/m", b"3", root="a-root"),
    ]
    out = render("sums", records, roots=["b-root", "a-root"], sort=True, relative=True)
    assert [line.split("  ")[1] for line in out.decode().splitlines()] == ["a", "m", "z"]


# -- relative -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "root", "shown"),
    [
        ("tree/a/b.txt", "tree", "a/b.txt"),
        ("tree/a", "tree/", "a"),
        ("./x", ".", "x"),
        ("/etc/hosts", "/", "etc/hosts"),
        ("dir/file.txt", "dir/file.txt", "file.txt"),  # a file given as a PATH argument
        ("file.txt", "file.txt", "file.txt"),
    ],
)
def test_display_path_relative(path, root, shown):
    record = ok(path, b"", root=root)
    assert display_path(record, True) == shown
    assert display_path(record, False) == path


@pytest.mark.parametrize("fmt", ["sums", "jsonl", "json", "csv"])
def test_relative_paths_in_every_format(fmt):
    records = [ok("tree/sub/a", b"1"), ok("other/f.txt", b"2", root="other/f.txt")]
    out = render(fmt, records, roots=["tree", "other/f.txt"], relative=True)
    if fmt == "sums":
        shown = [line.split("  ")[1] for line in out.decode().splitlines()]
    elif fmt == "jsonl":
        shown = [o["path"] for o in parse_jsonl(out)]
    elif fmt == "csv":
        shown = [row[0] for row in parse_csv(out)[1:]]
    else:
        doc = json.loads(out)
        assert doc["header"]["relative"] is True
        shown = [o["path"] for o in doc["files"]]
    assert shown == ["sub/a", "f.txt"]
    if fmt != "sums":  # the root still says where the relative path starts
        roots = (
            [row[6] for row in parse_csv(out)[1:]]
            if fmt == "csv"
            else [o["root"] for o in (parse_jsonl(out) if fmt == "jsonl" else doc["files"])]
        )
        assert roots == ["tree", "other/f.txt"]


# -- the manifest header (the same object H in every format but sums) ---------------------


def header_of(fmt: str, out: bytes) -> dict:
    first = out.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    if fmt == "csv":
        return json.loads(first[len("#parhash-header ") :])
    if fmt == "jsonl":
        return json.loads(first)["header"]
    return json.loads(out)["header"]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_header_in_every_manifest_format(fmt):
    options = {"exclude": ["logs"], "max_depth": 2, "hidden": False}
    out = render(fmt, roots=["tree", "other"], relative=True, options=options)
    header = header_of(fmt, out)
    assert header["version"] == MANIFEST_VERSION
    assert header["tool"] == "parhash"
    assert (header["algo"], header["algos"]) == ("sha256", ["sha256"])
    assert header["roots"] == ["tree", "other"]
    assert header["roots_abs"] == [
        os.path.join(os.getcwd(), "tree"),
        os.path.join(os.getcwd(), "other"),
    ]
    assert header["host"] == socket.gethostname()
    assert header["relative"] is True
    assert header["options"] == options
    assert "started" in header


def test_sums_has_no_header():
    assert render("sums", [ok("tree/a", b"1")]) == expected_sums_line(ok("tree/a", b"1"))
