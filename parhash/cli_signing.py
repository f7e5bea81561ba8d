"""The command line of signed manifests: the options ``scan``, ``audit`` and ``check``
share (``--sign``, ``--allowed-signers``, ``--identity``, ``--max-manifest-age``) and
the ``sign`` and ``verify`` commands, which ``cli.py`` registers.

Values are parsed once here into ``signing.VerifyOptions``; the library
(``parhash.commands.sign``, ``parhash.signing``) does the work.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from parhash.exit_codes import exit_status_help
from parhash.help import examples

SignKey = Annotated[
    Optional[str],
    typer.Option(
        "--sign",
        metavar="KEY",
        help="Sign the written file into FILE.sig (SSHSIG, namespace parhash) with KEY: a "
        "private key file, or KEY.pub to sign through ssh-agent.",
        show_default=False,
    ),
]
AllowedSigners = Annotated[
    Optional[str],
    typer.Option(
        "--allowed-signers",
        metavar="FILE",
        help="Accept the input only with a valid FILE.sig by a key listed in FILE "
        "(OpenSSH allowed_signers, namespace parhash); else stop before scanning, exit 3.",
        show_default=False,
    ),
]
Identity = Annotated[
    Optional[str],
    typer.Option(
        "--identity",
        metavar="PRINCIPAL",
        help="With --allowed-signers: this principal must be the signer.",
        show_default=False,
    ),
]
MaxManifestAge = Annotated[
    Optional[str],
    typer.Option(
        "--max-manifest-age",
        metavar="DURATION",
        help="With --allowed-signers: refuse a manifest created longer ago than DURATION "
        "(8d, 12h): an old signed manifest is not replayed.",
        show_default=False,
    ),
]


def verify_options(allowed_signers: str | None, identity: str | None, max_age: str | None):
    """``signing.verify_options`` with its errors as usage errors (None, and nothing
    imported, when none of the three was given: most runs verify nothing)."""
    if allowed_signers is None and identity is None and max_age is None:
        return None
    from parhash.signing import verify_options as parse

    try:
        return parse(allowed_signers, identity, max_age)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


SIGN_EPILOG = examples(
    "parhash sign SHA256SUMS --key ~/.ssh/parhash_ed25519     # writes SHA256SUMS.sig",
    "parhash sign srv.jsonl --key ~/.ssh/id_ed25519.pub       # the key stays in ssh-agent",
) + exit_status_help(
    {0: "every file signed", 1: "not used", 2: "usage or fatal error (key, file)", 3: "not used"}
)

VERIFY_EPILOG = (
    examples(
        "parhash verify srv.jsonl --allowed-signers /etc/parhash/allowed_signers",
        "parhash verify SHA256SUMS --allowed-signers F --identity ops@example "
        "--max-manifest-age 8d",
    )
    + "Prints FILE: good signature by PRINCIPAL (KEY), created TIME, N entries of ROOTS.\n\n"
    + exit_status_help(
        {
            0: "every signature accepted",
            1: "not used",
            2: "usage or fatal error (allowed_signers)",
            3: "a signature was refused (the line says why)",
        }
    )
)


def sign(
    files: Annotated[list[str], typer.Argument(help="Files to sign.", metavar="FILE")],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            "-k",
            metavar="KEY",
            help="A private key file (a passphrase is asked on the terminal), or KEY.pub to "
            "sign through ssh-agent.",
        ),
    ],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No line per signed file on stderr.")
    ] = False,
) -> None:
    """Write FILE.sig, a detached SSH signature (namespace parhash) that ssh-keygen -Y verify
    and parhash verify check, with a signed comment: creation time, roots, entries."""
    from parhash.cli import guarded
    from parhash.commands import sign as command
    from parhash.output import err, sanitize

    done = []

    def body(outputs) -> int:
        done.append(command.sign(files, key, outputs))
        return done[0].exit_code

    def finish(code):
        """Once the .sig files are in place (``guarded`` calls this on every way out):
        "signed" before a full disk failed the commit would be a lie."""
        if code != 0 or quiet:
            return code
        result = done[0]
        for path, sig in result.written:
            err(f"parhash: signed {sanitize(path)} into {sanitize(sig)} ({result.key})")
        return code

    raise typer.Exit(int(guarded(body, finish)))


def verify(
    files: Annotated[list[str], typer.Argument(help="Signed files.", metavar="FILE")],
    allowed_signers: Annotated[
        str,
        typer.Option(
            "--allowed-signers",
            metavar="FILE",
            help="Who may sign: an OpenSSH allowed_signers file (namespace parhash).",
        ),
    ],
    identity: Identity = None,
    max_age: MaxManifestAge = None,
) -> None:
    """Check FILE.sig for each FILE: a valid signature, namespace parhash, by a key that
    allowed_signers lists (and --identity names), made recently enough."""
    from parhash.cli import guarded
    from parhash.commands import sign as command
    from parhash.output import err, sanitize

    options = verify_options(allowed_signers, identity, max_age)

    def body(outputs) -> int:
        result = command.verify(files, options)
        out = outputs.stdout()
        for line in result.good:
            out.write(sanitize(line).encode() + b"\n")
        for reason in result.refused:
            err(f"parhash: {sanitize(reason)}")
        return result.exit_code

    raise typer.Exit(int(guarded(body)))
