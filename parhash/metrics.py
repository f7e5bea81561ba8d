"""``parhash audit --metrics FILE``: the run's outcome for node_exporter's textfile collector.

The file is in the Prometheus text exposition format (version 0.0.4): ``# HELP`` and
``# TYPE`` lines, then samples labelled ``manifest="..."`` (the manifest's absolute path),
all gauges (each describes the last run, none accumulates across runs). It is replaced
atomically (``output.AtomicOutput``: a temporary file in the same directory, fsync,
rename), so the collector, which reads ``*.prom`` files at every scrape, never sees half of
one; its mode is 0644 whatever the umask, because node_exporter runs as its own user.

Every run writes the file, also one that failed (fatal error, signal): then it has only
``exit_code``, ``duration_seconds`` and ``last_run_timestamp_seconds``, and
``last_success_timestamp_seconds`` keeps the value the previous file had. A success is an
audit that completed, whatever it found (exit 0 or 1: a change is news, not a failure).
So one alert rule catches an audit that fails, hangs or no longer runs at all::

    time() - parhash_audit_last_success_timestamp_seconds > 26 * 3600

(a file that never had a success has no such sample: pair it with ``absent()``).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parhash.exit_codes import ExitCode, FatalError

if TYPE_CHECKING:
    from parhash.commands.audit import AuditResult

PREFIX = "parhash_audit_"
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"

#: The families, in the file's order: (name without the prefix, HELP text).
HELP = {
    "files": "Files in each class found by the last completed audit.",
    "read_files": "Files the last completed audit read in full.",
    "read_bytes": "Bytes the last completed audit read.",
    "cache_trusted_files": "Files whose digest the last completed audit took from the hash "
    "cache (metadata unchanged, content not read).",
    "cache_verified_files": "Cache hits the last completed audit read again in full "
    "(--verify-budget, --verify-max-age).",
    "cache_mismatched_files": "Cache hits whose content no longer matched the cached digest "
    "while their metadata did (bit rot, or a write that restored the timestamps).",
    "stalest_verification_age_seconds": "Age of the oldest full read behind a digest the "
    "last completed audit trusted from the hash cache.",
    "duration_seconds": "Wall-clock duration of the last audit run.",
    "exit_code": "Exit status of the last audit run (0 no change in a --fail-on class, "
    "1 changes, 2 fatal error, 130/143 interrupted).",
    "last_run_timestamp_seconds": "When the last audit run ended, whatever its outcome "
    "(Unix time).",
    "last_success_timestamp_seconds": "When an audit last completed, whatever it found "
    "(Unix time); a failed run keeps the previous value.",
}


def escape_label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and line feed
    escaped. The format is UTF-8 only, so a byte of a name that is not UTF-8 is written
    as the four characters ``\\xNN`` (their backslash escaped in turn)."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


@dataclass
class Snapshot:
    """What one run's file says (``render``)."""

    manifest: str  #: the label value (not yet escaped)
    exit_code: int
    duration_s: float
    ended_s: float  #: Unix time
    last_success_s: float | None = None
    result: AuditResult | None = None  #: None: the audit did not complete


def _samples(snap: Snapshot) -> list[tuple[str, dict[str, str], float]]:
    """(family, extra labels, value) in ``HELP``'s order."""
    out: list[tuple[str, dict[str, str], float]] = []
    result = snap.result
    if result is not None:
        from parhash.audit_store import CLASSES
        from parhash.progress import stalest_age

        out += [("files", {"class": kind}, result.counts.get(kind, 0)) for kind in CLASSES]
        summary = result.summary
        cache = summary.cache if summary is not None else None
        if cache is not None:
            out += [("read_files", {}, cache.hashed + cache.verified)]
            out += [("read_bytes", {}, cache.read_bytes)]
            out += [("cache_trusted_files", {}, cache.trusted)]
            out += [("cache_verified_files", {}, cache.verified)]
            out += [("cache_mismatched_files", {}, cache.mismatched)]
            age = stalest_age(cache, int(snap.ended_s * 1e9))
            if age is not None:
                out += [("stalest_verification_age_seconds", {}, age)]
        elif summary is not None:
            out += [("read_files", {}, summary.files - summary.errors)]
            out += [("read_bytes", {}, summary.bytes)]
    out += [("duration_seconds", {}, round(snap.duration_s, 6))]
    out += [("exit_code", {}, snap.exit_code)]
    out += [("last_run_timestamp_seconds", {}, round(snap.ended_s, 3))]
    if snap.last_success_s is not None:
        out += [("last_success_timestamp_seconds", {}, round(snap.last_success_s, 3))]
    return out


