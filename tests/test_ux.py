"""Issue 10, items 22-25: what a person sees (progress, wording, --help, README).

Terminal tests run the real CLI on a pseudo-terminal (``os.openpty``) with stdout and
stderr both on the slave, as at a shell prompt, and replay what was written the way a
terminal would (``\\r`` returns to column 0), so a data line glued to the progress bar
shows up as the garbled screen line a person would see.
"""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pathspec
import pytest
import xxhash
from conftest import jsonl_records, run_cli

REPO = Path(__file__).resolve().parent.parent


# -- a pseudo-terminal ---------------------------------------------------------------------


def run_on_pty(
    args: list[str],
    cwd: Path,
    *,
    rows: int = 40,
    cols: int = 120,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    argv: list[str] | None = None,
    sized: bool = True,
) -> tuple[int, bytes]:
    """Run parhash with stdin, stdout and stderr on one pty; return (status, bytes read).
    ``sized=False`` leaves the pty at 0x0, as ``script`` from a non-terminal does."""
    master, slave = os.openpty()
    if sized:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        argv or [sys.executable, "-m", "parhash", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**os.environ, "TERM": "xterm", "COLUMNS": str(cols) if sized else "", **(env or {})},
        start_new_session=True,
    )
    os.close(slave)
    out = bytearray()
    ends = time.monotonic() + timeout
    try:
        while time.monotonic() < ends:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the slave side is closed, the child is gone
                break
            if not chunk:
                break
            out += chunk
        else:
            proc.kill()
            raise AssertionError(f"no end within {timeout} s: {bytes(out[-2000:])!r}")
        return proc.wait(timeout=30), bytes(out)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def screen_lines(raw: bytes) -> list[str]:
    """The lines a terminal would show: each ``\\r`` moves back to column 0 and later text
    overwrites earlier text (the pty turns ``\\n`` into ``\\r\\n``)."""
    lines = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        cells: list[str] = []
        column = 0
        for ch in line:
            if ch == "\r":
                column = 0
                continue
            if column < len(cells):
                cells[column] = ch
            else:
                cells.append(ch)
            column += 1
        lines.append("".join(cells).rstrip())
    return lines


def sparse_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def zeros_digests(size: int, *names: str) -> list[str]:
    """Digests of ``size`` zero bytes, computed by hashlib, streaming."""
    hashers = [hashlib.new(name) for name in names]
    block = bytes(1 << 22)
    left = size
    while left:
        piece = block[: min(left, len(block))]
        for h in hashers:
            h.update(piece)
        left -= len(piece)
    return [h.hexdigest() for h in hashers]


#: One byte count of the bar: ``1.06GB`` or ``512B``; tqdm's decimal prefixes.
_BYTES = r"(\d+(?:\.\d+)?)([kMGTP]?)B"
_SCALE = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def bar_frames(raw: bytes) -> list[tuple[float, int | None, str]]:
    """(bytes done, percent or None, elapsed clock) of every bar frame, in order."""
    frames = []
    for segment in re.split(rb"[\r\n]", raw):
        text = segment.decode("utf-8", "replace")
        if not text.startswith("hashing:"):
            continue
        done = re.search(r"hashing: (?:\s*(\d+)%\|[^|]*\| )?" + _BYTES, text)
        clock = re.search(r"\[(\d\d:\d\d)", text)
        if done and clock:
            value = float(done.group(2)) * _SCALE[done.group(3)]
            percent = int(done.group(1)) if done.group(1) else None
            frames.append((value, percent, clock.group(1)))
    return frames


# -- item 22: progress ---------------------------------------------------------------------

BIG = 2 * 1024**3  # sparse: two digests of it take seconds on any CPU, and no disk


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """One big sparse file among small ones; the small files finish long before it."""
    root = tmp_path_factory.mktemp("big")
    tree = root / "t"
    tree.mkdir()
    sparse_file(tree / "big", BIG)
    small = {}
    for i in range(30):
        data = f"small file {i}\n".encode() * (i + 1)
        (tree / f"s{i:02d}").write_bytes(data)
        small[f"s{i:02d}"] = data
    return root, tree, small


