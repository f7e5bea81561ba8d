"""File-system helpers shared by the walker (parent) and the readers (workers).

Naming file types and OS errors the way error records print them, and opening paths
beyond PATH_MAX one directory at a time.
"""

from __future__ import annotations

import errno
import os
import stat

_FILE_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symbolic link",
}


class NotRegularFile(OSError):
    """A directory, FIFO or device where a regular file must be (``open_regular``)."""


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A read descriptor of the regular file ``path``, and its stat. Opened non-blocking: a
    FIFO where a small input belongs (a key, a signature, allowed_signers, a file to sign)
    is refused at once instead of waiting for a writer forever (from cron). Raises the
    OSError of ``open``, or NotRegularFile ("is a directory", "not a regular file")."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        why = "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise NotRegularFile(0, why, path)
    return fd, st


def read_regular(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """At most ``limit + 1`` bytes of the regular file ``path`` (``open_regular``), so the
    caller tells a file larger than ``limit`` without reading it all; and its stat."""
    fd, st = open_regular(path)
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), st


def file_kind(mode: int) -> str:
    """A human name for a non-regular file type, for error records."""
    return _FILE_KINDS.get(stat.S_IFMT(mode), "special file")


def describe_oserror(exc: OSError, *, follow: bool = True) -> str:
    """The message an error record carries: the OS's words, without Python's decoration."""
    if exc.errno == errno.ELOOP and not follow:
        return "is a symbolic link (not followed)"
    return exc.strerror or str(exc)


def open_long(path: str, flags: int) -> int:
    """Open a path longer than PATH_MAX (4096 bytes on Linux) one directory at a time.

    The kernel refuses such a path in one piece (ENAMETOOLONG), but a tree can be deeper
    than that: each component is opened relative to its parent's descriptor (openat).
    Intermediate components resolve as they would in one piece; ``flags`` (``O_NOFOLLOW``
    included) apply to the last one.
    """
    parts = path.split(os.sep)
    dir_fd = os.open(os.sep if path.startswith(os.sep) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            if part:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = next_fd
        return os.open(parts[-1], flags, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


class LongPathOpener:
    """Opens paths beyond PATH_MAX relative to the last deep directory it opened.

    Opening every deep path from the top costs one openat per level; the walker goes depth
    first and a directory's files are hashed together, so keeping one directory open makes
    the next open one or two calls. Each user (the walker, a worker) has its own instance:
    the descriptor it hands out stays valid until its next ``open_dir``.
    """

    def __init__(self) -> None:
        self.dir_path: str | None = None
        self.dir_fd: int | None = None

    def open_dir(self, dirpath: str) -> int:
        """A descriptor for ``dirpath``, owned by this opener."""
        if dirpath == self.dir_path and self.dir_fd is not None:
            return self.dir_fd
        parent, name = os.path.split(dirpath)
        flags = os.O_RDONLY | os.O_DIRECTORY
        if self.dir_fd is not None and parent == self.dir_path:
            fd = os.open(name, flags, dir_fd=self.dir_fd)
        else:
            fd = open_long(dirpath, flags)
        self.close()
        self.dir_path, self.dir_fd = dirpath, fd
        return fd

    def open(self, path: str, flags: int) -> int:
        """Open a file whose path ``os.open`` refused as too long (a new descriptor, the
        caller's to close): by name, relative to its directory's descriptor."""
        dirpath, name = os.path.split(path)
        return os.open(name, flags, dir_fd=self.open_dir(dirpath))

    def close(self) -> None:
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_path = self.dir_fd = None
