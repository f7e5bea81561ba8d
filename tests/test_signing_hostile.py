"""A hostile reviewer's attacks on signed manifests, each through the real CLI.

Every attack tries to make parhash accept what it must refuse, crash, hang, lie (say
"signed" and keep no signature) or leave files behind. The expectations are independent of
parhash: ``ssh-keygen -Y verify``/``find-principals`` decide what an allowed_signers file
allows, the tests' own bytes decide what a signature file holds, and the file system
(``os.listdir``) says what was left. A refusal is always exit 3 with one stderr line and
nothing on stdout; a configuration or output problem is exit 2; never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from test_signing import BAD_SIGNATURE, PRINCIPAL, assert_refused, keygen, public, ssh_sign

FATAL = 2
TREE = {"a.txt": b"alpha\n", "sub": {"b.txt": b"beta\n"}}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    ops, other = keygen(directory, "ops"), keygen(directory, "other")
    signers = directory / "allowed_signers"
    signers.write_text(f'{PRINCIPAL} namespaces="parhash" {public(ops)}\n')
    both = directory / "both_signers"
    both.write_text(f"{PRINCIPAL} {public(ops)}\nother@example {public(other)}\n")
    return {"ops": ops, "other": other, "signers": signers, "both": both, "dir": directory}


@pytest.fixture
def signed(tmp_path, keys):
    """A tree, its jsonl manifest signed by ``scan --sign``, and the .sig's bytes."""
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "m.jsonl"
    r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], "-q")
    assert r.returncode == 0, r.stderr
    return tree, manifest, Path(f"{manifest}.sig").read_bytes()


def ssh_accepts(signers, message, sig, identity=PRINCIPAL) -> bool:
    command = ["ssh-keygen", "-Y", "verify", "-f", signers, "-I", identity, "-n", "parhash"]
    with open(message, "rb") as stdin:
        proc = subprocess.run(
            [*command, "-s", sig],
            stdin=stdin,
            capture_output=True,
        )
    return proc.returncode == 0


#: Every principal the allowed_signers cases below name.
CANDIDATES = (PRINCIPAL, "a@x", "b@x", "backup@example", "*@example")


def ssh_accepts_someone(signers, message, sig) -> bool:
    """What parhash decides without ``--identity`` ("listed for some principal with the
    parhash namespace allowed"), asked of ssh-keygen: does ``verify -I P`` pass for some
    principal P? (``find-principals`` ignores ``namespaces=``, and names only the first
    line that lists the key, so it is not the oracle.)"""
    return any(ssh_accepts(signers, message, sig, principal) for principal in CANDIDATES)


def verify(manifest, signers, *extra, **kw):
    return run_cli("verify", manifest, "--allowed-signers", signers, *extra, timeout=30, **kw)


def assert_fatal(r, *words: str) -> None:
    assert r.returncode == FATAL, (r.returncode, r.stderr, r.text)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout == b"", r.text
    for word in words:
        assert word in r.stderr, r.stderr


def leftovers(directory: Path, *expected: str) -> list[str]:
    """Names in ``directory`` besides ``expected`` (temporary files a run left)."""
    return sorted(set(os.listdir(directory)) - set(expected))


def blocks(sig: bytes) -> tuple[bytes, bytes, bytes]:
    """(the file's armored signature, the comment line, the comment's armored signature)."""
    end = b"-----END SSH SIGNATURE-----\n"
    first, _, rest = sig.partition(end)
    line, _, second = rest.partition(b"\n")
    return first + end, line + b"\n", second


# -- the signature file's text -------------------------------------------------------------


def _other_files_signature(keys, tmp_path) -> bytes:
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"another file\n")
    assert run_cli("sign", decoy, "--key", keys["ops"], "-q").returncode == 0
    return Path(f"{decoy}.sig").read_bytes()


SIG_GAMES = {
    "crlf": lambda sig, _: sig.replace(b"\n", b"\r\n"),
    "bom": lambda sig, _: b"\xef\xbb\xbf" + sig,
    "leading blank line": lambda sig, _: b"\n" + sig,
    "leading space": lambda sig, _: b" " + sig,
    "another file's signature first": lambda sig, other: other + sig,
    "blocks swapped": lambda sig, _: blocks(sig)[2] + blocks(sig)[1] + blocks(sig)[0],
    "comment block without its line": lambda sig, _: blocks(sig)[0] + blocks(sig)[2],
    "two comment lines": lambda sig, _: blocks(sig)[0] + blocks(sig)[1] * 2 + blocks(sig)[2],
    "comment line repeated after": lambda sig, _: sig + blocks(sig)[1],
    "another file's comment": lambda sig, other: (
        blocks(sig)[0] + blocks(other)[1] + blocks(other)[2]
    ),
    "comment edited (control chars)": lambda sig, _: (
        blocks(sig)[0]
        + blocks(sig)[1].replace(b'"roots":[', b'"roots":["\\u001b[2J",')
        + blocks(sig)[2]
    ),
    "comment with a non-ASCII byte": lambda sig, _: (
        blocks(sig)[0] + blocks(sig)[1].replace(b"tree", b"tr\xc3\xa9e") + blocks(sig)[2]
    ),
    "comment signature truncated": lambda sig, _: sig[: -len(b"-----END SSH SIGNATURE-----\n")],
    "NUL after the END line": lambda sig, _: sig + b"\0",
}


