"""``parhash check`` held to the peers' own test suites, and to the peers' real output (issue 10
items 11, 16, 17 (hashdeep), 18, 19).

Every digest here comes from hashlib, the xxhash/blake3 modules or the peer tool itself, never
from parhash. The peer tools must be installed (CI installs them): a missing one fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import xxhash
from conftest import run_cli, write_tree

EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def peer(name: str) -> str:
    """The peer tool's path; its absence is a failure, not a skip (CI installs every one)."""
    exe = shutil.which(name)
    assert exe, f"{name} must be installed to run this test (.ci/run installs it)"
    return exe


def run(*argv, cwd: Path, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.fsdecode(a) for a in argv], cwd=cwd, input=input, capture_output=True, timeout=120
    )


def lines_of(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    return data.split(sep)[:-1] if data else []


#: Names every peer writes verbatim on a line (no newline): space, leading dash, backslash,
#: a CR inside, a tab, non-ASCII, a comma.
ODD = {
    "plain": b"plain\n",
    " lead space": b"space",
    "-dash": b"dash",
    "back\\slash": b"backslash",
    "mid\rcr": b"carriage",
    "tab\tname": b"tab",
    "caf\u00e9": b"utf8",
    "a,b": b"comma",
    "sub": {"deep": b"deep"},
}


#: The xxhsum whose output parhash matches byte for byte (Debian 12's). Later ones escape a
#: backslash and print ``-H3`` as ``XXH3_<hex>  name``; with them the tests still demand
#: that ``xxhsum -c`` verifies parhash's output, and compare bytes only with 0.8.1.
XXHSUM_MATCHED = "0.8.1"


def xxhsum_version(exe: str) -> str:
    done = subprocess.run([exe, "--version"], capture_output=True, text=True)
    text = done.stdout + done.stderr  # 0.8.1 prints it on stderr
    match = re.search(r"xxhsum (\d+\.\d+\.\d+)", text)
    assert match, text
    return match.group(1)


def same_as_xxhsum(exe: str, ours: bytes, theirs: bytes) -> None:
    """parhash's lines equal xxhsum's (as sets: order is the walk's), for XXHSUM_MATCHED."""
    if xxhsum_version(exe) == XXHSUM_MATCHED:
        assert sorted(lines_of(ours)) == sorted(lines_of(theirs))


def rel_files(root: Path, base: Path) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), base) for n in names]
    return sorted(out)


# -- item 16: the default output verifies, with xxhsum and with parhash -----------------------


