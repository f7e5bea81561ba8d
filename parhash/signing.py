"""Signed manifests: the ``FILE.sig`` parhash writes and the policy that accepts one.

``FILE.sig`` holds, in this order:

1. the SSHSIG signature of FILE (namespace ``parhash``), exactly what ``ssh-keygen -Y
   sign -n parhash FILE`` writes, so ``ssh-keygen -Y verify ... -s FILE.sig < FILE``
   checks it (ssh-keygen reads the first armored block and ignores what follows);
2. one line ``parhash-trusted-comment: {json}``: when the manifest was made, its roots,
   entries, format and algorithms (``ManifestFacts``);
3. a second SSHSIG signature, by the same key in namespace ``parhash-trusted-comment``,
   over a fixed prefix, the first signature's blob and that line: the comment is signed
   and bound to this file's signature, as minisign's trusted comment is. SSHSIG itself
   carries no time, so without this an old signed manifest could be replayed forever
   (``--max-manifest-age`` reads the comment).

A signature ``ssh-keygen`` made has no comment: it verifies, and ``--max-manifest-age``
then falls back to the time a json/jsonl manifest's (signed) header records.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parhash import sshsig
from parhash.commands.outputs import signature_path
from parhash.exit_codes import ExitCode, FatalError
from parhash.fsutil import read_regular

if TYPE_CHECKING:
    from parhash.allowed_signers import AllowedSigners
    from parhash.sshsig import Signer

COMMENT_PREFIX = "parhash-trusted-comment: "
#: What the comment's signature signs before the first signature and the comment line, so
#: it can never be taken for a manifest's signature (no manifest starts with it).
COMMENT_DOMAIN = b"parhash trusted comment v1\0"
#: The comment's signature is made in its own namespace too (the hostile review's point):
#: even a file whose bytes were exactly prefix + blob + line would not pass for a file
#: signed in namespace ``parhash``.
COMMENT_NAMESPACE = "parhash-trusted-comment"
#: A signature file is a few kB (RSA 16384 with many roots in the comment); more is not one.
MAX_SIGNATURE_FILE = 1 << 20
#: A manifest "created" up to this far in the future is clock skew between hosts; later,
#: ``--max-manifest-age`` refuses it: a future time would keep it young forever.
FUTURE_SLACK_S = 300


class SignatureRefused(FatalError):
    """The input's signature was not accepted: one line, exit 3 (``BAD_SIGNATURE``)."""

    exit_code = ExitCode.BAD_SIGNATURE


