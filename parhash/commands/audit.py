"""``parhash audit``: compare a tree with a saved manifest, report what changed, and with
``update`` rewrite the manifest.

The steps, in order: read the manifest's header (``manifest.read_info``), apply its recorded
selection with the caller's overrides (``baseline``), load its entries into the store,
scan the roots through the pipeline into the store (``audit.AuditSink``), diff, render the
report (``audit_report``), write the updated manifest. The store, the diff and the
baseline rules are those modules'; this one runs them and returns an ``AuditResult``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from parhash.audit_store import CLASSES, DEFAULT_FAIL_ON
from parhash.exit_codes import ExitCode, FatalError

if TYPE_CHECKING:
    from parhash.cache_policy import CacheOptions
    from parhash.commands.outputs import Outputs
    from parhash.model import CacheCounts, Summary
    from parhash.options import ClusterTarget
    from parhash.pipeline import ProgressSink
    from parhash.signing import SignSpec, VerifyOptions

#: Report formats.
FORMATS = ("human", "jsonl", "json")


@dataclass(frozen=True)
class AuditOptions:
    """How to audit: everything but which files (``selection``) comes from here."""

    fmt: str = "human"  #: human, jsonl or json
    #: Classes whose presence makes the exit status 1 (empty: never).
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    update: bool = False  #: then rewrite the manifest atomically
    verbose: bool = False  #: also list unchanged files
    quiet: bool = False  #: no title, no warnings; the report lists only changes
    algo: str | None = None  #: the algorithm of a sums manifest (canonical name)
    jobs: int | None = None  #: worker processes (resolved once, by the pipeline)
    #: ``--cluster``: hash on Dask (``options.parse_cluster``), or None: here.
    cluster: ClusterTarget | None = None
    color: bool = False  #: colour the human report
    #: Selection options that replace the recorded ones (``baseline.SELECTION_DEFAULTS``'
    #: keys; sizes in bytes, ``exclude`` a list of globs).
    selection: Mapping[str, object] = field(default_factory=dict)
    #: The hash cache (``--cache``): unchanged files cost a stat, not a read.
    cache: CacheOptions | None = None
    #: ``--allowed-signers``: the manifest's signature is checked before anything else.
    verify: VerifyOptions | None = None
    #: ``--sign KEY`` (with ``update``): the key that signs the rewritten manifest.
    sign: str | None = None


@dataclass(frozen=True)
class AuditResult:
    """The outcome of an audit: the CLI's exit status and the counts behind it."""

    exit_code: ExitCode
    counts: dict[str, int]  #: files per class (``audit.CLASSES``)
    roots: list[str]  #: the trees scanned
    updated: bool = False  #: the manifest was rewritten
    #: Lines the CLI prints on stderr after ``parhash: `` (another host, what --update
    #: kept), plus a library call's per-file warnings.
    messages: tuple[str, ...] = ()
    #: The scan's counters (files and bytes read, time, and ``.cache``: what the hash
    #: cache did, None without ``--cache``), for ``--metrics`` and the report.
    summary: Summary | None = None
    #: Who signed the manifest (``--allowed-signers``), as the report says it.
    signature: str | None = None

    @property
    def changes(self) -> int:
        """Files in any class but unchanged."""
        return sum(n for kind, n in self.counts.items() if kind != "unchanged")


def parse_fail_on(text: str) -> tuple[str, ...]:
    """``--fail-on``: comma-separated classes, or ``none``; ValueError names the unknown."""
    classes = [c.strip() for c in text.split(",") if c.strip() and c.strip() != "none"]
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; choose from: {', '.join(CLASSES)}")
    return tuple(classes)


def exit_code(counts: Mapping[str, int], fail_on: tuple[str, ...]) -> ExitCode:
    """An audit's exit policy: 1 if a class in ``fail_on`` has a file, else 0."""
    return ExitCode.FILE_ERRORS if any(counts[c] for c in fail_on) else ExitCode.OK


