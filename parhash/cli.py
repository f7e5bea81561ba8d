"""The command line: a thin typer layer that parses options into typed values once, calls
the command's library module (``parhash.commands.scan``, ``.check``, ``.audit``), prints
what it returns on stderr, and maps every way a run can end to one exit code
(``guarded``: signals, a closed pipe, fatal errors). Heavy modules (the pipeline,
multiprocessing, tqdm) are imported inside commands.

Exit codes: ``parhash.exit_codes.ExitCode`` (the help text is generated from it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from parhash import cli_signing, versions
from parhash.algorithms import ALGORITHMS, UnknownAlgorithm, canonical, canonical_list
from parhash.cli_signing import AllowedSigners, Identity, MaxManifestAge, SignKey
from parhash.exit_codes import ExitCode, FatalError, exhausted, exit_status_help
from parhash.help import Command, Group, examples
from parhash.output import color_enabled, err, sanitize

if TYPE_CHECKING:
    from parhash.checking import CheckOptions
    from parhash.commands.audit import AuditOptions
    from parhash.commands.outputs import Outputs
    from parhash.commands.scan import ScanFormat, ScanInputs
    from parhash.options import ClusterTarget, ScanOptions
    from parhash.signing import VerifyOptions

EXIT_CODES_HELP = exit_status_help()

#: The settings of the ``parhash`` group, shared by ``app`` and ``_app_for``'s one-command
#: groups.
APP_SETTINGS: dict = {
    "name": "parhash",
    "cls": Group,
    "help": "Hash whole directory trees in parallel.\n\n" + EXIT_CODES_HELP,
    "context_settings": {"help_option_names": ["-h", "--help"]},
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
}

app = typer.Typer(**APP_SETTINGS)


class Format(str, Enum):
    sums = "sums"
    jsonl = "jsonl"
    json = "json"
    csv = "csv"


class Interrupted(Exception):
    """Raised in the main thread by the SIGTERM/SIGHUP handler; carries the exit code."""

    def __init__(self, code: ExitCode) -> None:
        super().__init__(code.name)
        self.code = code


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(versions())
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
    """``-a NAME`` of check and audit, canonical (``algorithms.canonical``)."""
    try:
        return canonical(name)
    except UnknownAlgorithm as exc:
        raise typer.BadParameter(str(exc)) from None


#: Set once ``guarded`` has settled the outputs: a signal after that (during interpreter
#: shutdown) has nothing left to clean up, and raising there only printed "Exception
#: ignored in threading._shutdown" (found by test_lifecycle's SIGTERM loop).
_settled = False

#: The last SIGTERM/SIGHUP seen. The handler raises in whatever code runs, and that can be
#: a ``__del__`` (the exception is then "ignored") or an ``except Exception`` in a library:
#: the signal would be lost and the run go on. ``guarded`` checks this when the body
#: returns, so a swallowed signal still ends the run as interrupted.
_pending: ExitCode | None = None


#: How long a run may take to stop after SIGTERM or SIGHUP before it leaves anyway with
#: the signal's exit code. A normal stop takes well under a second (the pool is
#: terminated, outputs are anonymous temporary files, the cache writer gives up after
#: ``cache_store.ABANDON_S``); but a signal that lands inside ``multiprocessing``'s pool
#: start-up hung the run about once in 500 tries (test_lifecycle's start-up SIGTERM loop,
#: under load). The workers die with their parent (PR_SET_PDEATHSIG), so leaving is safe.
STOP_GRACE_S = 5.0

_watchdog: threading.Timer | None = None


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (exit 143) and SIGHUP, a closed terminal (129): stop like Ctrl-C, and
    leave after ``STOP_GRACE_S`` whatever the stop is waiting on."""
    global _pending, _watchdog
    code = ExitCode.HANGUP if signum == signal.SIGHUP else ExitCode.TERMINATED
    if _settled:
        os._exit(code)
    _pending = code
    if _watchdog is None:
        _watchdog = threading.Timer(STOP_GRACE_S, _leave, (code,))
        _watchdog.daemon = True
        # A second signal must not raise inside Thread.start() (threading's _limbo race:
        # the new thread then dies printing a KeyError); held, it is handled after.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
        try:
            _watchdog.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    raise Interrupted(code)


def _leave(code: ExitCode) -> None:
    """The watchdog's end of a run that did not stop in time after a signal."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def _unraisable(args) -> None:
    """``sys.unraisablehook``: an Interrupted raised inside a finalizer is not news (it is
    in ``_pending``, acted on by ``guarded``); anything else goes to Python's hook."""
    if isinstance(args.exc_value, Interrupted):
        return
    sys.__unraisablehook__(args)


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end the run through ``guarded``; a SIGHUP ignored at start
    (``nohup``) stays ignored, as the user asked."""
    sys.unraisablehook = _unraisable
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _on_sigterm)


def _at_least_one(value: int | None) -> int | None:
    """``-j``/``-d`` take 1 or more; said in words, not as click's ``[x>=1]``."""
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value} is not 1 or more")
    return value


