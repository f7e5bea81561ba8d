"""The only list of exit codes parhash returns (documented in ``--help`` and the README).

``exit_status_help`` turns the enum into the ``Exit status:`` text of ``--help``, so a new
member is documented where it is defined and no help text can forget one.
"""

from __future__ import annotations

import os
from enum import IntEnum


class ExitCode(IntEnum):
    """One member per meaning; never two names for the same number."""

    OK = 0  #: every file was hashed
    FILE_ERRORS = 1  #: the run finished, but some files produced error records
    FATAL = 2  #: usage error or fatal problem (bad argument, missing root, output not writable)
    #: ``--allowed-signers``: the input's signature was refused (missing, malformed, unknown
    #: key, wrong namespace, not matching, expired, or the manifest is too old); nothing
    #: was scanned. Not 1, which means "changes found" / "files failed".
    BAD_SIGNATURE = 3
    BROKEN_PIPE = (
        141  #: stdout was closed by the reader (``| head``), as the C tools die of SIGPIPE
    )
    INTERNAL = 70  #: a bug in parhash (EX_SOFTWARE): one line on stderr, no traceback
    HANGUP = 129  #: SIGHUP (the terminal was closed)
    INTERRUPTED = 130  #: SIGINT (Ctrl-C)
    TERMINATED = 143  #: SIGTERM


#: The words ``--help`` gives each code; a member missing here is listed by its name, so a
#: new code is never left out of the help (only worded less well until it gets a line).
EXIT_STATUS_WORDS: dict[int, str] = {
    0: "all files hashed (also when a worker died and its files were hashed again: a "
    "warning says so)",
    1: "some files could not be hashed (error records)",
    2: "usage or fatal error",
    3: "signature refused (--allowed-signers): nothing was scanned",
    70: "internal error (a bug: please report it)",
    129: "hung up (SIGHUP: the terminal was closed)",
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
    """A problem that ends the run with one clear line on stderr and ``ExitCode.FATAL``
    (a subclass may name another code in ``exit_code``)."""

    exit_code: ExitCode = ExitCode.FATAL


def exhausted(exc: BaseException) -> str | None:
    """The one-line message for an error the environment raised rather than a bug (memory,
    threads, descriptors, disk space, the audit's temporary database), or None: such a run
    ends with ``ExitCode.FATAL``, not ``INTERNAL``."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, RuntimeError) and "new thread" in str(exc):
        return f"cannot start a thread ({exc}): a process, thread or memory limit was reached"
    if isinstance(exc, OSError):
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
        return where + (exc.strerror or str(exc))
    if type(exc).__module__ == "sqlite3" and type(exc).__name__ == "OperationalError":
        return f"audit's temporary database in {sqlite_temp_directory()}: {exc}"
    return None


def sqlite_temp_directory() -> str:
    """Where SQLite puts its temporary files: the first writable of SQLITE_TMPDIR, TMPDIR,
    /var/tmp, /usr/tmp, /tmp, ``.`` (``unixTempFileDir`` in SQLite's os_unix.c)."""
    env = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR")]
    for directory in (*env, "/var/tmp", "/usr/tmp", "/tmp"):
        if directory and os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK):
            return directory
    return "."
