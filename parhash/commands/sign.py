"""``parhash sign`` and ``parhash verify``: a detached ``FILE.sig`` for any file (a
manifest, a sums file), and its check against ``allowed_signers``.

The format and the acceptance rules are ``parhash.signing``'s; the keys
``parhash.ssh_keys``'; this module runs them over several files and returns the outcome.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from parhash.exit_codes import ExitCode, FatalError
from parhash.signing import VerifyOptions


@dataclass(frozen=True)
class SignResult:
    """What ``sign`` wrote: one (file, signature file) per input, and the key's name."""

    exit_code: ExitCode
    written: tuple[tuple[str, str], ...]
    key: str  #: the signer's description (type, fingerprint, where the key is)


@dataclass(frozen=True)
class VerifyResult:
    """One line per input: ``FILE: good signature by ...`` or the refusal."""

    exit_code: ExitCode  #: OK, or BAD_SIGNATURE when any input was refused
    good: tuple[str, ...]  #: the stdout lines of accepted files
    refused: tuple[str, ...]  #: the reasons (each names its file)


def sign(paths: Sequence[str], key: str, outputs) -> SignResult:
    """Sign every path (regular files) with ``key`` into ``PATH.sig`` (atomic outputs,
    committed together by the caller). The key is loaded, and every input checked, before
    anything is written."""
    from parhash.signing import (
        SignSpec,
        describe,
        refuse_unkept_signature,
        signature_path,
        signature_text,
    )
    from parhash.ssh_keys import load_signer

    inputs = [_regular(path) for path in paths]
    written = []
    try:
        _refuse_signing_over_an_input(paths)
        for path in paths:
            refuse_unkept_signature(path)
        signer = load_signer(key)
        spec = SignSpec(signer)
        for path, fd in inputs:
            facts = describe(fd, path, spec.created)
            target = outputs.open(signature_path(path))
            target.stream.write(signature_text(fd, signer, facts, path).encode("ascii"))
            written.append((path, signature_path(path)))
    finally:
        for _, fd in inputs:
            os.close(fd)
    return SignResult(ExitCode.OK, tuple(written), signer.description)


def verify(paths: Sequence[str], options: VerifyOptions) -> VerifyResult:
    """Check each path's signature; a refusal is a line, and the others are still checked.
    A broken ``allowed_signers`` is fatal (``AllowedSignersError``, exit 2)."""
    from parhash.allowed_signers import load
    from parhash.signing import SignatureRefused, verify_file

    signers = load(options.allowed_signers)
    good, refused = [], []
    for path in paths:
        try:
            verified = verify_file(path, options, signers)
        except SignatureRefused as exc:
            refused.append(str(exc))
            continue
        except FatalError as exc:  # not a regular file, unreadable
            refused.append(str(exc))
            continue
        verified.close()
        good.append(f"{path}: {verified.describe()}")
    code = ExitCode.BAD_SIGNATURE if refused else ExitCode.OK
    return VerifyResult(code, tuple(good), tuple(refused))


def _regular(path: str) -> tuple[str, int]:
    """``path`` open for reading: a regular file (stdin and devices have no place for a
    ``.sig`` beside them)."""
    from parhash.signing import open_input

    if path == "-":
        raise FatalError("sign needs files: standard input has no place for a .sig")
    return path, open_input(path)[0]


def _refuse_signing_over_an_input(paths: Sequence[str]) -> None:
    """``parhash sign a a.sig`` would replace the input a.sig with a's signature."""
    from parhash.signing import signature_path

    seen = set()
    for path in paths:
        st = os.stat(path)
        seen.add((st.st_dev, st.st_ino))
    for path in paths:
        try:
            st = os.stat(signature_path(path))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            raise FatalError(f"{signature_path(path)} is also an input: it would be replaced")