# Options shared by the commands that walk or hash, declared once.
Jobs = Annotated[
    Optional[int],
    typer.Option(
        "--jobs",
        "-j",
        metavar="N",
        callback=_at_least_one,
        help="Worker processes, 1 or more (default: 2 x usable CPUs; at most 4 x usable "
        "CPUs and 64).",
    ),
]


def _parse_cluster(value: Optional[str]) -> object:
    """``--cluster``, parsed once here into a ``ClusterTarget`` (``options.parse_cluster``:
    nothing is contacted). Typer reads this signature at run time: no names from
    TYPE_CHECKING in it."""
    if value is None:
        return None
    from parhash.options import parse_cluster

    try:
        return parse_cluster(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


Cluster = Annotated[
    Optional[str],
    typer.Option(
        "--cluster",
        metavar="ADDRESS|local[:N]",
        callback=_parse_cluster,
        help="Run the hashing on a Dask cluster: a scheduler (tcp://HOST:PORT) whose workers "
        "mount the same paths, or local:N, a LocalCluster of N processes (default 2). "
        "Needs pip install 'parhash[dask]'.",
        show_default=False,
    ),
]
Progress = Annotated[
    Optional[bool],
    typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr (default: if it is a terminal)."
    ),
]
FollowSymlinks = Annotated[
    bool,
    typer.Option("--follow-symlinks", "-L", help="Follow symbolic links (loops are detected)."),
]
OneFileSystem = Annotated[
    bool, typer.Option("--one-file-system", "-x", help="Do not cross file system boundaries.")
]
Exclude = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude",
        "-e",
        metavar="GLOB",
        help="Skip names (no '/') or relative paths (with '/') matching GLOB; repeatable.",
    ),
]


SCAN_EPILOG = examples(
    "parhash scan ./photos > photos.xxh3",
    "parhash scan . -f jsonl | jq -r 'select(.size > 1e6) | .path'",
    "parhash scan /srv -a sha256 -f csv -o manifest.csv --jobs 2",
    "find . -newer stamp -type f -print0 | parhash scan --files-from - -0",
    "parhash scan -a sha256,xxh3 --tag src    # two digests, one read",
    "curl -s https://example.org/x.iso | parhash scan - -a sha256",
    "parhash scan /srv --cache -f jsonl -o srv.jsonl   # re-runs read only what changed",
) + exit_status_help({3: "not used by scan"})

MinSize = Annotated[
    Optional[str],
    typer.Option(
        "--min-size", metavar="SIZE", help="Skip files smaller than SIZE (10K, 5M, 1G: 1024-based)."
    ),
]
MaxSize = Annotated[
    Optional[str],
    typer.Option("--max-size", metavar="SIZE", help="Skip files larger than SIZE."),
]
MaxDepth = Annotated[
    Optional[int],
    typer.Option(
        "--max-depth",
        "-d",
        metavar="N",
        callback=_at_least_one,
        help="Descend at most N levels, 1 or more (1: PATH's entries).",
    ),
]
Hidden = Annotated[
    bool,
    typer.Option(
        "--hidden/--no-hidden",
        show_default=False,
        help="Include names starting with '.' (default: --hidden).",
    ),
]
ExcludeFrom = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude-from", metavar="FILE", help="Read --exclude globs from FILE, one a line."
    ),
]
Gitignore = Annotated[
    bool, typer.Option("--gitignore", help="Skip what .gitignore files ignore, and .git.")
]
Color = Annotated[
    str, typer.Option("--color", metavar="WHEN", help="Colours: auto, always or never.")
]
Cache = Annotated[
    bool,
    typer.Option(
        "--cache",
        help="Reuse digests of files whose size, mtime, ctime and inode are unchanged "
        "(a persistent cache). A hit means the metadata is as it was when the content was "
        "hashed, not that the content is intact: bit rot, or a same-size write with the "
        "timestamps restored, is invisible to it; --verify-budget re-reads some every run.",
    ),
]
CacheDir = Annotated[
    Optional[str],
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="Where the cache lives; implies --cache (by default ~/.cache/parhash or "
        "where the variables the README names put it).",
        show_default=False,
    ),
]
CacheTrust = Annotated[
    Optional[str],
    typer.Option(
        "--cache-trust",
        metavar="FIELDS",
        help="Stat fields a cache entry must match: size, mtime, ctime and inode (the "
        "default), or 'size,mtime' for FUSE or SMB mounts and copied trees, whose inodes "
        "and ctimes change: then a write that keeps the size and restores the mtime goes "
        "unseen.",
        show_default=False,
    ),
]
VerifyBudget = Annotated[
    Optional[str],
    typer.Option(
        "--verify-budget",
        metavar="N%|SIZE|DURATION",
        help="Each run, read again in full this much of the cache hits, stalest "
        "verification first: 5% (every file within 20 runs), 200G, or 30m.",
        show_default=False,
    ),
]
VerifyMaxAge = Annotated[
    Optional[str],
    typer.Option(
        "--verify-max-age",
        metavar="DURATION",
        help="Read again any cache hit not verified by a full read for DURATION (30d, 12h).",
        show_default=False,
    ),
]