@pytest.mark.timeout(400)  # 4 GiB of digests on a shared 2-core machine
def test_bar_counts_bytes_while_one_big_file_is_read(big_tree):
    """The bar shows bytes (done, total, percentage by bytes) and a moving clock while a
    big file is read, and never garbles a data line: every sums line is intact, at
    column 0, on a terminal shared by stdout and stderr."""
    root, _, small = big_tree
    status, raw = run_on_pty(["scan", "-j", "2", "-a", "sha256,sha512", "t"], cwd=root)
    assert status == 0, raw[-3000:]
    big_sha256, big_sha512 = zeros_digests(BIG, "sha256", "sha512")
    expected = {f"SHA256 (t/big) = {big_sha256}", f"SHA512 (t/big) = {big_sha512}"}
    for name, data in small.items():
        expected.add(f"SHA256 (t/{name}) = {hashlib.sha256(data).hexdigest()}")
        expected.add(f"SHA512 (t/{name}) = {hashlib.sha512(data).hexdigest()}")
    screen = screen_lines(raw)
    data_lines = [line for line in screen if " = " in line]
    assert sorted(data_lines) == sorted(expected), "\n".join(screen)
    # Frames drawn before the big file's line was printed: it was being read then.
    before = raw[: raw.index(b"SHA256 (t/big)")]
    frames = bar_frames(before)
    # The small files hold < 20 kB: more than 1 MB done means bytes counted within the file.
    reading = [f for f in frames if 10**6 < f[0] < BIG]
    assert len({f[0] for f in reading}) >= 2, frames  # bytes moved within the file
    assert len({f[2] for f in frames}) >= 2, frames  # the clock moved
    assert any(f[1] is not None and f[1] < 100 for f in reading), frames  # % from bytes
    assert not any(f[1] == 100 for f in frames), frames
    assert re.search(r"\d+/31 files", before.decode("utf-8", "replace")), before[-500:]


@pytest.mark.timeout(400)
def test_bar_is_drawn_on_a_pty_that_reports_no_size(big_tree):
    """A pty nobody sized reports 0 columns; tqdm then drew nothing at all (found in
    review): the bar falls back to 80 columns and still counts bytes."""
    root, _, _ = big_tree
    status, raw = run_on_pty(["scan", "-j", "2", "-a", "sha512", "t"], cwd=root, sized=False)
    assert status == 0, raw[-3000:]
    before = raw[: raw.index(b"t/big")]
    frames = bar_frames(before)
    assert any(10**6 < f[0] < BIG for f in frames), before[-2000:]


