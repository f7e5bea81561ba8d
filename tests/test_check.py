"""Tests of ``parhash check``: checksum-line parsing, and the CLI against files written by the
real peer tools (sha256sum, md5sum, sha1sum, sha512sum, b3sum, xxhsum).

Expected verdicts come from the tree the test built (which files it changed or removed)
and from the peer tools' own ``-c`` output, never from an earlier parhash run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_cli

from parhash.sums import (
    AmbiguousAlgorithm,
    BadLine,
    ChecksumLine,
    algorithm_for_length,
    algorithm_from_name,
    parse_line,
)

H64 = "0123456789abcdef" * 4
H32 = "0123456789abcdef" * 2
H16 = "0123456789abcdef"


# -- helpers --------------------------------------------------------------------------------


def need(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed")
    return exe


def tool(*argv: str | bytes, cwd: Path) -> subprocess.CompletedProcess:
    """Run a peer tool (bytes arguments allowed, for names that are not UTF-8)."""
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, timeout=60)


def out_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1] if data else []


def err_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def warnings(stderr: str | bytes) -> list[str]:
    """The ``WARNING: ...`` summary lines, without the program name in front."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    return sorted(
        line[line.index("WARNING:") :] for line in stderr.splitlines() if "WARNING:" in line
    )


def coreutils_display(name: bytes) -> bytes:
    """How ``sha256sum -c`` (coreutils 9.1) prints a name in its verdict lines: verbatim,
    unless it contains a newline; then with a leading backslash and ``\\\\``/``\\n``
    escapes. (Each test that relies on this also checks it against the real tool.)"""
    if b"\n" not in name:
        return name
    return b"\\" + name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def files_in(tree: Path, base: Path) -> list[bytes]:
    """Every regular file below ``tree`` as a path relative to ``base`` (bytes, sorted)."""
    found = []
    for dirpath, _, names in os.walk(os.fsencode(tree)):
        for name in names:
            found.append(os.path.relpath(os.path.join(dirpath, name), os.fsencode(base)))
    return sorted(found)


def ok_lines(paths: list[bytes]) -> set[bytes]:
    return {coreutils_display(p) + b": OK" for p in paths}


LATIN1 = b"caf\xe9-latin1"

#: Names every checksum tool must survive: spaces, two spaces, a leading dash, a newline,
#: a backslash together with a newline, bytes that are not UTF-8. (How a name with only a
#: backslash or a carriage return is printed is tested on its own, below.)
ODD_SPEC: dict[str | bytes, bytes | dict] = {
    "plain.txt": b"plain\n",
    "with space": b"space",
    "two  spaces": b"two",
    "-dash": b"dash",
    "new\nline": b"newline",
    "both\\and\nnewline": b"backslash and newline",
    LATIN1: b"latin-1 name",
    "sub": {"nested.bin": random.Random(7).randbytes(70_000), "empty": b""},
}

NEWLINE_NAMES = {"new\nline", "both\\and\nnewline"}


def spec_without(*names) -> dict:
    return {k: v for k, v in ODD_SPEC.items() if k not in names}


# -- parse_line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{H64}  name", ChecksumLine(H64, "name", None)),
        (f"{H64} *name", ChecksumLine(H64, "name", None)),
        (f"{H64}  dir/two  spaces", ChecksumLine(H64, "dir/two  spaces", None)),
        (f"{H64}   leading space", ChecksumLine(H64, " leading space", None)),
        (f"{H64}  *star", ChecksumLine(H64, "*star", None)),
        (f"{H64.upper()}  upper", ChecksumLine(H64, "upper", None)),
        (f"SHA256 (name) = {H64}", ChecksumLine(H64, "name", "sha256")),
        (f"SHA256 (a) = b) = {H64}", ChecksumLine(H64, "a) = b", "sha256")),
        (f"SHA256 (x (1)) = {H64}", ChecksumLine(H64, "x (1)", "sha256")),
        (f"MD5 (f) = {H32}", ChecksumLine(H32, "f", "md5")),
        (f"BLAKE3 (f) = {H64}", ChecksumLine(H64, "f", "blake3")),
        (f"XXH3 (f) = {H16}", ChecksumLine(H16, "f", "xxh3")),
        (f"XXH64 (f) = {H16}", ChecksumLine(H16, "f", "xxh64")),
        (f"XXH3_{H16}  name", ChecksumLine(H16, "name", "xxh3")),
        (f"\\{H64}  new\\nline", ChecksumLine(H64, "new\nline", None)),
        (f"\\{H64}  back\\\\slash", ChecksumLine(H64, "back\\slash", None)),
        (f"\\{H64}  a\\\\nb", ChecksumLine(H64, "a\\nb", None)),
        (f"\\{H64}  end\\r", ChecksumLine(H64, "end\r", None)),
        (f"\\SHA256 (x\\ny) = {H64}", ChecksumLine(H64, "x\ny", "sha256")),
        # without the leading marker a backslash is an ordinary character
        (f"{H64}  back\\slash", ChecksumLine(H64, "back\\slash", None)),
    ],
)
def test_parse_line(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "improperly formatted"),
        ("this is not a checksum line", "improperly formatted"),
        (f"{H64} name", "improperly formatted"),  # one space, no '*'
        (f"{H64}\tname", "improperly formatted"),
        (f"{H64[:-1]}g  name", "improperly formatted"),  # not hex
        (f"{H64}  ", "empty file name"),
        (f"SHA256 () = {H64}", "empty file name"),
        ("CRC (x) = 1", "unsupported algorithm 'CRC'"),
        (f"\\{H64}  bad\\qescape", "invalid backslash escape"),
        (f"\\{H64}  trailing\\", "invalid backslash escape"),
    ],
)
def test_parse_line_rejects(line, why):
    with pytest.raises(BadLine, match=re.escape(why)):
        parse_line(line)


