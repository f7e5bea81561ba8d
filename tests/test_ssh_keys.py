"""Signing keys: private key files signed in process, KEY.pub signed by a real ssh-agent.

Every key comes from the real ``ssh-keygen``; every signature blob is decoded here with
``struct`` (not parhash's reader) and verified with ``cryptography`` directly against the
public key ssh-keygen wrote, and the SSHSIG files verify with ``ssh-keygen -Y verify``.
"""

from __future__ import annotations

import base64
import os
import pty
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import deadline, run_unprivileged
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from parhash import ssh_agent
from parhash.exit_codes import ExitCode
from parhash.ssh_keys import MAX_KEY_FILE, SigningKeyError, load_signer

pytestmark = pytest.mark.skipif(
    not (shutil.which("ssh-keygen") and shutil.which("ssh-agent") and shutil.which("ssh-add")),
    reason="openssh-client is not installed",
)

#: (ssh-keygen -t, -b): every type parhash signs with.
KEY_TYPES = {
    "ed25519": ("ed25519", None),
    "ecdsa256": ("ecdsa", "256"),
    "ecdsa384": ("ecdsa", "384"),
    "ecdsa521": ("ecdsa", "521"),
    "rsa3072": ("rsa", "3072"),
}
ECDSA_HASHES = {"nistp256": hashes.SHA256, "nistp384": hashes.SHA384, "nistp521": hashes.SHA512}
PASSPHRASE = "correct horse"


def keygen(directory: Path, kind: str, passphrase: str = "", fmt: str | None = None) -> Path:
    """A new key from the real ssh-keygen; returns the private key's path."""
    key_type, bits = KEY_TYPES[kind]
    path = directory / f"{kind}-{fmt or 'openssh'}-{'pw' if passphrase else 'nopw'}"
    command = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", "test", "-f", path]
    command += ["-b", bits] if bits else []
    command += ["-m", fmt] if fmt else []
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, timeout=120)
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """One unencrypted OpenSSH-format key of each type (RSA 3072 takes a while to make)."""
    directory = tmp_path_factory.mktemp("keys")
    return {kind: keygen(directory, kind) for kind in KEY_TYPES}


def pub_blob(key: Path) -> bytes:
    """The blob KEY.pub holds, as ssh-keygen wrote it."""
    return base64.b64decode(Path(f"{key}.pub").read_text().split()[1])


def wire_strings(data: bytes) -> list[bytes]:
    """The SSH ``string`` fields of ``data``, decoded independently of parhash.sshwire."""
    fields, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        fields.append(data[offset + 4 : offset + 4 + length])
        assert len(fields[-1]) == length, "truncated string"
        offset += 4 + length
    return fields