@pytest.mark.parametrize("game", sorted(SIG_GAMES))
def test_signature_file_games_are_refused(tmp_path, keys, signed, game):
    _, manifest, sig = signed
    Path(f"{manifest}.sig").write_bytes(
        SIG_GAMES[game](sig, _other_files_signature(keys, tmp_path))
    )
    assert_refused(verify(manifest, keys["signers"]))
    assert_refused(run_cli("audit", manifest, "--allowed-signers", keys["signers"]))


@pytest.mark.parametrize("game", ["crlf", "bom", "leading space", "blocks swapped"])
def test_ssh_keygen_also_refuses_the_armor_games(tmp_path, keys, signed, game):
    """Where the first block itself is mangled, ssh-keygen agrees that it is no signature:
    parhash is not stricter than OpenSSH about the part OpenSSH reads."""
    _, manifest, sig = signed
    bad = tmp_path / "bad.sig"
    bad.write_bytes(SIG_GAMES[game](sig, b""))
    assert not ssh_accepts(keys["signers"], manifest, bad)


def test_trailing_blank_lines_are_harmless(keys, signed):
    _, manifest, sig = signed
    Path(f"{manifest}.sig").write_bytes(sig + b"  \n\n")
    assert ssh_accepts(keys["signers"], manifest, f"{manifest}.sig")
    r = verify(manifest, keys["signers"])
    assert r.returncode == 0 and r.text.count("\n") == 1, r.stderr


def test_a_comment_signed_by_another_listed_key_is_refused(tmp_path, keys, signed):
    """Both keys are trusted, yet a comment must be signed by the key that signed the file:
    else one signer could date another's manifest."""
    _, manifest, sig = signed
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(manifest, copy)
    assert run_cli("sign", copy, "--key", keys["other"], "-q").returncode == 0
    theirs = Path(f"{copy}.sig").read_bytes()
    Path(f"{manifest}.sig").write_bytes(blocks(sig)[0] + blocks(theirs)[1] + blocks(theirs)[2])
    assert_refused(verify(manifest, keys["both"]), "another key")


@pytest.mark.parametrize("kind", ["devzero", "fifo", "directory", "dangling", "2MiB"])
def test_a_signature_that_is_not_a_small_file_is_refused_at_once(tmp_path, keys, signed, kind):
    _, manifest, sig = signed
    path = Path(f"{manifest}.sig")
    path.unlink()
    if kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    else:
        path.write_bytes(sig + b"\n" * (2 << 20))
    assert_refused(verify(manifest, keys["signers"]))


