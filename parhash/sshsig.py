"""SSHSIG: the detached signature format of ``ssh-keygen -Y sign`` (OpenSSH's
PROTOCOL.sshsig), made and checked in process, byte-compatible with ssh-keygen both ways.

A signature signs the *hash* of the message, wrapped with a magic, a namespace and the
hash's name, so a signature made for one purpose (git commits: namespace ``git``) can never
pass for another (ours: ``parhash``)::

    signed data = "SSHSIG" string(namespace) string(reserved) string(hash) string(H(msg))
    blob        = "SSHSIG" uint32(1) string(public key) string(namespace)
                  string(reserved) string(hash) string(signature)

and the blob is armored as ``-----BEGIN SSH SIGNATURE-----``, base64 in lines of 70.
ssh-keygen rebuilds the signed data with an *empty* reserved field whatever the blob says,
so we sign with an empty one and refuse a blob whose reserved field is not empty.

Verification supports the key types OpenSSH signs SSHSIG with, without certificates:
Ed25519, ECDSA on nistp256/384/521 and RSA with rsa-sha2-256/512 (never SHA-1
``ssh-rsa`` signatures, which OpenSSH refuses for SSHSIG too), and the FIDO hardware-token
types ``sk-ssh-ed25519@openssh.com`` and ``sk-ecdsa-sha2-nistp256@openssh.com`` (PROTOCOL.u2f:
the token signs sha256(application) || flags || counter || sha256(data)). As ssh-keygen 9.2
does, a FIDO signature is accepted whatever its flags say (user presence, verification):
what a manifest signature proves is possession of the token, and refusing a signature
ssh-keygen accepts would break ``ssh-keygen -Y sign`` interchange.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from parhash.sshwire import Reader, WireError, key_type, string, uint32

#: The namespace of every parhash signature (``ssh-keygen -Y ... -n parhash``).
NAMESPACE = "parhash"

MAGIC = b"SSHSIG"
VERSION = 1
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
#: ssh-keygen wraps the armored base64 at 70 columns; so do we, for byte-identical files.
ARMOR_WIDTH = 70
#: The message hash we sign with: ssh-keygen's default. sha256 is accepted on verification.
HASH = "sha512"
HASHES = ("sha256", "sha512")
#: Read size when hashing a message file: 1 MiB keeps the syscall count negligible
#: (sha512 runs at about 1 GB/s here) without holding much.
CHUNK = 1 << 20

#: ECDSA curves by SSH name: (cryptography curve name, hash of the signed data, RFC 5656).
_CURVES = {
    "nistp256": ("SECP256R1", "SHA256"),
    "nistp384": ("SECP384R1", "SHA384"),
    "nistp521": ("SECP521R1", "SHA512"),
}
_RSA_HASHES = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}


class SignatureError(ValueError):
    """A signature that is malformed or does not verify; the message says which, in a
    phrase that follows the file's name."""


class Signer(Protocol):
    """What can sign (``ssh_keys.load_signer``: a key file or ssh-agent)."""

    public_blob: bytes
    description: str

    def sign(self, data: bytes) -> bytes:
        """The SSH signature blob of ``data``: string(algorithm) string(raw signature)."""
        ...


@dataclass(frozen=True)
class Envelope:
    """A parsed SSHSIG blob."""

    public_key: bytes  #: the signer's public key blob
    namespace: str
    hash_alg: str  #: sha256 or sha512
    signature: bytes  #: string(algorithm) string(raw)
    blob: bytes  #: the whole blob as read (what a trusted comment's signature covers)


def armor(blob: bytes) -> str:
    """The armored text ``ssh-keygen -Y sign`` writes, newline-terminated."""
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + ARMOR_WIDTH] for i in range(0, len(text), ARMOR_WIDTH)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def dearmor(text: str) -> tuple[bytes, str]:
    """The blob of the armored signature ``text`` starts with, and the text after its END
    line. Like ssh-keygen, the BEGIN line must come first."""
    if not text.startswith(BEGIN + "\n"):
        raise SignatureError("is not an SSH signature (no BEGIN SSH SIGNATURE line)")
    body, sep, rest = text[len(BEGIN) + 1 :].partition("\n" + END)
    if not sep:
        raise SignatureError("is truncated (no END SSH SIGNATURE line)")
    if rest and not rest.startswith("\n"):
        raise SignatureError("has text glued to its END SSH SIGNATURE line")
    try:
        blob = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("has invalid base64 in its armor") from None
    return blob, rest[1:]


