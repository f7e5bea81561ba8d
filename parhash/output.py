"""Where bytes go: atomic output files, and the one writer of human text to stderr.

Output files are written to a temporary file in the same directory, fsynced and renamed
over the target only when the run succeeds, so an interrupted or failed run never leaves
a truncated file that looks complete (and the previous version stays intact).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
from typing import BinaryIO

from parhash.exit_codes import FatalError


class AtomicOutput:
    """A binary file that appears at ``path`` only on ``commit()``.

    A symlink is followed, so the file it points to is replaced and the link stays. A target
    that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written
    directly: it cannot be replaced atomically, and replacing a device node would be wrong.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp_path: str | None = None
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or stat.S_ISREG(st.st_mode):
            self.path = os.path.realpath(path) if os.path.islink(path) else path
        else:
            try:
                self.stream: BinaryIO = open(path, "wb")  # noqa: SIM115
            except OSError as exc:
                raise FatalError(f"cannot write {path}: {exc.strerror or exc}") from None
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, self.tmp_path = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".parhash-tmp"
            )
        except OSError as exc:
            raise FatalError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.stream = os.fdopen(fd, "wb", buffering=1 << 20)

    def commit(self) -> None:
        """Flush, fsync, give the file normal permissions, rename into place, fsync the dir."""
        if self.tmp_path is None:  # written in place (a device or FIFO)
            try:
                self.stream.close()
            except OSError as exc:
                raise FatalError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            return
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(self.stream.fileno(), 0o666 & ~umask)
            self.stream.close()
            os.replace(self.tmp_path, self.path)
        except OSError as exc:
            self.abort()
            raise FatalError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def abort(self) -> None:
        """Drop the temporary file; the target keeps whatever it held before."""
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# C0 controls, DEL, C1 controls and the bidi overrides: shown escaped, never interpreted,
# so a file name cannot move the cursor or recolour the terminal (fd's sanitize.rs).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def sanitize(text: str) -> str:
    """Make text from the file system safe to print on a terminal."""
    return _UNSAFE.sub(_escape_char, text)


_color = "auto"

_STYLES = {"warning": "\x1b[33m", "error": "\x1b[1;31m", "ok": "\x1b[32m", "dim": "\x1b[2m"}


def set_color(choice: str) -> None:
    """``auto`` (stderr is a terminal, NO_COLOR is unset and TERM is not ``dumb``: a
    terminal that cannot move the cursor cannot be trusted with colours either),
    ``always`` or ``never``."""
    global _color
    _color = choice


def color_enabled(stream=None) -> bool:
    if _color == "always":
        return True
    if _color == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, style: str, stream=None) -> str:
    """``text`` in a colour when colours are on for ``stream`` (stderr by default)."""
    return f"{_STYLES[style]}{text}\x1b[0m" if color_enabled(stream) else text


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1,000 changes``: every count a person reads goes through
    here, so no message says ``1 files``."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def same_terminal(a, b) -> bool:
    """True if streams ``a`` and ``b`` are the same terminal (``parhash scan`` at a prompt:
    stdout and stderr both the tty). Then a progress bar on one must make way for data
    written to the other. Compared by device and inode, so two descriptors of one pty
    match and two different terminals do not."""
    try:
        if not (a.isatty() and b.isatty()):
            return False
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_rdev, sa.st_ino, sa.st_dev) == (sb.st_rdev, sb.st_ino, sb.st_dev)


def err(message: str) -> None:
    """Write one line of human text to stderr (never stdout: stdout carries data only)."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
