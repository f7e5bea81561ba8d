"""OpenSSH's ``allowed_signers`` file (ssh-keygen(1), ALLOWED SIGNERS): who may sign.

Each line is ``principals [options] keytype base64 [comment]``. The rules below were read
from OpenSSH's ``sshsig.c`` (``parse_principals_key_and_options``, ``sshsigopt_parse``,
``check_allowed_keys_line``), ``misc.c`` (``strdelimw``, ``opt_dequote``,
``parse_absolute_time``), ``match.c`` (``match_pattern_list``) and ``sshkey.c``
(``sshkey_read``), and each one checked against ssh-keygen 9.2p1 in
``tests/test_allowed_signers.py``:

- Blank lines and lines whose first non-blank character is ``#`` are comments.
- The principals field ends at the first blank; a ``"`` starts a quoted part that may hold
  blanks (the quotes are removed, ``a"b c"`` is ``ab c``). It is a pattern list: ``*`` and
  ``?`` (one byte) wildcards, ``!`` negation (a negated match refuses the line whatever else
  matched), case-sensitive.
- Options come before the key: comma-separated, names case-insensitive, values quoted
  (``\\"`` is a quote inside). ``namespaces="a,b*"`` is a pattern list too;
  ``valid-after``/``valid-before`` take ``YYYYMMDD``, ``YYYYMMDDHHMM`` or
  ``YYYYMMDDHHMMSS``, then ``Z`` or ``UTC`` (any case) for UTC, else local time; both ends
  of the window are inclusive. An unknown option, a repeated one, a trailing comma or an
  empty window is an error (OpenSSH: "bad options").
- Local time is what ssh-keygen computes: ``mktime`` in the zone of ``TZ`` with
  ``tm_isdst = 0`` (OpenSSH clears its ``struct tm``), so in summer time a local timestamp is
  read as *standard* time: ``valid-after="20260701"`` in ``TZ=CET-1CEST,...`` starts at
  23:00 UTC on June 30, not 22:00. We copy that, so both tools agree to the second. The zone
  is the process's (``TZ`` at start-up, or after ``time.tzset()``).
- A ``cert-authority`` line never matches a plain key; parhash does not accept signatures
  made with certificates, so such lines are parsed and then only named in refusals.
- Keys match by value, not by bytes: an RSA line with a non-minimal ``mpint`` (a leading
  zero byte) is the same key for ssh-keygen, so both sides are compared re-encoded.

``ssh-keygen -Y find-principals`` looks only at the key and the validity window: it passes
no namespace (``sshsig_find_principals`` calls ``check_allowed_keys_line`` with
``sig_namespace == NULL``), so a line with ``namespaces="git"`` is "found" for a ``parhash``
signature; it prints the principals of the *first* such line only, one per line. parhash's
rule (issue 13) is stricter on purpose: without ``--identity`` a key is accepted when some
line lists it with the namespace allowed and valid now, and ``Decision.principals`` names
the principals fields of every such line; with an identity, that identity must match such
a line, exactly what ``ssh-keygen -Y verify -I identity -n namespace`` decides.

Where parhash differs from ssh-keygen 9.2, on purpose:

- ssh-keygen logs a malformed line ("invalid key", "bad options") and skips it, even with
  ``-Y verify``. parhash refuses the whole file (``AllowedSignersError``, exit 2): a line
  the operator wrote but the tool ignores is a signer silently missing or a restriction
  silently dropped, and a cron job would never say so. The same goes for a NUL byte
  (ssh-keygen reads C strings and drops the rest of the line), invalid UTF-8, an empty
  file and one with only comments (nobody could ever be accepted).
- An empty line: ssh-keygen 9.2 logs "FILE:N: missing key" for it (it skips only blanks and
  tabs before the principals; https://github.com/wiktor-k/ssh-repro) and then ignores the
  line; parhash ignores it silently, as the man page says and later OpenSSH does (sshsig.c
  1.35 skips CR and LF too), also a line of blanks and CRs (a CRLF file). A CR before the
  principals of a real line is an error: 9.2 would read empty principals there, and parhash
  never accepts a signer that ssh-keygen 9.2 ignores.
- A certificate as the key of a line (``*-cert-v01@openssh.com``) is checked only for its
  type name; it never matches a plain key, in either tool. An ECDSA point must be
  uncompressed and on its curve; OpenSSH's further checks of the point (its order, tiny
  coordinates) are not repeated.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from parhash import sshsig, sshwire
from parhash.exit_codes import FatalError

#: The largest allowed_signers file read. A line is about 100 bytes for Ed25519 and 750 for
#: RSA-4096, so 16 MiB holds over 20,000 RSA-4096 signers, far more than any real team. The
#: whole file is parsed at every run and held in memory: 16 MiB of Ed25519 lines (127,000
#: signers) load in 2.4-2.7 s with a peak RSS of 140 MiB, of RSA-2048 lines in 1.2 s and
#: 95 MiB (``/usr/bin/time python -c "load(...)"``, 3 runs each, on 2 shared cores). A
#: larger file is a wrong path (a log, an image): a clear error, not minutes of parsing.
MAX_FILE_BYTES = 16 * 1024 * 1024

#: ``match_pattern_list`` copies each comma-separated subpattern into ``char sub[1024]``; a
#: longer one makes the whole list match nothing (not an error), so we do the same.
_SUBPATTERN_MAX = 1023

_BLANK = " \t"  # what separates the key type, the base64 and the comment (sshkey_read)
_WHITESPACE = " \t\r\n"  # what ends the principals field (strdelimw)
_B64_SPACE = re.compile(rb"[ \t\n\v\f\r]")  # b64_pton skips isspace() anywhere
#: What b64_pton accepts: whole quanta, exact padding (Python alone also takes "AAAA=").
_B64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: (type name on the line) -> (type name inside the blob). ``rsa-sha2-*`` are signature
#: algorithms that OpenSSH also reads as key types; the ``webauthn-`` name likewise.
_PLAIN_TYPES = {
    "ssh-ed25519": "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com": "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa": "ssh-rsa",
    "rsa-sha2-256": "ssh-rsa",
    "rsa-sha2-512": "ssh-rsa",
    "ssh-dss": "ssh-dss",
}
_CERT_TYPES = {
    f"{name}-cert-v01@openssh.com": f"{blob}-cert-v01@openssh.com"
    for name, blob in _PLAIN_TYPES.items()
    if not name.startswith("webauthn-")
}
#: OpenSSH's RSA bounds: SSH_RSA_MINIMUM_MODULUS_SIZE, and OpenSSL's largest modulus.
_RSA_BITS = (1024, 16384)


class AllowedSignersError(FatalError):
    """One line: 'FILE:LINE: reason' (or 'FILE: reason' for unreadable/empty/binary)."""


class _LineError(ValueError):
    """A malformed line; ``load`` adds the file name and line number."""


@dataclass(frozen=True)
class Entry:
    principals: str  #: the raw principals field (comma-separated patterns, quotes removed)
    key: bytes  #: the public key blob (base64-decoded; its type matches the line's key type)
    namespaces: tuple[str, ...] | None  #: namespaces="..." patterns, None = any namespace
    valid_after: float | None  #: epoch seconds
    valid_before: float | None
    cert_authority: bool  #: never matches a plain key (as in OpenSSH)
    line: int


@dataclass(frozen=True)
class Decision:
    #: who may have signed: the principals fields of the matching lines, or (identity,)
    principals: tuple[str, ...]
    reason: str | None  #: when refused: one clear phrase

    @property
    def accepted(self) -> bool:
        return self.reason is None


class AllowedSigners:
    """A parsed file: its entries, and the rule that decides who signed."""

    def __init__(
        self,
        entries: tuple[Entry, ...],
        canonical: tuple[bytes | None, ...],
        times: dict[int, tuple[str | None, str | None]],
    ) -> None:
        self.entries = entries
        self._canonical = canonical  #: each entry's key re-encoded (None: certificate)
        self._times = times  #: line -> (valid-after text, valid-before text) as written

    def decide(
        self, key: bytes, namespace: str, now: float, identity: str | None = None
    ) -> Decision:
        """Who signed with ``key`` for ``namespace`` at ``now``. Each step keeps the lines
        that pass it (key, identity, namespace, time); a refusal names the step where the
        last lines dropped out, so the reason is the closest miss."""
        fp = sshwire.fingerprint(key)
        lines = self._lines_of(key)
        if isinstance(lines, str):
            return _refused(lines.format(fp=fp))
        if identity is not None:
            named = [e for e in lines if match_pattern_list(identity, e.principals) == 1]
            if not named:
                listed = ", ".join(dict.fromkeys(_shown(e.principals) for e in lines))
                return _refused(f"key {fp} is listed for {listed}, not {_shown(identity)}")
            lines = named
        in_ns = [e for e in lines if _namespace_allowed(e, namespace)]
        if not in_ns:
            first = lines[0]
            allowed = _shown(",".join(first.namespaces or ()))
            return _refused(
                f"key {fp} is listed for {_shown(first.principals)} only with "
                f'namespaces="{allowed}" (not "{_shown(namespace)}")'
            )
        instant = math.floor(now)  # ssh-keygen compares whole seconds (time(NULL))
        valid = [e for e in in_ns if _time_problem(e, instant) is None]
        if not valid:
            return _refused(self._time_reason(in_ns[0], instant))
        if identity is not None:
            return Decision(principals=(identity,), reason=None)
        return Decision(principals=tuple(dict.fromkeys(e.principals for e in valid)), reason=None)

    def _lines_of(self, key: bytes) -> list[Entry] | str:
        """The plain-key lines that list ``key`` (by value), or the refusal (``{fp}`` to
        fill in) when there are none."""
        if _is_certificate(key):
            return (
                "the signature was made with an OpenSSH certificate, which parhash does "
                "not accept (sign with the plain key)"
            )
        wanted = _canonical_or_none(key)
        keyed = [
            e
            for e, c in zip(self.entries, self._canonical, strict=True)
            if wanted is not None and c == wanted
        ]
        lines = [e for e in keyed if not e.cert_authority]
        if lines:
            return lines
        if keyed:
            return "key {fp} is listed only as a cert-authority, which parhash does not support"
        return "key {fp} is not in allowed_signers"

    def _time_reason(self, entry: Entry, instant: int) -> str:
        after, before = self._times[entry.line]
        who = _shown(entry.principals)
        if _time_problem(entry, instant) == "expired":
            return f"key of {who} expired (valid-before {_shown(before)})"
        return f"key of {who} is not yet valid (valid-after {_shown(after)})"


def _refused(reason: str) -> Decision:
    return Decision(principals=(), reason=reason)


def _shown(text: str) -> str:
    """``text`` for a one-line message: control characters (a CR or an escape sequence
    in a quoted principal) as ``\\xNN``, so a reason cannot rewrite the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _namespace_allowed(entry: Entry, namespace: str) -> bool:
    if entry.namespaces is None:
        return True
    return match_pattern_list(namespace, ",".join(entry.namespaces)) == 1