def public_key(key: Path):
    """The cryptography public key of KEY.pub: ssh-keygen's PKCS#8 export where it has one,
    the 32 raw bytes for Ed25519 (ssh-keygen 9.2 cannot export those)."""
    fields = wire_strings(pub_blob(key))
    if fields[0] == b"ssh-ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(fields[1])
    pem = subprocess.run(
        ["ssh-keygen", "-e", "-m", "PKCS8", "-f", f"{key}.pub"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return serialization.load_pem_public_key(pem)


def verify_blob(key: Path, data: bytes, blob: bytes) -> None:
    """Verify an SSH signature blob over ``data`` with KEY.pub; InvalidSignature if not."""
    algorithm, raw = wire_strings(blob)
    key_type = wire_strings(pub_blob(key))[0]
    pub = public_key(key)
    if key_type == b"ssh-ed25519":
        assert algorithm == b"ssh-ed25519" and len(raw) == 64
        pub.verify(raw, data)
    elif key_type.startswith(b"ecdsa-sha2-"):
        assert algorithm == key_type
        r, s = (_mpint(field) for field in wire_strings(raw))
        digest = ECDSA_HASHES[key_type.decode().rsplit("-", 1)[1]]()
        pub.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
    else:
        assert key_type == b"ssh-rsa" and algorithm == b"rsa-sha2-512"
        pub.verify(raw, data, padding.PKCS1v15(), hashes.SHA512())


def _mpint(raw: bytes) -> int:
    """An RFC 4251 mpint, checked minimal: a leading zero only before a set top bit."""
    assert raw and not raw[0] & 0x80, "an ECDSA r/s is positive and non-zero"
    assert raw[0] or raw[1] & 0x80, "mpint has a needless leading zero"
    return int.from_bytes(raw, "big")


def assert_signs(signer, key: Path) -> None:
    """The signer's public blob is KEY.pub's, and its signatures verify (a flipped byte in
    the data does not). Several messages, so ECDSA r/s with and without the mpint's leading
    zero byte both occur."""
    assert signer.public_blob == pub_blob(key)
    for n in range(8):
        data = b"parhash manifest %d\n" % n * (n + 1)
        blob = signer.sign(data)
        verify_blob(key, data, blob)
        flipped = bytes([data[0] ^ 1]) + data[1:]
        with pytest.raises(InvalidSignature):
            verify_blob(key, flipped, blob)


def one_line(exc: pytest.ExceptionInfo, path: Path | str, *words: str) -> str:
    """The SigningKeyError is one line, starts ``KEY: `` and says each of ``words``."""
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    assert exc.value.exit_code == ExitCode.FATAL
    return message


# --- private key files ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_private_key_file_signs_verifiably(keys, kind):
    signer = load_signer(str(keys[kind]))
    assert_signs(signer, keys[kind])
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{keys[kind]}.pub"], capture_output=True, text=True
    ).stdout.split()[1]
    assert signer.description.endswith(f"key {fingerprint} from {keys[kind]}")


@pytest.mark.parametrize(
    "kind, fmt",
    [
        *[("ed25519", None), ("ecdsa256", None), ("ecdsa384", "PEM"), ("ecdsa521", "PKCS8")],
        *[("rsa3072", "PEM"), ("rsa3072", "PKCS8"), ("ecdsa256", "PEM")],
    ],
)
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "passphrase"])
def test_key_formats_and_passphrases(tmp_path, kind, fmt, encrypted):
    key = keygen(tmp_path, kind, PASSPHRASE if encrypted else "", fmt)
    header = key.read_text().splitlines()[0]
    expected = {None: "OPENSSH PRIVATE KEY", "PEM": "EC PRIVATE KEY", "PKCS8": "PRIVATE KEY"}
    if fmt == "PEM" and kind.startswith("rsa"):
        expected["PEM"] = "RSA PRIVATE KEY"
    assert expected[fmt] in header  # ssh-keygen really wrote that format
    prompts = []

    def ask(prompt: str) -> bytes:
        prompts.append(prompt)
        return PASSPHRASE.encode()

    assert_signs(load_signer(str(key), passphrase=ask), key)
    assert prompts == ([f"Enter passphrase for {key}: "] if encrypted else [])


@pytest.mark.parametrize("fmt", [None, "PEM", "PKCS8"])
def test_wrong_passphrase_is_one_line(tmp_path, fmt):
    key = keygen(tmp_path, "ecdsa256", PASSPHRASE, fmt)
    with pytest.raises(SigningKeyError) as exc:
        load_signer(str(key), passphrase=lambda prompt: b"wrong horse")
    one_line(exc, key, "wrong passphrase")


def test_no_terminal_for_a_passphrase_says_use_the_agent(tmp_path):
    """cron: ``parhash sign`` with no controlling terminal (setsid) and stdin not a tty.
    The default passphrase reader must fail at once with the one line, never read stdin
    (the passphrase is offered there) or hang, and nothing is written."""
    key = keygen(tmp_path, "ed25519", PASSPHRASE)
    (tmp_path / "msg").write_bytes(b"data\n")
    proc = subprocess.run(
        ["setsid", sys.executable, "-m", "parhash", "sign", "msg", "--key", key],
        cwd=tmp_path,
        input=f"{PASSPHRASE}\n".encode(),  # on stdin: must not be taken as the passphrase
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == ExitCode.FATAL, proc
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"parhash: error: {key}: "), proc
    assert "passphrase-protected" in lines[0] and "ssh-agent" in lines[0], lines
    assert "KEY.pub" in lines[0] and proc.stdout == b"", proc
    assert not (tmp_path / "msg.sig").exists()


