"""parhash: hash whole directory trees in parallel.

Library API (each call is the whole of the CLI command of its name, without printing)::

    import parhash
    for record in parhash.scan(["./data"], algo="sha256", jobs=2):
        print(record.path, record.size, record.digest, record.error)

    result = parhash.check(["SHA256SUMS"])            # like `parhash check SHA256SUMS`
    result.exit_code, result.ok, result.mismatched     # ExitCode.OK, 12, 0

    result = parhash.audit("data.jsonl", exclude=["*.tmp"])   # like `parhash audit ...`
    result.exit_code, result.counts["modified"]

``check`` and ``audit`` return a result whose ``exit_code`` is the status the CLI exits
with on the same input; their report (``name: OK`` lines, the audit report) is written only
to a binary stream given as ``out``, their warnings are kept in ``result.messages``, so
nothing reaches the caller's stdout or stderr. A fatal problem (the CLI's exit 2: a bad
manifest, a missing root, an ambiguous checksum file) raises
``parhash.exit_codes.FatalError``; an unknown algorithm raises
``parhash.algorithms.UnknownAlgorithm`` (a ValueError). The command modules behind them
are ``parhash.commands.scan``, ``.check`` and ``.audit``.
"""

from __future__ import annotations

import sys

#: ``typing.TYPE_CHECKING`` without importing typing: ``parhash --version`` imports
#: nothing it does not print (typing, and dataclasses behind ``parhash.model``, cost 10 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

    from parhash.commands.audit import AuditResult
    from parhash.commands.check import CheckResult
    from parhash.model import FileRecord, Summary

__version__ = "0.1.0"
__all__ = [
    "FileRecord",
    "Summary",
    "__version__",
    "audit",
    "check",
    "main",
    "scan",
    "versions",
]


