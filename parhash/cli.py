"""The command line: a thin typer layer that parses options, calls the pipeline, maps the
outcome to an exit code. Heavy modules (multiprocessing, tqdm) are imported inside commands.

Exit codes (``parhash.exit_codes.ExitCode``):
  0 every file hashed; 1 some files produced error records; 2 usage or fatal error;
  130 interrupted (SIGINT), 143 terminated (SIGTERM), 141 stdout closed by the reader.
"""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from parhash import __version__
from parhash.exit_codes import ExitCode, FatalError
from parhash.hashing import ALGORITHMS, get_algorithm
from parhash.output import err, sanitize

EXIT_CODES_HELP = (
    "Exit status: 0 all files hashed; 1 some files could not be hashed (error records); "
    "2 usage or fatal error; 130 SIGINT; 143 SIGTERM; 141 stdout closed early."
)

app = typer.Typer(
    name="parhash",
    help="Hash whole directory trees in parallel.\n\n" + EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


class Format(str, Enum):
    sums = "sums"
    jsonl = "jsonl"
    json = "json"
    csv = "csv"


class Interrupted(Exception):
    """Raised in the main thread by the SIGTERM handler; carries the exit code."""

    def __init__(self, code: ExitCode) -> None:
        super().__init__(code.name)
        self.code = code


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("xxhash", "blake3"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return f"parhash {__version__} ({', '.join(parts)})"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Show versions and exit.", callback=_version_callback),
    ] = False,
) -> None:
    """Hash whole directory trees in parallel."""


def _check_algo(name: str) -> str:
    try:
        return get_algorithm(name).name
    except KeyError:
        raise typer.BadParameter(
            f"unknown algorithm {name!r}; choose from: {', '.join(ALGORITHMS)}"
        ) from None


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(ExitCode.TERMINATED)


SCAN_EPILOG = (
    "Examples:\n\n"
    "  parhash scan ./photos > photos.xxh3\n\n"
    "  parhash scan . -f jsonl | jq -r 'select(.size > 1e6) | .path'\n\n"
    "  parhash scan /srv -a sha256 -f csv -o manifest.csv --jobs 2\n\n" + EXIT_CODES_HELP
)


@app.command(epilog=SCAN_EPILOG)
def scan(
    paths: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Files or directories to hash (default: the current directory).",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    algo: Annotated[
        str,
        typer.Option(
            "--algo",
            "-a",
            metavar="NAME",
            help=f"Hash algorithm: {', '.join(ALGORITHMS)}.",
            callback=_check_algo,
        ),
    ] = "xxh3",
    fmt: Annotated[
        Format, typer.Option("--format", "-f", metavar="FMT", help="sums, jsonl, json or csv.")
    ] = Format.sums,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write to FILE atomically instead of stdout."
        ),
    ] = None,
    jobs: Annotated[
        Optional[int],
        typer.Option(
            "--jobs", "-j", min=1, metavar="N", help="Worker processes (default: usable CPUs)."
        ),
    ] = None,
    tag: Annotated[
        bool, typer.Option("--tag", help="sums: BSD-style 'ALGO (path) = hex'.")
    ] = False,
    zero: Annotated[
        bool, typer.Option("--zero", "-z", help="sums: end records with NUL, no escaping.")
    ] = False,
    relative: Annotated[
        bool, typer.Option("--relative", help="Print paths relative to their root.")
    ] = False,
    sort: Annotated[
        bool, typer.Option("--sort", help="Sort records by path (holds them all in memory).")
    ] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option("--follow-symlinks", "-L", help="Follow symbolic links (loops are detected)."),
    ] = False,
    one_file_system: Annotated[
        bool, typer.Option("--one-file-system", "-x", help="Do not cross file system boundaries.")
    ] = False,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option(
            "--exclude",
            "-e",
            help="Skip names (no '/') or relative paths (with '/') matching GLOB; repeatable.",
            metavar="GLOB",
        ),
    ] = None,
    progress: Annotated[
        Optional[bool],
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: if it is a TTY)."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")
    ] = False,
) -> None:
    """Hash every regular file below PATHS and print one record per file."""
    from parhash.pipeline import ScanOptions
    from parhash.walk import WalkOptions

    options = ScanOptions(
        algo=algo,
        jobs=jobs,
        walk=WalkOptions(
            follow_symlinks=follow_symlinks,
            one_file_system=one_file_system,
            exclude=tuple(exclude or ()),
        ),
    )
    code = run_scan(
        paths or ["."],
        options,
        fmt=fmt.value,
        output=output,
        tag=tag,
        zero=zero,
        relative=relative,
        sort=sort,
        progress=progress,
        quiet=quiet,
    )
    raise typer.Exit(int(code))


def run_scan(
    paths: list[str],
    options,
    *,
    fmt: str,
    output: str | None,
    tag: bool,
    zero: bool,
    relative: bool,
    sort: bool,
    progress: bool | None,
    quiet: bool,
) -> ExitCode:
    """Run a scan end to end and turn every way it can end into one exit code."""
    from parhash.output import AtomicOutput
    from parhash.pipeline import check_roots, run, scan_sources
    from parhash.progress import human_bytes, make_progress
    from parhash.report import make_reporter

    signal.signal(signal.SIGTERM, _on_sigterm)
    target: AtomicOutput | None = None
    try:
        roots = check_roots(paths)
        target = AtomicOutput(output) if output else None
        stream = target.stream if target else sys.stdout.buffer
        reporter = make_reporter(
            fmt,
            stream,
            options.algo,
            relative=relative,
            tag=tag,
            zero=zero,
            sort=sort,
            options={
                "follow_symlinks": options.walk.follow_symlinks,
                "one_file_system": options.walk.one_file_system,
                "exclude": list(options.walk.exclude),
            },
        )
        reporter.begin(roots)
        sources = scan_sources(roots, options.walk)
        summary = run(sources, options, reporter, make_progress(progress, quiet))
        if target is not None:
            target.commit()
            target = None
    except KeyboardInterrupt:
        return _abort(target, ExitCode.INTERRUPTED)
    except Interrupted as exc:
        return _abort(target, exc.code)
    except BrokenPipeError:
        _silence_stdout()
        return _abort(target, ExitCode.BROKEN_PIPE)
    except FatalError as exc:
        err(f"parhash: error: {sanitize(str(exc))}")
        return _abort(target, ExitCode.FATAL)
    except OSError as exc:  # writing the output failed (disk full, I/O error)
        where = output or "stdout"
        err(f"parhash: error: cannot write {sanitize(where)}: {exc.strerror or exc}")
        return _abort(target, ExitCode.FATAL)
    if not quiet:
        rate = summary.bytes / summary.elapsed if summary.elapsed > 0 else 0.0
        err(
            f"parhash: hashed {summary.files - summary.errors:,} files, "
            f"{human_bytes(summary.bytes)} in {summary.elapsed:.2f} s "
            f"({human_bytes(rate)}/s), {summary.errors:,} errors"
        )
    return ExitCode.FILE_ERRORS if summary.errors else ExitCode.OK


def _abort(target, code: ExitCode) -> ExitCode:
    if target is not None:
        target.abort()
    return code


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet
    (the Python docs' "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def main() -> None:
    """Console-script entry point."""
    app()
