"""parhash: hash whole directory trees in parallel.

Library API::

    import parhash
    for record in parhash.scan(["./data"], algo="sha256", jobs=2):
        print(record.path, record.size, record.digest, record.error)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from parhash.model import FileRecord, Summary

__version__ = "0.1.0"
__all__ = ["FileRecord", "Summary", "__version__", "main", "scan", "versions"]


def main() -> None:
    """Console-script entry point: ``--version`` is answered before the CLI (typer) is even
    imported, so it costs little more than starting Python."""
    import sys

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
) -> Iterator[FileRecord]:
    """Yield one ``FileRecord`` per file below ``paths``, in completion order.

    Per-file problems are records with ``error`` set, a missing root included (as the CLI
    and sha256sum: the other roots are still hashed); an unknown algorithm raises
    ``KeyError``. A root named twice is scanned once.
    ``jobs=1`` hashes in this process; otherwise a process pool is used and shut down when
    the iterator is exhausted or closed.
    """
    from parhash.options import scan_options
    from parhash.pipeline import iter_records
    from parhash.sources import unique_roots

    options = scan_options(
        algo,
        jobs,
        follow_symlinks=follow_symlinks,
        one_file_system=one_file_system,
        exclude=exclude,
    )
    roots, _ = unique_roots(paths)  # a root named twice is scanned once
    return iter_records(roots, options)