def _time_problem(entry: Entry, instant: int) -> str | None:
    """'expired', 'early' or None (check_allowed_keys_line: both ends inclusive)."""
    if entry.valid_after is not None and instant < entry.valid_after:
        return "early"
    if entry.valid_before is not None and instant > entry.valid_before:
        return "expired"
    return None


# --- patterns (match.c) -------------------------------------------------------------------


def match_pattern_list(string: str, patterns: str) -> int:
    """OpenSSH's ``match_pattern_list(string, patterns, 0)``: 1 if a subpattern matches,
    -1 if a negated one does (whatever else matched), 0 otherwise. Byte-wise on UTF-8, as
    the C code (``?`` is one byte)."""
    subject = string.encode()
    raw = patterns.encode()
    subpatterns = raw.split(b",")
    if not raw or raw.endswith(b","):
        subpatterns.pop()  # the C loop ends at the last comma: no empty subpattern after it
    got_positive = 0
    for sub in subpatterns:
        negated = sub.startswith(b"!")
        body = sub[1:] if negated else sub
        if len(body) >= _SUBPATTERN_MAX:
            return 0
        if _glob(body).fullmatch(subject):
            if negated:
                return -1
            got_positive = 1
    return got_positive


@lru_cache(maxsize=1024)
def _glob(pattern: bytes) -> re.Pattern[bytes]:
    """``match_pattern``: ``*`` any bytes, ``?`` one byte, everything else literal."""
    parts = (
        b".*" if c == b"*" else b"." if c == b"?" else re.escape(c)
        for c in (pattern[i : i + 1] for i in range(len(pattern)))
    )
    return re.compile(b"".join(parts), re.DOTALL)