def world_readable_copy(tmp_path: Path, *files: Path) -> Path:
    """A directory outside tmp_path (whose ancestors are 0700) that nobody can enter."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="parhash-hostile-"))
    directory.chmod(0o755)
    for f in files:
        shutil.copy(f, directory / f.name)
        (directory / f.name).chmod(0o644)
    return directory


def run_as_nobody(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "parhash", *map(os.fsdecode, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.parametrize("unreadable", ["m.jsonl.sig", "m.jsonl"])
def test_an_unreadable_signature_or_manifest_is_refused(tmp_path, keys, signed, unreadable):
    _, manifest, _ = signed
    where = world_readable_copy(tmp_path, manifest, Path(f"{manifest}.sig"), keys["signers"])
    try:
        (where / unreadable).chmod(0)
        proc = run_as_nobody("verify", "m.jsonl", "--allowed-signers", "allowed_signers", cwd=where)
        assert proc.returncode == BAD_SIGNATURE, proc.stderr
        assert proc.stdout == "" and "Permission denied" in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
    finally:
        shutil.rmtree(where)


# -- the manifest --------------------------------------------------------------------------


def test_scan_sign_through_a_symlink_signs_what_the_name_reads(tmp_path, keys):
    """``-o link`` replaces the link's target (as ``>`` would) and writes ``link.sig``
    beside the name given: ssh-keygen and parhash check that name; the target's own name
    has no signature, and is refused as unsigned."""
    tree = write_tree(tmp_path / "tree", TREE)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.jsonl"
    target.write_bytes(b"old\n")
    link = tmp_path / "m.jsonl"
    link.symlink_to(target)
    r = run_cli("scan", tree, "-f", "jsonl", "-o", link, "--sign", keys["ops"], "-q")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and target.read_bytes().startswith(b'{"header"')
    assert ssh_accepts(keys["signers"], link, f"{link}.sig")
    assert verify(link, keys["signers"]).returncode == 0
    assert_refused(verify(target, keys["signers"]), "not signed")
    assert leftovers(tmp_path / "real", "m.jsonl") == []


def test_relative_names_from_another_directory(tmp_path, keys, signed):
    _, manifest, _ = signed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name = os.path.relpath(manifest, elsewhere)
    r = run_cli("verify", name, "--allowed-signers", keys["signers"], cwd=elsewhere)
    assert r.returncode == 0 and r.text.startswith(f"{name}: good signature"), r.stderr


@pytest.mark.parametrize("command", ["audit", "check"])
def test_standard_input_cannot_be_verified(keys, signed, command):
    _, manifest, _ = signed
    r = run_cli(command, "-", "--allowed-signers", keys["signers"], input=manifest.read_bytes())
    assert_fatal(r, "standard input")


def test_appended_after_signing_is_refused_before_scanning(keys, signed):
    tree, manifest, _ = signed
    (tree / "a.txt").write_bytes(b"changed\n")  # an audit that ran would report it (exit 1)
    with open(manifest, "ab") as f:
        f.write(b"\n")
    assert_refused(run_cli("audit", manifest, "--allowed-signers", keys["signers"]), "match")


def test_non_utf8_manifest_name(tmp_path, keys):
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = os.path.join(os.fsencode(tmp_path), b"m\xff.jsonl")
    r = run_cli("scan", tree, "-f", "jsonl", "-o", os.fsdecode(manifest), "--sign", keys["ops"])
    assert r.returncode == 0, r.stderr
    sig = manifest + b".sig"
    assert ssh_accepts(keys["signers"], manifest, sig)
    r = verify(os.fsdecode(manifest), keys["signers"])
    assert r.returncode == 0 and r.stdout.count(b"\n") == 1, r.stderr


def test_a_hostile_root_name_is_one_sanitized_line(tmp_path, keys):
    """The comment carries the roots; one named with a newline and an escape sequence must
    not forge a second output line or reach the terminal raw."""
    tree = write_tree(tmp_path / "x\nm.jsonl: good signature by root\x1b[2J", TREE)
    manifest = tmp_path / "m.jsonl"
    r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], "-q")
    assert r.returncode == 0, r.stderr
    r = verify(manifest, keys["signers"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"\n") == 1 and b"\x1b" not in r.stdout, r.stdout


def test_a_manifest_swapped_while_audit_reads_it_is_never_believed(tmp_path, keys, signed):
    """A thread keeps renaming a validly signed manifest of another tree (same signer) and
    the genuine one over the path while audits run: each audit must either refuse (3) or
    report the genuine manifest (0); the other tree's entries would be changes (exit 1)."""
    tree, manifest, _ = signed
    decoy_tree = write_tree(tmp_path / "decoy_tree", {"z.txt": b"zzz\n"})
    decoy = tmp_path / "decoy.jsonl"
    r = run_cli("scan", decoy_tree, "-f", "jsonl", "-o", decoy, "--sign", keys["ops"], "-q")
    assert r.returncode == 0, r.stderr
    genuine = tmp_path / "genuine.jsonl"
    shutil.copy2(manifest, genuine)
    stop, thread = swapping(manifest, decoy, genuine)
    try:
        codes = {
            run_cli("audit", manifest, tree, "--allowed-signers", keys["signers"]).returncode
            for _ in range(6)
        }
    finally:
        stop.set()
        thread.join()
    assert codes <= {0, BAD_SIGNATURE}, codes


# -- rollback and age ----------------------------------------------------------------------


DAY = 86400


def signed_sums(tmp_path, keys, age_s: float) -> Path:
    """A sums file whose signed comment says it was created ``age_s`` ago (parhash dates a
    file that is not a json/jsonl manifest by its mtime when it signs it)."""
    sums = tmp_path / "SHA256SUMS"
    sums.write_bytes(b"0" * 64 + b"  a.txt\n")
    when = time.time() - age_s
    os.utime(sums, (when, when))
    assert run_cli("sign", sums, "--key", keys["ops"], "-q").returncode == 0
    return sums


@pytest.mark.parametrize(
    ("age_s", "limit", "accepted"),
    [
        (10 * DAY - 120, "10d", True),
        (10 * DAY + 120, "10d", False),
        (-120, "1h", True),  # clock skew between hosts
        (-3600, "1h", False),  # from the future: young forever
        (60, "0", False),
    ],
)
def test_max_manifest_age_boundaries(tmp_path, keys, age_s, limit, accepted):
    sums = signed_sums(tmp_path, keys, age_s)
    r = verify(sums, keys["signers"], "--max-manifest-age", limit)
    if accepted:
        assert r.returncode == 0, r.stderr
    else:
        assert_refused(r, "future" if age_s < 0 else "older than")


