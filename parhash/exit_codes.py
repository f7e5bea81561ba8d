"""The only list of exit codes parhash returns (documented in ``--help`` and the README)."""

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


class FatalError(Exception):
    """A problem that ends the run with one clear line on stderr and ``ExitCode.FATAL``."""