def _cache_options(
    cache: bool,
    cache_dir: str | None,
    trust: str | None,
    budget: str | None,
    max_age: str | None,
):
    """The cache options parsed once (``cache_policy.cache_options``), as usage errors."""
    from parhash.cache_policy import cache_options

    try:
        return cache_options(cache, cache_dir, trust, budget, max_age)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command(cls=Command, epilog=SCAN_EPILOG, short_help="Hash trees: one record per file.")
def scan(
    paths: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Files or directories to hash ('-': stdin; default: the current directory).",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    algo: Annotated[
        str,
        typer.Option(
            "--algo",
            "-a",
            metavar="NAME[,NAME...]",
            help=f"Hash algorithm(s), several read once: {', '.join(ALGORITHMS)}.",
            callback=_check_algos,
        ),
    ] = "xxh3",
    fmt: Annotated[
        Format, typer.Option("--format", "-f", metavar="FMT", help="sums, jsonl, json or csv.")
    ] = Format.sums,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to FILE atomically instead of stdout ('-': stdout).",
        ),
    ] = None,
    files_from: Annotated[
        Optional[str],
        typer.Option(
            "--files-from",
            "-T",
            metavar="FILE",
            help="Hash the paths listed in FILE ('-': stdin) instead of walking.",
        ),
    ] = None,
    null: Annotated[
        bool, typer.Option("--null", "-0", help="--files-from: paths end with NUL, not newline.")
    ] = False,
    jobs: Jobs = None,
    cluster: Cluster = None,
    tag: Annotated[
        bool,
        typer.Option(
            "--tag", help="sums: BSD-style 'ALGO (path) = hex' (always for xxh3, as xxhsum -H3)."
        ),
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
    follow_symlinks: FollowSymlinks = False,
    one_file_system: OneFileSystem = False,
    exclude: Exclude = None,
    exclude_from: ExcludeFrom = None,
    max_depth: MaxDepth = None,
    hidden: Hidden = True,
    gitignore: Gitignore = False,
    min_size: MinSize = None,
    max_size: MaxSize = None,
    dedupe_links: Annotated[
        bool,
        typer.Option(
            "--dedupe-links/--no-dedupe-links",
            show_default=False,
            help="Read a file with several hard links once; every path gets its record "
            "(default: --dedupe-links).",
        ),
    ] = True,
    hdd: Annotated[
        bool,
        typer.Option(
            "--hdd",
            help="Gentle on spinning disks: one reader (-j 1), files read in inode order.",
        ),
    ] = False,
    progress: Progress = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")
    ] = False,
    color: Color = "auto",
    cache: Cache = False,
    cache_dir: CacheDir = None,
    cache_trust: CacheTrust = None,
    verify_budget: VerifyBudget = None,
    verify_max_age: VerifyMaxAge = None,
    sign: SignKey = None,
) -> None:
    """Hash every regular file below PATHS and print one record per file."""
    from parhash.commands.scan import ScanFormat, ScanInputs
    from parhash.options import scan_options

    _set_color(color)
    options = scan_options(
        algo,
        1 if hdd else jobs,
        inode_order=hdd,
        min_size=_size_option(min_size, "--min-size"),
        max_size=_size_option(max_size, "--max-size"),
        dedupe_links=dedupe_links,
        follow_symlinks=follow_symlinks,
        one_file_system=one_file_system,
        exclude=_excludes(exclude, exclude_from),
        max_depth=max_depth,
        hidden=hidden,
        gitignore=gitignore,
        cache=_cache_options(cache, cache_dir, cache_trust, verify_budget, verify_max_age),
        cluster=cluster,  # type: ignore[arg-type]  # a ClusterTarget: _parse_cluster
    )
    inputs = ScanInputs(
        tuple(paths or ([] if files_from else ["."])),
        files_from=files_from,
        null=null,
        exclude_files=tuple(exclude_from or ()),
    )
    if sign is not None and output in (None, "-"):
        raise typer.BadParameter(
            "needs -o FILE (the signature goes beside it)", param_hint="--sign"
        )
    layout = ScanFormat(fmt.value, tag=tag, zero=zero, relative=relative, sort=sort, sign=sign)
    raise typer.Exit(int(run_scan(inputs, options, layout, output, progress, quiet)))