# --- reading the file ---------------------------------------------------------------------


def load(path: str) -> AllowedSigners:
    """Read and parse the whole file once; AllowedSignersError on anything malformed."""
    data = _read(path)
    entries: list[Entry] = []
    canonical: list[bytes | None] = []
    times: dict[int, tuple[str | None, str | None]] = {}
    for number, line in _lines(path, data):
        try:
            parsed = _parse_line(line, number)
        except (_LineError, sshwire.WireError) as exc:
            raise AllowedSignersError(f"{path}:{number}: {exc}") from None
        if parsed is not None:
            entry, canon, after, before = parsed
            entries.append(entry)
            canonical.append(canon)
            times[number] = (after, before)
    if not entries:
        raise AllowedSignersError(f"{path}: no signers listed (only comments and blank lines)")
    return AllowedSigners(tuple(entries), tuple(canonical), times)


def _read(path: str) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES; a FIFO or device is refused before any
    read (O_NONBLOCK: opening a FIFO must not wait for a writer)."""
    from parhash.fsutil import read_regular

    try:
        data, _ = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise AllowedSignersError(f"{path}: {exc.strerror}") from None
    size = len(data)
    if size > MAX_FILE_BYTES:
        raise AllowedSignersError(
            f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not an "
            "allowed_signers file"
        )
    if size == 0:
        raise AllowedSignersError(f"{path}: empty file (no signers)")
    return data


def _lines(path: str, data: bytes) -> Iterator[tuple[int, str]]:
    """(number, text) per line, the newline kept (as getline does: it decides some error
    messages); NUL bytes and invalid UTF-8 are errors naming the line."""
    raw_lines = data.split(b"\n")
    last = len(raw_lines) - 1
    for index, raw in enumerate(raw_lines):
        if index == last and not raw:
            return
        number = index + 1
        if b"\0" in raw:
            raise AllowedSignersError(
                f"{path}:{number}: binary data (a NUL byte): not an allowed_signers file"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AllowedSignersError(
                f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1})"
            ) from None
        yield number, text if index == last else text + "\n"


# --- one line (sshsig.c parse_principals_key_and_options) ---------------------------------


def _parse_line(
    line: str, number: int
) -> tuple[Entry, bytes | None, str | None, str | None] | None:
    """(Entry, canonical key, valid-after text, valid-before text), or None for a comment
    or blank line."""
    cp = line.lstrip(" \t\n\r")
    if not cp or cp.startswith("#"):
        return None
    if "\r" in line[: len(line) - len(cp)]:
        # 9.2 skips only blanks and tabs here: its principals field would be empty
        raise _LineError("a carriage return before the principals")
    principals, rest = _principals_field(cp)
    _, blob, canon, opts = _key_and_options(rest)
    options = _options(opts)
    entry = Entry(
        principals=principals,
        key=blob,
        namespaces=None if options.namespaces is None else tuple(options.namespaces.split(",")),
        valid_after=options.valid_after,
        valid_before=options.valid_before,
        cert_authority=options.cert_authority,
        line=number,
    )
    return entry, canon, options.after_text, options.before_text


def _principals_field(cp: str) -> tuple[str, str]:
    """``strdelimw``: the principals token (a quoted part may hold blanks, its quotes are
    removed) and the rest of the line after the blanks that follow it."""
    m = re.search(r'[ \t\r\n"]', cp)
    if m is None:
        raise _LineError("invalid line: only a principals field, no key")
    i = m.start()
    if cp[i] != '"':
        return cp[:i], cp[i + 1 :].lstrip(_WHITESPACE)
    inside = cp[i + 1 :]
    end = inside.find('"')
    if end < 0:
        raise _LineError("invalid line: the principals' quote is never closed")
    return cp[:i] + inside[:end], inside[end + 1 :].lstrip(_WHITESPACE)


def _key_and_options(cp: str) -> tuple[str, bytes, bytes | None, str]:
    """The key (type, blob, canonical form) and the options text before it, in OpenSSH's
    order: first try the field as a key; if it is none, it is the options, and the key
    follows them."""
    try:
        return (*_read_key(cp), "")
    except _NotAKey as first:
        if first.known_type:
            raise _LineError(str(first)) from None
    end = _past_options(cp)
    if end >= len(cp) or not cp[end:].strip(" \t\r\n"):
        raise _LineError("missing key")
    opts = cp[:end]
    try:
        return (*_read_key(cp[end + 1 :].lstrip(_BLANK)), opts)
    except _NotAKey as second:
        if second.known_type:
            raise _LineError(str(second)) from None
        try:
            _options(opts)
        except _LineError as exc:
            raise _LineError(f"{opts!r} is neither a key type nor valid options ({exc})") from None
        raise _LineError(f"invalid key: {second}") from None


def _past_options(cp: str) -> int:
    """``sshkey_advance_past_options``: the index of the first blank outside quotes."""
    quoted = False
    i = 0
    while i < len(cp) and (quoted or cp[i] not in _BLANK):
        if cp[i] == "\\" and cp[i + 1 : i + 2] == '"':
            i += 1
        elif cp[i] == '"':
            quoted = not quoted
        i += 1
    if quoted:
        raise _LineError("invalid options: a quote is never closed")
    return i


# --- the key (sshkey.c sshkey_read, sshkey_from_blob) -------------------------------------


class _NotAKey(ValueError):
    """The field is not a key; ``known_type`` says it began with a key type name (then it
    is a broken key, not options)."""

    def __init__(self, reason: str, known_type: bool) -> None:
        super().__init__(reason)
        self.known_type = known_type


def _read_key(cp: str) -> tuple[str, bytes, bytes | None]:
    """(line type, blob, canonical blob or None for a certificate) of ``type base64``."""
    m = re.search(r"[ \t]", cp)
    name = cp[: m.start()] if m else cp.rstrip("\r\n")
    known = name in _PLAIN_TYPES or name in _CERT_TYPES
    if not known:
        raise _NotAKey(f"unknown key type {name!r}", known_type=False)
    rest = cp[m.end() :].lstrip(_BLANK) if m else ""
    text = re.match(r"[^ \t]*", rest).group().encode()
    if not text.strip():
        raise _NotAKey(f"{name} key without its base64 data", known_type=True)
    blob = _b64decode(text)
    if blob is None:
        raise _NotAKey(f"invalid {name} key: bad base64", known_type=True)
    try:
        return name, blob, _check_blob(name, blob)
    except (ValueError, sshwire.WireError) as exc:
        raise _NotAKey(f"invalid {name} key: {exc}", known_type=True) from None


def _b64decode(text: bytes) -> bytes | None:
    """OpenBSD's ``b64_pton`` as ``sshkey_read`` uses it: blanks skipped, exact padding, and
    the bits after the last byte must be zero ("AB==" is refused, Python would give 0x00)."""
    clean = _B64_SPACE.sub(b"", text)
    if not _B64.fullmatch(clean):
        return None
    pad = len(clean) - len(clean.rstrip(b"="))
    if pad and _B64_ALPHABET.index(clean[-pad - 1 : -pad]) & (0b1111 if pad == 2 else 0b11):
        return None
    try:
        return base64.b64decode(clean, validate=True)
    except binascii.Error:
        return None


def _check_blob(name: str, blob: bytes) -> bytes | None:
    """The canonical form of the key a line names (ValueError when the blob is not such a
    key); None for a certificate, which is checked only for its type name."""
    inside = sshwire.key_type(blob)
    expected = _PLAIN_TYPES.get(name) or _CERT_TYPES[name]
    if inside != expected:
        raise ValueError(f"the line says {name}, the key is {inside}")
    if name in _CERT_TYPES:
        return None
    return canonical_key(blob)


def _is_certificate(blob: bytes) -> bool:
    try:
        return sshwire.key_type(blob).endswith("-cert-v01@openssh.com")
    except sshwire.WireError:
        return False


def _canonical_or_none(blob: bytes) -> bytes | None:
    try:
        return canonical_key(blob)
    except (ValueError, sshwire.WireError):
        return None


def canonical_key(blob: bytes) -> bytes:
    """The public key ``blob`` re-encoded minimally (ValueError if it is not a valid plain
    key of a supported type): two blobs are the same key when these are equal, as
    ``sshkey_equal`` decides."""
    reader = sshwire.Reader(blob, "public key")
    name = reader.text()
    parse = _BLOB_PARSERS.get(name)
    if parse is None:
        raise ValueError(f"unsupported key type {name!r}")
    fields = parse(reader, name)
    reader.end()
    return sshwire.string(name) + b"".join(fields)


def _ed25519(reader: sshwire.Reader, name: str) -> list[bytes]:
    public = reader.string()
    if len(public) != 32:
        raise ValueError(f"an Ed25519 key is 32 bytes, not {len(public)}")
    fields = [sshwire.string(public)]
    if name.startswith("sk-"):
        fields.append(_application(reader))
    return fields


def _ecdsa(reader: sshwire.Reader, name: str) -> list[bytes]:
    curve = reader.text()
    expected = name.split("@")[0].rsplit("-", 1)[1]
    if curve != expected:
        raise ValueError(f"curve {curve} in a {name} key")
    point = reader.string()
    _check_point(curve, point)
    fields = [sshwire.string(curve), sshwire.string(point)]
    if name.startswith("sk-"):
        fields.append(_application(reader))
    return fields


def _check_point(curve: str, point: bytes) -> None:
    """The point must be uncompressed (OpenSSH reads no other form) and on the curve."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if not point.startswith(b"\x04"):
        raise ValueError("the ECDSA point is not in uncompressed form")
    try:
        curve_name = sshsig._CURVES[curve][0]  # the verifier's table of curves
        ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, curve_name)(), point)
    except ValueError:
        raise ValueError("the ECDSA point is not on the curve") from None


