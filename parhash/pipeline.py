"""The one pipeline behind every command: roots -> batches -> executor -> records -> sink.

``iter_records`` is the library-level stream (used by ``parhash.scan``); ``run`` adds the
bounded queue and the writer thread that feed a reporter, plus progress and the summary.
Check and audit reuse both: they only bring their own roots and their own sink.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from parhash.exit_codes import FatalError
from parhash.hashing import HashSettings, WorkCounters, hash_batch
from parhash.links import LinkResolver
from parhash.model import Batch, Expected, FileRecord, Summary
from parhash.options import ScanOptions, resolve_jobs
from parhash.walk import WalkOptions, classify_root, named_root_ids, walk_listings

#: Largest number of files per task. Each task costs the parent a few thread handoffs
#: (task handler, result handler, main thread): measured on 100,000 small files, batches
#: of 128 cost the parent 10.7 us/file and 9,500 context switches, batches of 1,024 7 us
#: and 1,900. A large file in a batch delays only that batch: the pool keeps taking others.
MAX_BATCH = 1024

#: First batch size; batches double up to MAX_BATCH so that workers start at once on a
#: small tree and a tiny tree still spreads over every worker.
FIRST_BATCH = 8

#: Result lists (one per batch) waiting for the writer thread. With the executor's permits
#: this bounds the records alive at once: a slow stdout stops the walker, not memory growth.
QUEUE_DEPTH = 16


@dataclass
class WalkProgress:
    """What the walker has found so far; read by the progress bar from another thread."""

    files_found: int = 0
    done: bool = False
    #: Mount points not entered (pseudo filesystems), for ``run`` to warn about once each.
    skipped: list[str] = field(default_factory=list)


class Sink(Protocol):
    """A consumer of records: a reporter, a manifest writer, an audit comparer."""

    def write(self, records: list[FileRecord]) -> None: ...

    def close(self, summary: Summary) -> None: ...


class ProgressSink(Protocol):
    def counters(self, slots: int) -> WorkCounters | None:
        """Shared counters for the workers to bump per read, or None (no bar)."""

    def start(self, counters: WorkCounters | None, found: WalkProgress) -> None:
        """The workers exist: start showing progress (a refresh timer may start now)."""

    def wrap(self, sink: Sink) -> Sink:
        """The sink as the writer should use it (the bar makes way for data lines)."""

    def update(self, files: int, nbytes: int, found: WalkProgress) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


def check_roots(roots: Iterable[str]) -> list[str]:
    """Validate roots up front where a missing one is fatal (an audit's manifest roots)."""
    roots = list(roots)
    for root in roots:
        kind = classify_root(root)
        if kind not in ("dir", "file"):
            raise FatalError(f"{root}: {kind}")
    return roots


def unique_roots(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """A scan's PATH arguments, each file or directory once, and a warning per one dropped.

    ``scan . .`` or ``scan tree ./tree``: sha256sum hashes twice, but a manifest that lists
    a path twice is one ``audit`` must refuse, so a root that is the same file or directory
    (``st_dev``, ``st_ino``) as an earlier one is dropped. A root that does not exist stays:
    it becomes an error record, as with sha256sum (``scan a missing b`` hashes a and b).
    """
    roots: list[str] = []
    notices: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            roots.append(path)
            continue
        first = seen.get((st.st_dev, st.st_ino))
        if first is None:
            seen[st.st_dev, st.st_ino] = path
            roots.append(path)
        else:
            same = "named twice" if first == path else f"same as {first}"
            notices.append(f"{path}: {same}, scanned once")
    return roots, notices


@dataclass(frozen=True)
class Source:
    """One stream of work: items below one root, opened with one symlink policy.

    Items are paths to hash (``str``), error records the producer already made, or
    ``Expected`` entries (a path with the digest it should have: ``check``).
    """

    root: str
    follow: bool
    items: Iterable[str | FileRecord | Expected]
    #: ``items`` are (paths, records) listings, one per directory (the walker's form).
    listings: bool = False
    #: The user named these paths (not met while walking): FIFOs and devices are read.
    named: bool = False
    #: Mount points the walker did not enter (pseudo filesystems), filled as it goes.
    skipped: list[str] = field(default_factory=list)
    #: Hash every file in this process: a walk of /proc/self means this process's entries.
    here: bool = False


def scan_sources(roots: list[str], walk: WalkOptions) -> Iterator[Source]:
    """The sources of a scan: each directory root walked, each file root hashed as named,
    each root that cannot be stat'ed one error record (``missing: No such file...``).
    A root nested in another named root is walked once, as itself (``named_roots``)."""
    walk = replace(walk, named_roots=named_root_ids(roots))
    for root in roots:
        kind = classify_root(root)
        if kind == "dir":
            skipped: list[str] = []
            listings = walk_listings(root, walk, skipped)
            here = process_bound(root)
            follow = walk.follow_symlinks
            yield Source(root, follow, listings, listings=True, skipped=skipped, here=here)
        elif kind == "file":  # a file named on the command line is followed, like find -H
            yield Source(root, True, (root,), named=True)
        else:
            yield Source(root, True, (FileRecord(root, root, None, None, None, kind),))


def listed_source(name: str, null: bool, guard=None) -> Source:
    """``--files-from``: exactly the listed paths, one per line (or NUL-terminated with
    ``--null``), streamed. Listed symlinks are followed, as for command-line paths; a path
    that does not exist or is not a regular file becomes an error record like any other."""
    if name == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(name, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise FatalError(f"{name}: {exc.strerror or exc}") from None
    items = _listed_paths(stream, b"\0" if null else b"\n", guard)
    return Source(".", True, items, named=True)


#: Error text of a listed path that is the ``-o`` target (the run then fails, exit 2).
IS_OUTPUT = "is the -o output file; not read"


def _listed_paths(stream, separator: bytes, guard=None) -> Iterator[str | FileRecord]:
    """``guard`` (``output.ListedOutputGuard``, with ``-o``) turns the output file into
    an error record instead of an input."""
    try:
        tail = b""
        while chunk := stream.read(1 << 16):
            parts = (tail + chunk).split(separator)
            tail = parts.pop()
            for raw in parts:
                if raw:
                    yield _guarded(_listed(raw), guard)
        if tail:
            yield _guarded(_listed(tail), guard)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _guarded(item: str | FileRecord, guard) -> str | FileRecord:
    if guard is not None and type(item) is str and guard.is_output(item):
        return FileRecord(item, ".", None, None, None, IS_OUTPUT)
    return item


def _listed(raw: bytes) -> str | FileRecord:
    path = os.fsdecode(raw)
    if b"\0" in raw:  # a NUL-separated list read without --null
        return FileRecord(
            path, ".", None, None, None, "name holds a NUL byte (lists from -print0 need -0)"
        )
    return path


def stdin_record(stream, algos: tuple[str, ...]) -> Source:
    """``parhash scan -``: hash standard input here, in the parent, like ``sha256sum -``."""
    return Source("-", True, (stdin_file_record(stream, algos),))


def stdin_file_record(stream, algos: tuple[str, ...], entry: Expected | None = None) -> FileRecord:
    """The record of standard input, hashed to its end here (``scan -``, and a ``-`` line of
    a checksum file for ``check``, as ``sha256sum -c`` reads it): workers have another
    stdin."""
    from parhash.hashing import hash_stream

    try:
        size, digests = hash_stream(stream, algos)
    except OSError as exc:
        return FileRecord("-", "-", None, None, None, f"cannot read stdin: {exc.strerror}", entry)
    return FileRecord("-", "-", size, None, digests[0], None, entry, tuple(digests[1:]))


class _BatchBuilder:
    """Accumulates one batch; flushed by size, by a change of algorithm, or by the caller."""

    def __init__(self) -> None:
        self.next_id = 0
        self.size = FIRST_BATCH
        self.reset(None)

    def reset(self, algo: str | None) -> None:
        self.algo = algo
        self.paths: list[str] = []
        self.ready: list[FileRecord] = []
        self.expected: list[Expected] = []

    def __len__(self) -> int:
        return len(self.paths) + len(self.ready)

    def build(self, source: Source, paths: list[str], ready, expected) -> Batch:
        batch = Batch(
            self.next_id,
            source.root,
            source.follow,
            tuple(paths),
            tuple(ready),
            self.algo,
            tuple(expected),
            named=source.named,
        )
        self.next_id += 1
        return batch

    def take(self, source: Source) -> Batch:
        batch = self.build(source, self.paths, self.ready, self.expected)
        self.size = min(self.size * 2, MAX_BATCH)
        self.reset(self.algo)
        return batch

    def split(self, source: Source, parts: int) -> Iterator[Batch]:
        """Deal the pending paths round-robin into at most ``parts`` batches (the last
        batch of a run), so that a few huge files still spread over every worker."""
        parts = max(1, min(parts, len(self.paths)))
        for i in range(parts):
            expected = self.expected[i::parts] if self.expected else []
            yield self.build(source, self.paths[i::parts], self.ready if i == 0 else [], expected)
        self.reset(self.algo)


def _batch_listings(
    builder: _BatchBuilder, source: Source, found: WalkProgress, settings: HashSettings | None
) -> Iterator[Batch]:
    """Fill batches from the walker's per-directory (paths, records) listings."""
    for paths, records in source.items:  # type: ignore[misc]
        if source.skipped:  # the walker appends while it lists; moved on at once
            found.skipped.extend(source.skipped)
            source.skipped.clear()
        found.files_found += len(paths)
        builder.ready.extend(records)
        if source.here and settings is not None:
            for path in paths:
                builder.ready.extend(hashed_here(source, path, None, settings))
            paths = []
        while paths:
            room = builder.size - len(builder)
            builder.paths.extend(paths[:room])
            paths = paths[room:]
            if len(builder) >= builder.size:
                yield builder.take(source)
        if len(builder) >= builder.size:
            yield builder.take(source)


def make_batches(
    sources: Iterable[Source],
    processes: int,
    found: WalkProgress,
    settings: HashSettings | None = None,
) -> Iterator[Batch]:
    """Group the sources' items into batches (one root, symlink policy and algorithm each).

    Batches start small and double up to MAX_BATCH; the very last partial batch is split
    over the workers, so a tree of four huge files still keeps every core busy. A named
    path only this process can open (``process_bound``) is hashed here, with ``settings``.
    """
    builder = _BatchBuilder()
    last: Source | None = None
    for source in sources:
        if last is not None and len(builder):
            yield builder.take(last)
        last = source
        if source.listings:
            yield from _batch_listings(builder, source, found, settings)
            continue
        for item in source.items:
            kind = type(item)
            if source.named and kind is not FileRecord and settings is not None:
                here = _hash_here_if_bound(source, item, settings)  # type: ignore[arg-type]
                if here is not None:
                    builder.ready.extend(here)
                    continue
            if kind is str:
                builder.paths.append(item)  # type: ignore[arg-type]
                found.files_found += 1
            elif kind is FileRecord:
                builder.ready.append(item)  # type: ignore[arg-type]
            else:
                entry: Expected = item  # type: ignore[assignment,no-redef]
                if entry.algo != builder.algo:
                    if len(builder):
                        yield builder.take(source)
                    builder.reset(entry.algo)
                builder.paths.append(entry.path)
                builder.expected.append(entry)
                found.files_found += 1
            if len(builder) >= builder.size:
                yield builder.take(source)
    found.done = True
    if last is not None and len(builder):
        yield from builder.split(last, processes)


#: Named paths that mean something else in another process: a worker that opened
#: ``/dev/stdin`` would read its own descriptor 0 (the parent's only under the fork start
#: method; forkserver and spawn workers have another), ``/dev/fd/63`` (``<(cmd)``) is open
#: in a forked worker only, and ``/proc/self`` is the worker.
_PROCESS_BOUND = ("/dev/stdin/", "/dev/fd/", "/proc/self/", "/proc/thread-self/")

#: Symbolic links followed by ``process_bound`` before it gives up (as the kernel: 40).
_MAX_HOPS = 40


def process_bound(path: str) -> bool:
    """Whether only this process can open ``path``: it is, or is a symbolic link to,
    /dev/stdin, /dev/fd/N, /proc/self/... (symlinks in the parent directories are not
    resolved: a cheap string test first, one ``readlink`` per hop after)."""
    own = (*_PROCESS_BOUND, f"/proc/{os.getpid()}/")
    for _ in range(_MAX_HOPS):
        full = os.path.abspath(path)
        if (full + os.sep).startswith(own):
            return True
        try:
            path = os.path.join(os.path.dirname(full), os.readlink(full))
        except (OSError, ValueError):
            return False
    return False


def _hash_here_if_bound(
    source: Source, item: str | Expected, settings: HashSettings
) -> list[FileRecord] | None:
    """The record of a named path that only this process can open, hashed now; None for
    any other path. A command-line PATH always gets the full test (a symbolic link to
    /dev/stdin under any name); a listed or sums-file path only when its name mentions
    dev/ or proc/, so that a list of 100,000 ordinary paths costs no syscall per path."""
    entry = item if type(item) is Expected else None
    path: str = entry.path if entry is not None else item  # type: ignore[assignment,union-attr]
    if path != source.root and "dev/" not in path and "proc/" not in path:
        return None
    if not process_bound(path):
        return None
    return hashed_here(source, path, entry, settings)


def hashed_here(
    source: Source, path: str, entry: Expected | None, settings: HashSettings
) -> list[FileRecord]:
    """Hash one path in this process, now (a process-bound one): its record."""
    expected = (entry,) if entry is not None else ()
    algo = entry.algo if entry is not None else None
    batch = Batch(-1, source.root, source.follow, (path,), (), algo, expected, named=source.named)
    return to_records(batch, hash_batch(batch, replace(settings, dedupe_links=False))[1], None)


def to_records(batch: Batch, raw: list, links: LinkResolver | None) -> list[FileRecord]:
    """Join a batch's paths with its workers' results, walker errors first.

    A result is a tuple (size, mtime_ns, digest or digests, error), ``None`` for a file a
    size filter skipped, or ``Deferred`` for a hard link (``links`` makes its record).
    """
    root = batch.root
    records = list(batch.ready)
    expected = batch.expected
    for i, (path, result) in enumerate(zip(batch.paths, raw, strict=True)):
        if type(result) is tuple:
            size, mtime_ns, digest, error = result
            entry = expected[i] if expected else None
            if type(digest) is tuple:
                records.append(
                    FileRecord(path, root, size, mtime_ns, digest[0], error, entry, digest[1:])
                )
            else:
                records.append(FileRecord(path, root, size, mtime_ns, digest, error, entry))
        elif result is not None:
            assert links is not None, "a Deferred result needs a LinkResolver"
            records.extend(links.defer(batch, i, result))
    if batch.read_links and links is not None:
        records.extend(links.settle(batch, raw[0]))
    return records


def make_executor(options: ScanOptions, jobs: int, progress: ProgressSink | None = None):
    """``jobs`` 1 hashes in-process; otherwise a Pool (imported only when needed). A walk
    with few files still gets the pool: they may be four files of 512 MiB each.
    A progress bar that wants them gets the workers' shared counters, and its ``warn``
    the lines about the pool itself (a worker died)."""
    from parhash.pool import InlineExecutor

    settings = options.hash_settings()
    counters = progress.counters(max(jobs, 1)) if progress is not None else None
    if jobs <= 1:
        return InlineExecutor(settings, counters)
    from parhash.pool import PoolExecutor

    return PoolExecutor(settings, jobs, counters, progress.warn if progress else None)


def iter_batches(
    sources: Iterable[Source],
    options: ScanOptions,
    found: WalkProgress | None = None,
    progress: ProgressSink | None = None,
) -> Iterator[list[FileRecord]]:
    """Stream record lists (one per batch) for ``sources``; the pool lives as long as this.

    The first batch is made before any executor exists, so an empty walk never starts a
    pool. ``progress`` is started once the workers exist, with their counters; it also
    gets the lines about the pool itself (jobs capped, a worker died).
    """
    found = found or WalkProgress()
    jobs = resolve_jobs(options.jobs, progress.warn if progress is not None else None)
    batches = make_batches(sources, jobs, found, options.hash_settings())
    first = next(batches, None)
    if first is None:
        return
    executor = make_executor(options, jobs, progress)
    if progress is not None:
        executor.on_start = functools.partial(progress.start, executor.counters, found)
    links = LinkResolver(executor) if options.dedupe_links else None
    results = executor.results(itertools.chain((first,), batches))
    try:
        for batch, raw in results:
            records = to_records(batch, raw, links)
            if records:
                yield records
    finally:
        results.close()  # type: ignore[attr-defined]


def iter_records(roots: list[str], options: ScanOptions) -> Iterator[FileRecord]:
    """Library-level scan of roots already checked (``check_roots``): one ``FileRecord``
    per file, in completion order."""
    sources = scan_sources(roots, options.walk)
    for records in iter_batches(sources, options):
        yield from records


_DONE = object()


class _Writer(threading.Thread):
    """Consumes record lists from the bounded queue and hands them to the sink.

    Writing happens off the main thread so that formatting and a slow stdout overlap with
    receiving results; when the queue is full, the main thread blocks, stops releasing
    permits, and the walker pauses: backpressure end to end.
    """

    def __init__(self, sink: Sink, depth: int = QUEUE_DEPTH) -> None:
        super().__init__(name="parhash-writer", daemon=True)
        self.sink = sink
        self.queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            try:
                self.sink.write(item)  # type: ignore[arg-type]
            except BaseException as exc:
                self.error = exc

    def put(self, records: list[FileRecord]) -> None:
        """Block until there is room; re-raise a failure of the writer in the producer.

        The thread starts with the first records, after the pool's workers were forked: a
        fork while another thread runs can copy a lock that thread holds (Python 3.12+
        warns about it), and the workers must never inherit the writer's stdout lock.
        """
        if not self.is_alive() and self.ident is None:
            self.start()
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(records, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        if self.ident is None:
            self.start()
        self.queue.put(_DONE)
        self.join()
        if self.error is not None:
            raise self.error


def _report_skipped(found: WalkProgress, summary: Summary, progress: ProgressSink) -> None:
    """One warning per mount point the walker did not enter; the summary counts them.
    Skipping by policy is not a failure: it does not change the exit status."""
    while found.skipped:
        mount = found.skipped.pop(0)
        summary.skipped_mounts.append(mount)
        progress.warn(f"{mount}, not entered (name it as a PATH to hash it)")


def run(
    sources: Iterable[Source],
    options: ScanOptions,
    sink: Sink,
    progress: ProgressSink,
    *,
    warn_errors: bool = True,
) -> Summary:
    """Hash ``sources`` into ``sink``; returns the summary. Raises on fatal problems only.

    ``warn_errors``: print a warning for each error record (check prints its own).
    """
    summary = Summary()
    started = time.monotonic()
    found = WalkProgress()
    writer = _Writer(progress.wrap(sink))
    stream = iter_batches(sources, options, found, progress)
    try:
        for records in stream:
            bytes_before = summary.bytes
            for record in records:
                summary.add(record)
                if record.error is not None and warn_errors:
                    progress.warn(f"{record.path}: {record.error}")
            progress.update(len(records), summary.bytes - bytes_before, found)
            _report_skipped(found, summary, progress)
            writer.put(records)
        _report_skipped(found, summary, progress)
        writer.finish()
        summary.elapsed = time.monotonic() - started
        writer.sink.close(summary)
    finally:
        stream.close()
        progress.close()
    return summary
