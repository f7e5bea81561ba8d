"""Signed manifests end to end, against the real ``ssh-keygen -Y`` (OpenSSH), both ways.

Every expectation comes from ssh-keygen or from how the test built the files: a signature
parhash makes must pass ``ssh-keygen -Y verify``; one ssh-keygen makes must pass parhash;
each tampering must be refused by parhash with exit 3 (and, where ssh-keygen reads the
same bytes, by ssh-keygen too) before anything is scanned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import jsonl_records, run_cli, write_tree

PRINCIPAL = "ops@example"
BAD_SIGNATURE = 3

TREE = {
    "a.txt": b"alpha\n",
    "b.bin": b"\x00\x01" * 3000,
    "sub": {"c.txt": b"gamma\n", "d.txt": b""},
}
FILES = 4


def keygen(directory: Path, name: str, kind: str = "ed25519", bits: str = "") -> Path:
    """A new key pair from the real ssh-keygen (no passphrase); returns the private key's
    path. RSA is 3072 bits unless ``bits`` says otherwise."""
    key = directory / name
    bits = bits or ("3072" if kind == "rsa" else "")
    size = ["-b", bits] if bits else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", name, "-f", key], check=True
    )
    return key


def public(key: Path) -> str:
    """``TYPE BASE64`` of the key's .pub file."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def allowed_signers(directory: Path, *lines: str, name: str = "allowed_signers") -> Path:
    path = directory / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def ssh_verify(signers: Path, message: Path, sig: Path, identity: str = PRINCIPAL, ns="parhash"):
    """``ssh-keygen -Y verify``: (exit status, output)."""
    with open(message, "rb") as stdin:
        proc = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", signers, "-I", identity, "-n", ns, "-s", sig],
            stdin=stdin,
            capture_output=True,
            text=True,
        )
    return proc.returncode, proc.stdout + proc.stderr


def ssh_sign(key: Path, message: Path, *options: str, namespace: str = "parhash") -> Path:
    """``ssh-keygen -Y sign``: writes and returns ``message.sig`` (replaced if it exists:
    ssh-keygen would ask)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{message}.sig")
    command = ["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", namespace, *options]
    subprocess.run([*command, message], check=True, capture_output=True)
    return Path(f"{message}.sig")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two ed25519 keys (ops, other) and an allowed_signers that lists only ops."""
    directory = tmp_path_factory.mktemp("keys")
    ops = keygen(directory, "ops")
    other = keygen(directory, "other")
    signers = allowed_signers(directory, f'{PRINCIPAL} namespaces="parhash" {public(ops)}')
    return {"ops": ops, "other": other, "signers": signers, "dir": directory}


@pytest.fixture
def signed(tmp_path, keys):
    """A tree and its jsonl manifest, signed by ``scan --sign``."""
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "srv.jsonl"
    r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"], "-q")
    assert r.returncode == 0, r.stderr
    return tree, manifest


def audit(manifest: Path, keys, *extra) -> object:
    return run_cli("audit", manifest, "--allowed-signers", keys["signers"], *extra)


# -- parhash signs, ssh-keygen verifies --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "sums"])
def test_scan_sign_verifies_with_ssh_keygen(tmp_path, keys, fmt):
    tree = write_tree(tmp_path / "tree", TREE)
    out = tmp_path / f"m.{fmt}"
    r = run_cli("scan", tree, "-f", fmt, "-o", out, "--sign", keys["ops"], "-a", "sha256")
    assert r.returncode == 0, r.stderr
    code, said = ssh_verify(keys["signers"], out, Path(f"{out}.sig"))
    assert code == 0, said
    assert f'Good "parhash" signature for {PRINCIPAL}' in said