def run_on_terminal(argv: list[str | Path], cwd: Path, answer: bytes) -> tuple[int, str]:
    """Run ``argv`` in a child whose controlling terminal is a pty; type ``answer`` at the
    passphrase prompt; return the exit status and everything the child wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns into pytest, even if exec fails
        try:
            os.chdir(cwd)
            os.execv(argv[0], list(map(str, argv)))
        finally:
            os._exit(127)
    output = b""
    try:
        with deadline(60):
            while b"passphrase for" not in output:
                output += os.read(fd, 4096)
            os.write(fd, answer + b"\n")
            output += b"".join(iter(lambda: _read_terminal(fd), b""))
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode()


def _read_terminal(fd: int) -> bytes:
    """The next output of the pty, b"" at its end (Linux says EIO when the child is gone)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


def test_terminal_passphrase_right_and_wrong(tmp_path):
    """``parhash sign`` asks on the terminal, without echo; the signature verifies with
    ssh-keygen; a wrong passphrase is one line and exit 2."""
    key = keygen(tmp_path, "ed25519", PASSPHRASE)
    (tmp_path / "msg").write_bytes(b"data\n")
    argv = [sys.executable, "-m", "parhash", "sign", "msg", "--key", key]
    status, good = run_on_terminal(argv, tmp_path, PASSPHRASE.encode())
    assert status == 0 and f"Enter passphrase for {key}: " in good, good
    assert PASSPHRASE not in good  # not echoed
    assert ssh_keygen_verify(key, tmp_path / "msg", tmp_path / "msg.sig").returncode == 0
    (tmp_path / "msg.sig").unlink()
    status, bad = run_on_terminal(argv, tmp_path, b"wrong horse")
    assert status == ExitCode.FATAL and f"parhash: error: {key}: wrong passphrase" in bad, bad
    assert not (tmp_path / "msg.sig").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_private_key_readable_by_others_is_refused_as_ssh_keygen_does(keys, tmp_path, mode):
    key = tmp_path / "loose"
    shutil.copy(keys["ed25519"], key)
    shutil.copy(f"{keys['ed25519']}.pub", f"{key}.pub")
    key.chmod(mode)
    reference = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", "parhash", "-f", key, "-"],
        input=b"data",
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
        timeout=60,
    )
    assert reference.returncode != 0 and b"UNPROTECTED PRIVATE KEY FILE" in reference.stderr
    with pytest.raises(SigningKeyError) as exc:
        load_signer(str(key))
    one_line(exc, key, f"permissions {mode:04o} are too open", "chmod 600")
    key.chmod(0o600)
    assert load_signer(str(key)).public_blob == pub_blob(key)
    Path(f"{key}.pub").chmod(0o644)  # a public key may be readable: no complaint


