"""The consumer side of the pipeline: what a sink is, and how one wraps another.

Sinks: report.py's reporters (the output formats), check.CheckSink (verdict lines),
audit.AuditSink (the audit store). Wrappers add a concern without hiding what the sink is:
the progress bar makes way for data lines, the CLI marks its outputs complete.
"""

from __future__ import annotations

from typing import Protocol

from parhash.model import FileRecord, Summary


class Sink(Protocol):
    """A consumer of records: a reporter, a manifest writer, an audit comparer.

    A sink that prints a streaming format also has ``rendering`` (report.Rendering: how
    workers format records for it) and ``write_data(bytes)``; the pipeline then sends it the
    workers' bytes, and ``write`` only gets the records the parent makes itself. A sink
    without ``rendering`` gets every record through ``write``.
    """

    def write(self, records: list[FileRecord]) -> None: ...

    def close(self, summary: Summary) -> None: ...


class WrappedSink:
    """Base of a sink that wraps another: ``rendering`` and ``write_data`` pass through, so
    a wrapped reporter still gets its workers' bytes."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.rendering = getattr(sink, "rendering", None)

    def write(self, records: list[FileRecord]) -> None:
        self.sink.write(records)

    def write_data(self, data: bytes) -> None:
        self.sink.write_data(data)  # type: ignore[attr-defined]

    def close(self, summary: Summary) -> None:
        self.sink.close(summary)