def parse(blob: bytes) -> Envelope:
    """The fields of an SSHSIG blob; SignatureError for anything malformed."""
    r = Reader(blob, "signature")
    try:
        if r.take(len(MAGIC)) != MAGIC:
            raise SignatureError("is not an SSHSIG signature (bad magic)")
        version = r.uint32()
        if version != VERSION:
            raise SignatureError(f"has unsupported SSHSIG version {version}")
        public_key = r.string()
        namespace = r.text()
        if r.string():
            raise SignatureError("has a non-empty reserved field")
        hash_alg = r.text()
        signature = r.string()
        r.end()
    except WireError as exc:
        raise SignatureError(str(exc).removeprefix("signature ")) from None
    if hash_alg not in HASHES:
        raise SignatureError(f"uses unsupported hash {hash_alg!r}")
    return Envelope(public_key, namespace, hash_alg, signature, blob)


def encode(public_key: bytes, namespace: str, hash_alg: str, signature: bytes) -> bytes:
    """An SSHSIG blob (the inverse of ``parse``)."""
    return (
        MAGIC
        + uint32(VERSION)
        + string(public_key)
        + string(namespace)
        + string(b"")
        + string(hash_alg)
        + string(signature)
    )


def signed_data(namespace: str, hash_alg: str, digest: bytes) -> bytes:
    """What the key actually signs: the wrapped hash of the message."""
    return MAGIC + string(namespace) + string(b"") + string(hash_alg) + string(digest)


def digest_fd(fd: int, hash_alg: str, progress: Callable[[int], None] | None = None) -> bytes:
    """The hash of a whole open file, read with ``pread`` from offset 0 (so a reader that
    shares the descriptor keeps its place)."""
    h = hashlib.new(hash_alg)
    offset = 0
    while True:
        chunk = os.pread(fd, CHUNK, offset)
        if not chunk:
            return h.digest()
        h.update(chunk)
        offset += len(chunk)
        if progress is not None:
            progress(len(chunk))


def sign_digests(signer: Signer, digest: bytes, namespace: str = NAMESPACE) -> bytes:
    """The SSHSIG blob over a message whose ``HASH`` digest is ``digest``."""
    data = signed_data(namespace, HASH, digest)
    return encode(signer.public_blob, namespace, HASH, signer.sign(data))


def sign(message: bytes, signer: Signer, namespace: str = NAMESPACE) -> str:
    """The armored signature of ``message`` (bytes in memory)."""
    return armor(sign_digests(signer, hashlib.new(HASH, message).digest(), namespace))


def check(envelope: Envelope, digest: bytes, namespace: str = NAMESPACE) -> None:
    """SignatureError unless ``envelope`` is a valid signature, in ``namespace``, of the
    message whose ``envelope.hash_alg`` digest is ``digest``."""
    if envelope.namespace != namespace:
        raise SignatureError(
            f"was made for namespace {envelope.namespace!r}, not {namespace!r} "
            f"(ssh-keygen -Y sign -n {namespace})"
        )
    data = signed_data(namespace, envelope.hash_alg, digest)
    verify_blob(envelope.public_key, envelope.signature, data)


