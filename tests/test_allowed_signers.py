"""allowed_signers against the real ssh-keygen (OpenSSH 9.2p1): for each file in the tables,
``decide()`` must accept exactly when ``ssh-keygen -Y verify -I ID`` does, name what
``ssh-keygen -Y find-principals`` finds, and refuse a malformed line where ssh-keygen
complains about that same line. Keys and signatures are made by ssh-keygen itself; the
time is fixed with ``-Overify-time`` and the zone with ``TZ`` in both processes."""

from __future__ import annotations

import base64
import calendar
import contextlib
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parhash import allowed_signers
from parhash.allowed_signers import AllowedSignersError, load, match_pattern_list
from parhash.exit_codes import ExitCode

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

#: The verification instant of the tables: 2026-12-01 12:00:00 UTC.
AT = "20261201120000Z"
CET = "CET-1CEST,M3.5.0,M10.5.0/3"  # POSIX rules: no tzdata needed
NEW_YORK = "EST5EDT,M3.2.0,M11.1.0"
NAMESPACES = ("parhash", "file")


def _epoch(text: str) -> int:
    return calendar.timegm(time.strptime(text.rstrip("Z"), "%Y%m%d%H%M%S"))


def _wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def _fields(blob: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(blob):
        n = struct.unpack(">I", blob[i : i + 4])[0]
        out.append(blob[i + 4 : i + 4 + n])
        i += 4 + n
    return out


@dataclass
class Signer:
    pub: str  # "type base64"
    blob: bytes
    sigs: dict  # namespace -> signature path
    message: str


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Keys made by ssh-keygen (ed25519 twice, ecdsa, rsa) and their signatures of one
    message in both namespaces; plus key lines of types we cannot sign with here."""
    d = tmp_path_factory.mktemp("signers")
    message = d / "message"
    message.write_bytes(b"manifest\n")
    signers = {}
    for name, args in {
        "ed": ["-t", "ed25519"],
        "other": ["-t", "ed25519"],
        "ec": ["-t", "ecdsa"],
        "rsa": ["-t", "rsa", "-b", "2048"],
        "dsa": ["-t", "dsa"],
    }.items():
        key = d / name
        subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-f", key], check=True)
        pub = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        sigs = {}
        for ns in NAMESPACES if name in ("ed", "ec", "rsa") else ():
            copy = d / f"message.{name}.{ns}"
            shutil.copy(message, copy)
            subprocess.run(
                ["ssh-keygen", "-q", "-Y", "sign", "-n", ns, "-f", key, copy],
                check=True,
                capture_output=True,
            )
            sigs[ns] = f"{copy}.sig"
        signers[name] = Signer(pub, base64.b64decode(pub.split()[1]), sigs, str(message))
    subprocess.run(
        ["ssh-keygen", "-q", "-s", d / "other", "-I", "cert", "-n", "a@x", d / "ed.pub"], check=True
    )
    cert = " ".join((d / "ed-cert.pub").read_text().split()[:2])
    return d, signers, _extra_lines(signers, cert)


def _extra_lines(signers: dict[str, Signer], cert: str) -> dict[str, str]:
    """Key lines ssh-keygen reads but nobody here signs with: they must parse."""
    ed_pk = _fields(signers["ed"].blob)[1]
    point = _fields(signers["ec"].blob)[2]
    rsa_type, e, n = _fields(signers["rsa"].blob)
    sk_ec = _wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", point, b"ssh:")
    return {
        "DSA": signers["dsa"].pub,
        "CERT": cert,
        "SK": "sk-ssh-ed25519@openssh.com "
        + _b64(_wire(b"sk-ssh-ed25519@openssh.com", ed_pk, b"ssh:")),
        "SKEC": "sk-ecdsa-sha2-nistp256@openssh.com " + _b64(sk_ec),
        "WEBAUTHN": "webauthn-sk-ecdsa-sha2-nistp256@openssh.com " + _b64(sk_ec),
        # the same RSA key with non-minimal integers (a leading zero): still that key
        "RSA_LONG": "ssh-rsa " + _b64(_wire(rsa_type, b"\0" + e, b"\0\0" + n)),
        "RSA256": "rsa-sha2-256 " + signers["rsa"].pub.split()[1],
        "RSA512": "rsa-sha2-512 " + signers["rsa"].pub.split()[1],
    }


@contextlib.contextmanager
def zone(tz: str):
    """TZ for this process (ssh-keygen gets the same in its environment)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def _keygen(args, tz: str, stdin_path: str | None = None):
    env = {**os.environ, "TZ": tz}
    with open(stdin_path or os.devnull, "rb") as stdin:
        return subprocess.run(
            ["ssh-keygen", *args], stdin=stdin, env=env, capture_output=True, text=True, timeout=60
        )


def ssh_verify(path, signer: Signer, ns: str, identity: str, at: str, tz: str) -> bool:
    done = _keygen(
        [
            "-Y",
            "verify",
            f"-Overify-time={at}",
            "-f",
            path,
            "-I",
            identity,
            "-n",
            ns,
            "-s",
            signer.sigs[ns],
        ],
        tz,
        signer.message,
    )
    return done.returncode == 0


def ssh_find(path, signer: Signer, at: str, tz: str):
    """find-principals' lines, or None when it finds nothing; and its stderr."""
    done = _keygen(
        ["-Y", "find-principals", f"-Overify-time={at}", "-f", path, "-s", signer.sigs["parhash"]],
        tz,
    )
    return (done.stdout.splitlines() if done.returncode == 0 else None), done.stderr


@dataclass
class Case:
    id: str
    text: str  # {K}: the signer's key, {O}: another key, {DSA} ...: see _extra_lines
    ids: tuple[str, ...]  # identities to try with -I (cover every line's principals)
    signer: str = "ed"
    at: str = AT
    tz: str = "UTC0"


CASES = [
    Case("plain", "a@x {K}", ("a@x", "b@x")),
    Case("quoted", '"a@x" {K}', ("a@x", '"a@x"')),
    Case("quoted-list", '"a@x,b@y" {K}', ("a@x", "b@y", "c@z")),
    Case("list", "a@x,b@y {K}", ("a@x", "b@y", "a@x,b@y")),
    Case("quoted-blank", '"a b@x" {K}', ("a b@x", "a")),
    Case("quote-inside", 'a"@x" {K}', ("a@x",)),
    Case("star", "*@x {K}", ("a@x", "a@y", "*@x", "@x")),
    Case("negation", "*@x,!a@x {K}", ("a@x", "b@x")),
    Case("negation-first", "!a@x,*@x {K}\nz@x {K}", ("a@x", "b@x", "z@x")),
    Case("question", "?@x {K}", ("a@x", "ab@x", "@x")),
    Case("case", "A@x {K}", ("a@x", "A@x")),
    Case("utf8", "jürgen@x,?@y {K}", ("jürgen@x", "ü@y", "u@y")),
    Case("comments", "# comment\n\n   # indented\n\t\na@x {K}  a trailing comment", ("a@x",)),
    Case("tabs-crlf", "a@x\t{K}\r\n\r\nb@x  {K}\t  comment \r", ("a@x", "b@x")),
    Case("leading-blanks", "   a@x {K}", ("a@x",)),
    Case("several-lines", "a@x {O}\nb@x {K}\nc@x {K}", ("a@x", "b@x", "c@x")),
    Case("one-principal-two-keys", "a@x {O}\na@x {K}", ("a@x",)),
    Case("not-listed", "a@x {O}", ("a@x",)),
    Case("cert-authority", "a@x cert-authority {K}", ("a@x",)),
    Case("cert-authority-then-plain", "a@x CERT-Authority {K}\nb@x {K}", ("a@x", "b@x")),
    Case(
        "other-types",
        "\n".join(f"t{i} {{{n}}}" for i, n in enumerate(("DSA", "CERT", "SK", "SKEC", "WEBAUTHN")))
        + "\nb@x {K}",
        ("t1", "b@x"),
    ),
    # namespaces (each case runs with signatures in both namespaces)
    Case("ns", 'a@x namespaces="parhash" {K}', ("a@x",)),
    Case("ns-list", 'a@x namespaces="git,par*" {K}', ("a@x",)),
    Case("ns-negated", 'a@x namespaces="*,!parhash" {K}', ("a@x",)),
    Case("ns-empty", 'a@x namespaces="" {K}', ("a@x",)),
    Case("ns-question", 'a@x namespaces="f?le" {K}', ("a@x",)),
    Case("ns-other-line", 'a@x namespaces="git" {K}\nb@x {K}', ("a@x", "b@x")),
    Case("ns-uppercase", 'a@x NameSpaces="file" {K}', ("a@x",)),
    Case("ns-escaped-quote", 'a@x namespaces="par\\"hash,file" {K}', ("a@x",)),
    Case("ns-empty-option", 'a@x ,namespaces="parhash" {K}', ("a@x",)),
    Case("ns-and-ca", 'a@x namespaces="parhash",cert-authority {K}', ("a@x",)),
    Case("ns-blank-inside", 'a@x namespaces="x y,file" {K}', ("a@x",)),
    # validity windows at AT = 2026-12-01 12:00:00 UTC
    Case("after-day-local", 'a@x valid-after="20261201" {K}', ("a@x",)),
    Case("after-day-future", 'a@x valid-after="20261202" {K}', ("a@x",)),
    Case("before-day-past", 'a@x valid-before="20261130" {K}', ("a@x",)),
    Case("before-exact", 'a@x valid-before="20261201120000Z" {K}', ("a@x",)),
    Case("before-second-ago", 'a@x valid-before="20261201115959Z" {K}', ("a@x",)),
    Case("after-exact", 'a@x valid-after="20261201120000Z" {K}', ("a@x",)),
    Case("after-second-later", 'a@x valid-after="20261201120001Z" {K}', ("a@x",)),
    Case("minutes-z", 'a@x valid-after="202612011159z" {K}', ("a@x",)),
    Case("utc-suffix", 'a@x valid-after="20261201120001UTC" {K}', ("a@x",)),
    Case("window", 'a@x valid-after="20260101Z",valid-before="20270101Z" {K}', ("a@x",)),
    Case("window-past", 'a@x valid-after="20250101",valid-before="20260101" {K}', ("a@x",)),
    Case("window-future", 'a@x VALID-AFTER="20270101",Valid-Before="20280101" {K}', ("a@x",)),
    Case("day-rolls-over", 'a@x valid-after="20261131Z" {K}', ("a@x",)),
    Case("day-rolls-over-later", 'a@x valid-after="20261131120001Z" {K}', ("a@x",)),
    Case("second-60", 'a@x valid-after="20261201115960Z" {K}', ("a@x",)),
    Case("blank-in-date", 'a@x valid-after="2026 201Z" {K}', ("a@x",)),
    Case("expired-then-valid", 'a@x valid-before="20200101Z" {K}\nb@x {K}', ("a@x", "b@x")),
    Case("cet-winter", 'a@x valid-after="202612011300" {K}', ("a@x",), tz=CET),
    Case("cet-winter-later", 'a@x valid-after="202612011301" {K}', ("a@x",), tz=CET),
    Case("cet-winter-z", 'a@x valid-after="202612011300Z" {K}', ("a@x",), tz=CET),
    # summer time: ssh-keygen reads a local time as standard time (tm_isdst = 0)
    Case(
        "cet-summer-2230", 'a@x valid-after="20260701" {K}', ("a@x",), at="20260630223000Z", tz=CET
    ),
    Case(
        "cet-summer-2300", 'a@x valid-after="20260701" {K}', ("a@x",), at="20260630230000Z", tz=CET
    ),
    Case(
        "cet-summer-before",
        'a@x valid-before="20260701" {K}',
        ("a@x",),
        at="20260630225959Z",
        tz=CET,
    ),
    Case("new-york-exact", 'a@x valid-before="20261201070000" {K}', ("a@x",), tz=NEW_YORK),
    Case("new-york-second-ago", 'a@x valid-before="20261201065959" {K}', ("a@x",), tz=NEW_YORK),
    # key types
    Case("ecdsa", "a@x {K}", ("a@x",), signer="ec"),
    Case("ecdsa-second-line", "a@x {O}\nb@x {K}", ("a@x", "b@x"), signer="ec"),
    Case("rsa", "a@x {K}", ("a@x",), signer="rsa"),
    Case("rsa-sha2-names", "a@x {RSA256}\nb@x {RSA512}", ("a@x", "b@x"), signer="rsa"),
    Case("rsa-non-minimal", "a@x {RSA_LONG}", ("a@x",), signer="rsa"),
]


def _write(world, case: Case):
    d, signers, extra = world
    signer = signers[case.signer]
    other = signers["ed" if case.signer == "other" else "other"]
    text = case.text.format(K=signer.pub, O=other.pub, **extra) + "\n"
    path = d / f"allowed.{case.id}"
    path.write_text(text, encoding="utf-8", newline="")
    with zone(case.tz):
        parsed = load(str(path))
    return path, signer, parsed


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_identity_matches_ssh_keygen_verify(world, case):
    """With an identity, decide() accepts exactly when ``ssh-keygen -Y verify -I`` does,
    for each identity and both namespaces."""
    path, signer, parsed = _write(world, case)
    for ns in NAMESPACES:
        for identity in case.ids:
            expected = ssh_verify(path, signer, ns, identity, case.at, case.tz)
            got = parsed.decide(signer.blob, ns, _epoch(case.at), identity)
            assert got.accepted == expected, (ns, identity, got)
            assert got.principals == ((identity,) if expected else ())
            assert (got.reason is None) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_without_identity_matches_ssh_keygen(world, case):
    """Without an identity, decide() accepts when some principal of the file verifies with
    ``ssh-keygen -Y verify -I`` in that namespace; where no line restricts namespaces, it
    names what ``ssh-keygen -Y find-principals`` prints (the first such line)."""
    path, signer, parsed = _write(world, case)
    for ns in NAMESPACES:
        anyone = any(ssh_verify(path, signer, ns, i, case.at, case.tz) for i in case.ids)
        got = parsed.decide(signer.blob, ns, _epoch(case.at))
        assert got.accepted == anyone, (ns, got)
    if "namespaces=" not in case.text.lower():
        found, _ = ssh_find(path, signer, case.at, case.tz)
        got = parsed.decide(signer.blob, "parhash", _epoch(case.at))
        assert (found is not None) == got.accepted, got
        if found is not None:
            assert got.principals[0].split(",") == found


def test_blank_lines_are_comments(world):
    """The man page: "Empty lines ... are ignored as comments". ssh-keygen 9.2 still logs
    "FILE:2: missing key" for an empty line (it skips only blanks and tabs before looking
    for the key, see https://github.com/wiktor-k/ssh-repro; later OpenSSH also skips CR
    and LF), and then ignores the line: parhash ignores it without a word."""
    path, signer, parsed = _write(world, Case("blank", "# c\n\n   \n\r\n \r # c\nb@x {K}", ()))
    _, stderr = ssh_find(path, signer, AT, "UTC0")
    assert f"{path}:2: missing key" in stderr
    assert [e.line for e in parsed.entries] == [6]
    assert parsed.decide(signer.blob, "parhash", _epoch(AT)).principals == ("b@x",)


def test_find_principals_ignores_namespaces(world):
    """The fact the docstring states: find-principals "finds" a key whose only line allows
    another namespace; parhash refuses it, naming the restriction."""
    path, signer, parsed = _write(world, Case("fp-ns", 'ops@x namespaces="git" {K}', ()))
    found, _ = ssh_find(path, signer, AT, "UTC0")
    assert found == ["ops@x"]
    got = parsed.decide(signer.blob, "parhash", _epoch(AT))
    assert not got.accepted
    assert 'listed for ops@x only with namespaces="git"' in got.reason


def test_find_principals_prints_only_the_first_line(world):
    """find-principals stops at the first line; decide() names every valid one, that line
    first."""
    path, signer, parsed = _write(world, Case("fp-two", "a@x {K}\nb@x,c@x {K}", ()))
    assert ssh_find(path, signer, AT, "UTC0")[0] == ["a@x"]
    assert parsed.decide(signer.blob, "parhash", _epoch(AT)).principals == ("a@x", "b@x,c@x")


def _keygen_fingerprint(pub: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=pub, capture_output=True, text=True, check=True
    )
    return listed.stdout.split()[1]


def test_entries_and_reasons(world):
    """What load() keeps of each line, and the phrase of each refusal."""
    text = (
        '# signers\n"ops@x,b c@y" namespaces="parhash,g*",valid-after="20260101Z",'
        'valid-before="20261130" {K} comment\nold@x valid-before="20250101Z" {K}\n'
        "ca@x cert-authority {O}\n"
    )
    _, signer, parsed = _write(world, Case("fields", text, ()))
    first, second, third = parsed.entries
    assert (second.principals, second.valid_before) == ("old@x", _epoch("20250101000000"))
    assert (first.principals, first.namespaces, first.line) == ("ops@x,b c@y", ("parhash", "g*"), 2)
    assert (first.valid_after, first.valid_before) == (
        _epoch("20260101000000"),
        _epoch("20261130000000"),
    )
    assert first.key == signer.blob and not first.cert_authority
    assert third.cert_authority and third.namespaces is None and third.valid_after is None
    now = _epoch(AT)
    fp = _keygen_fingerprint(signer.pub)
    assert parsed.decide(signer.blob, "parhash", now).reason == (
        "key of ops@x,b c@y expired (valid-before 20261130)"
    )
    assert parsed.decide(signer.blob, "parhash", _epoch("20251231000000")).reason == (
        "key of ops@x,b c@y is not yet valid (valid-after 20260101Z)"
    )
    assert parsed.decide(signer.blob, "other", now, "ops@x").reason == (
        f'key {fp} is listed for ops@x,b c@y only with namespaces="parhash,g*" (not "other")'
    )
    assert parsed.decide(signer.blob, "parhash", now, "eve@x").reason == (
        f"key {fp} is listed for ops@x,b c@y, old@x, not eve@x"
    )
    assert parsed.decide(signer.blob, "parhash", _epoch("20260601000000"), "b c@y").accepted
    other = world[1]["other"].blob
    assert "listed only as a cert-authority" in parsed.decide(other, "parhash", now).reason
    stranger = world[1]["ec"]
    ec_fp = _keygen_fingerprint(stranger.pub)
    assert parsed.decide(stranger.blob, "parhash", now).reason == (
        f"key {ec_fp} is not in allowed_signers"
    )


def test_reasons_are_one_printable_line(world):
    """A quoted principal may hold a CR or an escape sequence; the reason shows them
    escaped. A signature key that is not a key at all is simply not listed."""
    text = '"ops\r\x1b[2J@x" namespaces="git" {K}'
    _, signer, parsed = _write(world, Case("control", text, ()))
    reason = parsed.decide(signer.blob, "parhash", _epoch(AT)).reason
    assert "listed for ops\\r\\x1b[2J@x only with" in reason and reason.isprintable()
    garbage = parsed.decide(b"\0\0\0\x07garbage", "parhash", _epoch(AT))
    assert garbage.reason.endswith("is not in allowed_signers") and not garbage.principals


#: (id, file text, the line ssh-keygen and parhash both complain about)
MALFORMED = [
    ("unknown-option", 'a@x foo="bar" {K}', 1),
    ("unknown-after-good", 'a@x namespaces="x",nope {K}', 1),
    ("flag-with-suffix", "a@x cert-authorityx {K}", 1),
    ("trailing-comma", 'a@x namespaces="x", {K}', 1),
    ("unquoted-value", "a@x namespaces=x {K}", 1),
    ("unclosed-option-quote", 'a@x namespaces="x {K}', 1),
    ("repeated-namespaces", 'a@x namespaces="x",namespaces="y" {K}', 1),
    ("repeated-valid-after", 'a@x valid-after="20260101",valid-after="20260102" {K}', 1),
    ("empty-window", 'a@x valid-after="20270101",valid-before="20260101" {K}', 1),
    ("time-7-digits", 'a@x valid-after="2026123Z" {K}', 1),
    ("time-month-13", 'a@x valid-after="20261301" {K}', 1),
    ("time-day-32", 'a@x valid-after="20261232" {K}', 1),
    ("time-hour-24", 'a@x valid-before="20261201246000Z" {K}', 1),
    ("time-epoch", 'a@x valid-after="19700101Z" {K}', 1),
    ("time-year-0", 'a@x valid-after="00000101Z" {K}', 1),
    ("time-letters", 'a@x valid-after="2026O101" {K}', 1),
    ("time-trailing-blank", 'a@x valid-after="2026120 Z" {K}', 1),
    ("time-empty", 'a@x valid-after="" {K}', 1),
    ("bad-base64", "a@x ssh-ed25519 AAAA!!!!", 1),
    ("truncated-base64", "a@x {K_CUT}", 1),
    ("excess-padding", "a@x {K}=", 1),
    ("nonzero-bits-after-the-data", "a@x ecdsa-sha2-nistp256 {EC_SLOPPY}", 1),
    ("type-mismatch", "a@x ssh-ed25519 {EC_B64}", 1),
    ("curve-mismatch", "a@x ecdsa-sha2-nistp384 {EC_B64}", 1),
    ("rsa-name-ed-blob", "a@x rsa-sha2-256 {K_B64}", 1),
    ("trailing-bytes", "a@x ssh-ed25519 {K_LONG}", 1),
    ("ed25519-31-bytes", "a@x ssh-ed25519 {K_SHORT}", 1),
    ("rsa-too-small", "a@x ssh-rsa {RSA_1016}", 1),
    ("ecdsa-compressed", "a@x ecdsa-sha2-nistp256 {EC_COMPRESSED}", 1),
    ("ecdsa-off-curve", "a@x ecdsa-sha2-nistp256 {EC_OFF}", 1),
    ("sk-application-nul", "a@x sk-ssh-ed25519@openssh.com {SK_NUL}", 1),
    ("principals-only", "a@x", 1),
    ("principals-only-newline", "a@x\n", 1),
    ("type-only", "a@x ssh-ed25519", 1),
    ("options-only", 'a@x namespaces="x"', 1),
    ("unclosed-principals-quote", '"a@x {K}', 1),
    ("quote-then-comma", '"c d",a@x {K}', 1),
    ("unknown-type", "a@x ssh-foo AAAA", 1),
    ("carriage-return-first", " \ra@x {K}", 1),
    ("after-comments", "# c\n  # c\n\t# c\na@x {O}\nb@x nope {K}", 5),
    ("third-line", "a@x {O}\nb@x {O}\nc@x ssh-ed25519 AAAA", 3),
]


def _malformed_values(world) -> dict[str, str]:
    _, signers, _ = world
    ed, ec = signers["ed"], signers["ec"]
    k_b64 = ed.pub.split()[1]
    point = _fields(ec.blob)[2]
    compressed = bytes([2 + (point[-1] & 1)]) + point[1:33]
    off = point[:-1] + bytes([point[-1] ^ 1])
    n = (1 << 1015) | 1
    ec_b64 = ec.pub.split()[1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert ec_b64.endswith("=") and not ec_b64.endswith("==")  # 104 bytes: 2 spare bits
    sloppy = ec_b64[:-2] + alphabet[alphabet.index(ec_b64[-2]) + 1] + "="
    return {
        "K": ed.pub,
        "O": signers["other"].pub,
        "K_B64": k_b64,
        "K_CUT": ed.pub[:-4],
        "K_LONG": _b64(ed.blob + b"\0"),
        "K_SHORT": _b64(_wire(b"ssh-ed25519", _fields(ed.blob)[1][:31])),
        "EC_B64": ec_b64,
        "EC_SLOPPY": sloppy,
        "EC_COMPRESSED": _b64(_wire(b"ecdsa-sha2-nistp256", b"nistp256", compressed)),
        "EC_OFF": _b64(_wire(b"ecdsa-sha2-nistp256", b"nistp256", off)),
        "RSA_1016": _b64(_wire(b"ssh-rsa", b"\x01\x00\x01", n.to_bytes(128, "big"))),
        "SK_NUL": _b64(_wire(b"sk-ssh-ed25519@openssh.com", _fields(ed.blob)[1], b"s\0h:")),
    }


@pytest.mark.parametrize(("name", "text", "line"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_line_is_refused_where_ssh_keygen_complains(world, name, text, line):
    """find-principals reads the lines up to the first that matches its key and logs
    'FILE:LINE: ...' for a bad one (then skips it); load() refuses the file with the same
    FILE:LINE. (Lines before the bad one list another key, so ssh-keygen reaches it.)"""
    d, signers, _ = world
    path = d / f"bad.{name}"
    path.write_text(text.format(**_malformed_values(world)) + "\n", encoding="utf-8")
    _, stderr = ssh_find(path, signers["ed"], AT, "UTC0")
    assert f"{path}:{line}: " in stderr
    with pytest.raises(AllowedSignersError) as caught:
        load(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: ") and "\n" not in message
    assert caught.value.exit_code == ExitCode.FATAL


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("empty", b"", ""),
        ("only-comments", b"# nobody yet\n\n", ""),
        ("nul-byte", b"# ok\na@x ssh-ed25519 AAAA\0garbage\n", ":2"),
        ("binary", bytes(range(256)) * 4, ":1"),
        ("latin-1", b"# ok\n# ok\nj\xfcrgen@x ssh-ed25519 AAAA\n", ":3"),
    ],
)
def test_files_that_are_not_allowed_signers(tmp_path, name, content, where):
    """Refused with the line where it applies (ssh-keygen would only skip these lines or
    find nobody: parhash says what is wrong with the file)."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AllowedSignersError) as caught:
        load(str(path))
    assert str(caught.value).startswith(f"{path}{where}: ")


def test_directory_fifo_missing_and_too_large(tmp_path, monkeypatch):
    """A directory, a FIFO (refused at once: opening one must not wait for a writer), a
    missing path, and a file over the size bound."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, phrase in (
        (tmp_path, "is a directory"),
        (fifo, "not a regular file"),
        (tmp_path / "nope", "No such file or directory"),
    ):
        with pytest.raises(AllowedSignersError, match=f"^{path}: {phrase}$"):
            load(str(path))
    big = tmp_path / "big"
    big.write_text("# padding\n" * 20)
    monkeypatch.setattr(allowed_signers, "MAX_FILE_BYTES", 100)
    with pytest.raises(AllowedSignersError, match=f"^{big}: larger than"):
        load(str(big))


def test_unreadable_file(world):
    """A file the user cannot read: one line naming it (run as user nobody when we are
    root, who can read anything)."""
    signers = world[1]
    work = tempfile.mkdtemp()
    try:
        os.chmod(work, 0o755)
        path = os.path.join(work, "allowed")
        with open(path, "w") as f:
            f.write(f"a@x {signers['ed'].pub}\n")
        os.chmod(path, 0)
        code = (
            "import sys\nfrom parhash.allowed_signers import load\ntry:\n"
            " load(sys.argv[1])\nexcept Exception as e:\n print(type(e).__name__, e)"
        )
        prefix = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("root without setpriv cannot drop privileges")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        done = subprocess.run(
            [*prefix, sys.executable, "-c", code, path],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "ModuleNotFoundError" in done.stderr or "Permission denied: '" in done.stderr:
            pytest.skip(f"user nobody cannot run this checkout: {done.stderr[-200:]}")
        assert done.stdout == f"AllowedSignersError {path}: Permission denied\n", done.stderr
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        shutil.rmtree(work)


def test_patterns_match_ssh_keygen_match_principals(world):
    """match_pattern_list against ``ssh-keygen -Y match-principals`` (which prints the
    principals of each line that an identity matches), over many patterns."""
    d, signers, _ = world
    patterns = [
        "a@x",
        "*",
        "*@x",
        "a*",
        "*x",
        "?",
        "??",
        "a?x",
        "*@*",
        "a@x,b@x",
        "!a@x,*",
        "*,!a@x",
        "a@x,!a@x",
        "!*",
        "a*b*c",
        "*a*a*",
        "b@x,",
        ",b@x",
        "x?*",
        "jü*",
        "j?rgen",
        "j??rgen",
        "*\\*",
        "a.b",
        "[ab]",
        "a@x,,c",
    ]
    path = d / "patterns"
    path.write_text("".join(f"{p} {signers['ed'].pub}\n" for p in patterns))
    for identity in (
        "a@x",
        "b@x",
        "",
        "a",
        "ab",
        "abc",
        "aXbYc",
        "aa",
        "x",
        "xy",
        "jürgen",
        "jxrgen",
        "a\\*",
        "a.b",
        "axb",
        "[ab]",
        "c",
        "a@x,b@x",
        "*",
    ):
        done = _keygen(["-Y", "match-principals", "-I", identity, "-f", path], "UTC0")
        expected = done.stdout.splitlines() if done.returncode == 0 else []
        assert [p for p in patterns if match_pattern_list(identity, p) == 1] == expected, identity


_PRINCIPALS = ["a@x", '"a@x"', "*", "!a@x", "a*", "?@x", '"b y"', 'b"@x y"', "", ",", '"', "\\"]
_TIMES = [
    "20261201",
    "202612011200",
    "20261201120000",
    "2026120112",
    "2026 101",
    "20261301",
    "20260231",
    "19700101",
    "99991231",
    "2026010",
    "x0260101",
    "20261201115960",
]
_OPTIONS = st.one_of(
    st.sampled_from(
        [
            "cert-authority",
            "CERT-AUTHORITY",
            "cert-authorityx",
            "",
            "foo",
            'foo="x"',
            'namespace="x"',
        ]
    ),
    st.builds(
        "{}={}".format,
        st.sampled_from(["namespaces", "NAMESPACES"]),
        st.sampled_from(
            [
                '"parhash"',
                '"git,par*"',
                '"*,!parhash"',
                '""',
                "parhash",
                '"par\\"hash"',
                '"parhash',
                '"a b,parhash"',
            ]
        ),
    ),
    st.builds(
        '{}="{}{}"'.format,
        st.sampled_from(["valid-after", "Valid-Before"]),
        st.sampled_from(_TIMES),
        st.sampled_from(["", "Z", "z", "UTC", " Z", "GMT"]),
    ),
)


@st.composite
def _lines(draw):
    """A line from the grammar's pieces, then up to two characters inserted or deleted."""
    parts = ["".join(draw(st.lists(st.sampled_from(_PRINCIPALS), min_size=1, max_size=3)))]
    options = draw(st.lists(_OPTIONS, max_size=3))
    if options:
        parts.append(",".join(options))
    parts.append(
        draw(
            st.sampled_from(
                ["{K}", "{K}", "{K} comment", "{K_CUT}", "ssh-foo {K_B64}", "ssh-ed25519"]
            )
        )
    )
    line = draw(st.sampled_from([" ", "\t", "  "])).join(parts)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(line)))
        if draw(st.booleans()):
            line = line[:at] + draw(st.sampled_from(' \t",=!*?\\Z0#\r')) + line[at:]
        else:
            line = line[:at] + line[at + 1 :]
    return line


#: What find-principals logs for a line it cannot parse (then skips it).
_SSH_PARSE_ERRORS = ("invalid line", "missing key", "invalid key", "invalid options", "bad options")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=_lines())
def test_random_lines_agree_with_ssh_keygen(world, template):
    """Random lines (quotes, commas, options, times, stray characters): parhash refuses a
    line exactly when ssh-keygen complains about it, and decides as ``-Y verify`` does."""
    d, signers, _ = world
    signer = signers["ed"]
    values = _malformed_values(world)
    text = template.replace("{K}", values["K"]).replace("{K_CUT}", values["K_CUT"])
    text = text.replace("{K_B64}", values["K_B64"])
    path = d / "random"
    path.write_text(text + "\n", encoding="utf-8", newline="")
    _, stderr = ssh_find(path, signer, AT, "UTC0")
    stripped = text.lstrip(" \t\r")
    try:
        parsed = load(str(path))
    except AllowedSignersError as exc:
        if not stripped or stripped.startswith("#"):
            return  # parhash: no signers; ssh-keygen: nobody found
        assert any(p in stderr for p in _SSH_PARSE_ERRORS), (text, str(exc), stderr)
        return
    assert not any(p in stderr for p in _SSH_PARSE_ERRORS), (text, stderr)
    for identity in ("a@x", "b y"):
        expected = ssh_verify(path, signer, "parhash", identity, AT, "UTC0")
        assert parsed.decide(signer.blob, "parhash", _epoch(AT), identity).accepted == expected
