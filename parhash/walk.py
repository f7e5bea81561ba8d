"""The directory walker: streams the paths to hash, and error records for what can't be.

It never prints and never raises for a per-entry problem; problems travel as ``FileRecord``s
with an ``error`` (as fd's walker sends ``WorkerResult::Error`` down the same channel).
It is iterative (no recursion limit on deep trees), lists each directory once, sorts names
within a directory (so walk order is reproducible) and does not stat regular files: the
worker's fstat on the open descriptor is the one stat that matters.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from parhash.hashing import LongPathOpener, describe_oserror, file_kind
from parhash.model import FileRecord


@dataclass(frozen=True)
class WalkOptions:
    """Walker settings shared by every command that walks a tree."""

    follow_symlinks: bool = False
    one_file_system: bool = False
    exclude: tuple[str, ...] = ()
    #: (st_dev, st_ino) of files never to list: parhash's own output file and its temporary
    #: file when they sit inside the tree being hashed.
    skip_files: frozenset[tuple[int, int]] = frozenset()


class ExcludeMatcher:
    """``--exclude GLOB`` rules, matched against paths relative to the root.

    A pattern without ``/`` matches a file or directory name at any depth (``*.pyc``,
    ``.git``); a pattern with ``/`` matches the whole relative path (``build/*``, a leading
    ``/`` is ignored). ``*`` also crosses ``/`` (fnmatch semantics), so ``**`` works too.
    All patterns are compiled into two regular expressions: one call per entry.
    """

    def __init__(self, patterns: tuple[str, ...]) -> None:
        names = [p.rstrip("/") for p in patterns if "/" not in p.rstrip("/")]
        paths = [p.strip("/") for p in patterns if "/" in p.rstrip("/")]
        self._name = _compile(names)
        self._path = _compile(paths)

    def __bool__(self) -> bool:
        return self._name is not None or self._path is not None

    def excluded_path(self, rel: str) -> bool:
        """Whether the walker would never reach ``rel`` (it or a parent directory matches)."""
        if not self:
            return False
        parts = rel.split(os.sep)
        return any(self.excluded(parts[i], os.sep.join(parts[: i + 1])) for i in range(len(parts)))

    def excluded(self, name: str, rel: str) -> bool:
        if self._name is not None and self._name.match(name):
            return True
        return self._path is not None and self._path.match(rel) is not None


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


def child_prefix(root: str) -> str:
    """The prefix of every path below ``root``, so paths print as reached (``find DIR``)."""
    return root if root.endswith(os.sep) else root + os.sep


@dataclass(frozen=True, slots=True)
class _Ancestor:
    """A link in the chain of directories above the current one, for symlink-loop checks."""

    dev: int
    ino: int
    parent: _Ancestor | None

    def contains(self, dev: int, ino: int) -> bool:
        node: _Ancestor | None = self
        while node is not None:
            if node.dev == dev and node.ino == ino:
                return True
            node = node.parent
        return False


def walk_directory(root: str, options: WalkOptions) -> Iterator[str | FileRecord]:
    """Yield every regular file below the directory ``root`` (as a path), or an error record.

    Symbolic links are skipped unless ``follow_symlinks``; then a link to a directory is
    descended unless it points back to a directory on the current path (a loop), and a
    dangling link is an error record. Other non-regular files (FIFOs, sockets, devices) are
    error records: they are never opened.
    """
    return _Walk(root, options).run()


class _Walk:
    """One walk of one root: settings compiled once, and the stack of directories to visit."""

    def __init__(self, root: str, options: WalkOptions) -> None:
        self.root = root
        self.options = options
        self.follow = options.follow_symlinks
        self.excludes = ExcludeMatcher(options.exclude)
        # d_ino comes free with the directory listing: only a matching inode costs a stat.
        self.skip_inodes = {ino for _, ino in options.skip_files}
        self.root_dev = 0
        self.long_paths = LongPathOpener()
        # Each entry: (directory path, path relative to root with trailing sep, ancestors).
        self.stack: list[tuple[str, str, _Ancestor | None]] = []

    def run(self) -> Iterator[str | FileRecord]:
        try:
            st = os.stat(self.root)
        except OSError as exc:
            yield self.error(self.root, f"cannot list directory: {describe_oserror(exc)}")
            return
        self.root_dev = st.st_dev
        ancestors = _Ancestor(st.st_dev, st.st_ino, None) if self.follow else None
        self.stack.append((self.root, "", ancestors))
        while self.stack:
            dirpath, rel_dir, ancestors = self.stack.pop()
            try:
                entries = self.list_directory(dirpath)
            except OSError as exc:
                yield self.error(dirpath, f"cannot list directory: {describe_oserror(exc)}")
                continue
            yield from self.classify(entries, dirpath, rel_dir, ancestors)
        self.long_paths.close()

    def list_directory(self, dirpath: str) -> list[os.DirEntry[str]]:
        """A directory's entries, sorted by name.

        A path beyond PATH_MAX is listed through a descriptor from ``long_paths``; its
        entries stat through that descriptor, which stays open until the next deep
        directory is listed, after this one's entries are classified.
        """
        try:
            with os.scandir(dirpath) as it:
                return sorted(it, key=_entry_name)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        with os.scandir(self.long_paths.open_dir(dirpath)) as it:
            return sorted(it, key=_entry_name)

    def classify(
        self,
        entries: list[os.DirEntry[str]],
        dirpath: str,
        rel_dir: str,
        ancestors: _Ancestor | None,
    ) -> Iterator[str | FileRecord]:
        """Yield a directory's files and error records; push its subdirectories."""
        follow = self.follow
        excludes = self.excludes
        prefix = child_prefix(dirpath)
        subdirs: list[tuple[str, str, _Ancestor | None]] = []
        for entry in entries:
            name = entry.name
            rel = rel_dir + name
            if excludes and excludes.excluded(name, rel):
                continue
            path = prefix + name
            try:
                if entry.is_file(follow_symlinks=follow):
                    if self.skip_inodes and entry.inode() in self.skip_inodes:
                        st = self.entry_stat(entry, dirpath, follow)
                        if (st.st_dev, st.st_ino) in self.options.skip_files:
                            continue
                    yield path
                elif entry.is_dir(follow_symlinks=follow):
                    sub = self.descend(entry, dirpath, path, rel, ancestors)
                    if isinstance(sub, FileRecord):
                        yield sub
                    elif sub is not None:
                        subdirs.append(sub)
                elif entry.is_symlink():
                    if follow:
                        yield self.error(path, _broken_link(path))
                else:
                    kind = file_kind(self.entry_stat(entry, dirpath, False).st_mode)
                    yield self.error(path, f"not a regular file ({kind})")
            except OSError as exc:
                yield self.error(path, describe_oserror(exc))
        self.stack.extend(reversed(subdirs))

    def entry_stat(self, entry: os.DirEntry[str], dirpath: str, follow: bool) -> os.stat_result:
        """``entry.stat``, also for an entry whose full path is beyond PATH_MAX."""
        try:
            return entry.stat(follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        dir_fd = self.long_paths.open_dir(dirpath)
        return os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=follow)

    def descend(
        self,
        entry: os.DirEntry[str],
        dirpath: str,
        path: str,
        rel: str,
        ancestors: _Ancestor | None,
    ) -> tuple[str, str, _Ancestor | None] | FileRecord | None:
        """Whether to enter a subdirectory: a stack item, a loop error, or None (pruned)."""
        options = self.options
        if not options.one_file_system and not options.follow_symlinks:
            return (path, rel + os.sep, None)
        st = self.entry_stat(entry, dirpath, options.follow_symlinks)
        if options.one_file_system and st.st_dev != self.root_dev:
            return None
        if ancestors is not None:
            if ancestors.contains(st.st_dev, st.st_ino):
                return self.error(path, "file system loop: a symbolic link leads back to a parent")
            ancestors = _Ancestor(st.st_dev, st.st_ino, ancestors)
        return (path, rel + os.sep, ancestors)

    def error(self, path: str, message: str) -> FileRecord:
        return _error(path, self.root, message)


def _broken_link(path: str) -> str:
    """Why a followed symlink is neither a file nor a directory: dangling, or a FIFO etc."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "dangling symbolic link"
    except OSError as exc:
        return describe_oserror(exc)
    return f"not a regular file ({file_kind(st.st_mode)})"


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _error(path: str, root: str, message: str) -> FileRecord:
    return FileRecord(path=path, root=root, size=None, mtime_ns=None, digest=None, error=message)


def classify_root(path: str) -> str:
    """``"dir"``, ``"file"`` or an error message for a command-line PATH argument.

    Arguments are followed when they are symlinks (like ``find -H``): naming a link on the
    command line means "this one".
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return describe_oserror(exc)
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file"