def render(snap: Snapshot) -> str:
    """The whole file: each family's HELP and TYPE lines, then its samples."""
    manifest = f'manifest="{escape_label(snap.manifest)}"'
    lines: list[str] = []
    seen: set[str] = set()
    for family, labels, value in _samples(snap):
        name = PREFIX + family
        if family not in seen:
            seen.add(family)
            lines += [f"# HELP {name} {HELP[family]}", f"# TYPE {name} gauge"]
        extra = "".join(f',{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{manifest}{extra}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def previous_success(path: str, manifest: str) -> float | None:
    """The last-success timestamp the file at ``path`` holds for ``manifest``, if any (only
    a regular file is read: never block on a FIFO or a device)."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return None
    head = re.escape(f'{LAST_SUCCESS}{{manifest="{escape_label(manifest)}"}} ')
    match = re.search(rf"^{head}(\S+)$", text, re.MULTILINE)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


#: A completed audit: the codes whose run reached its end (``ExitCode.OK``: nothing in a
#: --fail-on class; ``FILE_ERRORS``: changes).
COMPLETED = frozenset({ExitCode.OK, ExitCode.FILE_ERRORS})


@dataclass
class AuditMetrics:
    """``--metrics FILE`` for one audit run: ``check`` before the audit (an unwritable
    place fails before any file is read), ``result`` set when the audit returns,
    ``finish(code)`` at the very end, whatever the outcome (``cli.guarded``'s hook)."""

    path: str
    manifest: str  #: the label: the manifest's absolute path (``-``: stdin)
    started: float = field(default_factory=time.monotonic)
    result: AuditResult | None = None
    usable: bool = False

    @classmethod
    def for_manifest(cls, path: str, manifest: str) -> AuditMetrics:
        label = manifest if manifest == "-" else os.path.abspath(manifest)
        return cls(path, label)

    def check(self) -> None:
        """Raise ``FatalError`` now if the file cannot be written (no temporary is left)."""
        from parhash.output import AtomicOutput

        AtomicOutput(self.path).abort()
        self.usable = True

    def finish(self, code: ExitCode, warn) -> ExitCode:
        """Write the file for a run that ends with ``code``; the code to exit with (a
        completed audit whose metrics cannot be written is a fatal error: the dashboard
        would go on showing the last run). ``warn`` prints the one line then."""
        if not self.usable:
            return code
        self.usable = False  # once: a signal while writing must not write again
        done = code in COMPLETED and self.result is not None
        ended = time.time()
        snap = Snapshot(
            self.manifest,
            int(code),
            time.monotonic() - self.started,
            ended,
            ended if done else previous_success(self.path, self.manifest),
            self.result if done else None,
        )
        from parhash.output import OutputError

        try:
            write_atomically(self.path, render(snap))
        except (FatalError, OutputError) as exc:
            warn(exc.message if isinstance(exc, OutputError) else f"error: {exc}")
            return ExitCode.FATAL if done else code
        return code


#: The file's mode: node_exporter reads it as another user; nothing in it is secret.
MODE = 0o644


def write_atomically(path: str, text: str) -> None:
    """``text`` into ``path`` through ``AtomicOutput`` (temporary file beside it, fsync,
    rename), mode ``MODE``. Raises ``FatalError`` (cannot create) or ``OutputError``
    (cannot write), each one line."""
    from parhash.output import AtomicOutput

    target = AtomicOutput(path)
    try:
        if not target.direct and target.in_place is None:
            os.fchmod(target.stream.fileno(), MODE)
        target.stream.write(text.encode("utf-8"))
        target.commit()
    except BaseException:
        target.abort()
        raise