def _application(reader: sshwire.Reader) -> bytes:
    """A security key's application string (a C string: no NUL inside)."""
    application = reader.string()
    if b"\0" in application:
        raise ValueError("the security key application holds a NUL byte")
    return sshwire.string(application)


def _rsa(reader: sshwire.Reader, name: str) -> list[bytes]:
    e, n = reader.mpint(), reader.mpint()
    low, high = _RSA_BITS
    if not low <= n.bit_length() <= high:
        raise ValueError(f"an RSA modulus of {n.bit_length()} bits (OpenSSH reads {low} to {high})")
    return [sshwire.mpint(e), sshwire.mpint(n)]


def _dss(reader: sshwire.Reader, name: str) -> list[bytes]:
    return [sshwire.mpint(reader.mpint()) for _ in range(4)]


_BLOB_PARSERS = {
    "ssh-ed25519": _ed25519,
    "sk-ssh-ed25519@openssh.com": _ed25519,
    "ecdsa-sha2-nistp256": _ecdsa,
    "ecdsa-sha2-nistp384": _ecdsa,
    "ecdsa-sha2-nistp521": _ecdsa,
    "sk-ecdsa-sha2-nistp256@openssh.com": _ecdsa,
    "ssh-rsa": _rsa,
    "ssh-dss": _dss,
}


