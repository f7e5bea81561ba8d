"""What a manifest's header says about its baseline, and how ``audit`` repeats it.

A manifest records the scan that made it (H, README "Output formats"): the selection
(walk and size options), the roots as given and absolute, the host, the path style and
every algorithm. ``audit`` re-applies the recorded selection unless an option on its own
command line overrides it, scans the recorded tree wherever it is run from, and
``--update`` writes a manifest that keeps all of it: an update never thins the baseline and
never silently changes what the baseline covers.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from parhash.audit_store import Admit, AuditStore, out_of_range, write_update
from parhash.exit_codes import FatalError
from parhash.layout import manifest_header
from parhash.manifest import ManifestError, ManifestInfo, iter_entries
from parhash.options import ScanOptions
from parhash.walk import GitignoreFilter, PathFilter, WalkOptions, child_prefix

#: The selection a header records under "options", with the scan's defaults: what an audit
#: applies when neither the manifest nor the command line says otherwise.
SELECTION_DEFAULTS: dict[str, object] = {
    "follow_symlinks": False,
    "one_file_system": False,
    "exclude": [],
    "max_depth": None,
    "hidden": True,
    "gitignore": False,
    "min_size": None,
    "max_size": None,
}

#: Options recorded beside the selection that decide how, not which, files are read.
READ_DEFAULTS: dict[str, object] = {"dedupe_links": True}

#: Which values each recorded option may take; anything else is a damaged header.
_VALID: dict[str, Callable[[object], bool]] = {
    "follow_symlinks": lambda v: type(v) is bool,
    "one_file_system": lambda v: type(v) is bool,
    "hidden": lambda v: type(v) is bool,
    "gitignore": lambda v: type(v) is bool,
    "dedupe_links": lambda v: type(v) is bool,
    "exclude": lambda v: type(v) is list and all(type(p) is str for p in v),
    "max_depth": lambda v: v is None or (type(v) is int and v >= 1),
    "min_size": lambda v: v is None or (type(v) is int and v >= 0),
    "max_size": lambda v: v is None or (type(v) is int and v >= 0),
}


def recorded_options(info: ManifestInfo) -> dict | None:
    """The header's options, validated; None when the manifest has no header."""
    if info.options is None:
        return None
    options = {**SELECTION_DEFAULTS, **READ_DEFAULTS}
    for key in options:
        if key in info.options:
            value = info.options[key]
            if not _VALID[key](value):
                raise ManifestError(f"{info.path}:1: header option {key!r} is {value!r}")
            options[key] = value
    return options


@dataclass(frozen=True)
class Selection:
    """The selection an audit applies: the recorded one, with the options given on the
    command line in place of the recorded ones."""

    options: dict
    #: What the manifest recorded (None: no header; the scan's defaults are assumed).
    recorded: dict | None
    #: The options given on the command line.
    given: frozenset[str]

    def walk(self) -> WalkOptions:
        o = self.options
        return WalkOptions(
            follow_symlinks=o["follow_symlinks"],
            one_file_system=o["one_file_system"],
            exclude=tuple(o["exclude"]),
            max_depth=o["max_depth"],
            hidden=o["hidden"],
            gitignore=o["gitignore"],
        )

    @property
    def size_range(self) -> tuple[int | None, int | None]:
        return self.options["min_size"], self.options["max_size"]

    def recordable(self) -> dict:
        """The selection options applied, as a header's ``options`` records them."""
        return {k: self.options[k] for k in SELECTION_DEFAULTS}

    def describe(self) -> str:
        """For the report title: which selection applied, when it is not the default."""
        from_manifest = [
            k
            for k in SELECTION_DEFAULTS
            if k not in self.given and self.options[k] != SELECTION_DEFAULTS[k]
        ]
        parts = []
        if from_manifest:
            parts.append("selection from the manifest: " + _flags(self.options, from_manifest))
        if self.given:
            given = [k for k in SELECTION_DEFAULTS if k in self.given]
            parts.append("given: " + _flags(self.options, given))
        return "; ".join(parts)