DRIVER = textwrap.dedent(
    """
    import multiprocessing, sys
    multiprocessing.set_start_method(sys.argv[1], force=True)
    from parhash.cli import main
    sys.argv = ["parhash", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            m,
            marks=pytest.mark.skipif(
                m not in multiprocessing.get_all_start_methods(), reason=f"no {m} here"
            ),
        )
        for m in ("spawn", "forkserver")
    ],
)
@pytest.mark.timeout(400)
def test_worker_counters_reach_the_bar_under_spawn_and_forkserver(big_tree, method):
    """The shared counters go to the workers through the Pool initializer, so bytes read
    inside a file reach the bar whatever the start method."""
    root, _, _ = big_tree
    status, raw = run_on_pty(
        [],
        cwd=root,
        argv=[sys.executable, "-c", DRIVER, method, "scan", "-j2", "-a", "sha256,sha512", "t"],
    )
    assert status == 0, raw[-3000:]
    before = raw[: raw.index(b"SHA256 (t/big)")]
    assert any(10**6 < f[0] < BIG for f in bar_frames(before)), before[-2000:]


def test_term_dumb_gets_no_carriage_returns_and_no_colours(make_tree, tmp_path):
    """TERM=dumb: no ``\\r`` bar, no escape sequences, yet data and warnings arrive."""
    tree = make_tree({"a": b"alpha", "b": b"beta"})
    os.mkfifo(tree / "fifo")
    status, raw = run_on_pty(["scan", "-a", "sha256", "tree"], cwd=tmp_path, env={"TERM": "dumb"})
    assert status == 1, raw
    assert b"\x1b" not in raw, raw
    assert re.search(rb"\r(?!\n)", raw) is None, raw
    lines = raw.decode().split("\r\n")
    assert f"{hashlib.sha256(b'alpha').hexdigest()}  tree/a" in lines, raw
    assert "parhash: warning: tree/fifo: not a regular file (FIFO)" in lines, raw


def test_plain_status_line_from_the_counters():
    """The TERM=dumb line (every 10 s, so too slow for a real run here) from real shared
    counters: bytes of the exact total once every file was started, then extrapolated."""
    from parhash.batching import WalkProgress
    from parhash.hashing import ANNOUNCED, READ, STARTED, WorkCounters
    from parhash.progress import PlainProgress, Snapshot

    progress = PlainProgress()
    progress.work_counters = counters = WorkCounters(2)
    progress.found = WalkProgress(files_found=4, done=True)
    progress.files = 1
    counters.array[STARTED], counters.array[3 + STARTED] = 3, 1
    counters.array[ANNOUNCED], counters.array[3 + ANNOUNCED] = 3000, 1000
    counters.array[READ], counters.array[3 + READ] = 500, 500
    line = Snapshot(progress).plain()
    assert line.startswith("parhash: hashing: 1.00 kB of 4.00 kB (25%), 1/4 files, "), line
    counters.array[3 + STARTED] = 0  # 3 of 4 started: the fourth is assumed average
    assert " of ~5.33 kB (19%)" in Snapshot(progress).plain()


# -- item 23: wording ----------------------------------------------------------------------


def test_counts_of_one_are_singular(make_tree, tmp_path):
    tree = make_tree({"only": b"one"})
    scan = run_cli("scan", "-a", "sha256", "-f", "jsonl", "-o", "m.jsonl", "tree", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    assert "parhash: hashed 1 file, 3 B in " in scan.stderr, scan.stderr
    assert "1 files" not in scan.stderr
    os.mkfifo(tree / "fifo")
    broken = run_cli("scan", "-a", "sha256", "tree", cwd=tmp_path)
    assert broken.stderr.rstrip().endswith(", 1 error"), broken.stderr
    (tree / "only").write_bytes(b"two")
    audit = run_cli("audit", "m.jsonl", "--no-progress", "-e", "fifo", cwd=tmp_path)
    assert audit.returncode == 1, audit.stderr
    assert audit.text.splitlines()[1] == "1 change: 1 modified", audit.text


def test_a_short_run_prints_each_error_once_at_a_terminal(make_tree, tmp_path):
    """Shared terminal, few lines: the warning is still on screen, so the summary does not
    list the error a second time."""
    tree = make_tree({"a": b"a", "b": b"b"})
    os.mkfifo(tree / "fifo")
    status, raw = run_on_pty(["scan", "-j1", "-a", "sha256", "tree"], cwd=tmp_path)
    assert status == 1, raw
    text = raw.decode("utf-8", "replace")
    assert text.count("tree/fifo") == 1, text


def test_errors_that_scrolled_away_are_listed_under_the_summary(make_tree, tmp_path):
    """A 10-row terminal and 40 data lines after the first warning: it scrolled out of
    sight, so the summary lists it again (and only then)."""
    make_tree({f"f{i:02d}": b"x" * i for i in range(40)})
    os.mkfifo(tmp_path / "tree" / "a-fifo")  # walked (and warned about) first with -j1
    status, raw = run_on_pty(["scan", "-j1", "-a", "sha256", "tree"], cwd=tmp_path, rows=10)
    assert status == 1, raw
    screen = screen_lines(raw)
    summary = next(i for i, line in enumerate(screen) if line.startswith("parhash: hashed"))
    assert screen[summary + 1] == "  tree/a-fifo: not a regular file (FIFO)", screen


def test_check_has_short_q(tmp_path):
    (tmp_path / "good").write_bytes(b"good")
    (tmp_path / "bad").write_bytes(b"bad")
    sums = (
        f"{hashlib.sha256(b'good').hexdigest()}  good\n"
        f"{hashlib.sha256(b'not bad').hexdigest()}  bad\n"
    )
    (tmp_path / "SHA256SUMS").write_text(sums)
    result = run_cli("check", "-q", "SHA256SUMS", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.text == "bad: FAILED\n", result.text


def test_audit_quiet_prints_only_the_changes(make_tree, tmp_path):
    tree = make_tree({"keep": b"k", "edit": b"e"})
    scan = run_cli("scan", "-a", "sha256", "-f", "jsonl", "-o", "m.jsonl", "tree", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    for flag in ("-q", "--quiet"):
        same = run_cli("audit", flag, "--progress", "m.jsonl", cwd=tmp_path)
        assert (same.returncode, same.stdout, same.stderr) == (0, b"", ""), same
    (tree / "edit").write_bytes(b"edited")
    (tree / "new").write_bytes(b"n")
    os.mkfifo(tree / "fifo")
    changed = run_cli("audit", "-q", "--progress", "m.jsonl", cwd=tmp_path)
    assert changed.returncode == 1
    assert changed.stderr == "", changed.stderr
    lines = changed.text.splitlines()
    assert lines[0].startswith("modified (1)"), changed.text
    assert "  edit" in lines[1]
    assert "added (1): in the tree, not in the manifest" in lines
    assert "  new" in lines
    assert not any(line.startswith(("parhash audit of", "0 changes")) for line in lines)


# -- item 24: --help -----------------------------------------------------------------------


def _words(text: str) -> str:
    return " ".join(text.split())


def _help_texts() -> dict[str, list[str]]:
    """Every help string the CLI declares, per command ("" is the group)."""
    import typer

    from parhash.cli import app

    group = typer.main.get_command(app)
    texts = {"": [group.help or ""]}
    for name, command in group.commands.items():
        texts[name] = [p.help for p in command.params if getattr(p, "help", None)]
        texts[""].append(command.short_help or "")
    return texts


USAGE = {
    "": "Usage: parhash [OPTIONS] COMMAND [ARGS]...",
    "scan": "Usage: parhash scan [OPTIONS] [PATH]...",
    "check": "Usage: parhash check [OPTIONS] [SUMSFILE]...",
    "audit": "Usage: parhash audit [OPTIONS] MANIFEST [ROOT]",
}


@pytest.mark.parametrize("columns", ["80", "40"])
@pytest.mark.parametrize("command", ["", "scan", "check", "audit"])
def test_help_has_none_of_the_reported_defects(tmp_path, command, columns):
    from parhash.exit_codes import ExitCode

    args = [command, "--help"] if command else ["--help"]
    result = run_cli(*args, cwd=tmp_path, env={"COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    text = result.text
    assert text.splitlines()[0] == USAGE[command], text
    assert "{" not in text.splitlines()[0]
    assert "x>=" not in text and "[x" not in text, text
    flat = _words(text)
    for help_text in _help_texts()[command]:  # a cut word would break the sequence
        assert _words(help_text) in flat, (help_text, text)
    blocks = re.split(r"\n  (?=-)", text.split("Options:", 1)[1].split("\n\n")[0])
    for block in blocks:  # a default said once per option
        assert block.lower().count("default") <= 1, block
    status = flat[flat.index("Exit status:") :]
    for code in ExitCode:
        assert re.search(rf"[:;] {code.value} ", status), (code, status)
    if not command:
        for line in text.split("Commands:", 1)[1].strip().splitlines():
            assert not line.rstrip().endswith("..."), line


# -- item 25: README -----------------------------------------------------------------------


def test_no_tracked_fixture_is_gitignored():
    """``fixtures/sample.sha256`` ships with the repository, so no .gitignore rule may
    match it (or any other fixture): git's own matching rules, via pathspec."""
    lines = (REPO / ".gitignore").read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    fixtures = [
        p.relative_to(REPO).as_posix() for p in (REPO / "fixtures").rglob("*") if p.is_file()
    ]
    assert "fixtures/sample.sha256" in fixtures
    assert [p for p in fixtures if spec.match_file(p)] == []


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quickstart_works_from_the_repository_root():
    """The quickstart's hashing commands, run as written from the repository root (the
    install and test-suite commands are what ``.ci/run`` runs)."""
    commands = _quickstart_commands()
    scans = [c.split("&& ", 1)[-1] for c in commands if "parhash scan" in c]
    checks = [c.split("&& ", 1)[-1] for c in commands if "parhash check" in c]
    assert scans and checks, commands
    sample = REPO / "fixtures" / "sample"
    files = sorted(p for p in sample.rglob("*") if p.is_file())
    for command in scans:
        words = command.split()
        assert words[:2] == ["parhash", "scan"], command
        result = run_cli(*words[1:], "-f", "jsonl", cwd=REPO)
        assert result.returncode == 0, result.stderr
        got = {r["path"]: r["hash"] for r in jsonl_records(result.stdout)}
        assert got == {
            p.relative_to(REPO).as_posix(): xxhash.xxh3_64_hexdigest(p.read_bytes()) for p in files
        }
    for command in checks:
        words = command.split()
        result = run_cli(*words[1:], cwd=REPO)
        assert result.returncode == 0, (command, result.text, result.stderr)
        assert sorted(result.text.splitlines()) == sorted(
            f"{p.relative_to(REPO).as_posix()}: OK" for p in files
        )


def test_readme_sample_output_matches_hashlib():
    """The README's ``parhash scan fixtures/sample --sort -a sha256`` lines are the real
    digests of the files they name (sha256sum -c of those lines would pass)."""
    readme = (REPO / "README.md").read_text()
    lines = re.findall(r"^([0-9a-f]{64})  (fixtures/sample/\S.*)$", readme, re.M)
    assert len(lines) >= 2
    for digest, path in lines:
        assert hashlib.sha256((REPO / path).read_bytes()).hexdigest() == digest, path
    listed = (REPO / "fixtures" / "sample.sha256").read_text().splitlines()
    for line in listed:
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((REPO / path).read_bytes()).hexdigest() == digest, line


def run_rss(*args: str) -> subprocess.CompletedProcess[str]:
    rss = str(REPO / "bench" / "rss.py")
    return subprocess.run([sys.executable, rss, *args], capture_output=True, text=True, timeout=120)


def test_bench_rss_measures_a_flat_directory_and_a_given_tree(tmp_path):
    """The README's RSS numbers come from these two bench/rss.py forms: both must run."""
    flat = run_rss("--files", "300", "--per-dir", "300", "--dir", str(tmp_path / "rss"))
    assert flat.returncode == 0, flat.stderr
    assert re.search(r"^\| 300 files, 300 per directory \| [\d.]+ \| [\d.]+ \|", flat.stdout, re.M)
    assert len(os.listdir(tmp_path / "rss" / "300-300" / "d0000")) == 300
    given = run_rss("--tree", str(REPO / "fixtures"))
    assert given.returncode == 0, given.stderr
    row = re.search(r"^\| .*fixtures \| [\d.]+ \| ([\d.]+) \|", given.stdout, re.M)
    assert row and float(row.group(1)) > 0, given.stdout
