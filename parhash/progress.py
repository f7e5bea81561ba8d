"""Progress on stderr: a tqdm bar (bytes, files, rate, ETA), plain lines, or nothing.

The pipeline never asks "is progress on?": it talks to a ``NullProgress`` when it is not
(fclones' ``NoProgressBar``). Warnings go through here too, so they never tear the bar.

Where the numbers come from: the workers bump shared counters per read
(``hashing.WorkCounters``), so bytes move while one huge file is read; a timer thread
polls them, so the clock moves even when no result arrives for a minute. The walker
does not stat files, so the total in bytes is what the workers' fstat announced once
every file found has been started; until then it is extrapolated from the mean size so
far (marked ``~``), and while the walk is still going no total is shown, as
``rsync --info=progress2`` does while it is still finding files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

from parhash.output import err, paint, plural, same_terminal, sanitize
from parhash.sinks import WrappedSink


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


def human_age(seconds: float) -> str:
    """An age in its largest whole unit: ``40 s``, ``12 min``, ``5 h``, ``3 d``."""
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{int(seconds // length)} {unit}"
    return f"{int(seconds)} s"


def cache_note(counts) -> str:
    """What the hash cache did (a ``model.CacheCounts``), in words: the second line of a
    scan's summary, and a line of the audit's human report."""
    if not counts.available:
        return "not used (see the warning above)"
    text = (
        f"{counts.trusted:,} trusted, {counts.verified:,} verified by a full read, "
        f"{counts.hashed:,} new or changed read"
    )
    if counts.mismatched:
        text += f", {plural(counts.mismatched, 'file')} whose content changed unseen"
    age = stalest_age(counts)
    if age is not None:
        text += f"; stalest verification {human_age(age)} ago"
    return text


def stalest_age(counts, now_ns: int | None = None) -> float | None:
    """Seconds since the oldest full read behind a digest trusted this run (None: no
    digest was trusted, so no verification is stale)."""
    if counts.stalest_ns is None:
        return None
    return max(0.0, ((time.time_ns() if now_ns is None else now_ns) - counts.stalest_ns) / 1e9)


class NullProgress:
    """No bar; warnings still reach stderr."""

    def counters(self, slots: int):
        return None

    def start(self, counters, found) -> None:
        pass

    def wrap(self, sink):
        return sink

    def update(self, files: int, nbytes: int, found) -> None:
        pass

    def warn(self, message: str) -> None:
        err(f"parhash: {paint('warning:', 'warning')} {sanitize(message)}")

    def close(self) -> None:
        pass


class Snapshot:
    """What the run has done, read from the counters and the walker in one place."""

    def __init__(self, progress: TimedProgress) -> None:
        found = progress.found
        counters = progress.work_counters
        started, announced, read = counters.totals() if counters else (0, 0, 0)
        self.files = progress.files
        self.found = found.files_found if found else 0
        self.walking = found is None or not found.done
        self.bytes = max(read, progress.bytes)
        self.elapsed = time.monotonic() - progress.started
        self.total: int | None = None
        self.estimated = False
        if not self.walking:
            if started >= self.found:
                self.total = announced
            elif started:
                self.total = announced + (self.found - started) * announced // started
                self.estimated = True
            if self.total is not None:
                self.total = max(self.total, self.bytes)

    def files_text(self) -> str:
        if self.walking:
            return f"{plural(self.files, 'file')}, {self.found:,} found so far"
        return f"{self.files:,}/{plural(self.found, 'file')}"

    def plain(self) -> str:
        """One line without bar or ``\\r``, for TERM=dumb."""
        rate = self.bytes / self.elapsed if self.elapsed > 0 else 0.0
        done = human_bytes(self.bytes)
        if self.total is not None:
            share = 100 * self.bytes / self.total if self.total else 100.0
            approx = "~" if self.estimated else ""
            done += f" of {approx}{human_bytes(self.total)} ({share:.0f}%)"
        line = f"parhash: hashing: {done}, {self.files_text()}, {human_bytes(rate)}/s"
        if self.total is not None and rate > 0:
            line += f", {human_seconds((self.total - self.bytes) / rate)} left"
        return line + f" [{human_seconds(self.elapsed)}]"


class TimedProgress:
    """Counts what ``run`` reports and polls the workers' counters from a timer thread.

    The thread starts only in ``start``, once the pool's workers were forked (a thread
    alive across a fork can leave the child a lock it held), and stops in ``close``.
    """

    #: Seconds between redraws: often enough that the clock visibly ticks, rarely enough
    #: that polling (one copy of 3 x jobs integers) and drawing cost nothing.
    INTERVAL = 0.25

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.found = None
        self.work_counters = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def counters(self, slots: int):
        from parhash.hashing import WorkCounters

        return WorkCounters(slots)

    def start(self, counters, found) -> None:
        self.work_counters, self.found = counters, found
        self._thread = threading.Thread(target=self._tick, name="parhash-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.draw(Snapshot(self))

    def wrap(self, sink):
        return sink

    def update(self, files: int, nbytes: int, found) -> None:
        self.files += files
        self.bytes += nbytes
        self.found = found

    def draw(self, now: Snapshot) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class PlainProgress(TimedProgress):
    """``TERM=dumb`` (Emacs' shell, some CI logs): no ``\\r`` and no colour; a whole status
    line every ``EVERY`` seconds, and nothing at all for a run shorter than that."""

    #: Seconds between status lines: a log of an hour-long run gets 360 lines, not 14,400.
    EVERY = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def draw(self, now: Snapshot) -> None:
        if time.monotonic() - self._last >= self.EVERY:
            self._last = time.monotonic()
            with self._lock:
                err(now.plain())

    def warn(self, message: str) -> None:
        with self._lock:
            err(f"parhash: warning: {sanitize(message)}")


#: Width for a terminal that reports none (a pty nobody sized: ``script`` started from a
#: cron job, a CI runner's pty): tqdm would draw a 0-column bar, i.e. nothing at all.
FALLBACK_COLUMNS = 80
FALLBACK_ROWS = 24


def _width_options(stream) -> dict:
    """tqdm width keywords: follow the terminal's size, unless it reports 0 columns, when
    ``COLUMNS`` or ``FALLBACK_COLUMNS`` is used (found by review: ``--progress`` on an
    unsized pty showed no bar at all)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    # tqdm needs both: with 0 rows it draws nothing even at a fixed width.
    return {
        "ncols": size.columns or _env_int("COLUMNS", FALLBACK_COLUMNS),
        "nrows": size.lines or _env_int("LINES", FALLBACK_ROWS),
    }


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "")) or default
    except ValueError:
        return default