def test_default_output_is_xxhsum_H3_byte_for_byte_and_verifies(tmp_path):
    """``parhash scan d > x; xxhsum -c x; parhash check x``: both verify, no option given.
    On main the default lines were untagged: xxhsum -c read them as XXH64 (all FAILED) and
    parhash check refused them as ambiguous (exit 2)."""
    xxhsum = peer("xxhsum")
    tree = write_tree(tmp_path / "d", ODD)
    files = rel_files(tree, tmp_path)
    scanned = run_cli("scan", "-q", "d", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "x").write_bytes(scanned.stdout)
    reference = run(xxhsum, "-H3", *files, cwd=tmp_path)
    same_as_xxhsum(xxhsum, scanned.stdout, reference.stdout)
    for line in lines_of(scanned.stdout):  # and the digests are XXH3's, not parhash's word
        name, digest = re.fullmatch(rb"XXH3 \((.*)\) = ([0-9a-f]{16})", line, re.S).groups()
        assert digest.decode() == xxhash.xxh3_64_hexdigest(
            (tmp_path / os.fsdecode(name)).read_bytes()
        )

    by_xxhsum = run(xxhsum, "-c", "x", cwd=tmp_path)
    assert by_xxhsum.returncode == 0, by_xxhsum.stdout + by_xxhsum.stderr
    assert lines_of(by_xxhsum.stdout).count(b"d/-dash: OK") == 1
    checked = run_cli("check", "x", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert sorted(lines_of(checked.stdout)) == sorted(f"{f}: OK".encode() for f in files)


def test_default_output_with_a_newline_in_a_name_verifies_with_parhash(tmp_path):
    """xxhsum 0.8.1 writes a name with a newline raw (no line can hold it) and cannot check
    it back; parhash writes the escaped form xxhsum 0.8.2 and coreutils read, and keeps
    every other name as xxhsum writes it (a backslash stays verbatim on its own line)."""
    write_tree(tmp_path / "d", {"new\nline": b"nl", "back\\slash": b"bs", "x": b"x"})
    scanned = run_cli("scan", "-q", "d", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    got = set(lines_of(scanned.stdout))
    h = xxhash.xxh3_64_hexdigest
    assert got == {
        f"\\XXH3 (d/new\\nline) = {h(b'nl')}".encode(),
        f"XXH3 (d/back\\slash) = {h(b'bs')}".encode(),
        f"XXH3 (d/x) = {h(b'x')}".encode(),
    }
    (tmp_path / "x.sums").write_bytes(scanned.stdout)
    checked = run_cli("check", "x.sums", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert b"\\d/new\\nline: OK" in lines_of(checked.stdout)


@pytest.mark.parametrize(
    ("algo", "flag"),
    [("xxh64", "-H1"), ("xxh128", "-H2"), ("xxh32", "-H0"), ("xxh3", "-H3")],
)
@pytest.mark.parametrize("tag", [False, True], ids=["untagged", "tag"])
def test_xxh_lines_match_xxhsum_byte_for_byte(tmp_path, algo, flag, tag):
    xxhsum = peer("xxhsum")
    tree = write_tree(tmp_path / "d", ODD)
    files = rel_files(tree, tmp_path)
    extra = ["--tag"] if tag else []
    scanned = run_cli("scan", "-q", "-a", algo, *extra, "d", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    reference = run(xxhsum, flag, *extra, *files, cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    same_as_xxhsum(xxhsum, scanned.stdout, reference.stdout)
    (tmp_path / "list").write_bytes(scanned.stdout)
    assert run(xxhsum, "-c", "list", cwd=tmp_path).returncode == 0


def test_untagged_16_digits_are_xxh64_as_for_xxhsum(tmp_path):
    """An untagged 16-digit line is XXH64 (xxhsum's -H1 default). An old parhash 0.1.0 list
    (untagged xxh3) then fails, with a hint to pass -a xxh3, which verifies it."""
    xxhsum = peer("xxhsum")
    write_tree(tmp_path, {"f": b"some bytes"})
    (tmp_path / "list").write_bytes(run(xxhsum, "-H1", "f", cwd=tmp_path).stdout)
    checked = run_cli("check", "list", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, b"f: OK\n"), checked.stderr

    old = f"{xxhash.xxh3_64_hexdigest(b'some bytes')}  f\n".encode()
    (tmp_path / "old").write_bytes(old)
    failed = run_cli("check", "old", cwd=tmp_path)
    assert (failed.returncode, failed.stdout) == (1, b"f: FAILED\n")
    assert "read as xxh64" in failed.stderr and "-a xxh3" in failed.stderr
    fixed = run_cli("check", "-a", "xxh3", "old", cwd=tmp_path)
    assert (fixed.returncode, fixed.stdout) == (0, b"f: OK\n"), fixed.stderr


def test_default_zero_terminated_lines_are_tagged_and_check(tmp_path):
    write_tree(tmp_path / "d", {"new\nline": b"n", "back\\slash": b"b"})
    scanned = run_cli("scan", "-q", "-z", "d", cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    h = xxhash.xxh3_64_hexdigest
    assert set(lines_of(scanned.stdout, b"\0")) == {
        f"XXH3 (d/new\nline) = {h(b'n')}".encode(),  # -z escapes nothing
        f"XXH3 (d/back\\slash) = {h(b'b')}".encode(),
    }
    checked = run_cli("check", "-z", "-", cwd=tmp_path, input=scanned.stdout)
    assert checked.returncode == 0, checked.stderr
    assert len(lines_of(checked.stdout)) == 2


# -- item 18: cases from the peers' own suites ------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def x3(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


#: (id, where the case comes from, files, checksum file name, its bytes, check options,
#:  exit status, stdout, a fragment stderr must hold or None)
PEER_CASES = [
    (
        "check-windows",
        "coreutils tests/cksum/md5sum.pl 'check-windows': a CRLF line verifies",
        {"f": b""},
        "f.md5",
        f"{EMPTY_MD5}  f\r\n".encode(),
        [],
        0,
        b"f: OK\n",
        None,
    ),
    (
        "b3sum-crlf",
        "BLAKE3 b3sum/tests/cli_tests.rs test_check: CRLF checkfile verifies",
        {"a": b"a", "b": b"b", "c": {"d": b"cd"}},
        "checkfile",
        f"{b3(b'a')}  a\r\n{b3(b'b')}  b\r\n{b3(b'cd')}  c/d\r\n".encode(),
        ["-a", "blake3"],
        0,
        b"a: OK\nb: OK\nc/d: OK\n",
        None,
    ),
    (
        "xxh64sum-c-xxh3sum-out",
        "xxHash Makefile test-xxh-nnn-sums: 'xxh64sum -c tmp.xxh3sum.out; test $? -eq 1'",
        {"README.md": b"readme"},
        "tmp.xxh3sum.out",
        f"XXH3 (README.md) = {x3(b'readme')}\n".encode(),
        ["-a", "xxh64"],
        1,
        b"",
        "no properly formatted checksum lines found",
    ),
    (
        "xxh64-c-gnu-xxh3-prefix",
        "xxHash Makefile test-xxhsum-c: '-H3 ... | grep XXH3_ # prefix for GNU format'",
        {"f": b"x"},
        "list",
        f"XXH3_{x3(b'x')}  f\n".encode(),
        ["-a", "xxh64"],
        1,
        b"",
        "no properly formatted checksum lines found",
    ),
    (
        "xxhsum-c-xxh3sum-out",
        "xxHash Makefile test-xxh-nnn-sums: './xxhsum -c tmp.xxh3sum.out' succeeds",
        {"README.md": b"readme"},
        "tmp.xxh3sum.out",
        f"XXH3 (README.md) = {x3(b'readme')}\n".encode(),
        [],
        0,
        b"README.md: OK\n",
        None,
    ),
    (
        "check-bsd",
        "coreutils md5sum.pl 'check-bsd': md5sum does not take a SHA1 line",
        {"f": b""},
        "f.sha1",
        f"SHA1 (f) = {EMPTY_MD5}\n".encode(),
        ["-a", "md5"],
        1,
        b"",
        "no properly formatted checksum lines found",
    ),
    (
        "tag-never-overridden",
        "coreutils md5sum.pl 'check-bsd' with a good line too: -a never overrides a tag",
        {"f": b"", "g": b"g"},
        "SUMS",
        f"SHA1 (f) = {hashlib.sha1(b'').hexdigest()}\n{md5(b'g')}  g\n".encode(),
        ["-a", "md5", "--warn"],
        0,
        b"g: OK\n",
        "tagged SHA1, but -a is md5",
    ),
    (
        "check-bsd2",
        "coreutils md5sum.pl 'check-bsd2'",
        {"f": b""},
        "f.md5",
        f"MD5 (f) = {EMPTY_MD5}\n".encode(),
        [],
        0,
        b"f: OK\n",
        None,
    ),
    (
        "check-openssl2",
        "coreutils md5sum.pl 'check-openssl2': OpenSSL's 'MD5(f)= hex'",
        {"f": b""},
        "f.md5",
        f"MD5(f)= {EMPTY_MD5}\n".encode(),
        [],
        0,
        b"f: OK\n",
        None,
    ),
    (
        "check-multifail",
        "coreutils md5sum.pl 'check-multifail': the same file twice, one algorithm: no label",
        {"f": b"foo"},
        "f.md5",
        f"{EMPTY_MD5}  f\n{EMPTY_MD5}  f\ninvalid\n".encode(),
        [],
        1,
        b"f: FAILED\nf: FAILED\n",
        "WARNING: 2 computed checksums did NOT match",
    ),
    (
        "ck-strict-2",
        "coreutils md5sum.pl 'ck-strict-2': an invalid line first, --strict",
        {"f": b""},
        "in.md5",
        f"ERR\n{EMPTY_MD5}  f\n".encode(),
        ["--strict"],
        1,
        b"f: OK\n",
        "WARNING: 1 line is improperly formatted",
    ),
    (
        "check-quiet2",
        "coreutils md5sum.pl 'check-quiet2'",
        {"f": b"foo"},
        "f.md5",
        f"{EMPTY_MD5}  f\n".encode(),
        ["--quiet"],
        1,
        b"f: FAILED\n",
        "WARNING: 1 computed checksum did NOT match",
    ),
    (
        "check-ignore-missing-5",
        "coreutils md5sum.pl 'check-ignore-missing-5'",
        {"f": b""},
        "f.md5",
        f"{EMPTY_MD5}  missing\n".encode(),
        ["--ignore-missing"],
        1,
        b"",
        "f.md5: no file was verified",
    ),
    (
        "xxh-failed",
        "xxHash Makefile test-xxhsum-c: 'echo \"0000000000000000  LICENSE\" | xxhsum -c -'",
        {"LICENSE": b"license"},
        "-",
        b"0000000000000000  LICENSE\n",
        [],
        1,
        b"LICENSE: FAILED\n",
        None,
    ),
    (
        "bsd-segv",
        "coreutils md5sum.pl 'bsd-segv'",
        {},
        "z",
        b"MD5 (",
        ["-a", "md5"],
        1,
        b"",
        "z: no properly formatted checksum lines found",
    ),
    (
        "nul-in-cksum",
        "coreutils md5sum.pl 'nul-in-cksum'",
        {"h": b""},
        "h",
        b"\0" * 32 + b"  h\n",
        ["-a", "md5"],
        1,
        b"",
        "h: no properly formatted checksum lines found",
    ),
    (
        "b2sum-crash-check",
        "coreutils tests/cksum/b2sum.sh crash.check: 'returns_ 1 b2sum -c crash.check'",
        {},
        "crash.check",
        b"BLAKE2\nBLAKE2b\nBLAKE2-\nBLAKE2(\nBLAKE2 (\n",
        ["-a", "blake2b"],
        1,
        b"",
        "no properly formatted checksum lines found",
    ),
]


@pytest.mark.parametrize(
    ("files", "sums_name", "sums", "options", "code", "stdout", "stderr"),
    [case[2:] for case in PEER_CASES],
    ids=[case[0] for case in PEER_CASES],
)
def test_peer_suite_case(tmp_path, files, sums_name, sums, options, code, stdout, stderr):
    write_tree(tmp_path, files)
    stdin = sums if sums_name == "-" else None
    if stdin is None:
        (tmp_path / sums_name).write_bytes(sums)
    result = run_cli("check", "-j1", *options, sums_name, cwd=tmp_path, input=stdin)
    assert (result.returncode, result.stdout) == (code, stdout), result.stderr
    assert "Traceback" not in result.stderr
    if stderr is not None:
        assert stderr in result.stderr


def test_b3sum_output_in_crlf_verifies(tmp_path):
    """Real b3sum output, converted to CRLF as an editor on Windows would (b3sum
    cli_tests.rs test_check)."""
    b3sum = peer("b3sum")
    write_tree(tmp_path, {"a": b"a", "b": b"b", "c": {"d": b"cd"}})
    made = run(b3sum, "a", "b", "c/d", cwd=tmp_path)
    (tmp_path / "tree.b3").write_bytes(made.stdout.replace(b"\n", b"\r\n"))
    result = run_cli("check", "-j1", "tree.b3", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, b"a: OK\nb: OK\nc/d: OK\n"), result.stderr


def test_every_b2sum_length_verifies_tagged_and_untagged(tmp_path):
    """coreutils tests/cksum/b2sum.sh: '-l is inferred from the tags in the mixed format
    file' (--strict -c), and the OpenSSL variant; here every length b2sum -l accepts."""
    b2sum = peer("b2sum")
    names = ["a", " b", "*c", "44", " "]  # the names b2sum.sh uses
    write_tree(tmp_path, {n: n.encode() + b"\n" for n in names})
    tagged = b"".join(
        run(b2sum, "-l", str(bits), "--tag", n, cwd=tmp_path).stdout
        for bits in range(8, 513, 8)
        for n in names
    )
    assert tagged.count(b"\n") == 64 * len(names)
    assert b"BLAKE2b-256 (a) = " in tagged
    (tmp_path / "check.b2sum").write_bytes(tagged)
    result = run_cli("check", "--strict", "check.b2sum", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(lines_of(result.stdout)) == 64 * len(names)
    assert all(line.endswith(b": OK") for line in lines_of(result.stdout))

    openssl = re.sub(rb"(?m)^(\S+) \((.*)\) = ", rb"\1(\2)= ", tagged)
    (tmp_path / "openssl.b2sum").write_bytes(openssl)
    result = run_cli("check", "--strict", "openssl.b2sum", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    untagged = run(b2sum, "-l", "256", "a", cwd=tmp_path).stdout
    (tmp_path / "sums.b2").write_bytes(untagged)  # b2sum -c infers the length: so do we
    result = run_cli("check", "sums.b2", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, b"a: OK\n"), result.stderr
    (tmp_path / "list").write_bytes(untagged)
    result = run_cli("check", "-a", "blake2b-256", "list", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, b"a: OK\n"), result.stderr

    (tmp_path / "a").write_bytes(b"changed")
    result = run_cli("check", "check.b2sum", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.count(b"a: FAILED\n") == 64


def test_scan_blake2b_lengths_verify_with_b2sum(tmp_path):
    b2sum = peer("b2sum")
    write_tree(tmp_path / "d", {"a": b"a", "-dash": b"d", "back\\slash": b"b"})
    for flags in ([], ["--tag"]):
        scanned = run_cli("scan", "-q", "-a", "blake2b-256", *flags, "d", cwd=tmp_path)
        assert scanned.returncode == 0, scanned.stderr
        (tmp_path / "list").write_bytes(scanned.stdout)
        checked = run(b2sum, "-c", "--strict", "list", cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert len(lines_of(checked.stdout)) == 3
    digest = hashlib.blake2b(b"a", digest_size=32).hexdigest()
    assert f"BLAKE2b-256 (d/a) = {digest}".encode() in lines_of(scanned.stdout)


# -- item 19: several algorithms for one file -------------------------------------------------


def test_repeated_file_names_the_algorithm_that_failed(tmp_path):
    """``a: OK`` then ``a: FAILED`` said nothing; now each verdict names its algorithm."""
    write_tree(tmp_path, {"a": b"alpha", "b": b"bravo"})
    sha = hashlib.sha256
    sums = (
        f"SHA256 (a) = {sha(b'alpha').hexdigest()}\n"
        f"BLAKE3 (a) = {b3(b'not alpha')}\n"
        f"SHA256 (b) = {sha(b'bravo').hexdigest()}\n"
        f"BLAKE3 (b) = {b3(b'bravo')}\n"
    )
    (tmp_path / "multi.sums").write_text(sums)
    result = run_cli("check", "-j1", "multi.sums", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == (
        b"a: OK (SHA256)\na: FAILED (BLAKE3)\nb: OK (SHA256)\nb: OK (BLAKE3)\n"
    )
    assert "WARNING: 1 computed checksum did NOT match" in result.stderr


def test_scan_with_two_algorithms_then_check_names_them(tmp_path):
    write_tree(tmp_path / "t", {"x": b"x", "y": b"y"})
    scanned = run_cli("scan", "-q", "-j1", "--sort", "-a", "sha256,blake3", "t", cwd=tmp_path)
    (tmp_path / "t.sums").write_bytes(scanned.stdout)
    result = run_cli("check", "-j1", "t.sums", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout == b"t/x: OK (SHA256)\nt/x: OK (BLAKE3)\nt/y: OK (SHA256)\nt/y: OK (BLAKE3)\n"
    )


def test_single_algorithm_output_is_sha256sum_identical(tmp_path):
    sha256sum = peer("sha256sum")
    write_tree(tmp_path, {"a": b"a", "b": b"b", "c": b"c"})
    (tmp_path / "SHA256SUMS").write_bytes(run(sha256sum, "a", "b", "c", cwd=tmp_path).stdout)
    (tmp_path / "b").write_bytes(b"changed")
    os.unlink(tmp_path / "c")
    reference = run(sha256sum, "-c", "SHA256SUMS", cwd=tmp_path)
    result = run_cli("check", "-j1", "SHA256SUMS", cwd=tmp_path)
    assert result.returncode == reference.returncode == 1
    assert result.stdout == reference.stdout


# -- item 11: check -z streams ----------------------------------------------------------------

#: Peak RSS allowed for the check of a 300 MB -z input: generous (the interpreter and typer
#: take ~40 MB), far below what reading it whole takes (main: the 300 MB, then its split).
RSS_LIMIT_MB = 150

CHECK = ("check", "-z", "-j1", "-")

MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as data:
    code = subprocess.run(sys.argv[2:], stdin=data).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""

GENERATE = """
import sys
out = sys.stdout.buffer
for _ in range(150):  # bad records just under the 1 MiB record limit: the look-ahead's worst
    out.write(b"y" * 1_000_000 + b"\\0")
block = b"x" * (1 << 20)
for _ in range(150):  # then one 150 MiB record without a terminator
    out.write(block)
out.write(b"\\0" + sys.argv[1].encode() + b"\\0")
"""


def test_zero_terminated_check_streams_in_bounded_memory(tmp_path):
    """A 300 MB -z input, piped from a generator process: 150 bad records of 1 MB, one of
    150 MiB without a terminator, then a good one. Peak RSS of the check is measured
    (RUSAGE_CHILDREN of a wrapper whose only children are the check and its workers)."""
    (tmp_path / "f").write_bytes(b"payload")
    good = f"SHA256 (f) = {hashlib.sha256(b'payload').hexdigest()}"
    generator = subprocess.Popen(
        [sys.executable, "-c", GENERATE, good], stdout=subprocess.PIPE, cwd=tmp_path
    )
    try:
        measured = subprocess.run(
            [sys.executable, "-c", MEASURE, "/dev/stdin", sys.executable, "-m", "parhash", *CHECK],
            stdin=generator.stdout,
            capture_output=True,
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        generator.stdout.close()
        generator.wait(timeout=60)
    stderr = measured.stderr.decode()
    assert measured.stdout == b"f: OK\n", stderr
    assert measured.returncode == 0, stderr
    assert "WARNING: 151 lines are improperly formatted" in stderr
    peak_mb = int(stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"


def test_long_names_are_cut_in_messages(tmp_path):
    name = "missing/" + "n" * 5000
    record = f"SHA256 ({name}) = {'0' * 64}\0".encode()
    result = run_cli("check", "-z", "-", cwd=tmp_path, input=record)
    assert result.returncode == 1
    assert result.stdout == f"{name}: FAILED open or read\n".encode()  # data stays whole
    warning = [line for line in result.stderr.splitlines() if "missing/" in line]
    assert len(warning) == 1 and len(warning[0]) < 400, warning
    assert "(5008 characters)" in warning[0]


# -- item 17: hashdeep's own files ------------------------------------------------------------


def hashdeep_tree(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "tree", {"a": b"alpha", "sp ace,comma": b"bb", "sub": {"c": b"c" * 5000}}
    )


def test_check_reads_hashdeep_absolute_and_finds_a_modified_file(tmp_path):
    hashdeep = peer("hashdeep")
    tree = hashdeep_tree(tmp_path)
    made = run(hashdeep, "-r", "-c", "md5,sha1,sha256", tree, cwd=tmp_path)
    assert made.returncode == 0 and made.stdout.startswith(b"%%%% HASHDEEP-1.0\n")
    (tmp_path / "baseline.txt").write_bytes(made.stdout)
    result = run_cli("check", tmp_path / "baseline.txt", cwd="/")  # absolute names
    assert result.returncode == 0, result.stderr
    verdicts = lines_of(result.stdout)
    assert len(verdicts) == 9 and all(b": OK (" in v for v in verdicts)
    assert f"{tree}/sp ace,comma: OK (SHA1)".encode() in verdicts

    (tree / "sub" / "c").write_bytes(b"c" * 4999 + b"C")  # same size, other content
    result = run_cli("check", "baseline.txt", cwd=tmp_path)
    assert result.returncode == 1
    failed = sorted(v for v in lines_of(result.stdout) if b"FAILED" in v)
    assert failed == [f"{tree}/sub/c: FAILED ({t})".encode() for t in ("MD5", "SHA1", "SHA256")]


def test_check_and_audit_read_hashdeep_relative_paths(tmp_path):
    hashdeep = peer("hashdeep")
    tree = hashdeep_tree(tmp_path)
    made = run(hashdeep, "-l", "-r", "-c", "md5,sha256", "tree", cwd=tmp_path)
    assert b"\n## Invoked from: " in made.stdout and b",tree/a\n" in made.stdout
    (tmp_path / "hd.txt").write_bytes(made.stdout)
    result = run_cli("check", "-j1", "hd.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"tree/a: OK (MD5)\ntree/a: OK (SHA256)\n" in result.stdout

    hd = tmp_path / "hd.txt"
    audit = run_cli("audit", hd, "-f", "jsonl", cwd="/")  # the root comes from the file
    assert audit.returncode == 0, audit.stderr
    (tree / "a").write_bytes(b"ALPHA")  # same size, other content
    (tree / "new").write_bytes(b"n")
    os.unlink(tree / "sp ace,comma")
    audit = run_cli("audit", hd, "-f", "jsonl", cwd="/")
    assert audit.returncode == 1, audit.stderr
    events = {}
    for line in lines_of(audit.stdout):
        obj = __import__("json").loads(line)
        if "path" in obj and obj.get("status", obj.get("class")) not in (None, "unchanged"):
            events[os.path.basename(obj["path"])] = obj.get("status", obj.get("class"))
    assert events.get("new") == "added", audit.stdout
    assert events.get("sp ace,comma") == "removed", audit.stdout
    assert events.get("a") == "modified", audit.stdout  # no mtime in hashdeep: size + digest


@pytest.mark.parametrize("command", ["check", "audit"])
def test_unsupported_hashdeep_columns_are_refused(tmp_path, command):
    hashdeep = peer("hashdeep")
    tree = hashdeep_tree(tmp_path)
    made = run(hashdeep, "-r", "-c", "md5,tiger", tree, cwd=tmp_path)
    (tmp_path / "tiger.txt").write_bytes(made.stdout)
    result = run_cli(command, "tiger.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert "hashdeep column 'tiger' is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_checksum_file_does_not_stop_the_others(tmp_path):
    """``sha256sum -c one nosuch two`` verifies one and two, says why nosuch was skipped,
    and exits 1 (issue 10 D9)."""
    write_tree(tmp_path, {"a": b"one", "b": b"two"})
    (tmp_path / "one.sha256").write_bytes(run(peer("sha256sum"), "a", cwd=tmp_path).stdout)
    (tmp_path / "two.sha256").write_bytes(run(peer("sha256sum"), "b", cwd=tmp_path).stdout)
    names = ("one.sha256", "nosuch.sha256", "two.sha256")
    theirs = run(peer("sha256sum"), "-c", *names, cwd=tmp_path)
    ours = run_cli("check", "-j1", *names, cwd=tmp_path)
    assert theirs.returncode == ours.returncode == 1
    assert ours.stdout == theirs.stdout == b"a: OK\nb: OK\n"
    assert b"nosuch.sha256: No such file or directory" in theirs.stderr
    assert ours.stderr == "parhash: nosuch.sha256: No such file or directory\n"


def test_a_dash_line_verifies_stdin_as_sha256sum_does(tmp_path):
    """``sha256sum - < f > sums; sha256sum -c sums < f``: ``-: OK``; a second ``-`` line
    reads the stdin that is left (nothing); with the checksum file itself on stdin a ``-``
    line is improperly formatted (issue 10 D8)."""
    data = b"piped data\n" * 1000
    (tmp_path / "f").write_bytes(data)
    line = run(peer("sha256sum"), "-", cwd=tmp_path, input=data).stdout
    assert line == f"{hashlib.sha256(data).hexdigest()}  -\n".encode()
    (tmp_path / "dash.sums").write_bytes(line)
    (tmp_path / "twice.sums").write_bytes(line * 2)
    for sums, stdout, code in (
        ("dash.sums", b"-: OK\n", 0),
        ("twice.sums", b"-: OK\n-: FAILED\n", 1),
    ):
        theirs = run(peer("sha256sum"), "-c", sums, cwd=tmp_path, input=data)
        ours = run_cli("check", "-j1", "-a", "sha256", sums, cwd=tmp_path, input=data)
        assert (theirs.returncode, theirs.stdout) == (code, stdout), theirs
        assert (ours.returncode, ours.stdout) == (code, stdout), ours.stderr
    theirs = run(peer("sha256sum"), "-c", "-", cwd=tmp_path, input=line)
    ours = run_cli("check", "-j1", "-a", "sha256", "-", cwd=tmp_path, input=line)
    assert theirs.returncode == ours.returncode == 1
    assert theirs.stdout == ours.stdout == b""
    assert "no properly formatted checksum lines" in ours.stderr


def test_blake3_name_ending_in_cr_round_trips_and_reads_as_b3sum(tmp_path):
    """``scan -a blake3`` writes a final CR of a name raw (as b3sum does); check reads it back
    as part of the name, as the b3sum that reads the same file (issue 10 D6). The file's only
    line ends in CR, yet it is no CRLF file: only the name with the CR exists."""
    name = "cr\r"
    data = b"a\r"
    (tmp_path / name).write_bytes(data)
    scanned = run_cli("scan", "-q", "-j1", "-a", "blake3", name, cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    assert scanned.stdout == f"{blake3.blake3(data).hexdigest()}  {name}\n".encode()
    (tmp_path / "rt").write_bytes(scanned.stdout)
    theirs = run(peer("b3sum"), "--check", "rt", cwd=tmp_path)
    ours = run_cli("check", "-j1", "-a", "blake3", "rt", cwd=tmp_path)
    assert theirs.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout == f"{name}: OK\n".encode()


@pytest.mark.parametrize("bits", [8, 256, 504])
@pytest.mark.parametrize("tag", [False, True], ids=["untagged", "tag"])
def test_a_blake2b_names_the_family_as_b2sum_reads_the_length(tmp_path, bits, tag):
    """``b2sum -l N [--tag] a > s; b2sum -c s``: OK; ``check -a blake2b s`` too, the length
    read from the tag or the digest, and a changed file FAILED (issue 10 D7)."""
    b2sum = peer("b2sum")
    write_tree(tmp_path, {"a": b"alpha", "b": b"bravo"})
    made = run(b2sum, "-l", str(bits), *(["--tag"] if tag else []), "a", "b", cwd=tmp_path)
    first = f"{hashlib.blake2b(b'alpha', digest_size=bits // 8).hexdigest()}"
    assert first in made.stdout.decode()
    (tmp_path / "sums").write_bytes(made.stdout)
    (tmp_path / "b").write_bytes(b"changed")
    theirs = run(b2sum, "-c", "sums", cwd=tmp_path)
    ours = run_cli("check", "-j1", "-a", "blake2b", "sums", cwd=tmp_path)
    assert (theirs.returncode, theirs.stdout) == (1, b"a: OK\nb: FAILED\n"), theirs
    assert (ours.returncode, ours.stdout) == (1, theirs.stdout), ours.stderr