def test_private_key_owned_by_someone_else_is_not_judged(keys, tmp_path):
    """ssh-keygen checks the mode only of a key the user owns (sshkey_perm_ok)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    key = tmp_path / "theirs"
    shutil.copy(keys["ed25519"], key)
    key.chmod(0o644)
    os.chown(key, 65534, 65534)
    assert load_signer(str(key)).public_blob == pub_blob(keys["ed25519"])


def test_dsa_key_file_is_refused(tmp_path):
    key = tmp_path / "dsa"
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", key], capture_output=True, timeout=60
    )
    if made.returncode != 0:
        pytest.skip("this ssh-keygen no longer makes DSA keys")
    with pytest.raises(SigningKeyError) as exc:
        load_signer(str(key))
    one_line(exc, key, "DSA keys are not supported")


def _wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def _pub_line(*fields: bytes) -> bytes:
    return fields[0] + b" " + base64.b64encode(_wire(*fields)) + b" comment\n"


def _openssh_key_file(public_blob: bytes) -> bytes:
    """An unencrypted openssh-key-v1 file around ``public_blob`` (PROTOCOL.key), for a key
    type ssh-keygen cannot make without hardware."""
    body = b"openssh-key-v1\0" + _wire(b"none", b"none", b"") + struct.pack(">I", 1)
    text = base64.encodebytes(body + _wire(public_blob, b"\0" * 64)).decode()
    armor = "OPENSSH PRIVATE KEY-----\n"
    return f"-----BEGIN {armor}{text}-----END {armor}".encode()


def test_security_key_file_says_use_the_agent(tmp_path):
    blob = _wire(b"sk-ssh-ed25519@openssh.com", b"\1" * 32, b"ssh:")
    key = tmp_path / "id_ed25519_sk"
    key.write_bytes(_openssh_key_file(blob))
    key.chmod(0o600)
    with pytest.raises(SigningKeyError) as exc:
        load_signer(str(key))
    one_line(exc, key, "on the token", "use ssh-agent", "KEY.pub")


# --- files that are not keys ---------------------------------------------------------------


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


def _file(content: bytes):
    def make(tmp_path: Path) -> Path:
        (tmp_path / "file").write_bytes(content)
        (tmp_path / "file").chmod(0o600)
        return tmp_path / "file"

    return make


def _sparse_gigabyte(tmp_path: Path) -> Path:
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(1 << 30)
    return tmp_path / "huge"


BAD_FILES = {
    "missing": (lambda p: p / "nope", "no such file"),
    "directory": (lambda p: p, "is a directory"),
    "below a file": (lambda p: _file(b"x")(p) / "key", "Not a directory"),
    "fifo": (_fifo, "not a regular file"),
    "empty": (_file(b""), "not an SSH key"),
    "text": (_file(b"hello world\n"), "not an SSH key"),
    "binary": (_file(os.urandom(300) + b"\xff"), "not an SSH key"),
    "bad base64": (_file(b"ssh-ed25519 AAAA!!!! x\n"), "not an SSH key"),
    "type mismatch": (
        _file(b"ssh-rsa " + _pub_line(b"ssh-ed25519", b"k" * 32).split(b" ", 1)[1]),
        "the key says ssh-rsa but holds ssh-ed25519",
    ),
    "short ed25519": (_file(_pub_line(b"ssh-ed25519", b"k" * 16)), "not a valid ssh-ed25519"),
    "point off curve": (
        _file(_pub_line(b"ecdsa-sha2-nistp256", b"nistp256", b"\4" + b"\1" * 64)),
        "not a valid ecdsa-sha2-nistp256",
    ),
    "dsa pub": (_file(_pub_line(b"ssh-dss", b"p", b"q", b"g", b"y")), "DSA"),
    "certificate": (
        _file(_pub_line(b"ssh-ed25519-cert-v01@openssh.com", b"nonce")),
        "certificates are not supported",
    ),
    "unknown type": (_file(_pub_line(b"ssh-foo", b"k")), "ssh-foo keys are not supported"),
    "too large": (_file(b"#" * (MAX_KEY_FILE + 1)), "larger than 64 KiB"),
    "sparse 1 GiB": (_sparse_gigabyte, "larger than 64 KiB"),
    "broken armor": (
        _file(b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"),
        "not a valid OpenSSH private key",
    ),
    "garbage pem": (
        _file(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        "not a valid private key",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_not_a_usable_key_file_is_one_line(tmp_path, case):
    make, words = BAD_FILES[case]
    path = make(tmp_path)
    with deadline(30), pytest.raises(SigningKeyError) as exc:  # a FIFO must not block
        load_signer(str(path))
    one_line(exc, path, words)


def test_unreadable_key_file(keys, tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    shutil.copy(keys["ed25519"], directory / "key")
    (directory / "key").chmod(0)
    directory.chmod(0o755)

    def load():
        try:
            load_signer("key")
        except SigningKeyError as exc:
            return str(exc)

    assert run_unprivileged(load, str(directory)) == "key: Permission denied"


# --- ssh-agent -----------------------------------------------------------------------------


class Agent:
    """A real ``ssh-agent -D`` on a socket in tmp_path, and ssh-add against it."""

    def __init__(self, directory: Path, **env: str) -> None:
        self.socket = str(directory / "agent.sock")
        self.env = {**os.environ, **env, "SSH_AUTH_SOCK": self.socket}
        self.proc = subprocess.Popen(
            ["ssh-agent", "-D", "-a", self.socket],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with deadline(30):
            while not os.path.exists(self.socket):
                time.sleep(0.01)

    def add(self, *args: str | Path, stdin: bytes = b"") -> None:
        subprocess.run(
            ["ssh-add", "-q", *map(str, args)],
            env=self.env,
            input=stdin,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """Start an agent, point SSH_AUTH_SOCK at it; a factory so a test may pass env (the
    askpass program of a confirmation)."""
    started = []

    def start(**env: str) -> Agent:
        started.append(Agent(tmp_path, **env))
        monkeypatch.setenv("SSH_AUTH_SOCK", started[-1].socket)
        return started[-1]

    yield start
    for one in started:
        one.stop(signal.SIGKILL)


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_agent_signs_with_key_pub(keys, agent, kind):
    running = agent()
    running.add(keys[kind])
    signer = load_signer(f"{keys[kind]}.pub")
    assert signer.description.endswith(" in ssh-agent") and "SHA256:" in signer.description
    assert_signs(signer, keys[kind])


def test_agent_signs_a_passphrase_key_added_with_its_passphrase(tmp_path, agent):
    """The cron recipe: the key is encrypted on disk, unlocked once into the agent."""
    key = keygen(tmp_path, "ed25519", PASSPHRASE)
    askpass = _script(tmp_path / "askpass", f"echo '{PASSPHRASE}'")
    running = agent()
    running.env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
    running.add(key)
    assert_signs(load_signer(f"{key}.pub"), key)


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_key_not_in_agent(keys, agent):
    running = agent()
    running.add(keys["ecdsa256"])
    with pytest.raises(SigningKeyError) as exc:
        load_signer(f"{keys['ed25519']}.pub")
    one_line(exc, f"{keys['ed25519']}.pub", "is not in ssh-agent", "ssh-add")


def test_empty_agent(keys, agent):
    agent()
    with pytest.raises(SigningKeyError) as exc:
        load_signer(f"{keys['ed25519']}.pub")
    one_line(exc, f"{keys['ed25519']}.pub", "holds no keys")


def test_locked_agent(keys, agent, tmp_path):
    """ssh-add -x locks the agent: it then lists no keys and refuses to sign, both before
    the scan (load) and after it (a signer loaded while the agent was unlocked)."""
    running = agent()
    running.add(keys["ed25519"])
    signer = load_signer(f"{keys['ed25519']}.pub")
    askpass = _script(tmp_path / "askpass", "echo lockpw")
    running.env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
    running.add("-x")
    with pytest.raises(SigningKeyError) as exc:
        load_signer(f"{keys['ed25519']}.pub")
    one_line(exc, f"{keys['ed25519']}.pub", "holds no keys", "locked")
    with pytest.raises(SigningKeyError) as exc:
        signer.sign(b"data")
    one_line(exc, f"{keys['ed25519']}.pub", "refused to sign")
    running.add("-X")  # unlocked: signs again
    verify_blob(keys["ed25519"], b"data", signer.sign(b"data"))


def test_confirmation_denied_and_given(keys, agent, tmp_path):
    """ssh-add -c: the agent asks ssh-askpass before each signature; a "no" is a refusal."""
    allow = tmp_path / "allow"
    askpass = _script(tmp_path / "confirm", f'test -e "{allow}"')
    running = agent(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    running.add("-c", keys["ed25519"])
    signer = load_signer(f"{keys['ed25519']}.pub")  # listing needs no confirmation
    with pytest.raises(SigningKeyError) as exc:
        signer.sign(b"data")
    one_line(exc, f"{keys['ed25519']}.pub", "refused to sign")
    allow.touch()
    verify_blob(keys["ed25519"], b"data", signer.sign(b"data"))


@pytest.mark.parametrize(
    "sig, words",
    [(signal.SIGTERM, ["does not exist"]), (signal.SIGKILL, ["nothing listens"])],
    ids=["terminated", "killed"],
)
def test_agent_gone(keys, agent, sig, words):
    """SIGTERM: the agent removes its socket; SIGKILL leaves it with no listener. Both at
    load and when a signer loaded earlier signs (the agent died during the scan)."""
    running = agent()
    running.add(keys["ed25519"])
    signer = load_signer(f"{keys['ed25519']}.pub")
    running.stop(sig)
    for attempt in (lambda: load_signer(f"{keys['ed25519']}.pub"), lambda: signer.sign(b"x")):
        with pytest.raises(SigningKeyError) as exc:
            attempt()
        one_line(exc, f"{keys['ed25519']}.pub", *words)


def test_no_ssh_auth_sock(keys, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(SigningKeyError) as exc:
        load_signer(f"{keys['ed25519']}.pub")
    one_line(exc, f"{keys['ed25519']}.pub", "SSH_AUTH_SOCK is not set")


class FakeAgent:
    """A socket server that answers the n-th connection's request with ``replies[n]`` (the
    last one again after that; None: never answers)."""

    def __init__(self, path: Path, *replies: bytes | None, close: bool = False) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.replies, self.close_after = list(replies), close
        self.connections: list[socket.socket] = []
        self.requests: list[bytes] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)  # kept open: "never answers" must not close
            self.requests.append(conn.recv(65536))
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply is not None:
                conn.sendall(reply)
            if self.close_after:
                conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize(
    "reply, words",
    [  # reply None: never answers; b"": closes the connection at once
        (None, ["did not answer within 0.5 s"]),
        (struct.pack(">I", ssh_agent.MAX_MESSAGE + 1), ["announced a", "not an agent"]),
        (struct.pack(">I", 10) + b"\x0c", ["did not answer"]),  # a reply that stops short
        (b"", ["closed the connection"]),
        (struct.pack(">IB", 1, 99), ["answered the key list with message 99"]),
        (struct.pack(">IBI", 5, 12, 3), ["malformed key list", "truncated"]),
    ],
    ids=["silent", "huge", "short", "closes", "wrong type", "truncated"],
)
def test_agent_that_misbehaves(keys, tmp_path, monkeypatch, reply, words):
    """The timeout path and bounded replies, against a socket that is not a real agent."""
    monkeypatch.setattr(ssh_agent, "AGENT_TIMEOUT", 0.5)
    fake = FakeAgent(tmp_path / "fake.sock", reply, close=reply == b"")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "fake.sock"))
    try:
        with deadline(30), pytest.raises(SigningKeyError) as exc:
            load_signer(f"{keys['ed25519']}.pub")
    finally:
        fake.close()
    one_line(exc, f"{keys['ed25519']}.pub", *words)


def _agent_message(code: int, *fields: bytes) -> bytes:
    body = bytes([code]) + b"".join(fields)
    return struct.pack(">I", len(body)) + body


def _holding(blob: bytes) -> bytes:
    """An IDENTITIES_ANSWER with the one key ``blob``."""
    return _agent_message(12, struct.pack(">I", 1), _wire(blob, b"comment"))


def test_security_key_through_the_agent(tmp_path, monkeypatch):
    """A FIDO key's signature carries flags and a counter after the raw signature
    (PROTOCOL.u2f): it is passed through whole. No token here: the agent is a fake."""
    blob = _wire(b"sk-ssh-ed25519@openssh.com", b"\1" * 32, b"ssh:")
    pub = tmp_path / "id_ed25519_sk.pub"
    pub.write_bytes(_pub_line(b"sk-ssh-ed25519@openssh.com", b"\1" * 32, b"ssh:"))
    signature = _wire(b"sk-ssh-ed25519@openssh.com", b"s" * 64) + b"\1" + struct.pack(">I", 7)
    fake = FakeAgent(tmp_path / "fake.sock", _holding(blob), _agent_message(14, _wire(signature)))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "fake.sock"))
    try:
        signer = load_signer(str(pub))
        assert signer.description.startswith("ED25519-SK key SHA256:")
        assert signer.sign(b"data") == signature
    finally:
        fake.close()


def test_agent_that_signs_rsa_with_sha1_is_refused(keys, tmp_path, monkeypatch):
    """An agent too old for the rsa-sha2-512 flag answers with an ``ssh-rsa`` (SHA-1)
    signature, which ssh-keygen -Y verify refuses: refused at once, naming both."""
    sha1 = _wire(b"ssh-rsa", b"s" * 384)
    held = _holding(pub_blob(keys["rsa3072"]))
    fake = FakeAgent(tmp_path / "fake.sock", held, _agent_message(14, _wire(sha1)))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "fake.sock"))
    try:
        signer = load_signer(f"{keys['rsa3072']}.pub")
        with pytest.raises(SigningKeyError) as exc:
            signer.sign(b"data")
    finally:
        fake.close()
    one_line(exc, f"{keys['rsa3072']}.pub", "signed with ssh-rsa, not rsa-sha2-512")
    # what was asked: SIGN_REQUEST (13), the key, the data, flags SSH_AGENT_RSA_SHA2_512 (4)
    asked = _agent_message(13, _wire(pub_blob(keys["rsa3072"]), b"data"), struct.pack(">I", 4))
    assert fake.requests == [_agent_message(11), asked]


# --- end to end: SSHSIG files that ssh-keygen -Y verify accepts ----------------------------


def ssh_keygen_verify(key: Path, message: Path, signature: Path) -> subprocess.CompletedProcess:
    """``ssh-keygen -Y verify`` of ``signature`` over ``message``, trusting KEY.pub as
    ``test@parhash`` for the parhash namespace."""
    allowed = message.parent / "allowed_signers"
    public = Path(f"{key}.pub").read_text().split()
    allowed.write_text(f'test@parhash namespaces="parhash" {public[0]} {public[1]}\n')
    command = ["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "test@parhash"]
    command += ["-n", "parhash", "-s", signature]
    with open(message, "rb") as stdin:
        return subprocess.run(command, stdin=stdin, capture_output=True, text=True, timeout=60)


def sign_and_verify(signer, key: Path, directory: Path) -> None:
    """Sign a message with parhash.sshsig and ``signer``; ssh-keygen accepts it, and
    refuses it for the message with one byte changed."""
    from parhash import sshsig

    message = directory / "manifest.jsonl"
    message.write_bytes(b'{"path":"a","sha256":"00"}\n' * 50)
    signature = directory / "manifest.jsonl.sig"
    signature.write_text(sshsig.sign(message.read_bytes(), signer))
    good = ssh_keygen_verify(key, message, signature)
    fingerprint = sshsig_fingerprint(key)
    assert good.returncode == 0, good
    assert 'Good "parhash" signature for test@parhash with' in good.stdout, good
    assert fingerprint in good.stdout, good
    message.write_bytes(b"{" + message.read_bytes()[1:].replace(b"a", b"b", 1))
    assert ssh_keygen_verify(key, message, signature).returncode != 0


def sshsig_fingerprint(key: Path) -> str:
    return subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, timeout=60
    ).stdout.split()[1]


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_key_file_sshsig_verifies_with_ssh_keygen(keys, tmp_path, kind):
    sign_and_verify(load_signer(str(keys[kind])), keys[kind], tmp_path)


@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_agent_sshsig_verifies_with_ssh_keygen(keys, agent, tmp_path, kind):
    agent().add(keys[kind])
    sign_and_verify(load_signer(f"{keys[kind]}.pub"), keys[kind], tmp_path)


@pytest.mark.parametrize("fmt", ["PEM", "PKCS8"])
def test_encrypted_pem_key_sshsig_verifies_with_ssh_keygen(tmp_path, fmt):
    key = keygen(tmp_path, "rsa3072", PASSPHRASE, fmt)
    signer = load_signer(str(key), passphrase=lambda prompt: PASSPHRASE.encode())
    sign_and_verify(signer, key, tmp_path)


def test_cli_sign_through_the_agent_verifies_with_ssh_keygen(keys, agent, tmp_path, cli):
    """``parhash sign FILE --key KEY.pub``: the real CLI, the real agent, ssh-keygen."""
    running = agent()
    running.add(keys["ed25519"])
    (tmp_path / "a").write_bytes(b"a")
    message = tmp_path / "SHA256SUMS"  # the example: a file sha256sum wrote
    sums = subprocess.run(["sha256sum", "a"], cwd=tmp_path, capture_output=True, check=True)
    message.write_bytes(sums.stdout)
    result = cli("sign", message, "--key", f"{keys['ed25519']}.pub", env=running.env)
    assert result.returncode == 0, result
    checked = ssh_keygen_verify(keys["ed25519"], message, Path(f"{message}.sig"))
    assert checked.returncode == 0, checked


@pytest.mark.parametrize("problem", ["not in agent", "no agent", "garbage"])
def test_cli_bad_key_fails_before_scanning(keys, agent, tmp_path, cli, make_tree, problem):
    """``scan --sign KEY``: a key that cannot sign is one line and exit 2, and no manifest
    and no signature is written (the key is loaded before the tree is read)."""
    tree = make_tree({"a": b"a", "b": b"b"})
    env = {"SSH_AUTH_SOCK": agent().socket}
    key = f"{keys['ed25519']}.pub"
    if problem == "no agent":
        env["SSH_AUTH_SOCK"] = str(tmp_path / "no-agent.sock")
    elif problem == "garbage":
        key = str(tree / "a")
    out = tmp_path / "out.jsonl"
    result = cli("scan", tree, "-f", "jsonl", "-o", out, "--sign", key, env=env)
    assert result.returncode == ExitCode.FATAL, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"parhash: error: {key}: "), result
    assert result.stdout == b"" and not out.exists() and not Path(f"{out}.sig").exists()
