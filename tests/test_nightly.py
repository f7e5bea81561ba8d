"""The nightly job's fast paths (issue 11: audit and check cost about what a scan costs).

Each fast path must be the slow path, faster: the chunk-level manifest check
(``manifest._PlainRecords``) against the per-record validation, rows made by SQLite
(``AuditStore._insert_rows``) against rows made in Python, the one-pass class counts
against one query per class, and check's plain-line parser against ``sums.parse_line``.
The pure functions are held to agreement in-process over generated and hostile input;
the audit and check outcomes are checked through the real CLI against a tree changed
here, with digests computed by hashlib/xxhash.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
from pathlib import Path

import pytest
import xxhash
from conftest import run_cli

from parhash import baseline
from parhash.audit_store import _COUNT, CLASSES, AuditStore
from parhash.checking import _parse, _plain_line
from parhash.manifest import (
    ManifestError,
    PlainRows,
    _entry_from_object,
    _PlainRecords,
    iter_entries,
    open_manifest,
    read_info,
    relative_key,
)
from parhash.sums import BadLine, parse_line

ROOT = "/srv/data"
XXH = "0123456789abcdef"
SHA = hashlib.sha256(b"x").hexdigest()

# -- manifest records: the chunk check against the per-record one ---------------------------


def plain_record(path: str, root: str = ROOT, **changes) -> dict:
    record = {
        "path": path,
        "size": 13718,
        "mtime": 1796127667708374474,
        "algo": "xxh3",
        "hash": XXH,
        "error": None,
        "root": root,
    }
    record.update(changes)
    return record


#: Names that a plain record may hold, and ones that make normpath (or the checks) differ.
NAMES = [
    "a",
    "d0/d1/f000.bin",
    "with space/and  two",
    "...",
    "..a/.b/c..",
    "x/..y",
    "./a",
    "a/./b",
    "a/../b",
    "a//b",
    "a/",
    ".",
    "..",
    "../a",
    "a/.",
    "a/..",
    "",
    "/abs",
    "back\\slash",
    "new\nline",
    "tab\there",
    "caf\u00e9",
    "bad\udcffbyte",
    "lone\ud800surrogate",
    "nul\0inside",
    'quote"d',
    "cr\r",
]

#: Field changes that some records carry (each makes a record other than plain, or not).
CHANGES = [
    {},
    {"hash": XXH.upper()},
    {"hash": XXH[:-1]},
    {"hash": XXH + "0"},
    {"hash": "g" * 16},
    {"hash": None},
    {"hash": 5},
    {"algo": "XXH3"},
    {"algo": "xxh64"},
    {"algo": "nope"},
    {"error": "Permission denied", "hash": None},
    {"error": "oops"},
    {"size": None},
    {"size": -1},
    {"size": True},
    {"size": 1.0},
    {"size": 1 << 63},
    {"size": (1 << 63) - 1},
    {"size": 0},
    {"mtime": -(1 << 63)},
    {"mtime": -(1 << 63) - 1},
    {"mtime": None},
    {"mtime": "1"},
    {"root": "/other"},
    {"root": ROOT + "/"},
    {"root": ""},
    {"root": 7},
    {"extra": 1},
    {"manifest_version": 2},
    {"sha256": SHA},
]


def slow(obj: dict, relative: bool) -> tuple | None:
    """What the per-record path makes of a record: (root, path, key, size, mtime, digest)
    of a valid plain-kind record, or None if it raises or is not that kind."""
    try:
        entry, algo, _ = _entry_from_object(obj, "m", 1)
    except ManifestError:
        return None
    if algo != "xxh3" or entry.error is not None or entry.extra:
        return None
    key = os.path.normpath(entry.path) if relative else relative_key(entry.path, entry.root)
    return entry.root, entry.path, key, entry.size, entry.mtime_ns, entry.digest


def fast(objs: list, relative: bool, roots=(ROOT, "/other", "")) -> list[tuple] | None:
    taken = _PlainRecords("xxh3", set(roots), relative)(objs)
    if taken is None:
        return None
    assert isinstance(taken, PlainRows)
    return [
        (taken.root, taken.prefix + key, key, size, mtime, digest)
        for key, size, mtime, digest in taken.rows
    ]


def records_for(relative: bool) -> list[dict]:
    out = []
    for name in NAMES:
        path = name if relative else f"{ROOT}/{name}"
        for change in CHANGES:
            out.append(plain_record(path, **change))
    out.append(plain_record(ROOT))  # a file root: its key is its basename
    out.append(plain_record("/srv/database/x"))  # a sibling sharing the root's prefix
    return out


@pytest.mark.parametrize("relative", [False, True])
def test_plain_chunk_agrees_with_each_record(relative):
    """Record by record, and in random chunks: whenever the chunk check takes a chunk,
    every record in it is one the per-record path accepts, with the same key and fields;
    and it does take the plain ones (else the fast path would be dead code)."""
    records = records_for(relative)
    taken = 0
    for obj in records:
        got = fast([obj], relative)
        if got is not None:
            taken += 1
            assert got == [slow(obj, relative)], obj
    assert taken >= 10
    rng = random.Random(11)
    plain = [r for r in records if fast([r], relative) is not None]
    for _ in range(300):
        chunk = rng.sample(plain, rng.randint(1, 8))
        if rng.random() < 0.5:
            chunk.insert(rng.randrange(len(chunk) + 1), rng.choice(records))
        got = fast(chunk, relative)
        if got is not None:
            assert got == [slow(obj, relative) for obj in chunk]
        elif all(fast([obj], relative) is not None for obj in chunk):
            # Plain records of several roots in one chunk: per record, never as one run.
            assert len({obj["root"] for obj in chunk}) > 1


def test_plain_chunk_refuses_unknown_roots_and_dot_root():
    """A root the manifest has not named yet goes record by record (iter_entries adds it);
    the root ``.`` keeps paths that start with ``./`` only, keyed as normpath keys them."""
    assert fast([plain_record("/x/a", root="/x")], False, roots=(ROOT,)) is None
    dot = [plain_record("./a/b", root="."), plain_record("./c", root=".")]
    assert fast(dot, False, roots=(".",)) == [slow(obj, False) for obj in dot]
    assert fast([plain_record("a/b", root=".")], False, roots=(".",)) is None


def jsonl_lines(records: list[dict], header: dict | None) -> bytes:
    lines = [json.dumps({"header": header})] if header else []
    lines += [json.dumps(r) for r in records]
    return ("\n".join(lines) + "\n").encode()


def manifest_header(roots: list[str], relative: bool = False) -> dict:
    return {
        "version": 2,
        "manifest_version": 2,
        "algo": "xxh3",
        "algos": ["xxh3"],
        "roots": roots,
        "roots_abs": roots,
        "relative": relative,
        "options": {},
    }


def table(store: AuditStore, name: str) -> list[tuple]:
    sql = f"SELECT *, typeof(size), typeof(mtime), typeof(hash) FROM {name} ORDER BY ri, key"
    return store.db.execute(sql).fetchall()


def load(path: Path, plain: bool, relative: bool = False) -> AuditStore:
    info = read_info(open_manifest(str(path)))
    store = AuditStore()
    store.register_roots(info.roots)
    store.relative_paths = relative
    store.load_manifest(iter_entries(info, plain=plain, relative=relative), None, str(path))
    return store


def mixed_records(n: int, seed: int) -> list[dict]:
    """``n`` records of two roots, mostly plain, some of every valid other kind."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        root = ROOT if i % 1500 < 1400 else "/other"
        name = f"d{i % 7}/f{i:06d}"
        kind = rng.random()
        if kind < 0.01:
            name += "/caf\u00e9 \\ x"
        elif kind < 0.02:
            name = f"./{name}"
        record = plain_record(f"{root}/{name}", root=root, size=i, mtime=i * 1000 - 5)
        if 0.02 < kind < 0.03:
            record.update(hash=None, error="Permission denied")
        elif 0.03 < kind < 0.04:
            record.update(hash=xxhash.xxh3_64_hexdigest(str(i).encode()).upper())
        elif 0.04 < kind < 0.05:
            record = {k: record[k] for k in reversed(list(record))}  # jq -S and friends
        else:
            record["hash"] = xxhash.xxh3_64_hexdigest(str(i).encode())
        out.append(record)
    return out