def _check_algos(spec: str) -> str:
    """``-a NAME[,NAME...]`` of scan, canonical (``sha256,xxh3``): ``canonical_list``."""
    try:
        return ",".join(canonical_list(spec))
    except UnknownAlgorithm as exc:
        raise typer.BadParameter(str(exc)) from None


def _size_option(text: str | None, name: str) -> int | None:
    from parhash.walk import parse_size

    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def _excludes(exclude: list[str] | None, exclude_from: list[str] | None) -> tuple[str, ...]:
    """--exclude globs plus those read from --exclude-from files (blank and # lines skipped)."""
    patterns = list(exclude or ())
    for name in exclude_from or ():
        try:
            with open(name, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise typer.BadParameter(
                f"{name}: {exc.strerror or exc}", param_hint="--exclude-from"
            ) from None
        patterns.extend(line for line in lines if line.strip() and not line.startswith("#"))
    return tuple(patterns)


def _set_color(choice: str) -> None:
    from parhash.output import set_color

    if choice not in ("auto", "always", "never"):
        raise typer.BadParameter("choose auto, always or never", param_hint="--color")
    set_color(choice)


def guarded(
    body: Callable[[Outputs], ExitCode], finish: Callable[[ExitCode], ExitCode] | None = None
) -> ExitCode:
    """Run a command body and turn every way it can end into one exit code.

    The one place that maps interrupts, a closed pipe, write errors and fatal errors to
    exit codes, and that drops unfinished output files, for every command. Running out of
    a resource (memory, threads, descriptors, TMPDIR space) is a fatal error with one line,
    not a bug: exit 2, and data that was already complete is kept.

    ``finish`` (audit's ``--metrics``) is told the exit code once everything else is
    settled, on every way out but a bug, and returns the code to exit with.
    """
    from parhash.commands.outputs import Outputs
    from parhash.output import OutputError

    global _settled, _pending, _watchdog
    _settled, _pending = False, None  # per run: an in-process caller may run several
    if _watchdog is not None:
        _watchdog.cancel()
        _watchdog = None
    _install_signal_handlers()
    outputs = Outputs()
    try:
        code = body(outputs)
        if _pending is not None:  # a signal whose exception a finalizer swallowed
            raise Interrupted(_pending)
        outputs.commit()
        if finish is not None:
            code = finish(code)
        _settled = True
        return code
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except Interrupted as exc:
        code = exc.code
    except BrokenPipeError:
        _silence_stdout()
        code = ExitCode.BROKEN_PIPE
    except OutputError as exc:
        code = ExitCode.BROKEN_PIPE if exc.broken_pipe else _fatal(exc.message)
    except FatalError as exc:
        _fatal(f"error: {exc}")
        code = exc.exit_code
    except Exception as exc:
        message = exhausted(exc)
        if message is None or os.environ.get("PARHASH_DEBUG"):
            raise  # a bug: main() says so (exit 70); or the traceback was asked for
        code = _fatal(f"error: {message}", outputs if outputs.complete else None)
    outputs.abort()
    if finish is not None:
        with contextlib.suppress(Interrupted, KeyboardInterrupt):  # a second signal
            code = finish(code)
    _settled = True
    if code is ExitCode.FATAL and threading.active_count() > 1:
        # A thread of ours (the writer, inside SQLite) may still run: interpreter
        # shutdown under it crashed with SIGSEGV under ulimit -v (found in review). The
        # outputs are settled and the pool stopped, so leave now, as for an interrupt.
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED, ExitCode.HANGUP, ExitCode.BROKEN_PIPE):
        # The writer thread may be blocked in a write to a pipe nobody reads; a normal
        # interpreter exit would then wait on the stdout lock it holds. The pool is already
        # stopped and the output file dropped, so leave now.
        sys.stderr.flush()
        os._exit(code)
    return code


def _fatal(message: str, complete: Outputs | None = None) -> ExitCode:
    """Print one ``parhash: ...`` line; first commit ``complete`` outputs (their data was
    all written before the failure), unless that fails too."""
    from parhash.output import OutputError

    if complete is not None:
        try:
            complete.commit()
        except OutputError as exc:
            message = exc.message
    err(f"parhash: {sanitize(message)}")
    return ExitCode.FATAL


def run_scan(
    inputs: ScanInputs,
    options: ScanOptions,
    layout: ScanFormat,
    output: str | None,
    progress: bool | None,
    quiet: bool,
) -> ExitCode:
    """A scan (``commands.scan``) with its summary line on stderr; see ``guarded``."""
    from parhash.commands import scan as command
    from parhash.progress import make_progress

    def body(outputs: Outputs) -> ExitCode:
        bar = functools.partial(make_progress, progress, quiet)
        summary = command.run(inputs, options, layout, outputs, output=output, progress=bar)
        if not quiet:
            print_summary(summary)
        return command.exit_code(summary)

    return guarded(body)