def _flags(options: dict, keys: list[str]) -> str:
    """Options as the command-line flags that select them (``-e logs --max-depth 2``)."""
    flags = []
    for key in keys:
        value = options[key]
        if key == "exclude":
            flags.extend(f"-e {shlex.quote(p)}" for p in value)
        elif key == "hidden":
            flags.append("--hidden" if value else "--no-hidden")
        elif type(value) is bool:
            flags.append({"follow_symlinks": "-L", "one_file_system": "-x"}.get(key, "--" + key))
        elif value is not None:
            flags.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(flags)


def resolve_selection(info: ManifestInfo, overrides: dict) -> Selection:
    """The recorded selection (or the defaults), each option given on the command line
    replacing the recorded value."""
    recorded = recorded_options(info)
    options = {**(recorded or {**SELECTION_DEFAULTS, **READ_DEFAULTS}), **overrides}
    return Selection(options, recorded, frozenset(overrides))


def reach(selection: Selection, plan: RootPlan, roots: list[str]) -> Callable[[int, str], bool]:
    """``reach(ri, key)``: does the selection take this path of manifest root ``ri``
    (``key`` relative to the recorded root, .gitignore files read where that tree is)?"""
    paths = PathFilter(selection.walk())
    gitignore: dict[int, GitignoreFilter] = {}

    def check(ri: int, key: str) -> bool:
        if not paths(key):
            return False
        if selection.options["gitignore"]:
            if ri not in gitignore:
                known = ri < len(plan.trees) and plan.trees[ri]
                gitignore[ri] = GitignoreFilter(known or roots[ri])
            return gitignore[ri](key)
        return True

    return check


def admit(selection: Selection, plan: RootPlan, store: AuditStore) -> Admit | None:
    """``admit(ri, key, size, error)`` for ``AuditStore.load_manifest``: would this run
    reach the manifest's entry? Those it would not are kept as they are, neither added nor
    removed. None when it reaches every entry (the default selection over whole roots):
    the store then loads without a call per entry."""
    if _reaches_all(selection, plan):
        return None
    selected = reach(selection, plan, store.roots)
    low, high = selection.size_range

    def check(ri: int, key: str, size: int | None, error: str | None) -> bool:
        if ri < len(plan.scanned) and not plan.covers(ri, key):
            return False
        if error is None and out_of_range(size, low, high):
            return False
        return selected(ri, key)

    return check


def _reaches_all(selection: Selection, plan: RootPlan) -> bool:
    """Whether the selection takes every path of every root: nothing a path, a size or a
    .gitignore could leave out, each root scanned whole. (A root met only in the records
    of a header-less manifest is scanned as named, whole, too.)"""
    o = selection.options
    selects = o["exclude"] or o["max_depth"] is not None or not o["hidden"] or o["gitignore"]
    sized = o["min_size"] is not None or o["max_size"] is not None
    whole = all(root is not None for root in plan.scanned) and not any(plan.prefixes)
    return not (selects or sized) and whole


def walk_options(selection: Selection, plan: RootPlan) -> WalkOptions:
    """The walk of this run: the selection's, with ``--max-depth`` counted from the
    recorded root when ROOT names a directory inside it (the store drops what the walk
    of a subtree reaches but the recorded selection does not: path globs, parents'
    .gitignore files)."""
    walk = selection.walk()
    depth = max((p.count(os.sep) + 1 for p in plan.prefixes if p), default=0)
    if depth and walk.max_depth is not None:
        walk = replace(walk, max_depth=max(1, walk.max_depth - depth))
    return walk


#: The formats ``--update`` rewrites in their own layout (``report.make_reporter``), with
#: the header that carries the selection over to the next audit.
REWRITABLE = ("jsonl", "json", "csv")

#: Why each other format that audit reads cannot be rewritten (hashdeep's layout could be
#: written back, but without a header the next --update would forget the selection).
NOT_REWRITABLE = {
    "sums": "a sums file records no sizes, roots,",
    "hashdeep": "a hashdeep file records no",
}