@pytest.mark.parametrize(
    ("length", "algo"), [(8, "xxh32"), (40, "sha1"), (56, "sha224"), (96, "sha384")]
)
def test_algorithm_for_unique_length(length, algo):
    assert algorithm_for_length(length, "SUMS") == algo


@pytest.mark.parametrize(
    ("length", "candidates"),
    [
        (16, {"xxh3", "xxh64"}),
        (32, {"xxh128", "md5"}),
        (64, {"sha256", "blake2s", "sha3-256", "blake3"}),
        (128, {"sha512", "blake2b"}),
    ],
)
def test_algorithm_for_ambiguous_length_lists_candidates(length, candidates):
    with pytest.raises(AmbiguousAlgorithm) as info:
        algorithm_for_length(length, "list.txt")
    message = str(info.value)
    assert message.startswith("list.txt: ")
    assert "-a" in message
    listed = set(re.split(r",\s*", message.split("could be ", 1)[1].split(":", 1)[0]))
    assert listed == candidates


def test_algorithm_for_unknown_length():
    with pytest.raises(AmbiguousAlgorithm, match="no supported algorithm has 7-digit"):
        algorithm_for_length(7, "x")


@pytest.mark.parametrize(
    ("name", "algo"),
    [
        ("SHA256SUMS", "sha256"),
        ("/srv/releases/SHA512SUMS", "sha512"),
        ("SHA1SUMS", "sha1"),
        ("x.md5", "md5"),
        ("MD5SUMS", "md5"),
        ("x.b3", "blake3"),
        ("photos.sha256", "sha256"),
        ("tree.xxh128", "xxh128"),
        ("list.txt", None),
        ("checksums", None),
    ],
)
def test_algorithm_from_name(name, algo):
    assert algorithm_from_name(name) == algo


# -- files written by the real tools --------------------------------------------------------


#: id -> (command that writes the sums, checksum file name, parhash check options,
#:        command that verifies it, names the tool cannot carry).
PEER_CASES = {
    "sha256sum": (["sha256sum"], "SHA256SUMS", [], ["sha256sum", "-c"], ()),
    "sha256sum-binary": (["sha256sum", "-b"], "SHA256SUMS", [], ["sha256sum", "-c"], ()),
    "md5sum": (["md5sum"], "files.md5", [], ["md5sum", "-c"], ()),
    "sha1sum": (["sha1sum"], "list.txt", [], ["sha1sum", "-c"], ()),
    "sha512sum": (["sha512sum"], "list.txt", ["-a", "sha512"], ["sha512sum", "-c"], ()),
    "sha256sum-tag": (["sha256sum", "--tag"], "list.txt", [], ["sha256sum", "-c"], ()),
    # b3sum 1.2 prints U+FFFD for non-UTF-8 names.
    "b3sum": (["b3sum"], "list.txt", ["-a", "blake3"], ["b3sum", "--check"], (LATIN1,)),
    # xxhsum 0.8.1 writes XXH3 in BSD form only and escapes nothing.
    "xxhsum-H3": (["xxhsum", "-H3"], "list.txt", [], ["xxhsum", "-c"], NEWLINE_NAMES),
}


