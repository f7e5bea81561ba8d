"""A minimal ssh-agent client (draft-miller-ssh-agent): list the keys, ask for a signature.

Signing through the agent keeps the private key in the agent (or on a hardware token behind
it): parhash never sees it, which is the point of ``--sign KEY.pub``. Only the two requests
parhash needs are spoken; each opens its own connection, so an agent that was restarted during
an hour-long scan is found again (or reported) when the signature is made.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from parhash.sshwire import Reader, WireError, string, uint32

SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENT_IDENTITIES_ANSWER = 12
SSH_AGENTC_SIGN_REQUEST = 13
SSH_AGENT_SIGN_RESPONSE = 14
SSH_AGENT_FAILURE = 5
#: The other failure codes OpenSSH's own client accepts (``agent_failed`` in authfd.c):
#: SSH2_AGENT_FAILURE and SSH_COM_AGENT2_FAILURE from older agents, and
#: SSH_AGENT_EXTENSION_FAILURE.
FAILURE_CODES = frozenset({SSH_AGENT_FAILURE, 28, 30, 102})
#: SIGN_REQUEST flag: sign an RSA key with rsa-sha2-512 (not the SHA-1 ``ssh-rsa``).
SSH_AGENT_RSA_SHA2_512 = 4

#: The largest message accepted, as OpenSSH's own client (``MAX_AGENT_REPLY_LEN`` in
#: authfd.c, 256 KiB): an identities answer with hundreds of RSA keys fits; a peer that
#: announces more is not an agent, and is not given the memory.
MAX_MESSAGE = 256 * 1024

#: Seconds one request may take, end to end. ssh-keygen waits forever; parhash is run from
#: cron, where a hung agent would hang the job without a word. The agent can legitimately
#: take long: a FIDO token waits for a touch (YubiKeys give up after about 15-30 s) and a key
#: added with ``ssh-add -c`` waits for a person to confirm in ssh-askpass. Two minutes is
#: long enough for a person to notice either, short enough that a stuck agent ends the run
#: with a line instead of never. Tests patch it small.
AGENT_TIMEOUT = 120.0


class AgentError(Exception):
    """The agent could not be used: one line, without the key path (the caller adds it)."""


@dataclass(frozen=True)
class Identity:
    """One key the agent holds: its public key blob and the comment ``ssh-add`` gave it."""

    blob: bytes
    comment: str


def socket_path() -> str:
    """``SSH_AUTH_SOCK``, or AgentError when it is unset (no agent in this session)."""
    path = os.environ.get("SSH_AUTH_SOCK", "")
    if not path:
        raise AgentError("SSH_AUTH_SOCK is not set: start ssh-agent and ssh-add the key")
    return path


def identities(path: str) -> list[Identity]:
    """The keys the agent at ``path`` offers (a locked OpenSSH agent offers none)."""
    code, reader = _request(path, bytes([SSH_AGENTC_REQUEST_IDENTITIES]))
    if code != SSH_AGENT_IDENTITIES_ANSWER:
        raise AgentError(f"ssh-agent answered the key list with message {code}")
    try:
        found = [
            Identity(reader.string(), reader.string().decode("utf-8", "replace"))
            for _ in range(reader.uint32())
        ]
        reader.end()
    except WireError as exc:
        raise AgentError(f"ssh-agent sent a malformed key list: {exc}") from None
    return found


def sign(path: str, key_blob: bytes, data: bytes, flags: int = 0) -> bytes:
    """The signature blob the agent makes of ``data`` with ``key_blob``."""
    message = bytes([SSH_AGENTC_SIGN_REQUEST]) + string(key_blob) + string(data) + uint32(flags)
    code, reader = _request(path, message)
    if code in FAILURE_CODES:
        raise AgentError(
            "ssh-agent refused to sign (locked? confirmation denied? token not touched?)"
        )
    if code != SSH_AGENT_SIGN_RESPONSE:
        raise AgentError(f"ssh-agent answered the signature request with message {code}")
    try:
        blob = reader.string()
        reader.end()
    except WireError as exc:
        raise AgentError(f"ssh-agent sent a malformed signature: {exc}") from None
    return blob


def _request(path: str, message: bytes) -> tuple[int, Reader]:
    """Send one message, return the reply's type byte and a reader over the rest."""
    if len(message) + 4 > MAX_MESSAGE:
        raise AgentError(f"a {len(message)}-byte request is more than ssh-agent accepts")
    deadline = time.monotonic() + AGENT_TIMEOUT
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            _connect(sock, path, deadline)
            _sendall(sock, uint32(len(message)) + message, deadline)
            length = Reader(_recv_exactly(sock, 4, deadline), "ssh-agent reply").uint32()
            if not 1 <= length <= MAX_MESSAGE:
                raise AgentError(f"ssh-agent announced a {length}-byte reply: not an agent")
            reply = _recv_exactly(sock, length, deadline)
    except TimeoutError:  # socket.timeout
        raise AgentError(f"ssh-agent at {path} did not answer within {AGENT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise AgentError(f"ssh-agent at {path}: {exc.strerror or exc}") from None
    return reply[0], Reader(reply[1:], "ssh-agent reply")


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    """Connect, naming the usual causes: no socket (agent gone) or nobody listening."""
    sock.settimeout(_remaining(deadline))
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise AgentError(f"ssh-agent is not running: {path} does not exist") from None
    except ConnectionRefusedError:
        raise AgentError(f"ssh-agent is not running: nothing listens on {path}") from None


def _sendall(sock: socket.socket, data: bytes, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))
    sock.sendall(data)


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    """``n`` bytes, within the deadline of the whole request (a peer that trickles one byte
    at a time does not get a fresh timeout per byte)."""
    chunks = bytearray()
    while len(chunks) < n:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(min(n - len(chunks), 65536))
        if not chunk:
            raise AgentError("ssh-agent closed the connection without an answer")
        chunks += chunk
    return bytes(chunks)


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; raises socket.timeout when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left