@pytest.mark.parametrize("with_header", [True, False])
def test_plain_load_stores_what_record_by_record_stores(tmp_path, with_header):
    """The whole manifest, loaded with and without the fast path: the same rows, typed
    the same (INTEGER sizes, TEXT digests, BLOB keys and paths), in both tables."""
    manifest = tmp_path / "m.jsonl"
    records = mixed_records(7000, seed=3)
    header = manifest_header([ROOT, "/other"]) if with_header else None
    manifest.write_bytes(jsonl_lines(records, header))
    fast_store, slow_store = load(manifest, True), load(manifest, False)
    assert table(fast_store, "old") == table(slow_store, "old")
    assert len(table(fast_store, "old")) == len(records)
    assert fast_store.roots == slow_store.roots


def test_plain_load_of_a_relative_manifest(tmp_path):
    manifest = tmp_path / "m.jsonl"
    records = [plain_record(f"sub/f{i}", root="tree") for i in range(3000)]
    records[1500]["path"] = "sub/./odd"
    manifest.write_bytes(jsonl_lines(records, manifest_header(["tree"], relative=True)))
    fast_store, slow_store = load(manifest, True, True), load(manifest, False, True)
    assert table(fast_store, "old") == table(slow_store, "old")
    keys = {row[1] for row in table(fast_store, "old")}
    assert b"sub/odd" in keys and b"sub/f0" in keys


