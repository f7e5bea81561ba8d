"""The SSH wire encoding (RFC 4251 section 5) that SSHSIG, public keys and the agent protocol
share: ``uint32`` big-endian lengths in front of byte strings, and ``mpint`` integers.

One small reader and three writers, so that each format module (``sshsig``,
``ssh_keys``, ``ssh_agent``, ``allowed_signers``) parses with the same bounds checks: a
length that runs past the end of its buffer is a ``WireError``, never a short slice taken
as the whole field.
"""

from __future__ import annotations

import base64
import hashlib
import struct


class WireError(ValueError):
    """Bytes that are not valid SSH wire encoding (truncated, a length past the end)."""


def uint32(value: int) -> bytes:
    """``uint32``: 4 bytes, big-endian."""
    return struct.pack(">I", value)


def string(data: bytes | str) -> bytes:
    """``string``: a uint32 length, then the bytes (str is encoded as UTF-8)."""
    raw = data.encode() if isinstance(data, str) else data
    return uint32(len(raw)) + raw


def mpint(value: int) -> bytes:
    """``mpint``: a non-negative integer, big-endian, two's complement, minimal length (a
    leading zero byte when the top bit is set)."""
    if value < 0:
        raise ValueError("negative mpint")
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return string(raw)


class Reader:
    """Reads wire fields from ``data`` in order; every read checks the bounds."""

    def __init__(self, data: bytes, what: str = "data") -> None:
        self.data = data
        self.offset = 0
        self.what = what  #: named in errors: "signature", "public key"

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes, or WireError if fewer are left."""
        end = self.offset + n
        if n < 0 or end > len(self.data):
            raise WireError(f"{self.what} is truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        """A string that must be ASCII (names, namespaces, algorithms)."""
        raw = self.string()
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise WireError(f"{self.what} has a non-ASCII name") from None

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise WireError(f"{self.what} has a negative integer")
        return int.from_bytes(raw, "big")

    def byte(self) -> int:
        return self.take(1)[0]

    @property
    def done(self) -> bool:
        return self.offset == len(self.data)

    def end(self) -> None:
        """WireError if bytes are left over: a field must not hide trailing data."""
        if not self.done:
            raise WireError(f"{self.what} has {len(self.data) - self.offset} trailing bytes")


#: The label ``ssh-keygen -l`` prints for each key type, used in descriptions.
KEY_LABELS = {
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "ssh-rsa": "RSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}


def key_label(blob: bytes) -> str:
    """``ED25519``, ``ECDSA-SK``...: the key's type as ``ssh-keygen -l`` names it."""
    kind = key_type(blob)
    return KEY_LABELS.get(kind, kind)


def key_type(blob: bytes) -> str:
    """The type name a public key blob starts with (``ssh-ed25519``)."""
    return Reader(blob, "public key").text()


def fingerprint(blob: bytes) -> str:
    """``SHA256:...``, the fingerprint ``ssh-keygen -l`` prints (base64 without padding)."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
