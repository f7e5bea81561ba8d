"""Where signatures come from: a private key file (signed in process) or ``KEY.pub`` (signed by
ssh-agent, so the key never leaves the agent or the hardware token behind it).

``load_signer`` checks everything it can when it is called, because the CLI calls it before
scanning: a wrong passphrase, a key missing from the agent or a file that is no key fails in
a second, not after an hour of hashing. Every problem is a ``SigningKeyError``: one line,
``KEY: reason``, exit code 2.

The choice between the two is made by the file, not by probing: a private key file is
used directly, a public key is looked up in the agent. (``ssh-keygen -Y sign`` prefers the
agent even when given the private key; parhash does what the file says, so the same command
does the same thing with or without an agent in the environment.)

``cryptography`` is imported inside the functions: this module is imported by the CLI, and
the scan path must not pay for it.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parhash import ssh_agent, sshwire
from parhash.exit_codes import FatalError
from parhash.sshsig import Signer  # the one protocol a signing key meets

#: The most a key file may hold. OpenSSH's largest key (RSA 16384 bits) is about 12.5 KiB as a
#: private key file; a ``.pub`` line is smaller. Four times that reads every real key and
#: stops a mistaken ``--sign /var/log/huge.log`` after 64 KiB instead of reading it all.
MAX_KEY_FILE = 64 * 1024

#: The smallest RSA modulus OpenSSH accepts (``SSH_RSA_MINIMUM_MODULUS_SIZE``): a signature
#: from a smaller key would be refused by ``ssh-keygen -Y verify``, so it is refused here.
MIN_RSA_BITS = 1024


#: The hash each ECDSA curve signs with (RFC 5656 section 6.2.1), by cryptography's curve name.
ECDSA_CURVES = {
    "secp256r1": ("nistp256", "SHA256"),
    "secp384r1": ("nistp384", "SHA384"),
    "secp521r1": ("nistp521", "SHA512"),
}

OPENSSH_ARMOR = b"-----BEGIN OPENSSH PRIVATE KEY-----"
OPENSSH_MAGIC = b"openssh-key-v1\0"
USE_AGENT = "use ssh-agent: ssh-add the key and give KEY.pub"


class SigningKeyError(FatalError):
    """The signing key cannot be used: one line, ``KEY: reason`` (exit code 2)."""


class _NoTerminal(Exception):
    """A passphrase is needed and there is no terminal to ask on (cron, a service)."""


def terminal_passphrase(prompt: str) -> bytes:
    """Ask on the controlling terminal, as ssh-keygen does. Never falls back to stdin
    (``getpass`` would, with a warning): stdin may be the data being signed."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise _NoTerminal from None
    try:
        return getpass.getpass(prompt).encode()
    except EOFError:
        raise _NoTerminal from None


def load_signer(path: str, *, passphrase: Callable[[str], bytes] | None = None) -> Signer:
    """The signer for ``path``: a private key file (OpenSSH, PEM or PKCS#8 format) signs in
    process, asking ``passphrase(prompt)`` (default: the terminal) when it is encrypted; a
    public key (``KEY.pub``) signs through ssh-agent. Raises SigningKeyError."""
    data, st = _read_key_file(path)
    if data.lstrip().startswith(b"-----BEGIN "):
        _check_private_permissions(path, st)
        return _load_private(path, data, passphrase or terminal_passphrase)
    return _load_agent_key(path, data)