def test_plain_load_still_refuses_a_bad_record_and_a_duplicate(tmp_path):
    """The fast path never swallows what the per-record path refuses: a bad record deep
    in a chunk of plain ones, and a path listed twice, are fatal with their place."""
    records = [plain_record(f"{ROOT}/f{i}") for i in range(5000)]
    bad = dict(records[3333], size=-1)
    manifest = tmp_path / "bad.jsonl"
    manifest.write_bytes(jsonl_lines([*records[:3333], bad, *records[3334:]], None))
    with pytest.raises(ManifestError, match=r"bad.jsonl:3334: size must be"):
        load(manifest, True)
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(jsonl_lines([*records, records[4000]], None))
    with pytest.raises(ManifestError, match=r"'/srv/data/f4000' is listed twice"):
        load(twice, True)


# -- scanned rows: SQLite's keys against Python's -------------------------------------------


def scanned_store(prefix: str = "") -> AuditStore:
    store = AuditStore()
    store.register_roots([ROOT])
    store.scan_roots([ROOT], [prefix])
    return store


SCANNED_NAMES = ["a", "d/e f", "x/..y", "caf\u00e9", "bad\udcffbyte", "a//b", "./c", "new\nl"]


@pytest.mark.parametrize("prefix", ["", "sub/dir"])
def test_scanned_rows_agree_with_row_by_row(prefix):
    rows = []
    for i, name in enumerate(SCANNED_NAMES * 3):
        path = f"{ROOT}/{i}/{name}"
        if i % 5 == 4:
            rows.append((path, None, None, None, "Permission denied", ()))
        else:
            rows.append((path, i, -i, XXH, None, ()))
    fast_store, slow_store = scanned_store(prefix), scanned_store(prefix)
    for start in range(0, len(rows), 4):  # batches: some all ASCII, some not
        fast_store.add_scanned_rows(ROOT, rows[start : start + 4])
        slow_store._scanned_slow(0, ROOT, rows[start : start + 4])
    assert table(fast_store, "new") == table(slow_store, "new")
    plain = [r for r in rows if r[0].isascii() and "//" not in r[0] and "./" not in r[0]]
    only = scanned_store(prefix)
    only.add_scanned_rows(ROOT, plain)
    keys = {os.fsdecode(row[1]) for row in table(only, "new")}
    assert keys == {os.path.join(prefix, r[0][len(ROOT) + 1 :]) for r in plain if prefix} | {
        r[0][len(ROOT) + 1 :] for r in plain if not prefix
    }


@pytest.mark.parametrize("moves", [True, False])
def test_one_pass_counts_equal_one_query_per_class(moves):
    """Every class, with moves, a directory move with an edited file and unreadable
    files (or every class but moved: the lean query): the one-pass counts are the
    per-class queries' counts, in CLASSES order."""
    store = AuditStore()
    store.register_roots([ROOT])
    old = [plain_record(f"{ROOT}/{n}", hash=h, size=s, mtime=1) for n, h, s in OLD_SIDE]
    store.load_manifest(iter(_entries(old)), None, "m")
    store.scan_roots([ROOT], [""])
    new = [row for row in NEW_SIDE if moves or not row[0].startswith(("to", "moved/"))]
    store.add_scanned_rows(ROOT, [(f"{ROOT}/{n}", s, m, h, e, ()) for n, s, m, h, e in new])
    store.diff()
    counts = store.counts()
    assert counts == {k: store.db.execute(_COUNT[k]).fetchone()[0] for k in CLASSES}
    assert all(counts[k] for k in CLASSES if moves or k != "moved"), counts
    assert bool(counts["moved"]) == moves
    assert list(counts) == list(CLASSES)


def _entries(records: list[dict]):
    for record in records:
        yield _entry_from_object(record, "m", 1)[0]