@pytest.mark.parametrize("case", sorted(PEER_CASES))
def test_check_files_written_by_peer_tools(cli, make_tree, tmp_path, case):
    write, sums_name, options, verify, skip_names = PEER_CASES[case]
    exe = need(write[0])
    tree = make_tree(spec_without(*skip_names))
    paths = files_in(tree, tmp_path)
    made = tool(exe, *write[1:], *paths, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / sums_name).write_bytes(made.stdout)
    expected = ok_lines(paths)

    reference = tool(need(verify[0]), *verify[1:], sums_name, cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert set(out_lines(reference.stdout)) == expected  # the expectation is the tool's own

    result = cli("check", *options, sums_name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = out_lines(result.stdout)
    assert len(got) == len(paths)
    assert set(got) == expected
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        (b"back\\slash", b"tree/back\\slash: OK"),
        (b"end\r", b"tree/end\r: OK"),
    ],
    ids=["backslash", "carriage-return"],
)
def test_names_printed_like_sha256sum(cli, make_tree, tmp_path, name, printed):
    r"""sha256sum writes both names escaped (``\\``, ``\r``), but coreutils 9.1 escapes a
    name in its verdict line only when it contains a newline (tested with the peer tools)."""
    exe = need("sha256sum")
    make_tree({name: b"x", "plain": b"p"})
    made = tool(exe, b"tree/" + name, b"tree/plain", cwd=tmp_path)
    assert made.stdout.startswith(b"\\")  # the line of the odd name is escaped
    (tmp_path / "SHA256SUMS").write_bytes(made.stdout)
    reference = tool(exe, "-c", "SHA256SUMS", cwd=tmp_path)
    assert sorted(out_lines(reference.stdout)) == sorted([printed, b"tree/plain: OK"])
    result = cli("check", "-j1", "SHA256SUMS", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the escaped line was understood
    assert sorted(out_lines(result.stdout)) == sorted(out_lines(reference.stdout))


# -- failures, as coreutils reports them ----------------------------------------------------


def sha256_line(data: bytes, name: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


@pytest.fixture
def abc(tmp_path):
    """Files a, b, c in tmp_path and a SHA256SUMS (written here with hashlib) listing them."""
    contents = {"a": b"alpha\n", "b": b"bravo\n", "c": b"charlie\n"}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "SHA256SUMS").write_text("".join(sha256_line(d, n) for n, d in contents.items()))
    return tmp_path


def test_modified_file_fails(cli, abc):
    (abc / "b").write_bytes(b"bravo, changed\n")
    result = cli("check", "-j1", "SHA256SUMS", cwd=abc)
    assert result.returncode == 1
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: FAILED", b"c: OK"]
    assert warnings(result.stderr) == ["WARNING: 1 computed checksum did NOT match"]


def test_missing_file_fails_open_or_read(cli, abc):
    (abc / "c").unlink()
    result = cli("check", "-j1", "SHA256SUMS", cwd=abc)
    assert result.returncode == 1
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: OK", b"c: FAILED open or read"]
    assert warnings(result.stderr) == ["WARNING: 1 listed file could not be read"]
    assert "c: No such file or directory" in result.stderr


def test_ignore_missing_skips_missing_files(cli, abc):
    (abc / "c").unlink()
    result = cli("check", "-j1", "--ignore-missing", "SHA256SUMS", cwd=abc)
    assert result.returncode == 0, result.stderr
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: OK"]
    assert warnings(result.stderr) == []


def test_ignore_missing_with_nothing_verified_fails(cli, tmp_path):
    (tmp_path / "gone.sha256").write_text(sha256_line(b"x", "nowhere") + sha256_line(b"y", "no"))
    result = cli("check", "-j1", "--ignore-missing", "gone.sha256", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == b""
    assert "gone.sha256: no file was verified" in result.stderr


def test_ignore_missing_same_sums_file_twice(cli, abc):
    """sha256sum -c --ignore-missing S S verifies S twice and exits 0."""
    exe = need("sha256sum")
    args = ["--ignore-missing", "SHA256SUMS", "SHA256SUMS"]
    reference = tool(exe, "-c", *args, cwd=abc)
    assert reference.returncode == 0
    result = cli("check", "-j1", *args, cwd=abc)
    assert sorted(out_lines(result.stdout)) == sorted(out_lines(reference.stdout))
    assert result.returncode == reference.returncode, result.stderr


@pytest.fixture
def with_bad_line(abc):
    """SHA256SUMS with an improperly formatted second line."""
    lines = (abc / "SHA256SUMS").read_text().splitlines(keepends=True)
    lines.insert(1, "this line is not a checksum\n")
    (abc / "SHA256SUMS").write_text("".join(lines))
    return abc


def test_malformed_line_is_counted_not_fatal(cli, with_bad_line):
    result = cli("check", "-j1", "SHA256SUMS", cwd=with_bad_line)
    assert result.returncode == 0, result.stderr
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: OK", b"c: OK"]
    assert warnings(result.stderr) == ["WARNING: 1 line is improperly formatted"]
    assert "SHA256SUMS: 2:" not in result.stderr  # only with --warn


def test_malformed_line_with_strict_fails(cli, with_bad_line):
    result = cli("check", "-j1", "--strict", "SHA256SUMS", cwd=with_bad_line)
    assert result.returncode == 1
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: OK", b"c: OK"]
    assert warnings(result.stderr) == ["WARNING: 1 line is improperly formatted"]


def test_warn_names_the_line(cli, with_bad_line):
    result = cli("check", "-j1", "--warn", "SHA256SUMS", cwd=with_bad_line)
    assert result.returncode == 0, result.stderr
    flagged = [line for line in err_lines(result.stderr) if "SHA256SUMS: " in line]
    assert len(flagged) == 1
    assert re.search(r"SHA256SUMS: 2: .*improperly formatted", flagged[0])


def test_quiet_prints_only_failures(cli, abc):
    (abc / "b").write_bytes(b"changed")
    (abc / "c").unlink()
    result = cli("check", "-j1", "--quiet", "SHA256SUMS", cwd=abc)
    assert result.returncode == 1
    assert sorted(out_lines(result.stdout)) == [b"b: FAILED", b"c: FAILED open or read"]


def test_status_prints_nothing_on_stdout(cli, abc):
    (abc / "b").write_bytes(b"changed")
    result = cli("check", "-j1", "--status", "SHA256SUMS", cwd=abc)
    assert result.returncode == 1
    assert result.stdout == b""
    assert "WARNING" not in result.stderr


def test_file_without_valid_lines(cli, tmp_path):
    (tmp_path / "junk.sha256").write_text("hello\nworld\n")
    result = cli("check", "-j1", "junk.sha256", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == b""
    assert "junk.sha256: no properly formatted checksum lines found" in result.stderr
    assert "Traceback" not in result.stderr


def test_stdin_with_algorithm(cli, abc):
    data = (abc / "SHA256SUMS").read_bytes()
    result = cli("check", "-j1", "-a", "sha256", "-", cwd=abc, input=data)
    assert result.returncode == 0, result.stderr
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: OK", b"c: OK"]


def test_stdin_tagged_needs_no_algorithm(cli, abc):
    data = "".join(
        f"{algo.upper()} ({n}) = {hashlib.new(algo, (abc / n).read_bytes()).hexdigest()}\n"
        for algo, n in (("sha256", "a"), ("md5", "b"), ("sha1", "c"))
    )
    (abc / "b").write_bytes(b"changed")
    result = cli("check", "-j1", "-", cwd=abc, input=data.encode())
    assert result.returncode == 1
    assert sorted(out_lines(result.stdout)) == [b"a: OK", b"b: FAILED", b"c: OK"]


def test_untagged_64_digits_without_hint_is_ambiguous(cli, abc):
    (abc / "SHA256SUMS").rename(abc / "list.txt")
    result = cli("check", "-j1", "list.txt", cwd=abc)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = err_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "list.txt" in lines[0]
    assert "sha256" in lines[0] and "blake3" in lines[0]
    assert "-a" in lines[0]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_checksum_file_is_exit_1(cli, tmp_path, kind):
    if kind == "directory":
        (tmp_path / "sums.sha256").mkdir()
    result = cli("check", "-j1", "sums.sha256", cwd=tmp_path)
    assert result.returncode == 1  # as sha256sum -c: a per-file problem, not fatal
    assert result.stdout == b""
    lines = err_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "sums.sha256" in lines[0]
    assert "Traceback" not in result.stderr


VERDICT_FLAGS = {
    "plain": [],
    "quiet": ["--quiet"],
    "ignore-missing": ["--ignore-missing"],
    "status": ["--status"],
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """ok, modified, missing and a malformed line, checked by parhash and by sha256sum -c
    with each set of flags (concurrently: each run is mostly interpreter start-up)."""
    exe = need("sha256sum")
    base = tmp_path_factory.mktemp("verdicts")
    contents = {"a": b"alpha\n", "b": b"bravo\n", "c": b"charlie\n"}
    for name, data in contents.items():
        (base / name).write_bytes(data)
    lines = [sha256_line(d, n) for n, d in contents.items()]
    lines.insert(2, "not a checksum line\n")
    (base / "SHA256SUMS").write_text("".join(lines))
    (base / "b").write_bytes(b"modified")
    (base / "c").unlink()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            key: (
                pool.submit(run_cli, "check", "-j1", *flags, "SHA256SUMS", cwd=base),
                pool.submit(tool, exe, "-c", *flags, "SHA256SUMS", cwd=base),
            )
            for key, flags in VERDICT_FLAGS.items()
        }
        return {key: (ours.result(), theirs.result()) for key, (ours, theirs) in futures.items()}


@pytest.mark.parametrize("flags", list(VERDICT_FLAGS))
def test_same_verdicts_as_sha256sum(verdicts, flags):
    """parhash and sha256sum -c agree on every verdict line, the WARNING lines and the
    exit status."""
    result, reference = verdicts[flags]
    assert sorted(out_lines(result.stdout)) == sorted(out_lines(reference.stdout))
    assert warnings(result.stderr) == warnings(reference.stderr)
    assert result.returncode == reference.returncode
    if flags != "status":
        assert b"b: FAILED" in out_lines(result.stdout)


# -- parhash's own output, and parallelism --------------------------------------------------


def test_round_trip_scan_sha256(cli, make_tree, tmp_path):
    tree = make_tree(ODD_SPEC)
    paths = files_in(tree, tmp_path)
    scanned = cli("scan", "-q", "-j2", "-a", "sha256", "tree", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "tree.sha256").write_bytes(scanned.stdout)
    result = cli("check", "-j2", "tree.sha256", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = out_lines(result.stdout)
    assert len(got) == len(paths)
    assert set(got) == ok_lines(paths)


def test_round_trip_scan_tag_blake3(cli, make_tree, tmp_path):
    tree = make_tree(ODD_SPEC)
    paths = files_in(tree, tmp_path)
    scanned = cli("scan", "-q", "-j1", "--tag", "-a", "blake3", "tree", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "list.txt").write_bytes(scanned.stdout)  # no name hint: the tags say it
    result = cli("check", "-j1", "list.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = out_lines(result.stdout)
    assert len(got) == len(paths)
    assert set(got) == ok_lines(paths)


def test_round_trip_name_with_carriage_return(cli, make_tree, tmp_path):
    """A CR before the newline is taken for a DOS line ending unless the name is escaped."""
    make_tree({"end\r": b"cr at the end", "mid\rdle": b"cr inside", "plain": b"p"})
    scanned = cli("scan", "-q", "-j1", "-a", "sha256", "tree", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "tree.sha256").write_bytes(scanned.stdout)
    result = cli("check", "-j1", "tree.sha256", cwd=tmp_path)
    got = out_lines(result.stdout)
    assert len(got) == 3 and all(line.endswith(b": OK") for line in got), got
    assert result.returncode == 0, result.stderr


def test_jobs_1_and_2_give_the_same_verdicts(cli, tmp_path):
    """300 files over several batches, lines of three algorithms in one file."""
    rng = random.Random(3)
    tree = tmp_path / "many"
    tree.mkdir()
    lines = []
    expected = set()
    algos = ["sha256", "md5", "sha1"]
    for i in range(300):
        name = f"many/f{i:03d}"
        data = rng.randbytes(rng.randrange(0, 3000))
        (tmp_path / name).write_bytes(data)
        algo = algos[i * len(algos) // 300]
        lines.append(f"{algo.upper()} ({name}) = {hashlib.new(algo, data).hexdigest()}\n")
        verdict = "OK"
        if i % 37 == 5:
            (tmp_path / name).write_bytes(data + b"!")
            verdict = "FAILED"
        elif i % 41 == 7:
            (tmp_path / name).unlink()
            verdict = "FAILED open or read"
        expected.add(f"{name}: {verdict}".encode())
    (tmp_path / "mixed.txt").write_text("".join(lines))
    with ThreadPoolExecutor(max_workers=2) as pool:
        one, two = pool.map(lambda j: cli("check", j, "mixed.txt", cwd=tmp_path), ["-j1", "-j2"])
    for result in (one, two):
        got = out_lines(result.stdout)
        assert len(got) == 300
        assert set(got) == expected
        assert result.returncode == 1
    assert warnings(one.stderr) == warnings(two.stderr)
    assert any("FAILED open or read" in v.decode() for v in expected)