@pytest.mark.parametrize("limit", ["-1", "8x", "", "1e3", "inf"])
def test_max_manifest_age_nonsense_is_a_usage_error(keys, signed, limit):
    _, manifest, _ = signed
    r = verify(manifest, keys["signers"], "--max-manifest-age", limit)
    assert r.returncode == FATAL and "Traceback" not in r.stderr and r.stdout == b"", r.stderr


def test_an_old_header_stays_old_when_signed_again(tmp_path, keys, signed):
    """Re-signing an old jsonl today does not make it young: the comment carries the header's
    time, and ssh-keygen's signature (no comment) falls back to the same header."""
    _, manifest, _ = signed
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * DAY))
    text = manifest.read_text()
    import json

    first, rest = text.split("\n", 1)
    header = json.loads(first)
    header["header"]["started"] = old
    manifest.write_text(json.dumps(header) + "\n" + rest)
    assert run_cli("sign", manifest, "--key", keys["ops"], "-q").returncode == 0
    assert_refused(verify(manifest, keys["signers"], "--max-manifest-age", "8d"), "older")
    ssh_sign(keys["ops"], manifest)
    assert_refused(verify(manifest, keys["signers"], "--max-manifest-age", "8d"), "older")


# -- allowed_signers: parhash decides as ssh-keygen does -----------------------------------


def _signers_cases(ops: str, other: str) -> list[tuple[str, str | None]]:
    """(allowed_signers text, --identity) pairs; ssh-keygen is the oracle for each."""
    return [
        (f'a@x namespaces="git" {ops}\nb@x namespaces="parhash" {ops}\n', "a@x"),
        (f'a@x namespaces="git" {ops}\nb@x namespaces="parhash" {ops}\n', "b@x"),
        (f'a@x namespaces="git" {ops}\nb@x namespaces="parhash" {ops}\n', None),
        (f'a@x namespaces="git" {ops}\n', None),
        (f"*@example {ops}\n", PRINCIPAL),
        (f"*@example {ops}\n", "*"),
        (f"{PRINCIPAL} {ops}\n", "*"),
        (f"{PRINCIPAL} {ops}\n", f"{PRINCIPAL},evil@x"),
        (f"{PRINCIPAL},backup@example {ops}\n", "backup@example"),
        (f'"{PRINCIPAL}" {ops}\n', PRINCIPAL),
        (f"!{PRINCIPAL},* {ops}\n", PRINCIPAL),
        (f'{PRINCIPAL} namespaces="par*" {ops}\n', PRINCIPAL),
        (f'{PRINCIPAL} namespaces="git,!parhash,*" {ops}\n', PRINCIPAL),
        (f'{PRINCIPAL} valid-after="29991231" {ops}\n', PRINCIPAL),
        (f"{PRINCIPAL} cert-authority {ops}\n", PRINCIPAL),
        (f"{PRINCIPAL} {other}\n", PRINCIPAL),
        (f"{PRINCIPAL} {other}\n{PRINCIPAL} {ops}\n", PRINCIPAL),
    ]


def test_allowed_signers_decisions_match_ssh_keygen(tmp_path, keys, signed):
    _, manifest, _ = signed
    ssh_sig = tmp_path / "ssh.sig"  # block 1 alone: what ssh-keygen reads
    ssh_sig.write_bytes(blocks(Path(f"{manifest}.sig").read_bytes())[0])
    cases = _signers_cases(public(keys["ops"]), public(keys["other"]))
    disagreements = []
    for n, (text, identity) in enumerate(cases):
        signers = tmp_path / f"signers{n}"
        signers.write_text(text)
        if identity is None:
            expected = ssh_accepts_someone(signers, manifest, ssh_sig)
        else:
            expected = ssh_accepts(signers, manifest, ssh_sig, identity)
        extra = ["--identity", identity] if identity is not None else []
        r = verify(manifest, signers, *extra)
        assert "Traceback" not in r.stderr, r.stderr
        if (r.returncode == 0) != expected or r.returncode not in (0, BAD_SIGNATURE):
            disagreements.append((text, identity, expected, r.returncode, r.stderr))
    assert disagreements == []


def test_the_principal_reported_is_the_one_with_the_namespace(tmp_path, keys, signed):
    _, manifest, _ = signed
    ops = public(keys["ops"])
    signers = tmp_path / "signers"
    signers.write_text(f'a@x namespaces="git" {ops}\nb@x namespaces="parhash" {ops}\n')
    r = verify(manifest, signers)
    assert r.returncode == 0 and "good signature by b@x (" in r.text, r.text + r.stderr