def refuse_unkept_signature(path: str) -> None:
    """FatalError unless ``path.sig`` is absent or a plain regular file other than
    ``path``, checked before anything is hashed or signed. An output that is not a
    regular file is written in place: a FIFO would block the write until a reader comes
    (forever, from cron), and /dev/null would swallow the signature while parhash says
    "signed". A ``.sig`` that is ``path`` itself (a symlink either way, a hard link) would
    replace the manifest just written with its own signature. And unlike ``-o``, nobody
    named the ``.sig``: a symlink or a second hard link there is not followed (whoever can
    write the directory could point a root ``scan --sign`` at /etc/passwd)."""
    sig = signature_path(path)
    if os.path.realpath(sig) == os.path.realpath(path):
        raise FatalError(f"cannot write {sig}: it is {path} itself (a symlink)")
    try:
        st = os.lstat(sig)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FatalError(f"cannot write {sig}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise FatalError(f"cannot write {sig}: a symbolic link (parhash writes its .sig itself)")
    if not stat.S_ISREG(st.st_mode):
        raise FatalError(f"cannot write {sig}: not a regular file, it would not keep the signature")
    with contextlib.suppress(OSError):
        if os.path.samefile(sig, path):
            raise FatalError(f"cannot write {sig}: it is {path} itself (a hard link)")
    if st.st_nlink > 1:
        raise FatalError(f"cannot write {sig}: it has other hard links, which would change too")


@dataclass(frozen=True)
class ManifestFacts:
    """What the trusted comment says about the signed file."""

    created: float  #: when the manifest was taken (epoch seconds)
    signed: float  #: when it was signed
    format: str | None = None  #: sums, jsonl, json, csv, hashdeep; None: not a manifest
    roots: tuple[str, ...] = ()
    entries: int | None = None
    algorithms: tuple[str, ...] = ()

    def line(self) -> str:
        """The comment line, newline-terminated (keys sorted: one spelling per content)."""
        body = {
            "created": iso(self.created),
            "signed": iso(self.signed),
            "format": self.format,
            "roots": list(self.roots),
            "entries": self.entries,
            "algorithms": list(self.algorithms),
        }
        text = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        return COMMENT_PREFIX + text + "\n"

    @classmethod
    def from_line(cls, line: str) -> ManifestFacts:
        body = json.loads(line[len(COMMENT_PREFIX) :])
        return cls(
            created=parse_iso(body["created"]),
            signed=parse_iso(body["signed"]),
            format=body.get("format"),
            roots=tuple(body.get("roots") or ()),
            entries=body.get("entries"),
            algorithms=tuple(body.get("algorithms") or ()),
        )


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_iso(text: str) -> float:
    """Seconds of an ISO-8601 UTC time (``2026-12-01T17:00:00Z``, or with an offset)."""
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- signing ---------------------------------------------------------------------------------


def signature_text(fd: int, signer: Signer, facts: ManifestFacts, name: str) -> str:
    """The whole ``.sig`` content for the file open at ``fd``. FatalError, before the key
    is asked, for a comment so long (thousands of long roots) that ``verify`` would refuse
    the ``.sig`` as too large: never write a signature parhash itself will not read."""
    import hashlib

    line = facts.line()
    if len(line) > MAX_SIGNATURE_FILE // 2:  # the two armored blocks are a few kB at most
        raise FatalError(
            f"cannot sign {name}: the signature would be larger than verification reads "
            f"(1 MiB): its comment lists {len(facts.roots)} roots in {len(line)} bytes; "
            "sign a manifest of fewer roots"
        )
    blob = sshsig.sign_digests(signer, sshsig.digest_fd(fd, sshsig.HASH))
    message = COMMENT_DOMAIN + blob + line.encode("ascii")
    digest = hashlib.new(sshsig.HASH, message).digest()
    comment = sshsig.sign_digests(signer, digest, COMMENT_NAMESPACE)
    return sshsig.armor(blob) + line + sshsig.armor(comment)


def describe(fd: int, name: str, created: float | None, algo: str | None = None) -> ManifestFacts:
    """The facts of the manifest open at ``fd``, read from the file itself (so the comment
    cannot disagree with what is signed): format, roots and entry count as ``audit`` reads
    them; ``created`` from the header, else ``created``, else the file's mtime. A file that
    is not a manifest parhash reads is still signed, with only the times."""
    from parhash.manifest import PlainRows, algorithm_from_name, iter_entries, read_info

    now = time.time()
    mtime = os.fstat(fd).st_mtime
    fallback = created if created is not None else mtime
    try:
        info = read_info(_reopen(fd), algo or algorithm_from_name(name))
        entries = 0
        for item in iter_entries(info, plain=True):
            entries += len(item.rows) if isinstance(item, PlainRows) else 1
    except (FatalError, OSError, ValueError):  # not a manifest (ManifestError and others)
        return ManifestFacts(created=fallback, signed=now)
    when = parse_iso(info.started) if info.started else fallback
    algos = tuple(info.algos or [info.algo])
    return ManifestFacts(when, now, info.format, tuple(info.roots), entries, algos)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    """``--allowed-signers`` and what goes with it, parsed once."""

    allowed_signers: str
    identity: str | None = None  #: ``--identity``: this principal must have signed
    max_age: float | None = None  #: ``--max-manifest-age`` in seconds


@dataclass
class Verified:
    """An accepted signature, and the open file it was checked against."""

    path: str
    principals: tuple[str, ...]
    key: bytes  #: the signer's public key blob
    facts: ManifestFacts | None  #: None: no trusted comment (ssh-keygen made the signature)
    created: float | None  #: the manifest's signed creation time, if it has one
    st: os.stat_result = field(repr=False)
    fd: int = field(repr=False, default=-1)

    def describe(self) -> str:
        """``good signature by ops@example (ED25519 SHA256:...), created ...``."""
        from parhash.sshwire import fingerprint, key_label

        kind = key_label(self.key)
        text = f"good signature by {', '.join(self.principals)} ({kind} {fingerprint(self.key)})"
        if self.created is not None:
            text += f", created {iso(self.created)}"
        facts = self.facts
        if facts is not None and facts.entries is not None:
            text += f", {facts.entries} entries of {', '.join(facts.roots) or '(no root)'}"
        return text

    def check_unchanged(self, opened: int | None = None) -> None:
        """SignatureRefused if the file changed since it was verified, or if ``opened`` (a
        descriptor a reader opened by name afterwards) is another file."""
        seen = [os.fstat(self.fd)]
        if opened is not None:
            seen.append(os.fstat(opened))
        try:
            seen.append(os.stat(self.path))
        except OSError:
            seen.append(None)  # type: ignore[arg-type]
        if any(st is None or _identity(st) != _identity(self.st) for st in seen):
            raise SignatureRefused(f"{self.path}: changed after its signature was checked")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verify_file(
    path: str, options: VerifyOptions, signers: AllowedSigners | None = None
) -> Verified:
    """Accept ``path``'s signature (``path.sig``) under ``options`` or raise
    SignatureRefused with the reason. The file stays open in the result (``check_unchanged``
    tells a later reader it reads what was verified)."""
    from parhash.allowed_signers import load

    if signers is None:
        signers = load(options.allowed_signers)
    envelope, comment = _read_signature(path)
    now = time.time()
    decision = signers.decide(envelope.public_key, sshsig.NAMESPACE, now, options.identity)
    if not decision.accepted:
        raise SignatureRefused(f"{signature_path(path)}: refused: {decision.reason}")
    fd, st = open_input(path)
    try:
        _check(path, envelope, sshsig.digest_fd(fd, envelope.hash_alg))
        facts = _comment_facts(path, envelope, comment)
        created = facts.created if facts is not None else _header_time(fd, path)
        if options.max_age is not None:
            _check_age(path, created, options.max_age, now)
    except BaseException:
        os.close(fd)
        raise
    return Verified(path, decision.principals, envelope.public_key, facts, created, st, fd)


def verify_all(paths: Sequence[str], options: VerifyOptions) -> list[Verified]:
    """Verify every input of a run before anything is scanned (callers import this only
    when ``--allowed-signers`` was given)."""
    from parhash.allowed_signers import load

    signers = load(options.allowed_signers)
    done: list[Verified] = []
    try:
        for path in paths:
            if path == "-":
                raise FatalError("--allowed-signers needs files: standard input has no .sig")
            done.append(verify_file(path, options, signers))
    except BaseException:
        for each in done:
            each.close()
        raise
    return done


def _read_signature(path: str) -> tuple[sshsig.Envelope, str]:
    sig_path = signature_path(path)
    try:
        data, _ = read_regular(sig_path, MAX_SIGNATURE_FILE)
    except FileNotFoundError:
        raise SignatureRefused(f"{path}: not signed ({sig_path} does not exist)") from None
    except OSError as exc:
        raise SignatureRefused(f"{sig_path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SIGNATURE_FILE:
        raise SignatureRefused(f"{sig_path}: is not a signature (larger than 1 MiB)")
    try:
        blob, rest = sshsig.dearmor(data.decode("ascii"))
        return sshsig.parse(blob), rest
    except UnicodeDecodeError:
        raise SignatureRefused(f"{sig_path}: is not a signature (not ASCII text)") from None
    except sshsig.SignatureError as exc:
        raise SignatureRefused(f"{sig_path}: {exc}") from None


def open_input(path: str) -> tuple[int, os.stat_result]:
    """A signed (or to be signed) input, open: a regular file (``fsutil.open_regular``),
    else FatalError (stdin, a FIFO or a device has no place for a ``.sig`` beside it)."""
    from parhash.fsutil import open_regular

    try:
        return open_regular(path)
    except OSError as exc:
        raise FatalError(f"{path}: {exc.strerror or exc}") from None


def _check(path: str, envelope: sshsig.Envelope, digest: bytes) -> None:
    try:
        sshsig.check(envelope, digest)
    except sshsig.SignatureError as exc:
        raise SignatureRefused(f"{signature_path(path)}: {exc}") from None


def _comment_facts(path: str, envelope: sshsig.Envelope, rest: str) -> ManifestFacts | None:
    """The trusted comment after the signature, verified; None when there is none."""
    import hashlib

    if not rest.strip():
        return None
    where = f"{signature_path(path)}: trusted comment"
    line, sep, armored = rest.partition("\n")
    if not line.startswith(COMMENT_PREFIX) or not sep:
        raise SignatureRefused(f"{where}: unexpected text after the signature")
    try:
        blob, tail = sshsig.dearmor(armored)
        comment = sshsig.parse(blob)
    except sshsig.SignatureError as exc:
        raise SignatureRefused(f"{where}: its signature {exc}") from None
    if tail.strip():
        raise SignatureRefused(f"{where}: unexpected text after its signature")
    if comment.public_key != envelope.public_key:
        raise SignatureRefused(f"{where}: signed by another key than the file")
    message = COMMENT_DOMAIN + envelope.blob + (line + "\n").encode("ascii")
    try:
        sshsig.check(comment, hashlib.new(comment.hash_alg, message).digest(), COMMENT_NAMESPACE)
        return ManifestFacts.from_line(line)
    except sshsig.SignatureError as exc:
        raise SignatureRefused(f"{where}: its signature {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise SignatureRefused(f"{where}: is not valid") from None


def _header_time(fd: int, name: str) -> float | None:
    """The creation time a json/jsonl header records (signed: it is in the file)."""
    from parhash.manifest import algorithm_from_name, read_info

    try:
        info = read_info(_reopen(fd), algorithm_from_name(name))
    except (FatalError, OSError, ValueError):
        return None
    info.reader.close()  # type: ignore[union-attr]
    return parse_iso(info.started) if info.started else None


def _reopen(fd: int):
    """A manifest reader of the file open at ``fd`` (an anonymous temporary file too),
    from its start, leaving ``fd`` and its offset alone."""
    from parhash.manifest import open_manifest

    return open_manifest(f"/proc/self/fd/{fd}")


def _check_age(path: str, created: float | None, max_age: float, now: float) -> None:
    """``--max-manifest-age``: refuse a manifest older than ``max_age`` or from the future."""
    from parhash.progress import human_age

    if created is None:
        raise SignatureRefused(
            f"{path}: its signature carries no creation time (made by ssh-keygen?): "
            "re-sign it with parhash sign, or drop --max-manifest-age"
        )
    age = now - created
    if age > max_age:
        raise SignatureRefused(
            f"{path}: created {iso(created)}, {human_age(age)} ago: older than "
            f"--max-manifest-age {human_age(max_age)}"
        )
    if age < -FUTURE_SLACK_S:
        raise SignatureRefused(f"{path}: created {iso(created)}, in the future")


def verify_options(
    allowed_signers: str | None, identity: str | None, max_age: str | None
) -> VerifyOptions | None:
    """``--allowed-signers``, ``--identity``, ``--max-manifest-age`` parsed once; the two
    others mean nothing without the first (an unsigned manifest's time proves nothing):
    ValueError says so."""
    from parhash.cache_policy import parse_duration

    if allowed_signers is None:
        if identity is not None or max_age is not None:
            given = "--identity" if identity is not None else "--max-manifest-age"
            raise ValueError(f"{given} needs --allowed-signers")
        return None
    if identity is not None and not identity.strip():
        raise ValueError("--identity needs a principal (ops@example)")
    seconds = parse_duration(max_age) if max_age is not None else None
    return VerifyOptions(allowed_signers, identity, seconds)


# -- signed outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class SignSpec:
    """``--sign KEY`` once the key is loaded: who signs, and what the comment says when the
    file cannot tell (a sums file's creation time and algorithm)."""

    signer: Signer
    created: float | None = None
    algo: str | None = None


class SignedOutput:
    """An atomic output whose commit signs the finished file first: the ``.sig`` is written
    and fsynced beside it before the file is put in place, then renamed over the old one.
    A crash between the two renames leaves a file whose signature does not match: refused,
    never accepted."""

    def __init__(self, output, spec: SignSpec) -> None:
        if output.direct:
            output.abort()
            raise FatalError(f"--sign needs a regular file to sign, not {output.path}")
        try:
            refuse_unkept_signature(output.path)
        except FatalError:
            output.abort()
            raise
        self.output = output
        self.path = output.path
        self.stream = output.stream
        self.spec = spec

    def commit(self) -> None:
        from parhash.output import AtomicOutput

        try:  # the file is not put in place unsigned (a named temporary is removed)
            self.stream.flush()
            fd = self.stream.fileno()
            facts = describe(fd, self.path, self.spec.created, self.spec.algo)
            text = signature_text(fd, self.spec.signer, facts, self.path)
            refuse_unkept_signature(self.path)  # again: the scan may have taken hours
            sig = AtomicOutput(signature_path(self.path))
        except BaseException:
            self.output.abort()
            raise
        try:
            sig.stream.write(text.encode("ascii"))
            sig.stream.flush()
            self.output.commit()
        except BaseException:
            sig.abort()
            self.output.abort()
            raise
        sig.commit()

    def abort(self) -> None:
        self.output.abort()


#: The library's keywords for ``verify_options`` (``parhash.audit(m, allowed_signers=F)``).
VERIFY_KEYWORDS = ("allowed_signers", "identity", "max_manifest_age")


def library_verify_options(given) -> VerifyOptions | None:
    """``VerifyOptions`` from a library call's keywords, checked as the CLI checks them."""
    return verify_options(*(given.get(k) for k in VERIFY_KEYWORDS))