H = [xxhash.xxh3_64_hexdigest(bytes([i])) for i in range(40)]
OLD_SIDE = [
    ("same", H[0], 1),
    ("gone", H[1], 1),
    ("edit", H[2], 1),
    ("rot", H[3], 1),
    ("from", H[4], 1),
    ("unread", H[5], 1),
    *((f"dir/f{i}", H[10 + i], 5) for i in range(10)),
    ("dir/changed", H[30], 5),
]
NEW_SIDE = [
    ("same", 1, 1, H[0], None),
    ("edit", 2, 2, H[20], None),
    ("rot", 1, 1, H[21], None),
    ("to", 1, 1, H[4], None),
    ("unread", None, None, None, "Permission denied"),
    ("fresh", 1, 1, H[22], None),
    *((f"moved/f{i}", 5, 1, H[10 + i], None) for i in range(10)),
    ("moved/changed", 6, 1, H[31], None),
]


# -- through the CLI: an audit of a changed tree -----------------------------------------------


def xxh3(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def test_audit_of_a_large_changed_tree(tmp_path):
    """3,000 files (two chunks of the fast path, records past the first ones), some with
    names the fast path leaves to the per-record path, then every kind of change: the
    classes are what was done, and the paths, sizes and digests are the tree's."""
    tree = tmp_path / "tree"
    data = {}
    for i in range(3000):
        name = f"d{i % 10}/f{i:05d}" + (" caf\u00e9" if i % 500 == 7 else "")
        data[name] = f"content {i}\n".encode() * (1 + i % 3)
    for name, content in data.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content)
    scan = run_cli("scan", "-q", "tree", "-f", "jsonl", "-o", "m.jsonl", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    (tree / "d1/f00001").unlink()
    (tree / "d2/f00002").write_bytes(b"grown and changed\n")
    rot = tree / "d3/f00003"
    st = rot.stat()
    rot.write_bytes(bytes(len(data["d3/f00003"])))
    os.utime(rot, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tree / "d4/f00004", tree / "d4/renamed")
    (tree / "d5/new").write_bytes(b"fresh\n")
    os.mkfifo(tree / "d6/pipe")
    result = run_cli("audit", "m.jsonl", "-f", "jsonl", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    found = {}
    for line in result.stdout.decode().splitlines():
        event = json.loads(line)
        found.setdefault(event["class"], {})[event["path"]] = event
    assert {k: set(v) for k, v in found.items()} == {
        "removed": {"d1/f00001"},
        "modified": {"d2/f00002"},
        "corrupted": {"d3/f00003"},
        "moved": {"d4/renamed"},
        "added": {"d5/new"},
        "unreadable": {"d6/pipe"},
    }
    moved = found["moved"]["d4/renamed"]
    assert moved["from"] == "d4/f00004"
    assert moved["old"]["hash"] == moved["new"]["hash"] == xxh3(data["d4/f00004"])
    assert moved["old"]["path"] == "tree/d4/f00004" and moved["new"]["path"] == "tree/d4/renamed"
    assert found["corrupted"]["d3/f00003"]["new"]["hash"] == xxh3(bytes(len(data["d3/f00003"])))
    assert found["removed"]["d1/f00001"]["old"]["size"] == len(data["d1/f00001"])
    human = run_cli("audit", "m.jsonl", "--color", "never", cwd=tmp_path)
    assert human.returncode == 1
    assert "6 changes" in human.text and f"{3000 - 4:,} unchanged" in human.text
    (tree / "d6/pipe").unlink()
    update = run_cli("audit", "m.jsonl", "--update", "-q", cwd=tmp_path)
    assert update.returncode == 1, update.stderr
    again = run_cli("audit", "m.jsonl", "-f", "jsonl", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, b""), again.stderr


# -- check: the plain-line parser against parse_line ------------------------------------------

TAGS = ["SHA256", "sha256", "MD5", "XXH3", "BLAKE2b-256", "BLAKE2b-7", "SHA3-256", "FOO", "x y"]
PIECES = ["a", " ", "  ", " *", "*", "(", ")", " (", ") = ", ")= ", "=", "\\", "\\n", "\0", "\r"]
PIECES += ["0", "f", "F", "g", "_", "-", "\u00e9", "\udcff", "XXH3_", "#"]


def line_samples() -> list[str]:
    rng = random.Random(7)
    digests = [SHA, SHA.upper(), XXH, "0", "abc", "xyz"]
    names = ["f", "a b", "a  b", "x (1) = ff", "p(q)= 0", "*star", "tab\tx", "caf\u00e9", "e\\f"]
    out = []
    for digest in digests:
        for name in names:
            out += [f"{digest}  {name}", f"{digest} *{name}", f"\\{digest}  {name}"]
            out += [f"{tag} ({name}) = {digest}" for tag in TAGS]
            out += [f"{tag}({name})= {digest}" for tag in TAGS]
    for _ in range(5000):
        out.append("".join(rng.choice(PIECES + digests) for _ in range(rng.randint(1, 9))))
    return out


def outcome(parse, text: str, *args):
    try:
        return parse(text, *args)
    except BadLine as exc:
        return ("bad", str(exc))


def test_plain_line_is_parse_line_where_it_answers(monkeypatch):
    """Where the plain-line parser answers, it is ``parse_line``; and check's ``_parse``
    (CR rules included) gives the same line or the same BadLine with it and without."""
    samples = line_samples()
    answered = 0
    for text in samples:
        got = _plain_line(text)
        if got is not None:
            answered += 1
            assert got == parse_line(text), text
    assert answered > 100
    modes = [(keep_cr, untagged) for keep_cr in (False, True) for untagged in (None, "blake3")]
    with_fast = [[outcome(_parse, text, *mode) for mode in modes] for text in samples]
    monkeypatch.setattr("parhash.checking._plain_line", lambda text: None)
    without = [[outcome(_parse, text, *mode) for mode in modes] for text in samples]
    assert with_fast == without


def test_check_verdicts_through_the_cli(tmp_path):
    """A sums file of every plain kind and the odd ones (escaped, CRLF, tagged, upper
    case, a wrong digest, a missing file): the verdicts sha256sum -c would give."""
    files = {"a": b"alpha\n", "b c": b"bravo\n", "back\\slash": b"x", "d": b"delta\n"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)

    def digest(name: str) -> str:
        return hashlib.sha256(files[name]).hexdigest()

    lines = [
        f"{digest('a')}  a",
        f"{digest('b c').upper()} *b c",
        f"\\{digest('back' + chr(92) + 'slash')}  back\\\\slash",
        f"SHA256 (d) = {digest('d')}",
        f"{hashlib.sha256(b'other').hexdigest()}  a",
        f"{digest('a')}  missing",
        "not a line",
    ]
    (tmp_path / "SUMS").write_bytes(("\n".join(lines) + "\n").encode())
    result = run_cli("check", "-j1", "-a", "sha256", "SUMS", cwd=tmp_path)
    assert result.returncode == 1
    assert result.text.splitlines() == [
        "a: OK",
        "b c: OK",
        "back\\slash: OK",
        "d: OK",
        "a: FAILED",
        "missing: FAILED open or read",
    ]
    assert "1 line is improperly formatted" in result.stderr
    crlf = tmp_path / "CRLF"
    crlf.write_bytes(f"{digest('a')}  a\r\n{digest('d')}  d\r\n".encode())
    result = run_cli("check", "-j1", "-a", "sha256", "CRLF", cwd=tmp_path)
    assert (result.returncode, result.text) == (0, "a: OK\nd: OK\n"), result.stderr


def test_sqlite_joins_text_onto_blob_bytes():
    """What ``_insert_rows`` relies on: ``CAST(X'..' || ?1 AS BLOB)`` is the prefix's
    bytes then the text's, even when the prefix is not UTF-8."""
    db = sqlite3.connect("")
    prefix = os.fsencode("/r\udcff/")
    (got,) = db.execute(f"SELECT CAST(X'{prefix.hex()}' || ?1 AS BLOB)", ("a/b",)).fetchone()
    assert got == prefix + b"a/b"


def test_admit_is_none_only_for_the_default_selection():
    """No call per entry for the default selection over whole roots; any filter, a size
    range or a subtree ROOT admits entry by entry."""
    from parhash.manifest import ManifestInfo

    info = ManifestInfo("m", "jsonl", "xxh3", [ROOT])
    plan = baseline.RootPlan([ROOT], [""], [ROOT])
    store = AuditStore()
    store.register_roots([ROOT])
    assert baseline.admit(baseline.resolve_selection(info, {}), plan, store) is None
    for overrides in ({"exclude": ["*.tmp"]}, {"min_size": 1}, {"max_depth": 2}):
        selection = baseline.resolve_selection(info, overrides)
        assert baseline.admit(selection, plan, store) is not None
    part = baseline.RootPlan([ROOT], ["sub"], [ROOT])
    check = baseline.admit(baseline.resolve_selection(info, {}), part, store)
    assert check is not None and check(0, "sub/a", 1, None) and not check(0, "other", 1, None)