# --- options (sshsig.c sshsigopt_parse) ---------------------------------------------------


@dataclass
class _Options:
    cert_authority: bool = False
    namespaces: str | None = None
    valid_after: float | None = None
    valid_before: float | None = None
    after_text: str | None = None
    before_text: str | None = None


def _options(opts: str) -> _Options:
    """Parse ``opt[,opt...]``; _LineError names the first bad option."""
    result = _Options()
    i = 0
    while i < len(opts):
        i = _one_option(opts, i, result)
        if i >= len(opts):
            break
        if opts[i] != ",":
            word = re.match(r"[^,=]*", opts[i:]).group()
            raise _LineError(f"unknown option {word!r}")
        i += 1
        if i >= len(opts):
            raise _LineError("options end with a comma")
    if (
        result.valid_after is not None
        and result.valid_before is not None
        and result.valid_before <= result.valid_after
    ):
        raise _LineError('"valid-before" is not after "valid-after"')
    return result


def _one_option(opts: str, i: int, result: _Options) -> int:
    """Parse the option at ``i`` into ``result``; the index after it (unchanged when no
    option starts there: the caller then reports it unless it is an empty one, which
    OpenSSH skips)."""
    lower = opts[i:].translate(_ASCII_LOWER)
    if lower.startswith("cert-authority"):
        result.cert_authority = True
        return i + len("cert-authority")
    if lower.startswith("namespaces="):
        if result.namespaces is not None:
            raise _LineError('more than one "namespaces" option')
        result.namespaces, i = _dequote(opts, i + len("namespaces="), "namespaces")
        return i
    for option in ("valid-after", "valid-before"):
        if lower.startswith(option + "="):
            attr = option.replace("-", "_")
            if getattr(result, attr) is not None:
                raise _LineError(f'more than one "{option}" option')
            text, i = _dequote(opts, i + len(option) + 1, option)
            setattr(result, attr, float(parse_time(text, option)))
            setattr(result, attr.replace("valid_", "") + "_text", text)
            return i
    return i


