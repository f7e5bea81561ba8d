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
import operator
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from parhash.fsutil import LongPathOpener, describe_oserror, file_kind
from parhash.model import FileRecord
from parhash.mounts import pseudo_mounts


@dataclass(frozen=True)
class WalkOptions:
    """Walker settings shared by every command that walks a tree."""

    follow_symlinks: bool = False
    one_file_system: bool = False
    exclude: tuple[str, ...] = ()
    #: Deepest level listed: 1 is the root's own entries (fd's ``--max-depth``); None: no limit.
    max_depth: int | None = None
    #: Include names starting with ``.`` (an integrity tool must see them: on by default).
    hidden: bool = True
    #: Honour ``.gitignore`` files (and skip ``.git`` directories), like fd and ripgrep.
    gitignore: bool = False
    #: List each directory's files in inode order rather than name order (``--hdd``): on a
    #: spinning disk inode order follows the on-disk layout, so reads seek less.
    inode_order: bool = False
    #: (st_dev, st_ino) of files never to list: parhash's own output file and its temporary
    #: file when they sit inside the tree being hashed.
    skip_files: frozenset[tuple[int, int]] = frozenset()
    #: (st_dev, st_ino, real path) of every root of the run (``named_root_ids``): a root met
    #: inside another one is left to its own walk, so ``scan tree tree/sub`` lists each
    #: file once. Not a selection option: it is never recorded in a manifest.
    named_roots: frozenset[tuple[int, int, str]] = frozenset()


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


class PathFilter:
    """Would the walker reach this path (relative to the root)? For an audit's manifest side,
    so that what the walk leaves out (--exclude, --no-hidden, --max-depth) is neither added
    nor removed. (.gitignore files are read from the tree: ``GitignoreFilter``.)"""

    def __init__(self, options: WalkOptions) -> None:
        self.excludes = ExcludeMatcher(options.exclude)
        self.options = options

    def __call__(self, rel: str) -> bool:
        parts = rel.split(os.sep)
        if self.options.max_depth is not None and len(parts) > self.options.max_depth:
            return False
        if not self.options.hidden and any(p.startswith(".") for p in parts):
            return False
        return not self.excludes.excluded_path(rel)


