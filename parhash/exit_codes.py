"""The only list of exit codes parhash returns (documented in ``--help`` and the README).

``exit_status_help`` turns the enum into the ``Exit status:`` text of ``--help``, so a new
member is documented where it is defined and no help text can forget one.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """One member per meaning; never two names for the same number."""

    OK = 0  #: every file was hashed
    FILE_ERRORS = 1  #: the run finished, but some files produced error records
    FATAL = 2  #: usage error or fatal problem (bad argument, missing root, output not writable)
    BROKEN_PIPE = (
        141  #: stdout was closed by the reader (``| head``), as the C tools die of SIGPIPE
    )
    INTERNAL = 70  #: a bug in parhash (EX_SOFTWARE): one line on stderr, no traceback
    INTERRUPTED = 130  #: SIGINT (Ctrl-C)
    TERMINATED = 143  #: SIGTERM


#: The words ``--help`` gives each code; a member missing here is listed by its name, so a
#: new code is never left out of the help (only worded less well until it gets a line).
EXIT_STATUS_WORDS: dict[int, str] = {
    0: "all files hashed",
    1: "some files could not be hashed (error records)",
    2: "usage or fatal error",
    70: "internal error (a bug: please report it)",
    130: "interrupted (SIGINT)",
    141: "stdout closed early",
    143: "terminated (SIGTERM)",
}


def exit_status_help(words: dict[int, str] | None = None) -> str:
    """``Exit status: 0 ...; 1 ...; ...`` for every member, in numeric order; ``words``
    overrides the wording of some codes for one command (``check``'s 1 is a mismatch)."""
    chosen = {**EXIT_STATUS_WORDS, **(words or {})}
    parts = [
        f"{code.value} {chosen.get(code.value, code.name.lower().replace('_', ' '))}"
        for code in sorted(ExitCode)
    ]
    return "Exit status: " + "; ".join(parts) + "."


class FatalError(Exception):
    """A problem that ends the run with one clear line on stderr and ``ExitCode.FATAL``."""
