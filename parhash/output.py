"""Where bytes go: the one checked writer of data, atomic output files, and the one writer
of human text to stderr.

Every byte of data (stdout, ``-o`` files, a rewritten manifest) goes through
``CheckedWriter``, which writes all of it or raises ``OutputError``. Python's own
``BufferedWriter.write`` is not enough: on a short ``write(2)`` (a full disk takes the
first 64 KiB of a 300 KiB write) it returns the short count and drops the rest without an
exception (seen with strace on CPython 3.11: ``write(1, ..., 309542) = 73728`` and nothing
after; the io docs allow a short count, https://docs.python.org/3/library/io.html#io.RawIOBase.write),
and nobody in parhash looked at the count. ``CheckedWriter`` loops until the kernel took
every byte, so the next ``write(2)`` reports ``ENOSPC``.

Output files are written to an anonymous temporary file (``O_TMPFILE``) in the target's
directory, fsynced, given a name and renamed over the target only when the run succeeds,
so an interrupted or failed run never leaves a truncated file that looks complete (the
previous version stays intact), and a run killed by SIGKILL leaves nothing with a name.
Where ``O_TMPFILE`` is not supported (NFS, FUSE, vfat, kernels before 3.11) the temporary
file is named ``.NAME.XXXXXXXX.parhash-tmp`` and holds an ``flock`` while its run lives;
the next run that writes into that directory removes such files whose lock it can take
(their run is dead: the kernel drops a dead process's locks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import sys

from parhash.exit_codes import FatalError

#: Bytes a file output collects before one ``write(2)``. Large writes are cheap for a file;
#: 1 MiB is the buffer the atomic output always had.
FILE_BUFFER = 1 << 20

#: Bytes stdout collects before one ``write(2)``: small enough that a reader of a pipe sees
#: records while a long scan runs (reporters write one batch at a time anyway), large enough
#: that a streamed json document is not one system call per record. A terminal gets every
#: write at once.
STDOUT_BUFFER = 64 << 10

#: Suffix of a named temporary file (the fallback without ``O_TMPFILE``); the sweep of stale
#: files matches only ``.*`` names with this suffix.
TMP_SUFFIX = ".parhash-tmp"


class OutputError(Exception):
    """Writing data failed (``ENOSPC``, ``EIO``, ``EPIPE``...): the run's output is not
    complete. ``where`` is the file, or ``None`` for stdout (then the message is exactly
    sha256sum's: ``write error: No space left on device``)."""

    def __init__(self, where: str | None, exc: OSError) -> None:
        self.where = where
        self.errno = exc.errno
        self.strerror = exc.strerror or str(exc)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        place = f"{self.where}: " if self.where else ""
        return f"write error: {place}{self.strerror}"

    @property
    def broken_pipe(self) -> bool:
        return self.errno == errno.EPIPE


class CheckedWriter:
    """A binary sink over a file descriptor: every byte is written, or ``OutputError``.

    It has the parts of ``BinaryIO`` the reporters use (``write``, ``flush``, ``fileno``).
    Data is collected up to ``buffer_size`` and written with ``os.write`` in a loop until
    the kernel took all of it: a short count is followed by another write, which then
    reports the real error. One writer thread uses it at a time (the pipeline's writer,
    then the main thread after it was joined), so there is no lock.
    """

    def __init__(self, fd: int, where: str | None, buffer_size: int = FILE_BUFFER) -> None:
        self.fd = fd
        self.where = where
        self.buffer_size = buffer_size
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        if len(self.pending) >= self.buffer_size:
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Write everything collected; raise ``OutputError`` on the first failure."""
        view = memoryview(self.pending)
        done = 0
        try:
            while done < len(view):
                written = os.write(self.fd, view[done:])
                if written == 0:  # write(2) promised progress or an error; never spin
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                done += written
        except OSError as exc:
            raise OutputError(self.where, exc) from None
        finally:
            view.release()
            del self.pending[:done]

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Flush and close the descriptor; ``close(2)`` reports delayed write errors
        (NFS), so it is checked too."""
        self.flush()
        fd, self.fd = self.fd, -1
        if fd < 0:  # never open (stdout was closed) or closed already
            return
        try:
            os.close(fd)
        except OSError as exc:
            raise OutputError(self.where, exc) from None


def stdout_writer() -> CheckedWriter:
    """The checked writer of stdout (whatever Python's ``sys.stdout`` still buffered is
    flushed first, so bytes keep their order)."""
    if sys.stdout is None:  # started with descriptor 1 closed (``>&-``): any byte to
        # write fails with EBADF, as for sha256sum; fd 1 itself may be another file by now
        return CheckedWriter(-1, None, 0)
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    size = 0 if os.isatty(fd) else STDOUT_BUFFER
    return CheckedWriter(fd, None, size)


def finish_stdout(writer: CheckedWriter) -> None:
    """Flush stdout and close it, checked, as coreutils' ``close_stdout`` does (a delayed
    error of a file on NFS shows only at close). ``/dev/null`` then takes descriptor 1, so
    the interpreter's own final flush of ``sys.stdout`` has nowhere to fail."""
    fd = writer.fd
    writer.close()
    if fd < 0:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    if devnull != fd:
        os.dup2(devnull, fd)
        os.close(devnull)


class AtomicOutput:
    """A binary file that appears at ``path`` only on ``commit()``, as ``>`` would leave it.

    A symlink is followed, so the file it points to is replaced and the link stays. A target
    that exists but is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written
    directly: it cannot be replaced atomically, and replacing a device node would be wrong.

    The replaced file keeps its mode and owner (uid and gid), as ``>`` keeps them. Two
    cases cannot keep them with a rename, and then the finished content is copied over the
    target in place (after the complete temporary file was fsynced, and after
    ``posix_fallocate`` reserved the space, so a full disk fails before a byte of the old
    content changes): a target with several hard links (a rename would give this path a
    new inode and leave the other links with the old content), and a target owned by
    someone this process cannot ``chown`` to (not root). The trade-off: that copy is not
    atomic; a reader during the copy, or a crash in the middle of it, sees a mix of old and
    new content. ACLs and extended attributes are not carried over by a rename.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp_path: str | None = None  #: the temporary file's name, once it has one
        try:
            self.replaced: os.stat_result | None = os.stat(path)
        except OSError:
            self.replaced = None
        self.direct = self.replaced is not None and not stat.S_ISREG(self.replaced.st_mode)
        # A device is opened by the name given: /dev/stdout resolves to "pipe:[...]".
        self.target = os.path.realpath(path) if os.path.islink(path) and not self.direct else path
        # Relative as given: a directory below a cwd whose ancestors this user cannot
        # search is still writable by name, as for ``>``.
        self.directory = os.path.dirname(self.target) or os.curdir
        if self.direct:
            fd = self._open(self.target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        else:
            fd = self._temporary(self.directory)
        self.stream = CheckedWriter(fd, path)
        #: The target itself, open for the in-place copy (several links, a foreign owner);
        #: opened now so that a target we may not write fails before anything is hashed.
        self.in_place: int | None = None
        if not self.direct:
            try:
                if self._must_write_in_place(fd):
                    self.in_place = self._open(self.target, os.O_WRONLY)
            except BaseException:
                self.abort()
                raise

    def _open(self, path: str, flags: int, mode: int = 0o666) -> int:
        try:
            return os.open(path, flags | os.O_CLOEXEC, mode)
        except OSError as exc:
            raise FatalError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _temporary(self, directory: str) -> int:
        """An anonymous file in ``directory`` if the file system can, else a locked named
        one (stale ones of dead runs are removed first)."""
        remove_stale_temporaries(directory)
        if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
            try:
                fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise FatalError(f"cannot write {self.path}: {exc.strerror}") from None
            else:
                fcntl.flock(fd, fcntl.LOCK_EX)  # keeps its name safe from a sweep once linked
                return fd
        while True:
            name = self._temp_name(directory)
            fd = self._open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Between open and flock another run's sweep may have taken the lock and
            # removed the name: keep the file only if the name is still ours.
            if _same_file(name, os.fstat(fd)):
                self.tmp_path = name
                return fd
            os.close(fd)

    def _temp_name(self, directory: str) -> str:
        base = os.path.basename(self.target)
        import secrets  # here: its imports (random, hmac, base64) cost 1.7 ms of every start

        return os.path.join(directory, f".{base}.{secrets.token_hex(4)}{TMP_SUFFIX}")

    def commit(self) -> None:
        """Complete the file: flush, fsync, then rename into place (or copy in place)."""
        fd = self.stream.fileno()
        try:
            if self.direct:
                self.stream.close()
                return
            self.stream.flush()
            os.fsync(fd)
            if self.in_place is not None:
                self._write_in_place(fd, self.in_place)
            else:
                self._rename_into_place(fd)
        except OSError as exc:
            self.abort()
            raise OutputError(self.path, exc) from None
        except OutputError:
            self.abort()
            raise
        self.abort()  # close the descriptor (and drop the temporary file when copied)

    def _must_write_in_place(self, fd: int) -> bool:
        """Give the temporary file the mode and owner the target has (or a new file gets);
        ``True`` when only an in-place copy can keep the target's identity (hard links, an
        owner this process cannot ``chown`` to)."""
        old = self.replaced
        if old is None:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            return False
        if old.st_nlink > 1:
            return True
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
            try:
                os.fchown(fd, old.st_uid, old.st_gid)
            except PermissionError:
                return True
        os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after chown, which clears set-id bits
        return False

    def _rename_into_place(self, fd: int) -> None:
        if self.tmp_path is None:  # anonymous: give it a name, then rename that name
            directory = self.directory
            name = self._temp_name(directory)
            # linkat(AT_SYMLINK_FOLLOW) through /proc (open(2): O_TMPFILE). A dst_dir_fd
            # is what makes os.link call linkat: without one CPython calls link(2), which
            # links the /proc symlink itself and fails with EXDEV.
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.link(
                    f"/proc/self/fd/{fd}",
                    os.path.basename(name),
                    dst_dir_fd=dir_fd,
                    follow_symlinks=True,
                )
            finally:
                os.close(dir_fd)
            self.tmp_path = name
        os.replace(self.tmp_path, self.target)
        self.tmp_path = None
        _fsync_dir(self.directory)

    def _write_in_place(self, fd: int, out: int) -> None:
        """Copy the complete, fsynced temporary file over the target's content."""
        size = os.fstat(fd).st_size
        try:
            if size:  # a full disk fails here, before a byte of the target changes
                os.posix_fallocate(out, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        os.lseek(out, 0, os.SEEK_SET)
        writer = CheckedWriter(out, self.path, 0)
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(FILE_BUFFER, size - offset), offset)
            if not chunk:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            writer.write(chunk)
            offset += len(chunk)
        os.ftruncate(out, size)
        os.fsync(out)

    def abort(self) -> None:
        """Drop the temporary file; the target keeps whatever it held before."""
        fd, self.stream.fd = self.stream.fd, -1
        in_place, self.in_place = getattr(self, "in_place", None), None
        for each in (fd, in_place):
            if each is not None and each >= 0:
                with contextlib.suppress(OSError):
                    os.close(each)
        if self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)
            self.tmp_path = None