class TqdmProgress(TimedProgress):
    """A bar in bytes (percentage and ETA once the total is known) with the file count."""

    def __init__(self) -> None:
        super().__init__()
        from tqdm import tqdm  # lazily: runs without a bar never import it

        # No tqdm monitor thread: our own timer (``TimedProgress``) redraws, and starts
        # only after the workers were forked.
        tqdm.monitor_interval = 0
        self._tqdm = tqdm
        self.bar = tqdm(
            total=None,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=sys.stderr,
            **_width_options(sys.stderr),
            desc="hashing",
            mininterval=0,
            bar_format=self.WALKING,
        )
        #: stdout is the terminal the bar is on: data lines must clear the bar first.
        self.shared = same_terminal(sys.stdout, sys.stderr)

    #: Bar layouts: bytes only while the walk goes on; percentage, bar and ETA (tqdm's, from
    #: bytes) once there is a total, ``~`` before a total that is extrapolated.
    WALKING = "{desc}: {n_fmt}B [{elapsed}, {rate_fmt}{postfix}]"
    KNOWN = (
        "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/APPROX{total_fmt}B "
        "[{elapsed}<{remaining}, {rate_fmt}{postfix}]"
    )

    def draw(self, now: Snapshot) -> None:
        with self._tqdm.get_lock():
            if not now.total:  # unknown yet, or nothing to read: no percentage
                self.bar.bar_format = self.WALKING
            else:
                self.bar.bar_format = self.KNOWN.replace("APPROX", "~" if now.estimated else "")
            self.bar.total = now.total
            self.bar.n = now.bytes
            self.bar.set_postfix_str(now.files_text(), refresh=False)
            self.bar.refresh(nolock=True)

    def wrap(self, sink):
        return _MakeWay(sink, self) if self.shared else sink

    @contextlib.contextmanager
    def cleared(self) -> Iterator[None]:
        """The bar off the screen while data lines are written, then redrawn below them
        (``tqdm.write`` for text that is not ours to format). stdout is flushed inside:
        its buffer must not reach the terminal after the bar is back."""
        with self._tqdm.external_write_mode(file=sys.stderr):
            try:
                yield
            finally:
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.flush()
                    sys.stdout.buffer.flush()

    def warn(self, message: str) -> None:
        self._tqdm.write(
            f"parhash: {paint('warning:', 'warning')} {sanitize(message)}", file=sys.stderr
        )

    def close(self) -> None:
        super().close()
        final = Snapshot(self)  # the walk is over (or was interrupted): say what was done
        final.bytes = final.total = self.bytes  # the records' sizes: exact
        final.walking, final.estimated = False, False
        final.found = max(final.found, final.files)
        self.draw(final)
        self.bar.close()


class _MakeWay(WrappedSink):
    """A sink whose writes clear the bar first: stdout and the bar share one terminal."""

    def __init__(self, sink, progress: TqdmProgress) -> None:
        super().__init__(sink)
        self.progress = progress

    def write(self, records) -> None:
        with self.progress.cleared():
            self.sink.write(records)

    def write_data(self, data: bytes) -> None:
        with self.progress.cleared():
            self.sink.write_data(data)

    def close(self, summary) -> None:
        with self.progress.cleared():
            self.sink.close(summary)


def make_progress(enabled: bool | None, quiet: bool):
    """``--progress`` forces the bar, ``--no-progress``/``-q`` drop it; default: stderr is a
    TTY. ``TERM=dumb`` gets plain periodic lines instead of a ``\\r`` bar."""
    if quiet or enabled is False:
        return NullProgress()
    if enabled or sys.stderr.isatty():
        if os.environ.get("TERM") == "dumb":
            return PlainProgress()
        return TqdmProgress()
    return NullProgress()