def run(
    manifest: str,
    root: str | None,
    options: AuditOptions,
    stream: BinaryIO | None,
    outputs: Outputs,
    *,
    progress: Callable[[], ProgressSink],
    notify: Callable[[str], None],
) -> AuditResult:
    """Audit ``root`` (None: the manifest's recorded roots) against ``manifest`` (``-``:
    stdin); the report goes to ``stream`` (None: not rendered). ``notify`` gets the lines
    about the run itself as they happen. Raises ``FatalError`` (``ManifestError``) for a
    bad manifest, a missing root or an ``update`` that would lose entries."""
    from parhash import baseline
    from parhash.audit_store import AuditSink, AuditStore
    from parhash.commands.outputs import own_files_skipped, signature_path, skipping
    from parhash.manifest import no_root_message, open_manifest, read_info
    from parhash.output import sanitize
    from parhash.pipeline import open_cache, run
    from parhash.sources import check_roots, scan_sources

    started = time.time()
    verified = []
    if options.verify is not None:  # before anything is read or scanned
        from parhash.signing import verify_all

        verified = verify_all([manifest], options.verify)
    try:
        spec = _sign_spec(options, started)
        reader = open_manifest(manifest, rewrite=options.update)  # read once: stdin, pipes
        for each in verified:
            each.check_unchanged(reader.raw.fileno())
        info = read_info(reader, options.algo)
    except BaseException:
        _close(verified)
        raise
    signature = verified[0].describe() if verified else None
    if signature and not options.quiet:
        notify(f"{sanitize(manifest)}: {sanitize(signature)}")
    if not info.roots and root is None:
        raise FatalError(no_root_message(info))
    selection = baseline.resolve_selection(info, dict(options.selection))
    if options.update:
        baseline.check_update(info, selection)
    store = AuditStore()
    updated = False
    try:
        plan, algos = baseline.load(store, info, selection, root, update=options.update)
        for each in verified:  # every entry is read: what was loaded is what was signed
            each.check_unchanged()
        roots = check_roots(store.scan_roots(plan.scanned, plan.prefixes))
        warning = baseline.host_warning(info)
        if warning and not options.quiet:
            notify(f"warning: {sanitize(warning)}")
        target = outputs.open(manifest, spec) if options.update else None
        skipped = [manifest, signature_path(manifest)] if reader.is_file else []
        walk_here = own_files_skipped(baseline.walk_options(selection, plan), outputs, *skipped)
        bar = progress()
        scan = baseline.scan_options(selection, algos, options.jobs, walk_here, options.cache)
        scan = replace(scan, cluster=options.cluster)
        cache = open_cache(scan, bar.warn)
        if cache is not None:
            walk_here = skipping(walk_here, cache.identities())
        sources = scan_sources(roots, walk_here)
        sink = AuditSink(store)
        summary = run(sources, scan, sink, bar, warn_errors=not options.quiet, cache=cache)
        store.diff(selection.size_range)
        counts = store.counts()
        if stream is not None:
            found = _Found(counts, summary.cache, signature)
            _render(store, found, stream, options, manifest, info, roots, selection)
        if target is not None:
            note = _write_updated(store, target, info, selection, plan, root, algos, started)
            updated = True
            if note and not options.quiet:
                notify(note)
            stale = _stale_signature(manifest, spec)
            if stale and not options.quiet:
                notify(stale)
        outputs.complete = True
    finally:
        store.close()
        _close(verified)
    code = exit_code(counts, options.fail_on)
    return AuditResult(code, counts, roots, updated, summary=summary, signature=signature)


def _sign_spec(options: AuditOptions, started: float) -> SignSpec | None:
    """``--sign``'s key, loaded before anything is scanned (a wrong passphrase fails now,
    not after the scan)."""
    if options.sign is None:
        return None
    from parhash.signing import SignSpec
    from parhash.ssh_keys import load_signer

    return SignSpec(load_signer(options.sign), created=started, algo=options.algo)