def check_update(info: ManifestInfo, selection: Selection) -> None:
    """Refuse ``--update`` where the result could not keep what the manifest knew."""
    where = info.path
    if info.format not in REWRITABLE:
        what = NOT_REWRITABLE.get(info.format, f"a {info.format} manifest records no")
        raise FatalError(
            f"{where}: {what} parhash header or selection, so --update cannot rewrite it "
            "without losing what it knew; take a parhash manifest with "
            "'parhash scan ... -f jsonl -o FILE' and audit that"
        )
    recorded = selection.recorded or {**SELECTION_DEFAULTS, **READ_DEFAULTS}
    applied = selection.options
    for key, flag in (("follow_symlinks", "-L"), ("one_file_system", "-x")):
        if applied[key] != recorded[key]:
            raise FatalError(
                f"{where}: --update must walk as the manifest was taken ({flag} "
                f"{'on' if recorded[key] else 'off'}): which entries a different {flag} leaves "
                "out cannot be told from their paths"
            )
    wider = _wider(recorded, applied)
    if wider:
        raise FatalError(
            f"{where}: --update with a wider selection than the manifest's ({wider}) would "
            "mix in entries its recorded selection leaves out; take a new baseline with "
            "'parhash scan' instead"
        )


def _wider(recorded: dict, applied: dict) -> str:
    """The first option in which ``applied`` reaches files ``recorded`` does not, or ''."""
    if not set(recorded["exclude"]) <= set(applied["exclude"]):
        missing = sorted(set(recorded["exclude"]) - set(applied["exclude"]))
        return "without -e " + " -e ".join(shlex.quote(p) for p in missing)
    if applied["hidden"] and not recorded["hidden"]:
        return "--hidden"
    if recorded["gitignore"] and not applied["gitignore"]:
        return "without --gitignore"
    for key, larger in (("max_depth", True), ("min_size", False), ("max_size", True)):
        was, now = recorded[key], applied[key]
        if was is not None and (now is None or (now > was if larger else now < was)):
            flag = "--" + key.replace("_", "-")
            return f"{flag} {now}" if now is not None else f"without {flag}"
    return ""


@dataclass(frozen=True)
class RootPlan:
    """Where this run scans each of the manifest's roots (same order)."""

    #: A root as recorded, its recorded absolute path, ROOT; None: not this run.
    scanned: list[str | None]
    #: The part of each root that ROOT covers, relative to it ("": all of it).
    prefixes: list[str]
    #: Where each root's whole tree is (its .gitignore files apply to the subtree too).
    trees: list[str | None]
    #: ROOT stands in for the manifest's one root (a copy or a moved tree).
    replaced: bool = False

    def covers(self, ri: int, key: str) -> bool:
        """Whether this run reaches ``key`` of root ``ri`` (not another root, not outside
        the subtree ROOT names)."""
        if self.scanned[ri] is None:
            return False
        prefix = self.prefixes[ri]
        return not prefix or key.startswith(prefix + os.sep)


def plan_roots(info: ManifestInfo, roots: list[str], override: str | None) -> RootPlan:
    """Where to scan the manifest's roots.

    Without ROOT: each root as recorded when it names the same absolute path from here,
    else the recorded absolute path (a relative root means the recorded tree, not whatever
    has its name in the current directory); a recorded tree that is gone is fatal, with
    the way out. ROOT naming a recorded root, or a directory inside one, audits just that
    part (the rest is kept as it is); any other ROOT replaces the manifest's one root.
    """
    recorded = info.roots_abs or []
    if override is not None:
        absolute = os.path.abspath(override)
        for i, known in enumerate(recorded):
            if absolute == known or absolute.startswith(child_prefix(known)):
                scanned: list[str | None] = [None] * len(roots)
                prefixes = [""] * len(roots)
                scanned[i] = override
                prefixes[i] = os.path.relpath(absolute, known) if absolute != known else ""
                trees: list[str | None] = [None] * len(roots)
                trees[i] = known if prefixes[i] else override
                return RootPlan(scanned, prefixes, trees)
        if len(roots) > 1:
            raise FatalError(f"{info.path} has {len(roots)} roots; ROOT can replace only one")
        return RootPlan([override], [""], [override], replaced=True)
    found: list[str | None] = []
    for i, root in enumerate(roots):
        absolute = recorded[i] if i < len(recorded) else None
        if absolute is None or root == "-":
            found.append(root)
            continue
        if _missing(absolute):
            raise FatalError(
                f"{info.path}: the recorded root {absolute} does not exist; to audit the tree "
                f"somewhere else, name it: parhash audit {info.path} ROOT"
            )
        # The same tree named as recorded keeps the recorded names in messages ("tree/a").
        found.append(root if os.path.abspath(root) == absolute else absolute)
    return RootPlan(found, [""] * len(found), list(found))