def test_ed25519_signature_is_byte_identical_to_ssh_keygen(tmp_path, keys):
    """Ed25519 is deterministic: parhash's signature block of a file is exactly the one
    ``ssh-keygen -Y sign -n parhash`` writes for it (the comment follows it)."""
    ours = tmp_path / "ours"
    theirs = tmp_path / "theirs"
    for path in (ours, theirs):
        path.write_bytes(b"the same bytes\n" * 1000)
    r = run_cli("sign", ours, "--key", keys["ops"])
    assert r.returncode == 0, r.stderr
    reference = ssh_sign(keys["ops"], theirs).read_text()
    mine = Path(f"{ours}.sig").read_text()
    assert mine.startswith(reference)
    assert mine != reference  # the trusted comment and its signature follow


def test_trusted_comment_says_what_the_manifest_holds(tmp_path, keys, signed):
    tree, manifest = signed
    lines = Path(f"{manifest}.sig").read_text().splitlines()
    comment = next(line for line in lines if line.startswith("parhash-trusted-comment: "))
    facts = json.loads(comment.split(": ", 1)[1])
    assert facts["entries"] == FILES == len(jsonl_records(manifest.read_bytes()))
    assert facts["roots"] == [str(tree)]
    assert facts["format"] == "jsonl"
    created = time.mktime(time.strptime(facts["created"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(created - time.time()) < 120


def test_verify_names_the_principal_on_stdout(keys, signed):
    _, manifest = signed
    r = run_cli("verify", manifest, "--allowed-signers", keys["signers"])
    assert r.returncode == 0, r.stderr
    assert r.text.startswith(f"{manifest}: good signature by {PRINCIPAL} (ED25519 SHA256:")
    assert f"{FILES} entries of" in r.text


def test_signed_audit_reports_the_signer_and_passes(keys, signed):
    _, manifest = signed
    r = audit(manifest, keys)
    assert r.returncode == 0, r.stderr
    assert f"good signature by {PRINCIPAL}" in r.stderr
    assert f"manifest: good signature by {PRINCIPAL}" in r.text
    r = audit(manifest, keys, "-f", "json")
    assert json.loads(r.stdout)["audit"]["signature"].startswith("good signature by ")


# -- ssh-keygen signs, parhash verifies --------------------------------------------------------


def test_ssh_keygen_signature_is_accepted(tmp_path, keys):
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-o", manifest).returncode == 0
    ssh_sign(keys["ops"], manifest)
    r = run_cli("verify", manifest, "--allowed-signers", keys["signers"])
    assert r.returncode == 0, r.stderr
    assert f"good signature by {PRINCIPAL}" in r.text
    r = audit(manifest, keys, "--max-manifest-age", "1h")  # the header's time is signed
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_other_key_types_both_ways(tmp_path, kind):
    key = keygen(tmp_path, kind, kind)
    signers = allowed_signers(tmp_path, f"{PRINCIPAL} {public(key)}")
    theirs = tmp_path / "theirs.txt"
    ours = tmp_path / "ours.txt"
    theirs.write_bytes(b"x" * 100)
    ours.write_bytes(b"y" * 100)
    ssh_sign(key, theirs)
    assert run_cli("sign", ours, "--key", key, "-q").returncode == 0
    assert ssh_verify(signers, ours, Path(f"{ours}.sig"))[0] == 0
    r = run_cli("verify", theirs, ours, "--allowed-signers", signers)
    assert r.returncode == 0, r.stderr
    assert r.text.count("good signature") == 2


def test_sha256sum_file_signed_then_checked(tmp_path, keys):
    tree = write_tree(tmp_path / "tree", TREE)
    sums = tmp_path / "SHA256SUMS"
    listing = subprocess.run(
        ["sha256sum", "a.txt", "b.bin"], cwd=tree, capture_output=True, check=True
    ).stdout
    sums.write_bytes(listing)
    r = run_cli("check", sums, "--allowed-signers", keys["signers"], cwd=tree)
    assert r.returncode == BAD_SIGNATURE and "not signed" in r.stderr
    assert r.stdout == b""  # nothing was checked
    assert run_cli("sign", sums, "--key", keys["ops"]).returncode == 0
    r = run_cli("check", sums, "--allowed-signers", keys["signers"], cwd=tree)
    assert r.returncode == 0, r.stderr
    assert sorted(r.text.splitlines()) == ["a.txt: OK", "b.bin: OK"]  # completion order


# -- refusals ------------------------------------------------------------------------------


def assert_refused(r, *words: str) -> None:
    """Exit 3, one line on stderr naming why, nothing on stdout, no traceback."""
    assert r.returncode == BAD_SIGNATURE, (r.returncode, r.stderr, r.text)
    assert r.stdout == b"", r.text  # a refused run reports nothing
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("parhash: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_flipped_byte_in_manifest_is_refused_before_scanning(tmp_path, keys, signed):
    tree, manifest = signed
    data = bytearray(manifest.read_bytes())
    data[len(data) // 2] ^= 0x01
    manifest.write_bytes(bytes(data))
    assert ssh_verify(keys["signers"], manifest, Path(f"{manifest}.sig"))[0] != 0
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", trace]
    audit_cmd = ["-m", "parhash", "audit", manifest, "--allowed-signers", keys["signers"]]
    proc = subprocess.run([*strace, sys.executable, *audit_cmd], capture_output=True)
    assert proc.returncode == BAD_SIGNATURE, proc.stderr
    assert b"does not match" in proc.stderr
    opened = trace.read_text()
    assert str(tree) not in opened, "the tree was read after a refused signature"


def test_signature_by_another_key_is_refused(tmp_path, keys):
    f = tmp_path / "m.txt"
    f.write_bytes(b"data\n")
    ssh_sign(keys["other"], f)
    assert ssh_verify(keys["signers"], f, Path(f"{f}.sig"))[0] != 0
    assert_refused(run_cli("verify", f, "--allowed-signers", keys["signers"]), "not in")
    assert_refused(run_cli("check", f, "--allowed-signers", keys["signers"]), "not in")


def test_wrong_namespace_is_refused(tmp_path, keys, signed):
    _, manifest = signed
    ssh_sign(keys["ops"], manifest, namespace="git")  # replaces our .sig
    assert ssh_verify(keys["signers"], manifest, Path(f"{manifest}.sig"))[0] != 0
    assert_refused(audit(manifest, keys), "namespace")


def test_namespace_not_allowed_for_the_key_is_refused(tmp_path, keys, signed):
    _, manifest = signed
    git_only = allowed_signers(tmp_path, f'{PRINCIPAL} namespaces="git" {public(keys["ops"])}')
    assert ssh_verify(git_only, manifest, Path(f"{manifest}.sig"))[0] != 0
    assert_refused(run_cli("audit", manifest, "--allowed-signers", git_only))


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_truncated_signature_is_refused(keys, signed, keep):
    _, manifest = signed
    sig = Path(f"{manifest}.sig")
    first_block = sig.read_text().split("-----END SSH SIGNATURE-----")[0]
    sig.write_text(first_block[: int(len(first_block) * keep)])
    assert_refused(audit(manifest, keys), str(sig))


def test_manifest_without_its_sig_is_refused(keys, signed):
    _, manifest = signed
    os.unlink(f"{manifest}.sig")
    assert_refused(audit(manifest, keys), "not signed")


def test_expired_valid_before_is_refused(tmp_path, keys, signed):
    _, manifest = signed
    expired = allowed_signers(
        tmp_path, f'{PRINCIPAL} valid-before="20200101",namespaces="parhash" {public(keys["ops"])}'
    )
    assert ssh_verify(expired, manifest, Path(f"{manifest}.sig"))[0] != 0
    assert_refused(run_cli("audit", manifest, "--allowed-signers", expired), "valid-before")


def test_identity_must_match(keys, signed):
    _, manifest = signed
    assert audit(manifest, keys, "--identity", PRINCIPAL).returncode == 0
    assert_refused(audit(manifest, keys, "--identity", "eve@example"))


def test_tampered_trusted_comment_is_refused(keys, signed):
    _, manifest = signed
    sig = Path(f"{manifest}.sig")
    text = sig.read_text()
    sig.write_text(text.replace(f'"entries":{FILES}', '"entries":999'))
    assert ssh_verify(keys["signers"], manifest, sig)[0] == 0  # ssh-keygen reads block 1
    assert_refused(audit(manifest, keys), "trusted comment")


def test_comment_of_another_manifest_is_refused(tmp_path, keys, signed):
    """The comment is bound to its file's signature: a fresh comment pasted under an old
    manifest's signature (the rollback it exists to stop) does not verify."""
    tree, manifest = signed
    old = Path(f"{manifest}.sig").read_text().split("parhash-trusted-comment: ")
    (tree / "a.txt").write_bytes(b"new\n")
    newer = tmp_path / "newer.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-o", newer, "--sign", keys["ops"]).returncode == 0
    fresh = Path(f"{newer}.sig").read_text().split("parhash-trusted-comment: ")
    Path(f"{manifest}.sig").write_text(old[0] + "parhash-trusted-comment: " + fresh[1])
    assert_refused(audit(manifest, keys), "trusted comment")


def test_max_manifest_age(tmp_path, keys):
    """The creation time is the (signed) header's: a manifest made 10 days ago and signed
    today is 10 days old."""
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "m.jsonl"
    assert run_cli("scan", tree, "-f", "jsonl", "-o", manifest).returncode == 0
    lines = manifest.read_bytes().split(b"\n")
    header = json.loads(lines[0])
    assert "started" in header["header"]
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 86400))
    header["header"]["started"] = old
    manifest.write_bytes(b"\n".join([json.dumps(header).encode(), *lines[1:]]))
    assert run_cli("sign", manifest, "--key", keys["ops"]).returncode == 0
    assert audit(manifest, keys, "--max-manifest-age", "30d").returncode == 0
    assert_refused(audit(manifest, keys, "--max-manifest-age", "8d"), "older than")


def test_max_manifest_age_needs_a_signed_time(tmp_path, keys):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(b'').hexdigest()}  empty\n")
    (tmp_path / "empty").write_bytes(b"")
    ssh_sign(keys["ops"], sums)  # no trusted comment, no header
    r = run_cli("check", sums, "--allowed-signers", keys["signers"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("check", sums, "--allowed-signers", keys["signers"], "--max-manifest-age", "8d")
    assert_refused(r, "no creation time")


# -- --update --sign ---------------------------------------------------------------------------


def test_update_sign_round_trip(tmp_path, keys, signed):
    tree, manifest = signed
    (tree / "a.txt").write_bytes(b"alpha, edited\n")
    (tree / "new.txt").write_bytes(b"new\n")
    before = manifest.read_bytes()
    r = audit(manifest, keys, "--update", "--sign", keys["ops"])
    assert r.returncode == 1, r.stderr  # changes found, manifest rewritten
    assert manifest.read_bytes() != before
    code, said = ssh_verify(keys["signers"], manifest, Path(f"{manifest}.sig"))
    assert code == 0, said
    r = audit(manifest, keys)
    assert r.returncode == 0, r.stderr  # the new manifest, signed, matches the tree
    assert (
        f"{FILES + 1} entries"
        in run_cli("verify", manifest, "--allowed-signers", keys["signers"]).text
    )


def test_update_without_sign_warns_that_the_signature_is_stale(keys, signed):
    tree, manifest = signed
    (tree / "a.txt").write_bytes(b"changed\n")
    r = run_cli("audit", manifest, "--update")
    assert r.returncode == 1
    assert "no longer matches" in r.stderr
    assert_refused(audit(manifest, keys), "does not match")


def test_manifest_inside_the_tree_does_not_list_its_signature(tmp_path, keys):
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tree / "srv.jsonl"
    Path(f"{manifest}.sig").write_text("a stale signature of an earlier manifest\n")
    r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"])
    assert r.returncode == 0, r.stderr
    paths = sorted(Path(rec["path"]).name for rec in jsonl_records(manifest.read_bytes()))
    assert paths == ["a.txt", "b.bin", "c.txt", "d.txt"]
    r = audit(manifest, keys, "--update", "--sign", keys["ops"])
    assert r.returncode == 0, r.stderr + r.text


# -- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["scan", ".", "--sign", "KEY"],
        ["scan", ".", "-o", "-", "--sign", "KEY"],
        ["audit", "m.jsonl", "--sign", "KEY"],
        ["audit", "m.jsonl", "--identity", "x"],
        ["check", "SUMS", "--max-manifest-age", "8d"],
        ["verify", "m.jsonl"],
        ["sign", "m.jsonl"],
    ],
)
def test_usage_errors(tmp_path, args):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr


def test_missing_allowed_signers_is_fatal_not_refused(keys, signed, tmp_path):
    _, manifest = signed
    r = run_cli("audit", manifest, "--allowed-signers", tmp_path / "nope")
    assert r.returncode == 2, r.stderr
    assert "nope" in r.stderr and "Traceback" not in r.stderr


def test_exit_code_3_is_documented():
    assert "3 " in run_cli("audit", "--help").text
    assert "signature" in run_cli("--help").text


def test_library_audit_refuses(keys, signed):
    import parhash
    from parhash.signing import SignatureRefused

    _, manifest = signed
    assert parhash.audit(str(manifest), allowed_signers=str(keys["signers"])).exit_code == 0
    os.unlink(f"{manifest}.sig")
    with pytest.raises(SignatureRefused, match="not signed"):
        parhash.audit(str(manifest), allowed_signers=str(keys["signers"]))


def test_file_changed_after_verification_is_refused(tmp_path, keys):
    """The window between the signature check and the read: ``check_unchanged`` sees a
    rewrite (ctime) or a rename over the path."""
    from parhash.signing import SignatureRefused, VerifyOptions, verify_file

    f = tmp_path / "m.txt"
    f.write_bytes(b"signed\n")
    assert run_cli("sign", f, "--key", keys["ops"]).returncode == 0
    verified = verify_file(str(f), VerifyOptions(str(keys["signers"])))
    verified.check_unchanged()
    replacement = tmp_path / "evil"
    replacement.write_bytes(b"signed\n")
    shutil.copystat(f, replacement)
    os.replace(replacement, f)
    with pytest.raises(SignatureRefused, match="changed after"):
        verified.check_unchanged()
    verified.close()


def test_the_readme_verified_recipe_runs(tmp_path, keys):
    """The README's nightly verified audit, run as written (paths moved into tmp_path): a
    signed manifest passes; a tampered one fails with 3, and the metrics file says 3."""
    import shlex

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Nightly verified audits", 1)[1]
    unit = section.split("```ini", 1)[1].split("```", 1)[0]
    joined = unit.replace("\\\n", " ")
    [exec_start] = [line for line in joined.splitlines() if line.startswith("ExecStart=")]
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[:2] == ["/usr/local/bin/parhash", "audit"]
    tree = write_tree(tmp_path / "tree", TREE)
    manifest = tmp_path / "data.jsonl"
    r = run_cli("scan", tree, "-f", "jsonl", "-o", manifest, "--sign", keys["ops"])
    assert r.returncode == 0, r.stderr
    prom = tmp_path / "parhash.prom"
    moved = {
        "/var/lib/parhash/data.jsonl": str(manifest),
        "/etc/parhash/allowed_signers": str(keys["signers"]),
        "/var/lib/node_exporter/textfile_collector/parhash.prom": str(prom),
    }
    args = [moved.get(word, word) for word in words[1:]]
    assert set(moved.values()) <= set(args)
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^parhash_audit_exit_code\{.*\} 0$", prom.read_text(), re.M)
    manifest.write_bytes(manifest.read_bytes()[:-1] + b" \n")  # still valid jsonl
    r = run_cli(*args)
    assert r.returncode == BAD_SIGNATURE, r.stderr
    assert re.search(r"^parhash_audit_exit_code\{.*\} 3$", prom.read_text(), re.M)


def _fido_signature(kind: str, message: bytes, flags: int = 0x01):
    """A FIDO (``sk-``) SSHSIG made in software the way a token makes it (PROTOCOL.u2f:
    the token signs sha256(application) flags counter sha256(data)); returns (public key
    line, armored signature). ssh-keygen, not parhash, is what the test trusts with it."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def string(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    def mpint(n: int) -> bytes:
        return string(n.to_bytes((n.bit_length() + 8) // 8, "big"))

    application = b"ssh:"
    if kind == "ed25519":
        name = b"sk-ssh-ed25519@openssh.com"
        key = ed25519.Ed25519PrivateKey.generate()
        point = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        blob = string(name) + string(point) + string(application)
    else:
        name = b"sk-ecdsa-sha2-nistp256@openssh.com"
        key = ec.generate_private_key(ec.SECP256R1())
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        blob = string(name) + string(b"nistp256") + string(point) + string(application)
    digest = hashlib.sha512(message).digest()
    data = b"SSHSIG" + string(b"parhash") + string(b"") + string(b"sha512") + string(digest)
    counter = (42).to_bytes(4, "big")
    signed = (
        hashlib.sha256(application).digest()
        + bytes([flags])
        + counter
        + hashlib.sha256(data).digest()
    )
    if kind == "ed25519":
        raw = key.sign(signed)
    else:
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
        raw = mpint(r) + mpint(s)
    sig = string(name) + string(raw) + bytes([flags]) + counter
    envelope = (
        b"SSHSIG"
        + (1).to_bytes(4, "big")
        + string(blob)
        + string(b"parhash")
        + string(b"")
        + string(b"sha512")
        + string(sig)
    )
    text = base64.b64encode(envelope).decode()
    armored = "\n".join(
        ["-----BEGIN SSH SIGNATURE-----"]
        + [text[i : i + 70] for i in range(0, len(text), 70)]
        + ["-----END SSH SIGNATURE-----"]
    )
    return f"{name.decode()} {base64.b64encode(blob).decode()}", armored + "\n"


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
@pytest.mark.parametrize("flags", [0x01, 0x00, 0x05])
def test_fido_hardware_token_signatures(tmp_path, kind, flags):
    """A signature from a FIDO token (``ssh-keygen -t ed25519-sk``/``ecdsa-sk``, signing
    through ssh-agent): parhash accepts exactly what ssh-keygen accepts, whatever the
    token's flags (ssh-keygen 9.2 does not require user presence for -Y verify either), and
    refuses it for another file."""
    message = tmp_path / "m.jsonl"
    message.write_bytes(b"a manifest\n")
    key, armored = _fido_signature(kind, message.read_bytes(), flags)
    Path(f"{message}.sig").write_text(armored)
    signers = allowed_signers(tmp_path, f"{PRINCIPAL} {key}")
    code, said = ssh_verify(signers, message, Path(f"{message}.sig"))
    assert code == 0, said
    r = run_cli("verify", message, "--allowed-signers", signers)
    assert r.returncode == 0, r.stderr
    label = "ED25519-SK" if kind == "ed25519" else "ECDSA-SK"  # as ssh-keygen names them
    assert f"good signature by ops@example ({label} SHA256:" in r.text
    message.write_bytes(b"a manifest, changed\n")
    assert ssh_verify(signers, message, Path(f"{message}.sig"))[0] != 0
    assert_refused(run_cli("verify", message, "--allowed-signers", signers), "does not match")