def verify_blob(public_key: bytes, signature: bytes, data: bytes) -> None:
    """SignatureError unless ``signature`` (string(alg) string(raw)) is the public key's
    valid signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    try:
        kind = key_type(public_key)
        sig = Reader(signature, "signature")
        algorithm, raw = sig.text(), sig.string()
        verify = _VERIFIERS.get(kind)
        if verify is None:
            raise SignatureError(_unsupported(kind))
        if kind in _FIDO:
            data = _fido_signed(public_key, sig, data)
        sig.end()
        verify(Reader(public_key, "public key"), algorithm, raw, data)
    except WireError as exc:
        raise SignatureError(f"is malformed: {exc}") from None
    except InvalidSignature:
        raise SignatureError("does not match (the file or the signature was changed)") from None


def _unsupported(kind: str) -> str:
    if kind.endswith("-cert-v01@openssh.com"):
        return f"was made with a certificate ({kind}): certificates are not supported"
    return f"was made with an unsupported key type {kind!r}"


def _fido_signed(public_key: bytes, sig: Reader, data: bytes) -> bytes:
    """What a FIDO token signed for ``data``: the signature's flags and counter follow its
    raw part, and the key blob ends with the application (``ssh:``)."""
    flags = sig.byte()
    counter = sig.take(4)
    application = _fido_application(public_key)
    return (
        hashlib.sha256(application).digest()
        + bytes([flags])
        + counter
        + hashlib.sha256(data).digest()
    )


def _fido_application(blob: bytes) -> bytes:
    """The application string that ends a FIDO public key blob."""
    r = Reader(blob, "public key")
    kind = r.text()
    r.string()  # the Ed25519 point, or the curve name of ECDSA
    if kind.startswith("sk-ecdsa-"):
        r.string()  # the ECDSA point
    application = r.string()
    r.end()
    return application


def _ed25519(key: Reader, algorithm: str, raw: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    kind = key.text()
    point = key.string()
    if kind in _FIDO:
        key.string()  # the application, already in ``data`` (``_fido_signed``)
    key.end()
    _same(algorithm, kind)
    if len(point) != 32 or len(raw) != 64:
        raise SignatureError("is malformed: an Ed25519 key is 32 bytes, a signature 64")
    Ed25519PublicKey.from_public_bytes(point).verify(raw, data)


def _ecdsa(key: Reader, algorithm: str, raw: bytes, data: bytes) -> None:
    kind = key.text()
    curve = key.text()
    point = key.string()
    if kind in _FIDO:
        key.string()  # the application, already in ``data`` (``_fido_signed``)
    key.end()
    expected = f"sk-ecdsa-sha2-{curve}@openssh.com" if kind in _FIDO else f"ecdsa-sha2-{curve}"
    if curve not in _CURVES or kind != expected:
        raise SignatureError(f"is malformed: key type {kind} on curve {curve!r}")
    _same(algorithm, kind)
    _ecdsa_verify(curve, point, raw, data)


def _ecdsa_verify(curve: str, point: bytes, raw: bytes, data: bytes) -> None:
    """An ECDSA signature (RFC 5656: mpint r, mpint s) on ``curve``, with its hash."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    curve_name, hash_name = _CURVES[curve]
    r_s = Reader(raw, "ECDSA signature")
    r, s = r_s.mpint(), r_s.mpint()
    r_s.end()
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, curve_name)(), point)
    except ValueError:
        raise SignatureError("is malformed: not a point on the key's curve") from None
    public.verify(encode_dss_signature(r, s), data, ec.ECDSA(getattr(hashes, hash_name)()))


def _rsa(key: Reader, algorithm: str, raw: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key.text()
    e, n = key.mpint(), key.mpint()
    key.end()
    if algorithm not in _RSA_HASHES:
        raise SignatureError(f"uses RSA signature algorithm {algorithm!r} (SHA-1 is refused)")
    try:
        public = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise SignatureError(f"is malformed: {exc}") from None
    if public.key_size < 1024:
        raise SignatureError(f"was made with a {public.key_size}-bit RSA key (too small)")
    hash_alg = getattr(hashes, _RSA_HASHES[algorithm])()
    public.verify(raw, data, padding.PKCS1v15(), hash_alg)


def _same(algorithm: str, expected: str) -> None:
    if algorithm != expected:
        raise SignatureError(f"is malformed: a {algorithm} signature from a {expected} key")


_VERIFIERS = {
    "ssh-ed25519": _ed25519,
    "ecdsa-sha2-nistp256": _ecdsa,
    "ecdsa-sha2-nistp384": _ecdsa,
    "ecdsa-sha2-nistp521": _ecdsa,
    "ssh-rsa": _rsa,
    "sk-ssh-ed25519@openssh.com": _ed25519,
    "sk-ecdsa-sha2-nistp256@openssh.com": _ecdsa,
}
#: The FIDO types: the token signs ``_fido_signed(data)``, and the key ends with its
#: application.
_FIDO = frozenset(kind for kind in _VERIFIERS if kind.startswith("sk-"))