def _missing(path: str) -> bool:
    """Gone, as opposed to unreachable (EACCES: the scan reports that as an error)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def host_warning(info: ManifestInfo) -> str | None:
    """One line when the manifest was taken on another host (the audit goes on)."""
    here = socket.gethostname()
    if info.host is None or info.host == here:
        return None
    return f"{info.path} was taken on host {info.host}; auditing it here on {here}"


def update_header(
    info: ManifestInfo,
    selection: Selection,
    plan: RootPlan,
    roots: list[str],
    algos: tuple[str, ...],
    started: float,
) -> dict:
    """The updated manifest's header: the old one's keys carried forward, with the
    recorded selection (never this run's narrower one, never ``{}``), the same algorithms
    and path style, the roots as recorded (or ROOT in place of the one root), where they
    are and this host."""
    recorded = selection.recorded or {**SELECTION_DEFAULTS, **READ_DEFAULTS}
    fresh = manifest_header(
        algos, roots, relative=bool(info.relative), options=dict(recorded), started=started
    )
    if not plan.replaced and info.roots_abs:
        fresh["roots_abs"] = list(info.roots_abs)
    else:
        fresh["roots_abs"] = [
            r if r == "-" else os.path.abspath(r) for r in plan.scanned if r is not None
        ]
    old = info.header or {}
    if "command" in old:  # how the baseline was made; this run only refreshed it
        fresh["updated_by"] = fresh.pop("command")
    return {**old, **fresh}


def load(
    store: AuditStore, info: ManifestInfo, selection: Selection, root: str | None, *, update: bool
) -> tuple[RootPlan, tuple[str, ...]]:
    """Fill the store's manifest side: what this run reaches is compared, the rest kept.
    Returns where to scan and the algorithms to hash (all of them for ``--update``)."""
    store.register_roots(info.roots)
    plan = plan_roots(info, info.roots, root)
    algos = tuple(info.algos or [info.algo]) if update else (info.algo,)
    store.extra_algos = algos[1:]
    store.relative_paths = info.header is not None and bool(info.relative)
    entries = iter_entries(info, plain=True, relative=store.relative_paths)
    store.load_manifest(entries, admit(selection, plan, store), info.path)
    if len(store.roots) > len(info.roots):  # a header-less manifest's other roots
        plan = plan_roots(info, store.roots, root)
    if any(plan.prefixes):
        store.reach = reach(selection, plan, store.roots)
    return plan, algos


def scan_options(
    selection: Selection, algos: tuple[str, ...], jobs, walk, cache=None
) -> ScanOptions:
    """The audit's scan: the selection's size filters and link policy, these algorithms,
    the run's hash cache (``CacheOptions`` or None)."""
    o = selection.options
    return ScanOptions(
        algos=algos,
        jobs=jobs,
        walk=walk,
        min_size=o["min_size"],
        max_size=o["max_size"],
        dedupe_links=o["dedupe_links"],
        cache=cache,
    )


def title(info: ManifestInfo, roots: list[str], selection: Selection) -> str:
    """The human report's first line; names the selection when it is not the default."""
    text = f"parhash audit of {', '.join(roots)} against {info.path} ({info.algo}"
    if info.started:
        text += f", taken {info.started}"
    described = selection.describe()
    return text + (f"; {described})" if described else ")")


def write_updated(
    store: AuditStore,
    reporter,
    info: ManifestInfo,
    selection: Selection,
    plan: RootPlan,
    root: str | None,
    algos: tuple[str, ...],
    started: float,
) -> str | None:
    """Write the updated manifest (the store's merge) into ``reporter``; returns the note
    of what was carried over without being read again."""
    out_roots = [root] if plan.replaced and root is not None else store.roots
    header = update_header(info, selection, plan, out_roots, algos, started)
    write_update(store, reporter, out_roots, header, started)
    return kept_note(*store.kept_counts())


def kept_note(outside: int, unreadable: int) -> str | None:
    """What ``--update`` carried forward without re-establishing it, on stderr."""
    parts = []
    if outside:
        parts.append(f"{outside:,} {'entry' if outside == 1 else 'entries'} this run did not reach")
    if unreadable:
        files = "file" if unreadable == 1 else "files"
        parts.append(f"the previous digest of {unreadable:,} {files} unreadable now")
    return "--update kept " + " and ".join(parts) + ", unchanged" if parts else None