def _read_key_file(path: str) -> tuple[bytes, os.stat_result]:
    """At most MAX_KEY_FILE bytes of a regular file. O_NONBLOCK: a FIFO given by mistake
    must not block the run before it starts."""
    from parhash.fsutil import read_regular

    try:
        data, st = read_regular(path, MAX_KEY_FILE)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such file") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise SigningKeyError(f"{path}: larger than {MAX_KEY_FILE // 1024} KiB: not a key file")
    return data, st


def _check_private_permissions(path: str, st: os.stat_result) -> None:
    """Refuse a private key that others may read, as ssh-keygen does (``sshkey_perm_ok``:
    only for a file the user owns; a key owned by someone else is not judged)."""
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise SigningKeyError(
            f"{path}: permissions {mode:04o} are too open: a private key must not be "
            f"accessible by others (chmod 600 {path}), as ssh-keygen requires"
        )


# --- private key files -------------------------------------------------------------------


def _load_private(path: str, data: bytes, ask: Callable[[str], bytes]) -> Signer:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if data.lstrip().startswith(OPENSSH_ARMOR):
        _check_openssh_type(path, _openssh_public_blob(path, data))
        loader: Callable[..., Any] = serialization.load_ssh_private_key
    else:
        loader = serialization.load_pem_private_key
    try:
        key = _decrypt(path, loader, data, ask)
    except UnsupportedAlgorithm as exc:
        raise SigningKeyError(f"{path}: unsupported private key: {_reason(exc)}") from None
    return _file_signer(path, key)


def _decrypt(path: str, loader: Callable[..., Any], data: bytes, ask: Callable[[str], bytes]):
    """The private key object; asks for the passphrase only when the key is encrypted
    (cryptography says so with a TypeError when no password is given)."""
    with warnings.catch_warnings():  # cryptography warns about DSA; it is refused anyway
        warnings.simplefilter("ignore")
        try:
            return loader(data, password=None)
        except TypeError:
            pass
        except ValueError as exc:
            raise SigningKeyError(f"{path}: not a valid private key ({_reason(exc)})") from None
        try:
            secret = ask(f"Enter passphrase for {path}: ")
        except _NoTerminal:
            raise SigningKeyError(
                f"{path}: the key is passphrase-protected and there is no terminal to ask "
                f"for it: {USE_AGENT}"
            ) from None
        try:
            return loader(data, password=secret.encode() if isinstance(secret, str) else secret)
        except (TypeError, ValueError):
            raise SigningKeyError(f"{path}: wrong passphrase") from None


def _reason(exc: Exception) -> str:
    """cryptography's message on one line, without the paragraph of guesses OpenSSL errors
    start with ("Could not deserialize key data. The data may be ... Details: ...")."""
    text = " ".join(str(exc).split())
    return text.partition("Details: ")[2] or text


def _openssh_public_blob(path: str, data: bytes) -> bytes:
    """The public key an OpenSSH private key file carries unencrypted in its header
    (PROTOCOL.key): its type decides before any passphrase is asked for."""
    body = data.strip().splitlines()[1:]
    end = next((i for i, line in enumerate(body) if line.startswith(b"-----END")), None)
    try:
        if end is None:
            raise ValueError("no END line")
        reader = sshwire.Reader(base64.b64decode(b"".join(body[:end])), "private key")
        if reader.take(len(OPENSSH_MAGIC)) != OPENSSH_MAGIC:
            raise ValueError("not openssh-key-v1")
        reader.string(), reader.string(), reader.string()  # cipher, kdf, kdf options
        if reader.uint32() != 1:
            raise ValueError("OpenSSH key files hold exactly one key")
        return reader.string()
    except (ValueError, binascii.Error) as exc:
        raise SigningKeyError(f"{path}: not a valid OpenSSH private key ({exc})") from None


def _check_openssh_type(path: str, blob: bytes) -> None:
    """Refuse the key types that cannot sign in process, before asking for a passphrase."""
    try:
        name = sshwire.key_type(blob)
    except sshwire.WireError as exc:
        raise SigningKeyError(f"{path}: not a valid OpenSSH private key ({exc})") from None
    if name.startswith("sk-"):
        raise SigningKeyError(
            f"{path}: a security-key ({name}) file holds only a handle, the private key is "
            f"on the token: {USE_AGENT}"
        )
    if name not in sshwire.KEY_LABELS:
        raise SigningKeyError(f"{path}: {_unsupported(name)}")


def _unsupported(name: str) -> str:
    if name == "ssh-dss":
        return "DSA keys are not supported (OpenSSH deprecated them): use an ed25519 key"
    return f"{name} keys are not supported: use ed25519, ecdsa or rsa"


@dataclass(frozen=True)
class _FileSigner:
    """A private key in this process: signs without any other program."""

    public_blob: bytes
    description: str
    algorithm: str  #: the signature's algorithm name (rsa-sha2-512 for an RSA key)
    raw_sign: Callable[[bytes], bytes] = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        return sshwire.string(self.algorithm) + sshwire.string(self.raw_sign(data))


def _file_signer(path: str, key: Any) -> Signer:
    """Wrap a cryptography private key: the SSH algorithm name and raw signature per type."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm, raw_sign = "ssh-ed25519", key.sign
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ECDSA_CURVES:
            raise SigningKeyError(f"{path}: ECDSA curve {key.curve.name} is not one SSH uses")
        curve, hash_name = ECDSA_CURVES[key.curve.name]
        algorithm, digest = f"ecdsa-sha2-{curve}", getattr(hashes, hash_name)()

        def raw_sign(data: bytes) -> bytes:  # RFC 5656 3.1.2: mpint r, mpint s
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            return sshwire.mpint(r) + sshwire.mpint(s)

    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SigningKeyError(
                f"{path}: a {key.key_size}-bit RSA key is too small (OpenSSH needs {MIN_RSA_BITS})"
            )
        algorithm = "rsa-sha2-512"  # RFC 8332; never the SHA-1 "ssh-rsa"

        def raw_sign(data: bytes) -> bytes:
            return key.sign(data, padding.PKCS1v15(), hashes.SHA512())

    else:
        name = "ssh-dss" if "DSA" in type(key).__name__ else type(key).__name__
        raise SigningKeyError(f"{path}: {_unsupported(name)}")
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(line.split()[1])
    return _FileSigner(blob, f"{_describe(blob)} from {path}", algorithm, raw_sign)


def _describe(blob: bytes) -> str:
    """``ED25519 key SHA256:...``: the type label and fingerprint ``ssh-keygen -l`` shows."""
    return f"{sshwire.key_label(blob)} key {sshwire.fingerprint(blob)}"


# --- public keys, signed by ssh-agent ----------------------------------------------------


@dataclass(frozen=True)
class _AgentSigner:
    """A key held by ssh-agent: parhash sends the data and gets the signature back."""

    public_blob: bytes
    description: str
    path: str  #: the KEY.pub given, for error lines
    socket: str  #: SSH_AUTH_SOCK when the key was loaded

    def sign(self, data: bytes) -> bytes:
        name = sshwire.key_type(self.public_blob)
        flags = ssh_agent.SSH_AGENT_RSA_SHA2_512 if name == "ssh-rsa" else 0
        try:
            blob = ssh_agent.sign(self.socket, self.public_blob, data, flags)
        except ssh_agent.AgentError as exc:
            raise SigningKeyError(f"{self.path}: {exc}") from None
        _check_agent_signature(self.path, blob, "rsa-sha2-512" if flags else name)
        return blob


def _check_agent_signature(path: str, blob: bytes, expected: str) -> None:
    """The agent's blob must be a signature of the algorithm asked for: an old agent that
    ignores the RSA flag answers with SHA-1 ``ssh-rsa``, which ssh-keygen refuses to verify."""
    reader = sshwire.Reader(blob, "ssh-agent signature")
    try:
        algorithm = reader.text()
        reader.string()
        if algorithm.startswith("sk-"):  # FIDO: flags byte and counter (PROTOCOL.u2f)
            reader.byte(), reader.uint32()
        reader.end()
    except sshwire.WireError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None
    if algorithm != expected:
        raise SigningKeyError(f"{path}: ssh-agent signed with {algorithm}, not {expected}")


def _load_agent_key(path: str, data: bytes) -> Signer:
    """A public key line, found in the agent now (not after the scan)."""
    blob = _public_key_blob(path, data)
    try:
        socket = ssh_agent.socket_path()
        held = ssh_agent.identities(socket)
    except ssh_agent.AgentError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None
    if not held:
        raise SigningKeyError(
            f"{path}: ssh-agent at {socket} holds no keys (locked? ssh-add -X unlocks it; "
            f"ssh-add adds the key)"
        )
    if blob not in {identity.blob for identity in held}:
        raise SigningKeyError(
            f"{path}: {_describe(blob)} is not in ssh-agent at {socket}: ssh-add its private key"
        )
    return _AgentSigner(blob, f"{_describe(blob)} in ssh-agent", path, socket)


def _public_key_blob(path: str, data: bytes) -> bytes:
    """The blob of the first key line (``TYPE BASE64 [comment]``), validated: the type in
    the blob is the type named, and the key itself parses."""
    not_key = f"{path}: not an SSH key (neither a private key file nor a KEY.pub line)"
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise SigningKeyError(not_key) from None
    fields = next((ln.split() for ln in lines if ln.strip() and not ln.startswith("#")), [])
    if len(fields) < 2:
        raise SigningKeyError(not_key)
    try:
        blob = base64.b64decode(fields[1], validate=True)
        name = sshwire.key_type(blob)
    except (binascii.Error, sshwire.WireError):
        raise SigningKeyError(not_key) from None
    if name != fields[0]:
        raise SigningKeyError(f"{path}: the key says {fields[0]} but holds {name}")
    if name.endswith("-cert-v01@openssh.com"):
        raise SigningKeyError(f"{path}: certificates are not supported: give the plain KEY.pub")
    if name not in sshwire.KEY_LABELS:
        raise SigningKeyError(f"{path}: {_unsupported(name)}")
    _validate_public_blob(path, name, blob)
    return blob


def _validate_public_blob(path: str, name: str, blob: bytes) -> None:
    """Parse the key fully: cryptography for the types it knows (it checks the point is on
    the curve), the wire fields for security keys (PROTOCOL.u2f), which it does not load."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        if name.startswith("sk-"):
            reader = sshwire.Reader(blob, "public key")
            fields = 3 if name.startswith("sk-ssh-ed25519") else 4  # type, [curve,] key, app
            for _ in range(fields):
                reader.string()
            reader.end()
        else:
            serialization.load_ssh_public_key(_public_line(name, blob))
    except (ValueError, UnsupportedAlgorithm, sshwire.WireError) as exc:
        raise SigningKeyError(f"{path}: not a valid {name} public key ({_reason(exc)})") from None


def _public_line(name: str, blob: bytes) -> bytes:
    """``TYPE BASE64``: the public key line form cryptography reads."""
    return name.encode() + b" " + base64.b64encode(blob)