def print_summary(summary) -> None:
    """The human end of a scan, on stderr: one line, then the first errors again only if
    their warnings may have scrolled out of sight (``errors_scrolled_away``)."""
    from parhash.output import paint, plural
    from parhash.progress import human_bytes, human_seconds

    cache = summary.cache
    read = summary.bytes if cache is None or not cache.available else cache.read_bytes
    rate = read / summary.elapsed if summary.elapsed > 0 else 0.0
    errors = plural(summary.errors, "error")
    done = "hashed" if cache is None else "checked"
    err(
        f"parhash: {done} {plural(summary.files - summary.errors, 'file')}, "
        f"{human_bytes(summary.bytes)} in {human_seconds(summary.elapsed)} "
        f"({human_bytes(rate)}/s{'' if cache is None else ' read'}), "
        + (paint(errors, "error") if summary.errors else errors)
        + _skipped_note(len(summary.skipped_mounts))
    )
    if cache is not None:
        from parhash.progress import cache_note

        err(f"parhash: cache: {cache_note(cache)}")
    if not errors_scrolled_away(summary):
        return
    for record in summary.first_errors:
        err(f"  {sanitize(record.path)}: {sanitize(record.error or '')}")
    hidden = summary.errors - len(summary.first_errors)
    if hidden > 0:
        err(f"  and {hidden:,} more; see --format jsonl")


def errors_scrolled_away(summary) -> bool:
    """Should the summary list the first errors again?

    Each error already had its warning line. Repeating them is only worth a line when the
    first warning is no longer on screen: stderr is a terminal, and the lines printed since
    (the other warnings, and the data lines when stdout is the same terminal) are more
    than it has rows. A log file or a short run shows every error exactly once.
    """
    from parhash.output import same_terminal

    if not summary.errors or not sys.stderr.isatty():
        return False
    try:
        rows = os.get_terminal_size(sys.stderr.fileno()).lines or 24  # 0: size never set
    except OSError:
        return False
    since = summary.errors
    if same_terminal(sys.stdout, sys.stderr):
        since += summary.files - summary.before_first_error - summary.errors
    return since >= rows - 1