# -- the signing side ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "devnull", "directory"])
@pytest.mark.parametrize("how", ["scan", "sign"])
def test_a_signature_path_that_keeps_nothing_is_refused(tmp_path, keys, kind, how):
    """``FILE.sig`` a FIFO (the write would wait for a reader forever), /dev/null (``signed``
    would be a lie) or a directory: exit 2 at once, nothing signed, nothing left."""
    tree = write_tree(tmp_path / "tree", TREE)
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / "m.jsonl"
    if how == "sign":
        manifest.write_bytes(b"data\n")
    sig = Path(f"{manifest}.sig")
    if kind == "fifo":
        os.mkfifo(sig)
    elif kind == "devnull":
        sig.symlink_to("/dev/null")
    else:
        sig.mkdir()
    if how == "scan":
        r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], timeout=30)
        assert not manifest.exists()
    else:
        r = run_cli("sign", manifest, "--key", keys["ops"], timeout=30)
        assert manifest.read_bytes() == b"data\n"
    assert r.returncode == FATAL, r.stderr
    assert "Traceback" not in r.stderr and "signed" not in r.stderr, r.stderr
    assert "m.jsonl.sig" in r.stderr, r.stderr
    assert leftovers(out, *(["m.jsonl"] if how == "sign" else []), "m.jsonl.sig") == []


@pytest.mark.parametrize("link", ["sig -> manifest", "manifest -> sig", "hard link"])
@pytest.mark.parametrize("how", ["scan", "audit --update"])
def test_a_signature_that_is_the_manifest_itself_is_refused(tmp_path, keys, signed, link, how):
    """``m.jsonl.sig`` that is ``m.jsonl`` (a symlink either way, a hard link): the .sig
    would be written over the manifest just written, which would be lost, with exit 0.
    Exit 2 before anything is hashed, and the manifest is left as it was."""
    tree, manifest, _ = signed
    sig = Path(f"{manifest}.sig")
    sig.unlink()
    if link == "sig -> manifest":
        sig.symlink_to(manifest.name)
    elif link == "manifest -> sig":
        manifest.rename(sig)
        manifest.symlink_to(sig.name)
    else:
        os.link(manifest, sig)
    before = manifest.read_bytes()
    (tree / "a.txt").write_bytes(b"changed\n")
    if how == "scan":
        r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], "-q")
    else:
        r = run_cli("audit", manifest, "--update", "--sign", keys["ops"], "-q")
    assert_fatal(r, "itself")
    assert manifest.read_bytes() == before


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.parametrize("foreign", ["m.jsonl.sig", "m.jsonl", "directory"])
def test_sign_into_what_this_user_cannot_write(tmp_path, keys, signed, foreign):
    """As nobody: a read-only directory, or an old manifest or .sig owned by root (0644,
    so it cannot be kept by a rename nor rewritten in place). The run fails with one
    line, exit 2, and the old pair stays as it was, consistent, with no temporary file."""
    tree, manifest, sig = signed
    where = world_readable_copy(tmp_path, manifest, Path(f"{manifest}.sig"), keys["ops"])
    try:
        os.chown(where, 65534, 65534)
        for name in ("m.jsonl", "m.jsonl.sig", "ops"):
            if name != foreign:
                os.chown(where / name, 65534, 65534)
        if foreign == "directory":
            where.chmod(0o555)
        (where / "ops").chmod(0o600)
        (tree / "a.txt").write_bytes(b"changed\n")
        tree.chmod(0o755)
        tmp_path.chmod(0o755)
        os.chmod(tmp_path.parent, 0o755)
        proc = run_as_nobody(
            "scan", tree, "-f", "jsonl", "-o", "m.jsonl", "--sign", "ops", "-q", cwd=where
        )
        assert proc.returncode == FATAL, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
        assert (where / "m.jsonl").read_bytes() == manifest.read_bytes()
        assert (where / "m.jsonl.sig").read_bytes() == sig
        assert leftovers(where, "m.jsonl", "m.jsonl.sig", "ops", "ops.pub") == []
    finally:
        where.chmod(0o755)
        shutil.rmtree(where)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    directory.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=True)


@pytest.mark.skipif(not IS_ROOT, reason="mounts a tmpfs")
@pytest.mark.parametrize("room_pages", [0, 1])
def test_a_full_disk_keeps_the_old_pair(tmp_path, keys, signed, room_pages):
    """The disk fills while the new manifest (0 pages left) or its signature (1 page left:
    the manifest's) is written: exit 2 with one line, and the old manifest and old .sig
    are both still there, still a verifying pair."""
    tree, manifest, sig = signed
    with tmpfs(tmp_path / "full", "64k") as disk:
        shutil.copy(manifest, disk / "m.jsonl")
        shutil.copy(f"{manifest}.sig", disk / "m.jsonl.sig")
        st = os.statvfs(disk)
        room = st.f_bavail * st.f_frsize - room_pages * st.f_frsize
        with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * room)
        (tree / "a.txt").write_bytes(b"changed\n")
        r = run_cli("scan", tree, "-f", "jsonl", "-o", disk / "m.jsonl", "--sign", keys["ops"])
        assert r.returncode == FATAL, r.stderr
        assert "Traceback" not in r.stderr and "No space" in r.stderr, r.stderr
        assert (disk / "m.jsonl").read_bytes() == manifest.read_bytes()
        assert (disk / "m.jsonl.sig").read_bytes() == sig
        assert leftovers(disk, "m.jsonl", "m.jsonl.sig", "filler") == []