def refuse_overwriting_input(
    output: str,
    roots: list[str],
    lists: list[str],
    *,
    follow_symlinks: bool = False,
    exclude_files: list[str] = (),  # type: ignore[assignment]
) -> None:
    """Raise ``FatalError`` before anything is hashed when ``-o`` would replace an input:
    a named PATH, a ``--files-from`` list, or an existing file inside a scanned tree (by
    device and inode, so also through a symlink or a hard link). A new file, or one
    outside every tree, is fine; a new file inside a tree is never listed (its temporary
    file is skipped by identity)."""
    try:
        st = os.stat(output)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return  # a device or FIFO is written directly, and walks never read one
    me = (st.st_dev, st.st_ino)
    for name in lists:
        if name != "-" and _identity(name) == me:
            _refuse(output, f"the --files-from list {name}")
    for name in exclude_files:
        if _identity(name) == me:
            _refuse(output, f"the --exclude-from file {name}")
    trees = []
    for root in roots:
        if _identity(root) == me:
            _refuse(output, f"the input {root}")
        if os.path.isdir(root):
            trees.append(root)
    real = os.path.realpath(output)
    for root in trees:
        top = os.path.realpath(root)
        if os.path.commonpath([top, real]) == top:
            _refuse(output, f"a file inside the scanned tree {root}")
    if st.st_nlink > 1 or follow_symlinks:  # another name of it may be inside a tree
        for root in trees:
            if _tree_holds(root, me, follow_symlinks):
                _refuse(output, f"a file inside the scanned tree {root} (a link to it)")


