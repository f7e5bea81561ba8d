"""Progress on stderr: a tqdm bar (files, bytes, rate, ETA) or nothing, behind one interface.

The pipeline never asks "is progress on?": it talks to a ``NullProgress`` when it is not
(fclones' ``NoProgressBar``). Warnings go through here too, so they never tear the bar.
"""

from __future__ import annotations

import sys
import time

from parhash.output import err, paint, sanitize


def human_bytes(n: float) -> str:
    """Decimal units, as disks are sold (1 MB = 10**6 bytes), three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.5 or unit == "TB":
            if unit == "B":
                return f"{n:.0f} B"
            return (
                f"{n:.2f} {unit}" if n < 10 else f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
            )
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    """``0.83 s``, ``12.4 s``, ``3 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {rest:02d} s"


class NullProgress:
    """No bar; warnings still reach stderr."""

    def update(self, files: int, nbytes: int, found) -> None:
        pass

    def warn(self, message: str) -> None:
        err(f"parhash: {paint('warning:', 'warning')} {sanitize(message)}")

    def close(self) -> None:
        pass


class TqdmProgress:
    """A files bar with bytes and byte rate as postfix; total known once the walk is done."""

    #: Seconds between postfix refreshes: formatting the bytes string per batch is wasted work.
    POSTFIX_INTERVAL = 0.2

    def __init__(self) -> None:
        from tqdm import tqdm  # lazily: runs without a bar never import it

        # No monitor thread: a thread alive when the pool forks its workers can leave them
        # a lock it held; the bar is refreshed by our own updates anyway.
        tqdm.monitor_interval = 0
        self._tqdm = tqdm
        self.bar = tqdm(
            total=None, unit=" files", file=sys.stderr, dynamic_ncols=True, desc="hashing"
        )
        self.bytes = 0
        self.started = time.monotonic()
        self.last_postfix = 0.0

    def update(self, files: int, nbytes: int, found) -> None:
        self.bytes += nbytes
        if found.done and self.bar.total is None:
            self.bar.total = found.files_found
        now = time.monotonic()
        if now - self.last_postfix >= self.POSTFIX_INTERVAL:
            self.last_postfix = now
            self._set_postfix(now)
        self.bar.update(files)

    def _set_postfix(self, now: float) -> None:
        rate = self.bytes / max(now - self.started, 1e-9)
        self.bar.set_postfix_str(f"{human_bytes(self.bytes)}, {human_bytes(rate)}/s", refresh=False)

    def warn(self, message: str) -> None:
        self._tqdm.write(
            f"parhash: {paint('warning:', 'warning')} {sanitize(message)}", file=sys.stderr
        )

    def close(self) -> None:
        self._set_postfix(time.monotonic())
        self.bar.close()


def make_progress(enabled: bool | None, quiet: bool):
    """``--progress`` forces the bar, ``--no-progress``/``-q`` drop it; default: stderr is a TTY."""
    if quiet or enabled is False:
        return NullProgress()
    if enabled or sys.stderr.isatty():
        return TqdmProgress()
    return NullProgress()