@pytest.mark.skipif(not IS_ROOT, reason="mounts a tmpfs")
def test_parhash_sign_on_a_full_disk_does_not_say_signed(tmp_path, keys):
    with tmpfs(tmp_path / "full", "64k") as disk:
        data = disk / "f"
        data.write_bytes(b"data\n")
        with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (1 << 20))
        r = run_cli("sign", data, "--key", keys["ops"])
        assert_fatal(r, "No space")
        assert "signed" not in r.stderr, r.stderr
        assert leftovers(disk, "f", "filler") == []


class HangingAgent:
    """A unix socket that answers REQUEST_IDENTITIES with one key, then never answers a
    SIGN_REQUEST: the moment scan --sign is signing its finished manifest."""

    def __init__(self, path: Path, blob: bytes) -> None:
        self.path, self.blob = path, blob
        self.signing = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(os.fspath(path))
        self.server.listen(4)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        from parhash.sshwire import string, uint32

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            length = int.from_bytes(conn.recv(4), "big")
            message = b""
            while len(message) < length:
                message += conn.recv(length - len(message))
            if message[0] == 11:
                body = bytes([12]) + uint32(1) + string(self.blob) + string(b"ops")
                conn.sendall(uint32(len(body)) + body)
                conn.close()
            else:
                self.held.append(conn)  # never answered
                self.signing.set()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_signing_leaves_the_old_pair(tmp_path, keys, signed, signum):
    import base64

    tree, manifest, sig = signed
    blob = base64.b64decode(public(keys["ops"]).split()[1])
    agent = HangingAgent(tmp_path / "agent.sock", blob)
    (tree / "a.txt").write_bytes(b"changed\n")
    env = {**os.environ, "SSH_AUTH_SOCK": str(agent.path)}
    command = [sys.executable, "-m", "parhash", "scan", tree, "-f", "jsonl", "-o", manifest]
    proc = subprocess.Popen(
        [*map(os.fsdecode, command), "--sign", f"{keys['ops']}.pub", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert agent.signing.wait(30), "parhash never asked the agent to sign"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        agent.close()
    assert proc.returncode == 128 + signum, err
    assert b"Traceback" not in err, err
    assert manifest.read_bytes() != b"" and Path(f"{manifest}.sig").read_bytes() == sig
    assert verify(manifest, keys["signers"]).returncode == 0
    assert leftovers(tmp_path, "tree", "m.jsonl", "m.jsonl.sig", "agent.sock") == []


def test_update_sign_with_a_broken_key_changes_nothing(tmp_path, keys, signed):
    tree, manifest, sig = signed
    before = manifest.read_bytes()
    (tree / "a.txt").write_bytes(b"changed\n")
    broken = tmp_path / "broken"
    broken.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    r = run_cli(
        "audit", manifest, "--allowed-signers", keys["signers"], "--update", "--sign", broken
    )
    assert_fatal(r, "broken")
    assert "modified" not in r.stderr  # nothing was scanned
    assert manifest.read_bytes() == before and Path(f"{manifest}.sig").read_bytes() == sig
    assert leftovers(tmp_path, "tree", "m.jsonl", "m.jsonl.sig", "broken") == []


def test_sign_with_one_missing_input_writes_nothing(tmp_path, keys):
    """Documented: every input is checked before anything is written."""
    good = tmp_path / "good"
    good.write_bytes(b"x\n")
    r = run_cli("sign", good, tmp_path / "missing", "--key", keys["ops"])
    assert_fatal(r, "missing")
    assert leftovers(tmp_path, "good") == []


@pytest.mark.parametrize("second", ["a.sig", "link"])
def test_sign_refuses_to_sign_over_an_input(tmp_path, keys, second):
    a = tmp_path / "a"
    a.write_bytes(b"x\n")
    Path(f"{a}.sig").write_bytes(b"an input\n")
    if second == "link":
        os.unlink(f"{a}.sig")
        os.symlink(a, f"{a}.sig")
    r = run_cli("sign", a, tmp_path / "a.sig", "--key", keys["ops"])
    assert_fatal(r, "a.sig")
    assert a.read_bytes() == b"x\n"


def test_the_same_input_twice_is_signed_once(tmp_path, keys):
    a = tmp_path / "a"
    a.write_bytes(b"x\n")
    r = run_cli("sign", a, a, "--key", keys["ops"])
    assert r.returncode == 0, r.stderr
    assert ssh_accepts(keys["signers"], a, f"{a}.sig")
    assert leftovers(tmp_path, "a", "a.sig") == []


@pytest.mark.parametrize(
    ("kind", "bits"), [("rsa", "2048"), ("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521")]
)
def test_scan_sign_with_rsa_and_ecdsa_verifies_with_ssh_keygen(tmp_path, kind, bits):
    key = keygen(tmp_path, f"{kind}{bits}", kind, bits)
    signers = tmp_path / "signers"
    signers.write_text(f"{PRINCIPAL} {public(key)}\n")
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "m.csv"
    r = run_cli("scan", tree, "-f", "csv", "-o", manifest, "--sign", key, "-q")
    assert r.returncode == 0, r.stderr
    assert ssh_accepts(signers, manifest, f"{manifest}.sig")
    assert verify(manifest, signers).returncode == 0


# -- exit codes and outputs ----------------------------------------------------------------


def test_verify_of_several_prints_the_good_and_exits_3(tmp_path, keys, signed):
    _, manifest, _ = signed
    bad = tmp_path / "bad"
    bad.write_bytes(b"x\n")
    assert run_cli("sign", bad, "--key", keys["ops"], "-q").returncode == 0
    bad.write_bytes(b"y\n")
    r = run_cli(
        "verify", manifest, bad, tmp_path / "unsigned", "--allowed-signers", keys["signers"]
    )
    assert r.returncode == BAD_SIGNATURE, r.stderr
    assert len(r.text.splitlines()) == 1, r.text
    assert r.text.startswith(f"{manifest}: good signature by {PRINCIPAL}")
    assert len(r.stderr.splitlines()) == 2 and "Traceback" not in r.stderr, r.stderr


def test_metrics_record_a_refusal(tmp_path, keys, signed):
    _, manifest, sig = signed
    Path(f"{manifest}.sig").write_bytes(sig.replace(b"A", b"B", 1))
    metrics = tmp_path / "parhash.prom"
    r = run_cli("audit", manifest, "--allowed-signers", keys["signers"], "--metrics", metrics)
    assert_refused(r)
    lines = [line for line in metrics.read_text().splitlines() if line.startswith("parhash_")]
    assert any("exit_code" in line and line.endswith(" 3") for line in lines), lines


def test_check_refuses_a_tampered_sums_file_before_hashing(tmp_path, keys):
    tree = write_tree(tmp_path / "tree", TREE)
    sums = tmp_path / "SHA256SUMS"
    listing = subprocess.run(
        ["sha256sum", "a.txt", "sub/b.txt"], cwd=tree, capture_output=True, check=True
    ).stdout
    sums.write_bytes(listing)
    assert run_cli("sign", sums, "--key", keys["ops"], "-q").returncode == 0
    sums.write_bytes(listing.replace(b"a.txt", b"b.txt", 1))
    r = run_cli("check", sums, "--allowed-signers", keys["signers"], cwd=tree)
    assert_refused(r)
    assert stat.S_ISREG(os.stat(sums).st_mode)


def test_a_comment_too_long_to_verify_is_never_written(tmp_path, keys):
    """300 roots of 3.7 kB each: the comment that lists them would make a .sig over the
    1 MiB verify reads, a signature parhash writes but refuses. The run fails loudly
    instead, and leaves neither manifest nor .sig."""
    component = "x" * 250
    deep = tmp_path.joinpath(*[component] * 14)
    roots = [deep / f"r{n}" for n in range(300)]
    for root in roots:
        root.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / "m.jsonl"
    r = run_cli("scan", *roots, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], "-q")
    assert_fatal(r, "cannot sign", "300 roots")
    assert leftovers(out) == []


def swapping(path: Path, *versions: Path):
    """A thread that keeps renaming copies of ``versions`` over ``path`` until stopped."""
    stop = threading.Event()

    def swap() -> None:
        parked = path.parent / "parked"
        while not stop.is_set():
            for version in versions:
                shutil.copy2(version, parked)
                os.replace(parked, path)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return stop, thread


def test_a_sums_file_swapped_while_check_opens_it_prints_nothing(tmp_path, keys):
    """check opens the sums file by name after its signature was verified: a sums file of
    the same signer renamed over it in between must be refused (3) before a line is
    printed, never checked (its wrong digest would print FAILED, exit 1)."""
    tree = write_tree(tmp_path / "tree", TREE)
    listing = subprocess.run(
        ["sha256sum", "a.txt", "sub/b.txt"], cwd=tree, capture_output=True, check=True
    ).stdout
    genuine, decoy = tmp_path / "genuine", tmp_path / "decoy"
    genuine.write_bytes(listing)
    decoy.write_bytes(b"0" * 64 + b"  a.txt\n")
    for each in (genuine, decoy):
        assert run_cli("sign", each, "--key", keys["ops"], "-q").returncode == 0
    sums = tmp_path / "SHA256SUMS"
    shutil.copy2(genuine, sums)
    shutil.copy(f"{genuine}.sig", f"{sums}.sig")
    stop, thread = swapping(sums, decoy, genuine)
    try:
        runs = [
            run_cli("check", sums, "--allowed-signers", keys["signers"], cwd=tree)
            for _ in range(10)
        ]
    finally:
        stop.set()
        thread.join()
    for r in runs:
        assert r.returncode in (0, BAD_SIGNATURE), (r.returncode, r.text, r.stderr)
        if r.returncode == BAD_SIGNATURE:
            assert r.stdout == b"", (r.text, r.stderr)
        else:
            assert sorted(r.text.splitlines()) == ["a.txt: OK", "sub/b.txt: OK"]  # any order


@pytest.mark.parametrize(("kind", "bits"), [("ed25519", ""), ("ecdsa", "384"), ("rsa", "2048")])
def test_mutated_signature_blobs_are_only_ever_refused(tmp_path, kind, bits):
    """In process (pure functions): 1500 random mutations of a genuine SSHSIG blob (a byte
    changed, the blob cut, bytes inserted), anywhere in it (key, lengths, signature):
    each is a SignatureError, never another exception, and never accepted."""
    import hashlib
    import random

    from parhash import sshsig

    key = keygen(tmp_path, "k", kind, bits)
    message = tmp_path / "message"
    message.write_bytes(b"signed content\n")
    blob, _ = sshsig.dearmor(ssh_sign(key, message).read_text())
    digest = hashlib.sha512(message.read_bytes()).digest()
    sshsig.check(sshsig.parse(blob), digest)  # the genuine one passes
    rng = random.Random(13)
    accepted = []
    for _ in range(1500):
        mutated = bytearray(blob)
        where = rng.randrange(len(blob))
        how = rng.randrange(3)
        if how == 0:
            mutated[where] ^= 1 << rng.randrange(8)
        elif how == 1:
            del mutated[where:]
        else:
            mutated[where:where] = rng.randbytes(rng.randrange(1, 9))
        try:
            sshsig.check(sshsig.parse(bytes(mutated)), digest)
        except sshsig.SignatureError:
            continue
        accepted.append(bytes(mutated))
    assert accepted == []


@pytest.mark.parametrize(
    "lines",
    [
        ["garbage line", "{ops}"],
        ["{ops}", "garbage"],
        ["ops@example badopt=1 {key}"],
        ['ops@example valid-before="2" {key}'],
        ["ops@example namespaces=parhash {key}"],
        ["ops@example ssh-ed25519 AAAA", "{ops}"],
    ],
)
def test_a_malformed_allowed_signers_is_a_configuration_error(tmp_path, keys, signed, lines):
    """Stricter than ssh-keygen, which skips some bad lines: a broken trust file is exit 2
    with file:line, never a silent accept of what ssh-keygen refuses."""
    _, manifest, _ = signed
    key = public(keys["ops"])
    signers = tmp_path / "signers"
    text = "".join(line.format(ops=f"{PRINCIPAL} {key}", key=key) + "\n" for line in lines)
    signers.write_text(text)
    r = verify(manifest, signers)
    assert_fatal(r, "signers:")
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_an_ssh_keygen_sha256_signature_is_accepted(tmp_path, keys):
    message = tmp_path / "m"
    message.write_bytes(b"x\n")
    from parhash import sshsig

    sig = ssh_sign(keys["ops"], message, "-O", "hashalg=sha256")
    assert sshsig.parse(sshsig.dearmor(sig.read_text())[0]).hash_alg == "sha256"
    assert verify(message, keys["signers"]).returncode == 0


def test_a_file_name_that_forges_a_verify_line_stays_one_line(tmp_path, keys):
    name = tmp_path / "evil\nm.jsonl: good signature by root"
    name.write_bytes(b"x\n")
    assert run_cli("sign", name, "--key", keys["ops"], "-q").returncode == 0
    r = verify(name, keys["signers"])
    assert r.returncode == 0 and r.stdout.count(b"\n") == 1, r.text


@pytest.mark.parametrize("link", ["symlink", "hard link"])
@pytest.mark.parametrize("how", ["scan", "sign"])
def test_a_signature_path_linked_to_another_file_is_not_followed(tmp_path, keys, link, how):
    """Nobody named ``m.jsonl.sig``: a symlink or a second hard link there (to a file the
    attacker wants overwritten) is refused before anything is hashed; the file is intact."""
    tree = write_tree(tmp_path / "tree", TREE)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    manifest = out / "m.jsonl"
    if how == "sign":
        manifest.write_bytes(b"data\n")
    sig = Path(f"{manifest}.sig")
    if link == "symlink":
        sig.symlink_to(victim)
    else:
        os.link(victim, sig)
    if how == "scan":
        r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], timeout=30)
    else:
        r = run_cli("sign", manifest, "--key", keys["ops"], timeout=30)
    assert_fatal(r, "m.jsonl.sig")
    assert victim.read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