def _dequote(opts: str, i: int, option: str) -> tuple[str, int]:
    """``opt_dequote``: a double-quoted value, ``\\"`` a quote inside; (value, index after
    the closing quote)."""
    if opts[i : i + 1] != '"':
        raise _LineError(f"{option}= needs a double-quoted value")
    i += 1
    out = []
    while i < len(opts) and opts[i] != '"':
        if opts[i] == "\\" and opts[i + 1 : i + 2] == '"':
            i += 1
        out.append(opts[i])
        i += 1
    if i >= len(opts):
        raise _LineError(f"the quote of {option}= is never closed")
    return "".join(out), i + 1


# --- timestamps (misc.c parse_absolute_time) ----------------------------------------------

#: strptime's ranges for %Y %m %d %H %M %S (glibc); day 31 of a short month is accepted and
#: rolls over, as mktime does it.
_FIELD_RANGES = ((0, 9999), (1, 12), (1, 31), (0, 23), (0, 59), (0, 61))
_LAYOUTS = {8: (4, 2, 2), 12: (4, 2, 2, 2, 2), 14: (4, 2, 2, 2, 2, 2)}


def parse_time(text: str, option: str = "time") -> int:
    """Epoch seconds of ``YYYYMMDD[HHMM[SS]]`` with an optional ``Z``/``UTC`` (UTC), else
    local time as ssh-keygen computes it (mktime with tm_isdst = 0); _LineError otherwise,
    also for times at or before the epoch (OpenSSH reads 0 as "no limit")."""
    body, utc = text, False
    if len(body) > 1 and body[-1] in "zZ":
        body, utc = body[:-1], True
    elif len(body) > 3 and body[-3:].translate(_ASCII_LOWER) == "utc":
        body, utc = body[:-3], True
    widths = _LAYOUTS.get(len(body))
    if widths is None:
        raise _LineError(f'invalid "{option}" time {text!r}: YYYYMMDD[HHMM[SS]][Z]')
    values, pos = [], 0
    for width, (low, high) in zip(widths, _FIELD_RANGES, strict=False):
        digits = body[pos : pos + width].lstrip(" \t\n\v\f\r")  # strptime skips blanks
        pos += width
        if not digits or not digits.isascii() or not digits.isdigit():
            raise _LineError(f'invalid "{option}" time {text!r}')
        if not low <= int(digits) <= high:
            raise _LineError(f'invalid "{option}" time {text!r}: field out of range')
        values.append(int(digits))
    values += [0] * (6 - len(values))
    seconds = _epoch(values, utc)
    if seconds is None or seconds <= 0:
        raise _LineError(f'invalid "{option}" time {text!r}: not after 1970')
    return seconds


def _epoch(values: list[int], utc: bool) -> int | None:
    """timegm or mktime (tm_isdst = 0); None where C would fail or go negative (year 0)."""
    try:
        if utc:
            return calendar.timegm(tuple(values))
        return int(time.mktime((*values, 0, 1, 0)))
    except (OverflowError, ValueError):
        return None
