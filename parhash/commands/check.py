"""``parhash check``: verify checksum files (``sha256sum -c``) through the scan pipeline.

The reading of checksum files, the verdicts and the exit policy are ``parhash.check``'s
(``CheckReport.return_code``); this module runs them and returns a ``CheckResult``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from parhash.checking import CheckOptions
from parhash.exit_codes import ExitCode

if TYPE_CHECKING:
    from parhash.commands.outputs import Outputs
    from parhash.options import ClusterTarget
    from parhash.pipeline import ProgressSink
    from parhash.signing import VerifyOptions


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: the CLI's exit status and the counts behind it."""

    exit_code: ExitCode
    ok: int  #: listed files whose digest matched
    mismatched: int  #: listed files whose digest did not match
    unreadable: int  #: listed files that could not be read (missing ones included)
    unopened: int  #: checksum files that could not be opened
    malformed: int  #: improperly formatted lines, over every checksum file
    #: The end-of-run lines (``WARNING: 1 computed checksum did NOT match``), which the CLI
    #: prints on stderr after ``parhash: ``.
    messages: tuple[str, ...] = ()
    #: Per-file warnings (``name: No such file or directory``) of a library call; the CLI
    #: prints them as they come.
    warnings: tuple[str, ...] = ()


class _Discard:
    """A binary stream that keeps nothing: the verdict lines nobody asked for."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def run(
    names: list[str],
    options: CheckOptions,
    stream: BinaryIO | None,
    outputs: Outputs,
    *,
    jobs: int | None,
    progress: Callable[[], ProgressSink],
    verify: VerifyOptions | None = None,
    cluster: ClusterTarget | None = None,
) -> CheckResult:
    """Verify the checksum files ``names`` (``-``: stdin); the ``name: OK`` lines go to
    ``stream`` (None: nowhere). Raises ``FatalError`` before hashing for a checksum file
    whose algorithm cannot be told; with ``verify``, ``SignatureRefused`` (exit 3) before
    anything is read for a checksum file whose signature is not accepted, and after the
    run for one that changed while it was read. ``cluster``: hash on Dask (``--cluster``)."""
    from parhash.checking import CheckReport, CheckSink, check_sources
    from parhash.options import ScanOptions
    from parhash.pipeline import run

    verified = []
    if verify is not None:  # imported only then: a check without it never loads signing
        from parhash.signing import verify_all

        verified = verify_all(names, verify)
    try:
        report = CheckReport(options)
        sources = check_sources(names, report)
        for each in verified:  # opened by name: a file renamed over it is refused before
            each.check_unchanged()  # a line is printed (renaming it touched its ctime)
        bar = progress()
        sink = CheckSink(stream if stream is not None else _Discard(), report, bar.warn)  # type: ignore[arg-type]
        scan = ScanOptions(jobs=jobs, cluster=cluster)
        run(sources, scan, outputs.completing(sink), bar, warn_errors=False)
        for each in verified:
            each.check_unchanged()
    finally:
        for each in verified:
            each.close()
    return CheckResult(
        exit_code=report.return_code,
        ok=report.ok,
        mismatched=report.mismatched,
        unreadable=report.unreadable,
        unopened=report.unopened,
        malformed=sum(state.malformed for state in report.files),
        messages=tuple(report.final_messages()),
        warnings=tuple(getattr(bar, "messages", ())),
    )
