"""``parhash scan``: hash the files below some paths and write one record per file.

What a scan reads (``ScanInputs``: paths, ``-`` for stdin, a ``--files-from`` list) and how
it writes (``ScanFormat``) are parsed once by the caller; this module builds the sources,
keeps the output from overwriting an input or listing itself, records the selection in the
manifest header and runs the pipeline. ``records()`` is the iterator behind
``parhash.scan``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from parhash.commands.outputs import Outputs, own_files_skipped
from parhash.exit_codes import ExitCode
from parhash.model import FileRecord, Summary
from parhash.options import ScanOptions

if TYPE_CHECKING:
    from parhash.pipeline import ProgressSink


class ScanInputs(NamedTuple):
    """What a scan reads. (The option objects on the start-up path are NamedTuples: a frozen
    dataclass costs 0.5-0.7 ms to create at import, a NamedTuple 0.13 ms.)"""

    #: Files and directories; ``-`` is standard input, hashed in this process first.
    paths: tuple[str, ...] = (".",)
    #: ``--files-from``: a list of paths (``-``: stdin) hashed as named, not walked.
    files_from: str | None = None
    #: The list's paths end with NUL (``find -print0``), not a newline.
    null: bool = False
    #: ``--exclude-from`` files: inputs too, so ``-o`` may not overwrite them.
    exclude_files: tuple[str, ...] = ()


class ScanFormat(NamedTuple):
    """How a scan writes its records (``report.make_reporter``)."""

    fmt: str = "sums"  #: sums, jsonl, json or csv
    tag: bool = False  #: sums: BSD-style ``ALGO (path) = hex``
    zero: bool = False  #: sums: records end with NUL, nothing escaped
    relative: bool = False  #: paths relative to their root
    sort: bool = False  #: records sorted by path (all held in memory)
    sign: str | None = None  #: ``--sign KEY``: the ``-o`` file is signed into ``FILE.sig``


def exit_code(summary: Summary) -> ExitCode:
    """A scan's exit policy: 1 if any file gave an error record, else 0."""
    return ExitCode.FILE_ERRORS if summary.errors else ExitCode.OK


def manifest_options(options: ScanOptions) -> dict:
    """The selection a manifest's header records (H.options): what ``audit`` repeats."""
    walk = options.walk
    return {
        "follow_symlinks": walk.follow_symlinks,
        "one_file_system": walk.one_file_system,
        "exclude": list(walk.exclude),
        "max_depth": walk.max_depth,
        "hidden": walk.hidden,
        "gitignore": walk.gitignore,
        "min_size": options.min_size,
        "max_size": options.max_size,
        "dedupe_links": options.dedupe_links,
    }


def run(
    inputs: ScanInputs,
    options: ScanOptions,
    layout: ScanFormat,
    outputs: Outputs,
    *,
    output: str | None,
    progress: Callable[[], ProgressSink],
) -> Summary:
    """Scan into ``output`` (a path; None or ``-``: ``outputs.stdout()``) and return the
    summary; ``progress()`` makes the progress sink once the output is open. Raises
    ``FatalError`` before hashing when ``-o`` would overwrite an input."""
    from parhash.commands.outputs import signature_path, skipping
    from parhash.output import ListedOutputGuard, refuse_overwriting_input
    from parhash.pipeline import open_cache, run
    from parhash.report import make_reporter
    from parhash.sources import listed_source, scan_sources, stdin_record, unique_roots

    paths = inputs.paths
    wants_stdin = "-" in paths
    roots, notices = unique_roots([p for p in paths if p != "-"])
    target = output if output not in (None, "-") else None
    if target is not None:
        refuse_overwriting_input(
            target,
            roots,
            [inputs.files_from] if inputs.files_from else [],
            follow_symlinks=options.walk.follow_symlinks,
            exclude_files=list(inputs.exclude_files),
        )
    spec = _sign_spec(layout, target, options)
    guard = ListedOutputGuard(target) if target and inputs.files_from else None
    listing = listed_source(inputs.files_from, inputs.null, guard) if inputs.files_from else None
    stream = outputs.stream(output, spec)
    if target is not None:
        own = (target, signature_path(target))
        options = replace(options, walk=own_files_skipped(options.walk, outputs, *own))
    reporter = make_reporter(
        layout.fmt,
        stream,
        options.algos,
        relative=layout.relative,
        tag=layout.tag,
        zero=layout.zero,
        sort=layout.sort,
        options=manifest_options(options),
    )
    reporter.begin(roots + (["-"] if wants_stdin else []))
    bar = progress()
    for notice in notices:
        bar.warn(notice)
    cache = open_cache(options, bar.warn)
    if cache is not None:
        options = replace(options, walk=skipping(options.walk, cache.identities()))
    sources = list(scan_sources(roots, options.walk))
    if listing is not None:
        sources.append(listing)
    if wants_stdin:  # hashed here, first: the workers cannot read our stdin
        sources.insert(0, stdin_record(sys.stdin.buffer, options.algos))
    summary = run(sources, options, outputs.completing(reporter), bar, cache=cache)
    if guard is not None:
        guard.raise_if_hit()  # before the commit: the listed file keeps its data
    return summary


def _sign_spec(layout: ScanFormat, target: str | None, options: ScanOptions):
    """``--sign``: the key loaded now, before anything is hashed; it needs ``-o FILE``."""
    if layout.sign is None:
        return None
    import time

    from parhash.exit_codes import FatalError
    from parhash.signing import SignSpec
    from parhash.ssh_keys import load_signer

    if target is None:
        raise FatalError("--sign needs -o FILE: a signature goes beside a file, not stdout")
    return SignSpec(load_signer(layout.sign), created=time.time(), algo=options.algos[0])


def records(paths: Iterable[str], options: ScanOptions) -> Iterator[FileRecord]:
    """One ``FileRecord`` per file below ``paths``, in completion order (``parhash.scan``).
    A root named twice is scanned once; a missing one is an error record."""
    from parhash.pipeline import iter_records
    from parhash.sources import unique_roots

    roots, _ = unique_roots(paths)
    return iter_records(roots, options)
