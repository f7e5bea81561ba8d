"""Where a command's data goes: stdout through one checked writer, and atomic output files.

``Outputs`` is opened per run; the CLI's ``guarded`` (and ``committed`` for a library call)
completes all of them together on success and drops the files otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from parhash.sinks import WrappedSink
from parhash.walk import WalkOptions

if TYPE_CHECKING:
    from parhash.signing import SignSpec


#: The detached signature beside a signed file (``--sign``, ``parhash sign``): an output
#: of parhash's own, which the walk skips like the file itself. Here, not in
#: ``parhash.signing``, so that a scan that signs nothing never imports the signing code.
SIGNATURE_SUFFIX = ".sig"


def signature_path(path: str) -> str:
    return path + SIGNATURE_SUFFIX


class Outputs:
    """Where a command's data goes: stdout through one checked writer, and atomic output
    files. All are completed together on success, else the files are dropped."""

    def __init__(self) -> None:
        self.pending: list = []
        self._stdout = None
        #: Set by a command once every byte of its data was handed to its outputs: a
        #: failure after that point (a thread that cannot start while shutting down) still
        #: commits them, because they are complete.
        self.complete = False

    def identities(self) -> set[tuple[int, int]]:
        """(st_dev, st_ino) of the temporary files, so the walker never lists them."""
        found = set()
        for target in self.pending:
            st = os.fstat(target.stream.fileno())
            found.add((st.st_dev, st.st_ino))
        return found

    def stdout(self):
        """The one checked writer of stdout (``CheckedWriter``)."""
        from parhash.output import stdout_writer

        if self._stdout is None:
            self._stdout = stdout_writer()
        return self._stdout

    def completing(self, sink):
        """``sink`` whose ``close`` (the end of the data) marks these outputs complete: a
        failure after it, while the pool shuts down, keeps them."""
        return _CompletingSink(sink, self)

    def stream(self, path: str | None, sign: SignSpec | None = None):
        """The binary stream for ``-o PATH``: stdout for no PATH or ``-``, else an atomic
        file (signed when it is put in place, with ``sign``)."""
        return self.stdout() if path in (None, "-") else self.open(path, sign).stream

    def open(self, path: str, sign: SignSpec | None = None):
        """An atomic output file; with ``sign``, ``PATH.sig`` is written with it."""
        from parhash.output import AtomicOutput

        target = AtomicOutput(path)
        if sign is not None:
            from parhash.signing import SignedOutput

            target = SignedOutput(target, sign)
        self.pending.append(target)
        return target

    def commit(self) -> None:
        """Flush and close stdout (checked), then put the files in place."""
        from parhash.output import finish_stdout

        if self._stdout is not None:
            finish_stdout(self._stdout)
            self._stdout = None
        while self.pending:
            self.pending.pop(0).commit()

    def abort(self) -> None:
        while self.pending:
            self.pending.pop().abort()


class _CompletingSink(WrappedSink):
    """A pipeline sink that sets ``Outputs.complete`` once the inner sink wrote its end."""

    def __init__(self, sink, outputs: Outputs) -> None:
        super().__init__(sink)
        self.outputs = outputs

    def close(self, summary) -> None:
        self.sink.close(summary)
        self.outputs.complete = True


@contextmanager
def committed() -> Iterator[Outputs]:
    """Outputs for a library call: committed when the body returns, dropped if it raises
    (the exception goes on to the caller; the CLI's ``guarded`` maps it to an exit code)."""
    outputs = Outputs()
    try:
        yield outputs
    except BaseException:
        outputs.abort()
        raise
    outputs.commit()


def skipping(walk: WalkOptions, identities: set[tuple[int, int]]) -> WalkOptions:
    """Walk options that also skip these (st_dev, st_ino) (the hash cache's files)."""
    return replace(walk, skip_files=walk.skip_files | frozenset(identities))


def own_files_skipped(walk: WalkOptions, outputs: Outputs, *paths: str) -> WalkOptions:
    """Walk options that skip parhash's own files (the output or manifest and the temporary
    file beside it): a manifest written into the tree it describes must not list itself."""
    skip = set(walk.skip_files) | outputs.identities()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        skip.add((st.st_dev, st.st_ino))
    return replace(walk, skip_files=frozenset(skip))