class ListedOutputGuard:
    """The ``-o`` target against each ``--files-from`` path as the list streams.

    A listed path is an input like a named PATH, but a streamed list (``find | parhash -T
    -``) cannot be checked before hashing starts. So each listed path is compared by
    device and inode with the target (one ``stat`` in the parent, only when ``-o`` names an
    existing regular file); a hit becomes an error record instead of a read, and
    ``raise_if_hit`` fails the run before the output is committed, so the target keeps
    its data (found in review: ``scan -T list -o t/data.txt`` replaced a listed file)."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.identity: tuple[int, int] | None = None
        self.hit: str | None = None
        try:
            st = os.stat(output)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            self.identity = (st.st_dev, st.st_ino)

    def is_output(self, path: str) -> bool:
        if self.identity is None or _identity(path) != self.identity:
            return False
        self.hit = self.hit or path
        return True

    def raise_if_hit(self) -> None:
        if self.hit is not None:
            _refuse(self.output, f"listed in --files-from as {self.hit}")


def _refuse(output: str, what: str) -> None:
    raise FatalError(f"-o {output} is {what}; refusing to overwrite an input")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _tree_holds(root: str, me: tuple[int, int], follow_symlinks: bool) -> bool:
    """Whether a name below ``root`` is the file ``me``: one pass of ``readdir`` (the inode
    number comes with each entry), a ``stat`` only for a candidate or, under ``-L``, a
    symlink. Run only when the output has several links or symlinks are followed."""
    stack, seen = [root], set()
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                link = entry.is_symlink()
                if link and not follow_symlinks:
                    continue
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    key = _identity(entry.path) if link else (entry.stat().st_dev, entry.inode())
                    if key not in seen:
                        seen.add(key)
                        stack.append(entry.path)
                elif (link or entry.inode() == me[1]) and _identity(entry.path) == me:
                    return True
            except OSError:
                continue
    return False


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def remove_stale_temporaries(directory: str) -> None:
    """Remove ``.*.parhash-tmp`` files in ``directory`` left by runs that died (SIGKILL,
    power loss) before they could remove them. A live run holds an ``flock`` on its file,
    so only a file whose lock can be taken is removed; files this user cannot open are
    left alone."""
    try:
        entries = [e for e in os.scandir(directory) if _is_temporary(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and _same_file(entry.path, st):
                os.unlink(entry.path)
        except OSError:
            pass  # locked by a live run, or gone already
        finally:
            os.close(fd)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


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

#: The one palette: every colour parhash prints, by what it means (the words on stderr,
#: and the audit report's classes, alarming ones in red).
STYLES = {
    "warning": "\x1b[33m",
    "error": "\x1b[1;31m",
    "ok": "\x1b[32m",
    "dim": "\x1b[2m",
    "corrupted": "\x1b[1;31m",
    "removed": "\x1b[31m",
    "modified": "\x1b[33m",
    "moved": "\x1b[36m",
    "added": "\x1b[32m",
    "unreadable": "\x1b[35m",
    "unchanged": "\x1b[2m",
}
RESET = "\x1b[0m"


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
    return styled(text, style) if color_enabled(stream) else text


def styled(text: str, style: str) -> str:
    """``text`` in the colour of ``style`` (``STYLES``), then back to the default."""
    return f"{STYLES[style]}{text}{RESET}"


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