def _stale_signature(manifest: str, spec: SignSpec | None) -> str | None:
    """The warning for an update without ``--sign`` of a signed manifest: its ``.sig`` now
    fails verification (left in place: refused is the safe way for it to fail)."""
    import os

    from parhash.commands.outputs import signature_path

    sig = signature_path(manifest)
    if spec is not None or not os.path.exists(sig):
        return None
    return (
        f"warning: {sig} no longer matches the updated manifest: sign it again "
        "(audit --update --sign KEY, or parhash sign)"
    )


def _close(verified) -> None:
    for each in verified:
        each.close()


class _Found(NamedTuple):
    """What the report says besides the events: files per class, what the cache did."""

    counts: dict[str, int]
    cache: CacheCounts | None
    signature: str | None = None  #: who signed the manifest (``Verified.describe``)


def _render(store, found: _Found, stream, options: AuditOptions, manifest, info, roots, selection):
    """The report in ``options.fmt``, flushed (it is complete before any update starts)."""
    from parhash import baseline
    from parhash.audit_report import render_human, render_json, render_jsonl
    from parhash.output import sanitize

    verbose, counts, cache = options.verbose, found.counts, found.cache
    if options.fmt == "human":
        title = None if options.quiet else sanitize(baseline.title(info, roots, selection))
        if title and found.signature:
            title += f"\nmanifest: {sanitize(found.signature)}"
        render_human(
            store, counts, stream, title=title, color=options.color, verbose=verbose, cache=cache
        )
    elif options.fmt == "jsonl":
        render_jsonl(store, stream, verbose=verbose)
    else:
        header = {"manifest": manifest, "algo": info.algo, "roots": roots}
        header["selection"] = selection.recordable()
        if found.signature:
            header["signature"] = found.signature
        render_json(store, counts, stream, header=header, verbose=verbose, cache=cache)
    stream.flush()


def _write_updated(store, target, info, selection, plan, root, algos, started) -> str | None:
    """Write the merged manifest into ``target`` (an atomic output) in the manifest's own
    format: the header (``baseline.update_header``) carries the recorded options on."""
    from parhash import baseline
    from parhash.report import make_reporter

    reporter = make_reporter(info.format, target.stream, algos)
    return baseline.write_updated(store, reporter, info, selection, plan, root, algos, started)


def audit_options(given: Mapping[str, object]) -> AuditOptions:
    """AuditOptions from a library call's keywords: its own fields, checked as the CLI
    checks them (``fail_on`` text or list, ``algo`` made canonical), the rest selection
    options (``baseline.SELECTION_DEFAULTS``' keys; an unknown one is a TypeError)."""
    from parhash.algorithms import canonical
    from parhash.baseline import SELECTION_DEFAULTS
    from parhash.cache_policy import LIBRARY_KEYWORDS, library_cache_options
    from parhash.signing import VERIFY_KEYWORDS, library_verify_options

    own = {f.name for f in fields(AuditOptions)} - {"selection", "cache", "verify"}
    chosen: dict[str, object] = {k: v for k, v in given.items() if k in own}
    chosen["cache"] = library_cache_options({k: given[k] for k in LIBRARY_KEYWORDS if k in given})
    chosen["verify"] = library_verify_options(given)
    other = own | set(LIBRARY_KEYWORDS) | set(VERIFY_KEYWORDS)
    selection = {k: v for k, v in given.items() if k not in other}
    unknown = sorted(set(selection) - set(SELECTION_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown audit option {unknown[0]!r}")
    if "exclude" in selection:
        selection["exclude"] = list(selection["exclude"])  # type: ignore[call-overload]
    fail_on = chosen.get("fail_on", DEFAULT_FAIL_ON)
    chosen["fail_on"] = parse_fail_on(fail_on if isinstance(fail_on, str) else ",".join(fail_on))  # type: ignore[arg-type]
    if chosen.get("algo"):
        chosen["algo"] = canonical(chosen["algo"])
    if isinstance(chosen.get("cluster"), str):
        from parhash.options import parse_cluster

        chosen["cluster"] = parse_cluster(chosen["cluster"])  # type: ignore[arg-type]
    return AuditOptions(**chosen, selection=selection)  # type: ignore[arg-type]