def _skipped_note(mounts: int) -> str:
    """The summary's mention of pseudo-filesystem mounts not entered (each was warned)."""
    from parhash.output import plural

    return f", {plural(mounts, 'pseudo-filesystem mount')} not entered" if mounts else ""


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet
    (the Python docs' "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def _app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command ``args`` name, else ``app`` (help, a typo, completion).

    Typer turns every registered command into a click command, inspecting each function's
    signature, before it parses anything: the two commands a run does not use cost 4 ms of
    the start-up (measured: 8.5 ms for the group of three, 4 ms for one). The one-command
    group has the same settings, callback and command, so its parsing, usage lines and
    errors are the same."""
    chosen = [c for c in app.registered_commands if args and c.callback.__name__ == args[0]]
    if not chosen:
        return app
    one = typer.Typer(**APP_SETTINGS)
    one.registered_callback = app.registered_callback
    one.registered_commands = chosen
    return one


def main() -> None:
    """Console-script entry point.

    A bug must not greet the user with a traceback either: one line and exit 70
    (EX_SOFTWARE); ``PARHASH_DEBUG=1`` shows the traceback for a bug report.
    """
    try:
        _app_for(sys.argv[1:])(prog_name="parhash")  # also as `python -m parhash`
    except KeyboardInterrupt:  # a second Ctrl-C while cleaning up
        os._exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        if os.environ.get("PARHASH_DEBUG"):
            raise
        err(
            f"parhash: internal error: {type(exc).__name__}: {sanitize(str(exc))} "
            "(run with PARHASH_DEBUG=1 for details and please report it)"
        )
        sys.exit(ExitCode.INTERNAL)


CHECK_EPILOG = (
    examples(
        "parhash scan -a sha256 photos > photos.sha256 && parhash check photos.sha256",
        "sha256sum -- *.iso > SHA256SUMS && parhash check --quiet SHA256SUMS",
        "b3sum big/* | parhash check -a blake3 -",
    )
    + "The algorithm of a line comes from its BSD tag ('SHA256 (file) = ...'), else -a, else "
    "the checksum file's name (SHA256SUMS, x.md5, x.b3), else the digest length when only "
    "one algorithm has it (16 digits: xxh64, as xxhsum reads them); an ambiguous length is an "
    "error. -a never overrides a line's own tag.\n\n"
    + exit_status_help(
        {
            0: "every listed file matched",
            1: "a file or checksum file failed or could not be read, or (--strict) a line "
            "was malformed",
            2: "fatal (ambiguous algorithm, unsupported hashdeep column)",
        }
    )
)


@app.command(
    cls=Command, epilog=CHECK_EPILOG, short_help="Verify checksum files, like sha256sum -c."
)
def check(
    sums_files: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Checksum files ('-' for stdin; default: stdin).",
            metavar="SUMSFILE",
            show_default=False,
        ),
    ] = None,
    algo: Annotated[
        Optional[str],
        typer.Option(
            "--algo", "-a", metavar="NAME", help="Algorithm of untagged lines.", callback=None
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Don't print OK for each file.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Print nothing; the exit status says it all.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 for improperly formatted lines.")
    ] = False,
    warn: Annotated[
        bool, typer.Option("--warn", "-w", help="Warn about improperly formatted lines.")
    ] = False,
    ignore_missing: Annotated[
        bool, typer.Option("--ignore-missing", help="Don't fail or report for missing files.")
    ] = False,
    zero: Annotated[
        bool, typer.Option("--zero", "-z", help="Checksum records end with NUL.")
    ] = False,
    jobs: Jobs = None,
    cluster: Cluster = None,
    progress: Progress = None,
    allowed_signers: AllowedSigners = None,
    identity: Identity = None,
    max_manifest_age: MaxManifestAge = None,
) -> None:
    """Verify files against checksum files (sha256sum -c, b3sum --check, xxhsum -c)."""
    from parhash.checking import CheckOptions
    from parhash.cli_signing import verify_options

    options = CheckOptions(
        algo=_check_algo(algo) if algo else None,
        quiet=quiet,
        status=status,
        strict=strict,
        warn=warn,
        ignore_missing=ignore_missing,
        zero=zero,
    )
    verify = verify_options(allowed_signers, identity, max_manifest_age)
    names = sums_files or ["-"]
    code = run_check(names, options, jobs=jobs, progress=progress, verify=verify, cluster=cluster)  # type: ignore[arg-type]
    raise typer.Exit(int(code))


def run_check(
    names: list[str],
    options: CheckOptions,
    *,
    jobs: int | None,
    progress: bool | None,
    verify: VerifyOptions | None = None,
    cluster: ClusterTarget | None = None,
) -> ExitCode:
    """A check (``commands.check``) with its closing warnings on stderr; see ``guarded``."""
    from parhash.commands import check as command
    from parhash.progress import make_progress

    def body(outputs: Outputs) -> ExitCode:
        bar = functools.partial(make_progress, progress, quiet=False)
        stdout = outputs.stdout()
        result = command.run(
            names, options, stdout, outputs, jobs=jobs, progress=bar, verify=verify, cluster=cluster
        )
        for message in result.messages:
            err(f"parhash: {message}")
        return result.exit_code

    return guarded(body)


class AuditFormat(str, Enum):
    human = "human"
    jsonl = "jsonl"
    json = "json"


AUDIT_EPILOG = (
    examples(
        "parhash scan /srv/data -a sha256 -f jsonl -o /var/lib/parhash/data.jsonl",
        "parhash audit /var/lib/parhash/data.jsonl          # what changed since?",
        "parhash audit data.jsonl --fail-on corrupted,removed --update",
        "parhash audit data.jsonl --cache --verify-budget 5% "
        "--metrics /var/lib/node_exporter/textfile_collector/parhash.prom",
    )
    + "Classes: added, removed, modified, corrupted (content changed but size and mtime did "
    "not), moved, unreadable, unchanged.\n\n"
    + exit_status_help(
        {
            0: "no change in a --fail-on class",
            1: "changes in a --fail-on class",
            2: "fatal (bad manifest, missing root, an --update that would lose entries, a "
            "--metrics file that cannot be written)",
            3: "--allowed-signers refused the manifest's signature: nothing was scanned",
        }
    )
)


#: The audit options that select files, by parameter name: each one given replaces the
#: value the manifest recorded (``exclude_from`` joins ``exclude``).
SELECTION_PARAMS = (
    "follow_symlinks",
    "one_file_system",
    "exclude",
    "exclude_from",
    "max_depth",
    "hidden",
    "gitignore",
    "min_size",
    "max_size",
)


@app.command(cls=Command, epilog=AUDIT_EPILOG, short_help="Report what changed since a manifest.")
def audit(
    ctx: typer.Context,
    manifest: Annotated[
        str,
        typer.Argument(
            help="A parhash jsonl/json/csv manifest or a sums file; - reads stdin.",
            metavar="MANIFEST",
        ),
    ],
    root: Annotated[
        Optional[str],
        typer.Argument(
            help="Tree to audit (default: the root recorded in the manifest).",
            metavar="ROOT",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        AuditFormat,
        typer.Option("--format", "-f", metavar="FMT", help="human, jsonl or json."),
    ] = AuditFormat.human,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            metavar="CLASSES",
            help="Comma-separated classes that make the exit status 1, or 'none' "
            "(default: every class but unchanged).",
            show_default=False,
        ),
    ] = ",".join(c for c in ("added", "removed", "modified", "corrupted", "moved", "unreadable")),
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Then rewrite MANIFEST atomically (what this run did not reach stays as it was).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list unchanged files.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress and no warnings; the report lists only the changes "
            "(nothing at all when nothing changed).",
        ),
    ] = False,
    algo: Annotated[
        Optional[str],
        typer.Option("--algo", "-a", metavar="NAME", help="Algorithm of a sums manifest."),
    ] = None,
    follow_symlinks: FollowSymlinks = False,
    one_file_system: OneFileSystem = False,
    exclude: Exclude = None,
    exclude_from: ExcludeFrom = None,
    max_depth: MaxDepth = None,
    hidden: Hidden = True,
    gitignore: Gitignore = False,
    min_size: MinSize = None,
    max_size: MaxSize = None,
    jobs: Jobs = None,
    cluster: Cluster = None,
    progress: Progress = None,
    color: Color = "auto",
    cache: Cache = False,
    cache_dir: CacheDir = None,
    cache_trust: CacheTrust = None,
    verify_budget: VerifyBudget = None,
    verify_max_age: VerifyMaxAge = None,
    metrics: Annotated[
        Optional[str],
        typer.Option(
            "--metrics",
            metavar="FILE",
            help="Then write the run's outcome to FILE (atomically, mode 0644) in the "
            "Prometheus text format, for node_exporter's textfile collector: files per "
            "class, files and bytes read, cache counts, duration, exit code, and when an "
            "audit last completed (kept as it was when a run fails).",
            show_default=False,
        ),
    ] = None,
    allowed_signers: AllowedSigners = None,
    identity: Identity = None,
    max_manifest_age: MaxManifestAge = None,
    sign: SignKey = None,
) -> None:
    """Compare a tree with a saved manifest and report exactly what changed.

    The selection options (-e, --exclude-from, -d, --hidden/--no-hidden, --gitignore,
    --min-size, --max-size, -L, -x) default to those the manifest recorded."""
    from parhash.cli_signing import verify_options
    from parhash.commands.audit import AuditOptions, parse_fail_on

    try:
        classes = parse_fail_on(fail_on)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fail-on") from None
    _set_color(color)
    given = {p for p in SELECTION_PARAMS if _on_command_line(ctx, p)}
    values = {
        "follow_symlinks": follow_symlinks,
        "one_file_system": one_file_system,
        "max_depth": max_depth,
        "hidden": hidden,
        "gitignore": gitignore,
        "min_size": _size_option(min_size, "--min-size"),
        "max_size": _size_option(max_size, "--max-size"),
    }
    overrides = {k: v for k, v in values.items() if k in given}
    if given & {"exclude", "exclude_from"}:
        overrides["exclude"] = list(_excludes(exclude, exclude_from))
    options = AuditOptions(
        fmt=fmt.value,
        fail_on=classes,
        update=update,
        verbose=verbose,
        quiet=quiet,
        algo=_check_algo(algo) if algo else None,
        jobs=jobs,
        cluster=cluster,  # type: ignore[arg-type]  # a ClusterTarget: _parse_cluster
        color=color_enabled(sys.stdout),  # the report is on stdout: colour if that is a TTY
        selection=overrides,
        cache=_cache_options(cache, cache_dir, cache_trust, verify_budget, verify_max_age),
        verify=verify_options(allowed_signers, identity, max_manifest_age),
        sign=sign,
    )
    if sign is not None and not update:
        raise typer.BadParameter(
            "needs --update (it signs the rewritten manifest)", param_hint="--sign"
        )
    if metrics == "-":
        raise typer.BadParameter("needs a file (stdout carries the report)", param_hint="--metrics")
    raise typer.Exit(int(run_audit(manifest, root, options, progress=progress, metrics=metrics)))


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the option was typed (not a default): typer 0.2x vendors click, so the
    ParameterSource enum is compared by name rather than imported from a private module."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def run_audit(
    manifest: str,
    root: str | None,
    options: AuditOptions,
    *,
    progress: bool | None,
    metrics: str | None = None,
) -> ExitCode:
    """An audit (``commands.audit``), its report on stdout; with ``metrics``, the run's
    outcome written there at the end (``parhash.metrics``), a failed run's too; see
    ``guarded``."""
    from parhash.commands import audit as command
    from parhash.progress import make_progress

    written = None
    if metrics is not None:
        from parhash.metrics import AuditMetrics

        written = AuditMetrics.for_manifest(metrics, manifest)

    def body(outputs: Outputs) -> ExitCode:
        if written is not None:
            written.check()
        bar = functools.partial(make_progress, progress, options.quiet)
        result = command.run(
            manifest, root, options, outputs.stdout(), outputs, progress=bar, notify=_notify
        )
        if written is not None:
            written.result = result
        return result.exit_code

    finish = None if written is None else functools.partial(written.finish, warn=_notify)
    return guarded(body, finish)


def _notify(message: str) -> None:
    err(f"parhash: {message}")


# -- parhash sign | verify ----------------------------------------------------------------

app.command(
    cls=Command,
    epilog=cli_signing.SIGN_EPILOG,
    short_help="Sign files into FILE.sig (SSH signatures, as ssh-keygen -Y sign).",
)(cli_signing.sign)
app.command(
    cls=Command,
    epilog=cli_signing.VERIFY_EPILOG,
    short_help="Check FILE.sig against an allowed_signers file.",
)(cli_signing.verify)


# -- parhash cache stats | prune | clear ---------------------------------------------------

CACHE_EXIT_HELP = exit_status_help(
    {
        0: "done (also when there is no cache yet)",
        1: "not used",
        3: "not used",
        2: "usage error, or the cache cannot be used (corrupt, written by a newer parhash, "
        "locked by another process)",
    }
)
CACHE_EPILOG = (
    examples(
        "parhash cache stats",
        "parhash cache stats -f json | jq '.roots[] | {path, oldest_verification_age_s}'",
        "parhash cache prune --cache-dir /var/cache/parhash",
        "PARHASH_CACHE_DIR=/srv/.parhash-cache parhash cache clear",
    )
    + "stats -f json keys: cache, exists, size_on_disk, entries, roots (path, algos, entries, "
    "bytes, runs, last_run_ns, last_run_age_s, oldest_verified_ns, "
    "oldest_verification_age_s).\n\n" + CACHE_EXIT_HELP
)

cache_app = typer.Typer(
    name="cache",
    cls=Group,
    help="Look after the hash cache that --cache fills: statistics, expiry, emptying.\n\n"
    + CACHE_EXIT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, short_help="Show, prune or clear the hash cache.")

UpkeepCacheDir = Annotated[
    Optional[str],
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="The cache's directory, as for scan and audit (default: $PARHASH_CACHE_DIR, "
        "else $XDG_CACHE_HOME/parhash, else ~/.cache/parhash).",
        show_default=False,
    ),
]


class StatsFormat(str, Enum):
    human = "human"
    json = "json"


@cache_app.command("stats", cls=Command, epilog=CACHE_EPILOG, short_help="What the cache holds.")
def cache_stats(
    cache_dir: UpkeepCacheDir = None,
    fmt: Annotated[
        StatsFormat, typer.Option("--format", "-f", metavar="FMT", help="human or json.")
    ] = StatsFormat.human,
) -> None:
    """Show the cache file, its size on disk and, per root, its entries, the bytes they
    cover, its runs, its last run and its oldest verification by a full read."""
    from parhash.commands import cache as command

    path = command.cache_file(cache_dir)

    def show(outputs: Outputs) -> None:
        found = command.stats(path)
        render = command.render_json if fmt is StatsFormat.json else command.render_human
        outputs.stdout().write(render(path, found).encode("utf-8", "surrogateescape"))

    raise typer.Exit(int(run_cache(show)))


@cache_app.command(
    "prune", cls=Command, epilog=CACHE_EPILOG, short_help="Drop entries no run sees any more."
)
def cache_prune(cache_dir: UpkeepCacheDir = None) -> None:
    """Drop now the entries not seen for 20 runs of their root (every complete run does
    it for its own roots), then give the space back."""
    from parhash.cache_policy import TTL_RUNS
    from parhash.commands import cache as command

    path = command.cache_file(cache_dir)

    def prune(outputs: Outputs) -> None:
        dropped = command.prune(path)
        note = f"not seen for {TTL_RUNS} runs of their root"
        _cache_line(outputs, f"dropped {plural_entries(dropped)} {note}: {sanitize(path)}")

    raise typer.Exit(int(run_cache(prune)))


@cache_app.command("clear", cls=Command, epilog=CACHE_EPILOG, short_help="Empty the cache.")
def cache_clear(cache_dir: UpkeepCacheDir = None) -> None:
    """Empty the cache (the next run of each root hashes everything again)."""
    from parhash.commands import cache as command

    path = command.cache_file(cache_dir)

    def clear(outputs: Outputs) -> None:
        dropped = command.clear(path)
        _cache_line(outputs, f"dropped {plural_entries(dropped)}: {sanitize(path)} is empty")

    raise typer.Exit(int(run_cache(clear)))


def plural_entries(count: int) -> str:
    from parhash.output import plural

    return plural(count, "entry", "entries")


def _cache_line(outputs: Outputs, line: str) -> None:
    outputs.stdout().write((line + "\n").encode("utf-8", "surrogateescape"))


def run_cache(action: Callable[[Outputs], None]) -> ExitCode:
    """A cache upkeep command, its answer on stdout; see ``guarded`` (an unusable cache is
    a ``FatalError``: one line, exit 2)."""

    def body(outputs: Outputs) -> ExitCode:
        action(outputs)
        return ExitCode.OK

    return guarded(body)