def __getattr__(name: str) -> object:
    """``parhash.FileRecord`` and ``parhash.Summary``, imported when first asked for
    (PEP 562), so that ``--version`` and ``--help`` do not pay for ``parhash.model``."""
    if name in ("FileRecord", "Summary"):
        from parhash import model

        return getattr(model, name)
    raise AttributeError(f"module 'parhash' has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: ``--version`` is answered before the CLI (typer) is even
    imported, so it costs little more than starting Python."""

    if sys.argv[1:] in (["--version"], ["-V"]):
        print(versions())
        return
    from parhash.cli import main as cli_main

    cli_main()


def versions() -> str:
    """parhash's version and its hashing libraries' (read from the modules themselves:
    importing importlib.metadata alone costs 30 ms)."""
    import xxhash

    try:
        import blake3

        b3 = f"blake3 {blake3.__version__}"
    except ImportError:
        b3 = "blake3 not installed"
    return (
        f"parhash {__version__} (xxhash {xxhash.VERSION}, libxxhash {xxhash.XXHASH_VERSION}, {b3})"
    )


def scan(
    paths: Iterable[str],
    *,
    algo: str = "xxh3",
    jobs: int | None = None,
    follow_symlinks: bool = False,
    one_file_system: bool = False,
    exclude: Iterable[str] = (),
    cluster: str | None = None,
    **cache: object,
) -> Iterator[FileRecord]:
    """Yield one ``FileRecord`` per file below ``paths``, in completion order.

    Per-file problems are records with ``error`` set, a missing root included (as the CLI
    and sha256sum: the other roots are still hashed); an unknown algorithm raises
    ``KeyError``. A root named twice is scanned once.
    ``jobs=1`` hashes in this process; otherwise a process pool is used and shut down when
    the iterator is exhausted or closed.
    ``cluster``: ``--cluster``'s ``tcp://HOST:PORT`` or ``local[:N]``: the files are hashed
    on that Dask cluster (needs ``parhash[dask]``; bad text raises ValueError).
    ``cache``: the CLI's cache options (``cache=True``, ``cache_dir``, ``cache_trust``,
    ``verify_budget``, ``verify_max_age``, as text); a cache that cannot be used is a
    ``RuntimeWarning`` (``warnings``) and the scan goes on without it.
    """
    from parhash.cache_policy import library_cache_options
    from parhash.commands.scan import records
    from parhash.options import scan_options

    options = scan_options(
        algo,
        jobs,
        follow_symlinks=follow_symlinks,
        one_file_system=one_file_system,
        exclude=exclude,
        cache=library_cache_options(cache),
        cluster=cluster,
    )
    return records(paths, options)


def check(
    sums_files: Iterable[str],
    *,
    jobs: int | None = None,
    out: BinaryIO | None = None,
    cluster: str | None = None,
    **options: object,
) -> CheckResult:
    """Verify checksum files as ``parhash check`` does (``-`` reads stdin); the ``name: OK``
    and ``FAILED`` lines go to ``out`` if given. ``options``: ``check.CheckOptions``' fields,
    named as the CLI's options (``algo``, ``quiet``, ``status``, ``strict``, ``warn``,
    ``ignore_missing``, ``zero``), and ``allowed_signers``, ``identity``,
    ``max_manifest_age`` (``signing.SignatureRefused`` when refused); ``cluster`` as for
    ``scan``. Returns a
    ``commands.check.CheckResult``: ``exit_code``,
    ``ok``, ``mismatched``, ``unreadable``, ``unopened``, ``malformed``, ``messages``,
    ``warnings``."""
    from dataclasses import replace

    from parhash.algorithms import canonical
    from parhash.checking import CheckOptions
    from parhash.commands import Warnings
    from parhash.commands import check as command
    from parhash.commands.outputs import committed
    from parhash.options import parse_cluster
    from parhash.signing import VERIFY_KEYWORDS, library_verify_options

    verify = library_verify_options(options)
    options = {k: v for k, v in options.items() if k not in VERIFY_KEYWORDS}
    chosen = CheckOptions(**options)  # type: ignore[arg-type]
    if chosen.algo:
        chosen = replace(chosen, algo=canonical(chosen.algo))
    warnings = Warnings()
    with committed() as outputs:
        result = command.run(
            list(sums_files),
            chosen,
            out,
            outputs,
            jobs=jobs,
            progress=lambda: warnings,
            verify=verify,
            cluster=parse_cluster(cluster) if cluster is not None else None,
        )
    return replace(result, warnings=tuple(warnings.messages))


def audit(
    manifest: str, root: str | None = None, *, out: BinaryIO | None = None, **options: object
) -> AuditResult:
    """Audit a tree against a manifest as ``parhash audit`` does; the report goes to ``out``
    if given. ``options``: ``commands.audit.AuditOptions``' fields (``fmt``: human, jsonl or
    json; ``fail_on``: classes as a list or the CLI's comma text; ``update``, ``verbose``,
    ``quiet``, ``algo``, ``jobs``, ``cluster`` as for ``scan``, ``color``), the cache
    options (``cache=True``, ``cache_dir``, ``cache_trust``, ``verify_budget``,
    ``verify_max_age``) and the
    selection options that replace the recorded ones (``exclude=[...]``, ``max_depth``,
    ``hidden``, ``gitignore``, ``min_size``/``max_size`` in bytes, ``follow_symlinks``,
    ``one_file_system``), the signature options (``allowed_signers``, ``identity``,
    ``max_manifest_age``; ``sign`` a key path, with ``update``). Returns a
    ``commands.audit.AuditResult``: ``exit_code``,
    ``counts`` per class, ``changes``, ``roots``, ``updated``, ``messages``."""
    from dataclasses import replace

    from parhash.commands import Warnings
    from parhash.commands import audit as command
    from parhash.commands.outputs import committed

    chosen = command.audit_options(options)
    warnings = Warnings()
    with committed() as outputs:
        result = command.run(
            manifest,
            root,
            chosen,
            out,
            outputs,
            progress=lambda: warnings,
            notify=warnings.messages.append,
        )
    return replace(result, messages=tuple(warnings.messages))
