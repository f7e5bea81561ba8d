"""``parhash check``: verify checksum files (sha256sum -c, b3sum --check) through the pipeline.

Lines stream from the checksum files into the same batcher, pool and writer thread as a
scan; each record comes back with the ``Expected`` line it verifies. Output and exit status
follow GNU coreutils: ``name: OK`` / ``name: FAILED`` / ``name: FAILED open or read`` on
stdout, counts of problems as ``WARNING:`` lines on stderr, exit 1 when anything failed.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from parhash.exit_codes import ExitCode, FatalError
from parhash.hashing import get_algorithm
from parhash.model import Expected, FileRecord, Summary
from parhash.output import err, sanitize
from parhash.pipeline import Source
from parhash.sums import (
    BadLine,
    ChecksumLine,
    algorithm_for_length,
    algorithm_from_name,
    escape_name,
    parse_line,
)

MISSING = "No such file or directory"


@dataclass
class CheckOptions:
    """How to read checksum files and what to print."""

    algo: str | None = None  #: -a: the algorithm of untagged lines
    quiet: bool = False  #: print failures only
    status: bool = False  #: print nothing; the exit status says it all
    strict: bool = False  #: improperly formatted lines make the exit status 1
    warn: bool = False  #: warn about each improperly formatted line
    ignore_missing: bool = False  #: a listed file that does not exist is not a failure
    zero: bool = False  #: records end in NUL


@dataclass
class SumsFileState:
    """Per checksum file: counts that decide its end-of-run messages."""

    name: str
    formatted: int = 0
    malformed: int = 0
    verified: int = 0


@dataclass
class CheckReport:
    """Counters of a check run and the exit policy (coreutils semantics) in one place."""

    options: CheckOptions
    ok: int = 0
    mismatched: int = 0
    unreadable: int = 0
    files: list[SumsFileState] = field(default_factory=list)

    @property
    def return_code(self) -> ExitCode:
        """1 if a checksum did not match, a file could not be read, a checksum file had no
        usable line (or, with --ignore-missing, verified nothing), or --strict saw a bad
        line; else 0."""
        if self.mismatched or self.unreadable:
            return ExitCode.FILE_ERRORS
        if self.options.strict and any(state.malformed for state in self.files):
            return ExitCode.FILE_ERRORS
        for state in self.files:
            if not state.formatted:
                return ExitCode.FILE_ERRORS
            if self.options.ignore_missing and not state.verified:
                return ExitCode.FILE_ERRORS
        return ExitCode.OK

    def final_messages(self) -> list[str]:
        out = []
        for state in self.files:
            if not state.formatted:
                out.append(f"{sanitize(state.name)}: no properly formatted checksum lines found")
            elif self.options.ignore_missing and not state.verified:
                out.append(f"{sanitize(state.name)}: no file was verified")
        if self.options.status:
            return out
        # coreutils counts bad lines only of files that had a good one; a file with none
        # got its own message above.
        malformed = sum(state.malformed for state in self.files if state.formatted)
        problems = (
            (malformed, "line is", "lines are", "improperly formatted"),
            (self.unreadable, "listed file", "listed files", "could not be read"),
            (self.mismatched, "computed checksum", "computed checksums", "did NOT match"),
        )
        for n, one, many, what in problems:
            if n:
                out.append(f"WARNING: {n} {one if n == 1 else many} {what}")
        return out


def open_sums_file(name: str) -> BinaryIO:
    """Open a checksum file (``-`` is stdin); failure is fatal (exit 2)."""
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as exc:
        raise FatalError(f"{name}: {exc.strerror or exc}") from None


def _lines(stream: BinaryIO, zero: bool) -> Iterator[tuple[int, str]]:
    """Numbered lines without their terminator, streamed (a ``\\r`` before it is kept:
    ``_parse`` decides, as coreutils and b3sum disagree about it)."""
    if zero:
        data = stream.read()  # NUL-separated input has no line iterator; sums files are small
        chunks = data.split(b"\0")
        if chunks and chunks[-1] == b"":
            chunks.pop()
        for number, raw in enumerate(chunks, 1):
            yield number, raw.decode("utf-8", "surrogateescape")
        return
    for number, raw in enumerate(stream, 1):
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        yield number, raw.decode("utf-8", "surrogateescape")


#: Lines read ahead while looking for the first untagged line (a file of only tagged lines
#: needs no default algorithm; past this many, the first untagged line decides).
LOOKAHEAD_LINES = 10_000


def default_algorithm(
    name: str, lines: Iterator[tuple[int, str]], options: CheckOptions
) -> tuple[str | None, Iterator[tuple[int, str]]]:
    """The algorithm for untagged lines, and the lines (none lost to the look-ahead).

    -a, else the file's name, else the digest length of the first untagged line when exactly
    one algorithm has that length. Ambiguity is a fatal error, never a guess (xxh3 and xxh64
    both have 16 hex digits, sha256 and blake3 both 64). Works on stdin: lines read ahead
    are handed back in front of the rest.
    """
    if options.algo:
        return options.algo, lines
    hinted = algorithm_from_name(name)
    ahead: list[tuple[int, str]] = []
    found: str | None = None
    for number, text in lines:
        ahead.append((number, text))
        parsed = _try_parse(text)
        if parsed is not None and parsed.tag_algo is None:
            length = len(parsed.digest)
            if hinted is not None and get_algorithm(hinted).hex_length == length:
                found = hinted  # the name agrees with the digests: trust it
            else:
                found = algorithm_for_length(length, name)
            break
        if len(ahead) >= LOOKAHEAD_LINES:
            found = hinted
            break
    return found, itertools.chain(ahead, lines)


def _try_parse(text: str) -> ChecksumLine | None:
    if not text or text.startswith("#"):
        return None
    try:
        return _parse(text, None)
    except BadLine:
        return None


def _parse(text: str, untagged_algo: str | None) -> ChecksumLine:
    """Parse a line that may end in ``\\r``: coreutils drops that CR (a file written on
    Windows), b3sum keeps it as part of the name; so a blake3 line keeps it."""
    if not text.endswith("\r"):
        return parse_line(text)
    stripped = parse_line(text[:-1])
    if (stripped.tag_algo or untagged_algo) != "blake3":
        return stripped
    try:
        return parse_line(text)
    except BadLine:
        return stripped


def expected_entries(
    name: str,
    stream: BinaryIO,
    lines: Iterator[tuple[int, str]],
    untagged_algo: str | None,
    report: CheckReport,
    source: int,
) -> Iterator[Expected | FileRecord]:
    """Stream the checksum lines of one file as ``Expected`` items for the batcher.

    Runs on the pool's task-handler thread, so it never raises for a bad line: it counts it
    (and warns with --warn). Fatal problems were found before the pipeline started.
    """
    options = report.options
    state = report.files[source]
    try:
        for number, text in lines:
            if not text or text.startswith("#"):
                continue
            try:
                line = _parse(text, untagged_algo)
                algo = line.tag_algo or untagged_algo
                if algo is None:  # past the look-ahead: the first untagged line decides
                    algo = untagged_algo = algorithm_for_length(len(line.digest), name)
                if len(line.digest) != get_algorithm(algo).hex_length:
                    raise BadLine(f"digest length does not match {algo}")
            except (BadLine, FatalError) as exc:
                state.malformed += 1
                if options.warn:
                    err(f"parhash: {sanitize(name)}: {number}: {exc}")
                continue
            state.formatted += 1
            yield Expected(line.name, algo, line.digest, number, source)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def check_sources(names: list[str], report: CheckReport) -> list[Source]:
    """One source per checksum file; the files are opened (and algorithms resolved) now, so
    an unreadable or ambiguous checksum file is fatal before any hashing starts."""
    sources = []
    for source, name in enumerate(names):
        stream = open_sums_file(name)
        report.files.append(SumsFileState(name))
        lines = _lines(stream, report.options.zero)
        algo, lines = default_algorithm(name, lines, report.options)
        entries = expected_entries(name, stream, lines, algo, report, source)
        sources.append(Source(name, True, entries, named=True))  # /dev/null lines are read
    return sources


def display_name(name: str) -> str:
    """The name as ``sha256sum -c`` prints it: verbatim, unless it holds a newline; then
    escaped (``\\\\``, ``\\n``) behind a leading ``\\``, as coreutils 9.1 does."""
    if "\n" not in name:
        return name
    return "\\" + escape_name(name, escape_cr=False)[0]


class CheckSink:
    """Turns verified records into ``name: OK/FAILED`` lines; runs on the writer thread."""

    def __init__(self, stream: BinaryIO, report: CheckReport, warn) -> None:
        self.stream = stream
        self.report = report
        self.warn = warn

    def write(self, records: list[FileRecord]) -> None:
        options = self.report.options
        lines = []
        for record in records:
            expected = record.expected
            if expected is None:
                continue
            state = self.report.files[expected.source]
            name = display_name(expected.path)
            if record.error is not None:
                if options.ignore_missing and record.error == MISSING:
                    continue
                state.verified += 1
                self.report.unreadable += 1
                self.warn(f"{record.path}: {record.error}")
                if not options.status:
                    lines.append(f"{name}: FAILED open or read\n")
            elif record.digest == expected.digest:
                state.verified += 1
                self.report.ok += 1
                if not (options.quiet or options.status):
                    lines.append(f"{name}: OK\n")
            else:
                state.verified += 1
                self.report.mismatched += 1
                if not options.status:
                    lines.append(f"{name}: FAILED\n")
        if lines:
            self.stream.write("".join(lines).encode("utf-8", "surrogateescape"))

    def close(self, summary: Summary) -> None:
        self.stream.flush()