class GitignoreFilter:
    """Would a ``--gitignore`` walk of ``root`` reach this path? The manifest-side twin of
    the walker's rule, reading the tree's ``.gitignore`` files (each directory's at most
    once), so an audit or ``--update`` with ``--gitignore`` neither removes nor drops what
    the walk now ignores."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.specs: dict[str, object] = {}

    def _spec(self, rel_dir: str) -> object:
        if rel_dir not in self.specs:
            spec = None
            try:
                with open(
                    os.path.join(self.root, rel_dir, ".gitignore"),
                    encoding="utf-8",
                    errors="surrogateescape",
                ) as f:
                    lines = f.read().splitlines()
            except OSError:
                pass
            else:
                from pathspec import GitIgnoreSpec

                spec = GitIgnoreSpec.from_lines(lines)
            self.specs[rel_dir] = spec
        return self.specs[rel_dir]

    def __call__(self, rel: str) -> bool:
        parts = rel.split(os.sep)
        chain: list[tuple[str, object]] = []
        base = ""
        for i, part in enumerate(parts):
            spec = self._spec(base)
            if spec is not None:
                chain.append((base, spec))
            is_dir = i < len(parts) - 1
            if (is_dir and part == ".git") or (chain and _ignored(chain, base + part, is_dir)):
                return False
            base += part + os.sep
        return True


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
    for prefix, names, records in walk_listings(root, options):
        yield from records
        for name in names:
            yield prefix + name


def walk_listings(
    root: str, options: WalkOptions, skipped: list[str] | None = None
) -> Iterator[tuple[str, list[str], list[FileRecord]]]:
    """``walk_directory`` one directory at a time: (path prefix, file names, error records)
    per listing, what the batcher consumes (a list per directory costs less than a
    resumption per file, and a task carries each directory's prefix once).
    Mount points of pseudo filesystems that were not entered are appended to ``skipped``
    (``"/proc: proc filesystem"``)."""
    return _Walk(root, options, skipped).run()


def named_root_ids(roots: Iterable[str]) -> frozenset[tuple[int, int, str]]:
    """``WalkOptions.named_roots`` for these roots (those that cannot be stat'ed left out)."""
    found = set()
    for root in roots:
        try:
            st = os.stat(root)
        except (OSError, ValueError):
            continue
        found.add((st.st_dev, st.st_ino, os.path.realpath(root)))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class _Dir:
    """A directory waiting on the walker's stack, with what its walk inherits."""

    path: str
    rel: str  #: relative to the root, with a trailing separator ("" for the root)
    depth: int  #: the root is 0
    ancestors: _Ancestor | None  #: for loop detection under --follow-symlinks
    ignores: tuple[
        tuple[str, object], ...
    ]  #: (.gitignore's directory rel, its spec), outermost first


class _Walk:
    """One walk of one root: settings compiled once, and the stack of directories to visit."""

    def __init__(self, root: str, options: WalkOptions, skipped: list[str] | None) -> None:
        self.root = root
        self.options = options
        self.follow = options.follow_symlinks
        self.excludes = ExcludeMatcher(options.exclude)
        # d_ino comes free with the directory listing: only a matching inode costs a stat.
        self.skip_inodes = {ino for _, ino in options.skip_files}
        # The other roots of the run; usually none, and then the fast path of ``classify``.
        here = os.path.realpath(root) if options.named_roots else ""
        self.named = {(dev, ino): real for dev, ino, real in options.named_roots if real != here}
        self.named_inodes = {ino for _, ino in self.named}
        mounts = pseudo_mounts()
        self.pseudo = {dev: fstype for _, dev, fstype in mounts}
        # Pseudo mount points below the root, relative to it: the walk never goes through a
        # symbolic link (unless -L, which stats every directory anyway), so a directory's
        # real path is the root's plus its relative path, and only a match costs a stat.
        base = child_prefix(os.path.realpath(root))
        self.pseudo_below = {point[len(base) :] for point, _, _ in mounts if point.startswith(base)}
        self.skipped = skipped if skipped is not None else []
        self.root_dev = 0
        self.long_paths = LongPathOpener()
        self.stack: list[_Dir] = []

    def run(self) -> Iterator[tuple[str, list[str], list[FileRecord]]]:
        try:
            st = os.stat(self.root)
        except OSError as exc:
            yield "", [], [self.error(self.root, f"cannot list directory: {describe_oserror(exc)}")]
            return
        self.root_dev = st.st_dev
        ancestors = _Ancestor(st.st_dev, st.st_ino, None) if self.follow else None
        self.stack.append(_Dir(self.root, "", 0, ancestors, ()))
        while self.stack:
            directory = self.stack.pop()
            try:
                entries = self.list_directory(directory.path)
            except OSError as exc:
                error = f"cannot list directory: {describe_oserror(exc)}"
                yield "", [], [self.error(directory.path, error)]
                continue
            yield self.classify(entries, directory)
        self.long_paths.close()

    def list_directory(self, dirpath: str) -> list[os.DirEntry[str]]:
        """A directory's entries, in the order the file system lists them (``classify``
        sorts what it keeps: names sort faster as plain strings than entries by key).

        A path beyond PATH_MAX is listed through a descriptor from ``long_paths``; its
        entries stat through that descriptor, which stays open until the next deep
        directory is listed, after this one's entries are classified.
        """
        try:
            with os.scandir(dirpath) as it:
                return list(it)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        with os.scandir(self.long_paths.open_dir(dirpath)) as it:
            return list(it)

    def classify(
        self, entries: list[os.DirEntry[str]], directory: _Dir
    ) -> tuple[str, list[str], list[FileRecord]]:
        """A directory's path prefix, the names of its files and its error records; its
        subdirectories go on the stack.

        Builds lists instead of yielding per entry: the walker runs in the parent process,
        whose time per file bounds the whole run on trees of small files.
        """
        follow = self.follow
        options = self.options
        excludes = self.excludes
        ignores = directory.ignores
        if options.gitignore:
            ignores = self.read_gitignore(entries, directory)
        # parhash's own files (-o, the hash cache) cost only an inode test per file here,
        # the full test when one matches: the walker's time per file bounds a run.
        skip = self.skip_inodes
        plain = not (excludes or ignores or self.named or not options.hidden)
        prefix = child_prefix(directory.path)
        names: list[str] = []
        records: list[FileRecord] = []
        subdirs: list[_Dir] = []
        for entry in entries:
            name = entry.name
            try:
                if plain:
                    if (
                        skip
                        and entry.inode() in skip
                        and self.excluded(entry, name, directory, ignores)
                    ):
                        continue
                    if entry.is_file(follow_symlinks=follow):
                        names.append(name)
                        continue
                elif self.excluded(entry, name, directory, ignores):
                    continue
                elif entry.is_file(follow_symlinks=follow):
                    names.append(name)
                    continue
                path = prefix + name
                if entry.is_dir(follow_symlinks=follow):
                    depth = directory.depth + 1
                    if options.max_depth is not None and depth >= options.max_depth:
                        continue
                    sub = self.descend(entry, directory, path, directory.rel + name, ignores)
                    if isinstance(sub, FileRecord):
                        records.append(sub)
                    elif sub is not None:
                        subdirs.append(sub)
                elif entry.is_symlink():
                    if follow:
                        records.append(self.error(path, self.broken_link(entry, directory.path)))
                else:
                    kind = file_kind(self.entry_stat(entry, directory.path, False).st_mode)
                    records.append(self.error(path, f"not a regular file ({kind})"))
            except OSError as exc:
                records.append(self.error(prefix + name, describe_oserror(exc)))
        subdirs.sort(key=_BY_PATH, reverse=True)  # popped in name order
        self.stack.extend(subdirs)
        records.sort(key=_BY_PATH)
        if options.inode_order and len(names) > 1:
            inode = {e.name: e.inode() for e in entries}
            names.sort(key=inode.__getitem__)
        else:
            names.sort()
        return prefix, names, records

    def excluded(self, entry: os.DirEntry[str], name: str, directory: _Dir, ignores: tuple) -> bool:
        """--exclude, --no-hidden, .gitignore and parhash's own output files."""
        rel = directory.rel + name
        if self.excludes and self.excludes.excluded(name, rel):
            return True
        if not self.options.hidden and name[0] == ".":
            return True
        is_dir = entry.is_dir(follow_symlinks=self.follow)
        if self.options.gitignore:
            if is_dir and name == ".git":
                return True
            if ignores and _ignored(ignores, rel, is_dir):
                return True
        if self.skip_inodes and not is_dir and entry.inode() in self.skip_inodes:
            st = self.entry_stat(entry, directory.path, self.follow)
            if (st.st_dev, st.st_ino) in self.options.skip_files:
                return True
        if self.named_inodes and entry.inode() in self.named_inodes:
            st = self.entry_stat(entry, directory.path, self.follow)
            return self.named_elsewhere(st, child_prefix(directory.path) + name)
        return False

    def named_elsewhere(self, st: os.stat_result, path: str) -> bool:
        """Whether ``path`` is another root of this run (it is walked or hashed as itself):
        the same inode and the same real path (a hard link of a named file is not it)."""
        real = self.named.get((st.st_dev, st.st_ino))
        return real is not None and os.path.realpath(path) == real

    def read_gitignore(self, entries: list[os.DirEntry[str]], directory: _Dir):
        """The ignore chain for this directory's entries: its parent's, plus its own
        ``.gitignore`` if it has one (an unreadable one is an error record, not a crash)."""
        for entry in entries:
            if entry.name == ".gitignore" and entry.is_file():
                try:
                    with open(entry.path, encoding="utf-8", errors="surrogateescape") as f:
                        lines = f.read().splitlines()
                except OSError:
                    return directory.ignores
                from pathspec import GitIgnoreSpec  # only --gitignore pays for the import

                return (*directory.ignores, (directory.rel, GitIgnoreSpec.from_lines(lines)))
        return directory.ignores

    def entry_stat(self, entry: os.DirEntry[str], dirpath: str, follow: bool) -> os.stat_result:
        """``entry.stat``, also for an entry whose full path is beyond PATH_MAX."""
        try:
            return entry.stat(follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        dir_fd = self.long_paths.open_dir(dirpath)
        return os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=follow)

    def broken_link(self, entry: os.DirEntry[str], dirpath: str) -> str:
        """Why a followed symlink is neither a file nor a directory: dangling, or a FIFO..."""
        try:
            st = self.entry_stat(entry, dirpath, True)
        except FileNotFoundError:
            return "dangling symbolic link"
        except OSError as exc:
            return describe_oserror(exc)
        return f"not a regular file ({file_kind(st.st_mode)})"

    def descend(
        self, entry: os.DirEntry[str], parent: _Dir, path: str, rel: str, ignores
    ) -> _Dir | FileRecord | None:
        """Whether to enter a subdirectory: a stack item, a loop error, or None (pruned)."""
        options = self.options
        ancestors = parent.ancestors
        if options.one_file_system or options.follow_symlinks or rel in self.pseudo_below:
            st = self.entry_stat(entry, parent.path, options.follow_symlinks)
            if st.st_dev != self.root_dev:
                if options.one_file_system:
                    return None
                if st.st_dev in self.pseudo:
                    self.skipped.append(f"{path}: {self.pseudo[st.st_dev]} filesystem")
                    return None
            if ancestors is not None:
                if ancestors.contains(st.st_dev, st.st_ino):
                    return self.error(
                        path, "file system loop: a symbolic link leads back to a parent"
                    )
                ancestors = _Ancestor(st.st_dev, st.st_ino, ancestors)
        return _Dir(path, rel + os.sep, parent.depth + 1, ancestors, ignores)

    def error(self, path: str, message: str) -> FileRecord:
        return _error(path, self.root, message)


def _ignored(ignores, rel: str, is_dir: bool) -> bool:
    """Whether the .gitignore chain ignores ``rel``: the deepest file with a matching
    pattern decides, and within a file the last match (``!pattern`` re-includes)."""
    verdict = False
    for base, spec in ignores:
        result = spec.check_file(rel[len(base) :] + ("/" if is_dir else ""))
        if result.include is not None:
            verdict = result.include
    return verdict


#: Subdirectories and error records are sorted by path; file names as plain strings.
_BY_PATH = operator.attrgetter("path")


def _error(path: str, root: str, message: str) -> FileRecord:
    return FileRecord(path=path, root=root, size=None, mtime_ns=None, digest=None, error=message)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_UNITS |= {u + "ib": v for u, v in _SIZE_UNITS.items() if u not in ("", "b")}
_SIZE_UNITS |= {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def parse_size(text: str) -> int:
    """``10K``, ``1.5M``, ``2G`` (powers of 1024, as find and du; ``KiB`` too), ``3MB``
    (powers of 1000) or a plain byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 10K, 1.5M, 2G, 3MB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


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
