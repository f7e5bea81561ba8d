"""The library API (``parhash.scan``, ``parhash.check``, ``parhash.audit``) against the real
CLI on the same input, ``audit --update`` keeping the manifest's options, and start-up.

Every exit code a library call returns is compared with the exit status of a real
``python -m parhash`` run; digests are computed here with hashlib.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, write_tree

import parhash
from parhash.algorithms import UnknownAlgorithm, canonical
from parhash.exit_codes import ExitCode, FatalError

TREE = {
    "a.txt": b"alpha\n",
    "b.bin": bytes(range(256)) * 40,
    "skip.tmp": b"temporary\n",
    "sub": {"c.txt": b"gamma\n", "one": {"two": {"three": {"deep.txt": b"deep\n"}}}},
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", TREE)


def sums_file(path: Path, lines: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{digest}  {name}\n" for digest, name in lines))
    return path


def header_of(path: Path) -> dict:
    """The manifest header H of a jsonl, json or csv manifest."""
    text = path.read_text()
    if text.startswith("#parhash-header "):
        return json.loads(text.splitlines()[0][len("#parhash-header ") :])
    if path.suffix == ".json":
        return json.loads(text)["header"]
    return json.loads(text.splitlines()[0])["header"]


# -- check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["none", "mismatch", "missing"])
def test_check_result_is_the_cli_exit_status(tree, tmp_path, capfd, monkeypatch, damage):
    lines = [(sha256(TREE["a.txt"]), str(tree / "a.txt")), (sha256(TREE["b.bin"]), "b.bin")]
    if damage == "mismatch":
        lines.append((sha256(b"not gamma"), str(tree / "sub" / "c.txt")))
    if damage == "missing":
        lines.append((sha256(b"gone"), str(tree / "gone.txt")))
    sums = sums_file(tmp_path / "SHA256SUMS", lines)
    monkeypatch.chdir(tree)  # the relative line names b.bin
    capfd.readouterr()

    result = parhash.check([str(sums)], jobs=1)

    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # nothing printed by the library
    cli = run_cli("check", sums, cwd=tree)
    assert result.exit_code == cli.returncode == (0 if damage == "none" else 1), cli.stderr
    assert result.ok == 2
    assert result.mismatched == (damage == "mismatch")
    assert result.unreadable == (damage == "missing")
    # the closing WARNING lines are the ones the CLI prints after "parhash: "
    assert [f"parhash: {m}" for m in result.messages] == [
        line for line in cli.stderr.splitlines() if line.startswith("parhash: WARNING")
    ]


def test_check_writes_its_verdicts_only_to_the_stream_given(tree, tmp_path, capfd):
    sums = sums_file(
        tmp_path / "x.sha256",
        [(sha256(TREE["a.txt"]), str(tree / "a.txt")), ("0" * 64, str(tree / "b.bin"))],
    )
    out = io.BytesIO()
    capfd.readouterr()
    result = parhash.check([str(sums)], out=out, jobs=2)
    assert capfd.readouterr().out == ""
    cli = run_cli("check", sums, "-j", "2")
    assert sorted(out.getvalue().splitlines()) == sorted(cli.stdout.splitlines())
    assert result.exit_code == cli.returncode == ExitCode.FILE_ERRORS


def test_check_fatal_problem_raises_where_the_cli_exits_2(tmp_path):
    ambiguous = tmp_path / "sums"  # 128 hex digits: sha512 or blake2b, and no name hint
    ambiguous.write_text(f"{'ab' * 64}  file\n")
    with pytest.raises(FatalError):
        parhash.check([str(ambiguous)])
    assert run_cli("check", ambiguous).returncode == ExitCode.FATAL


# -- audit ------------------------------------------------------------------------------------


def take_manifest(tree: Path, manifest: Path, *flags: str) -> None:
    made = run_cli("scan", tree, "-a", "sha256", "-f", "jsonl", "-o", manifest, "-q", *flags)
    assert made.returncode == 0, made.stderr
    records = [json.loads(line) for line in manifest.read_text().splitlines()[1:]]
    for record in records:  # the manifest is right, by hashlib
        assert record["hash"] == sha256(Path(record["path"]).read_bytes())


@pytest.mark.parametrize("change", ["none", "modified", "added", "removed"])
def test_audit_result_is_the_cli_exit_status(tree, tmp_path, capfd, change):
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    if change == "modified":
        (tree / "a.txt").write_bytes(b"alpha, changed and longer\n")
    elif change == "added":
        (tree / "new.txt").write_bytes(b"new\n")
    elif change == "removed":
        (tree / "sub" / "c.txt").unlink()
    capfd.readouterr()

    result = parhash.audit(str(manifest), jobs=1)

    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    cli = run_cli("audit", manifest)
    assert result.exit_code == cli.returncode == (0 if change == "none" else 1), cli.stderr
    assert result.changes == (change != "none")
    if change != "none":
        assert result.counts[change] == 1
    unchanged = {"none": 5, "modified": 4, "added": 5, "removed": 4}[change]
    assert result.counts["unchanged"] == unchanged
    # --fail-on none: the same run exits 0 both ways
    assert parhash.audit(str(manifest), fail_on="none").exit_code == 0
    assert run_cli("audit", manifest, "--fail-on", "none").returncode == 0


def test_audit_report_goes_to_the_stream_given(tree, tmp_path):
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    (tree / "a.txt").write_bytes(b"ALPHA\n")
    out = io.BytesIO()
    result = parhash.audit(str(manifest), fmt="jsonl", out=out, fail_on=["added"])
    cli = run_cli("audit", manifest, "-f", "jsonl", "--fail-on", "added")
    assert out.getvalue() == cli.stdout
    assert result.exit_code == cli.returncode == 0  # modified is not in fail_on
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["class"] for e in events] == ["modified"]
    assert events[0]["new"]["hash"] == sha256(b"ALPHA\n")


def test_audit_selection_override_matches_the_cli(tree, tmp_path):
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    (tree / "skip.tmp").write_bytes(b"changed temporary\n")
    result = parhash.audit(str(manifest), exclude=["*.tmp"])
    cli = run_cli("audit", manifest, "-e", "*.tmp")
    assert result.exit_code == cli.returncode == 0
    assert parhash.audit(str(manifest)).exit_code == run_cli("audit", manifest).returncode == 1
    with pytest.raises(TypeError):
        parhash.audit(str(manifest), no_such_option=True)


def test_audit_fatal_problem_raises_where_the_cli_exits_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": 1}\n')
    with pytest.raises(FatalError):
        parhash.audit(str(bad))
    assert run_cli("audit", bad).returncode == ExitCode.FATAL


def test_scan_library_records_match_hashlib(tree):
    records = {r.path: r for r in parhash.scan([str(tree)], algo="sha256", jobs=1)}
    for relative, data in [("a.txt", TREE["a.txt"]), ("b.bin", TREE["b.bin"])]:
        assert records[str(tree / relative)].digest == sha256(data)
    assert len(records) == 5


# -- audit --update keeps the options header -------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_update_keeps_the_recorded_options(tree, tmp_path, fmt):
    manifest = tmp_path / f"m.{fmt}"
    made = run_cli(
        "scan", tree, "-f", fmt, "-o", manifest, "-q", "--exclude", "*.tmp", "--max-depth", "3"
    )
    assert made.returncode == 0, made.stderr
    before = header_of(manifest)["options"]
    assert before["exclude"] == ["*.tmp"] and before["max_depth"] == 3
    (tree / "a.txt").write_bytes(b"alpha, changed\n")

    updated = run_cli("audit", manifest, "--update", "-q")

    assert updated.returncode == 1, updated.stderr  # a modified file
    header = header_of(manifest)
    assert header["options"] == before
    assert "audit" in header["updated_by"] and "scan" in header["command"]
    # and the next audit applies them again: nothing changed, skip.tmp and deep.txt unread
    again = run_cli("audit", manifest)
    assert again.returncode == 0, again.stdout
    assert b"-e '*.tmp' --max-depth 3" in again.stdout


def test_library_update_keeps_the_recorded_options(tree, tmp_path):
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest, "--exclude", "*.tmp", "--max-depth", "3")
    before = header_of(manifest)["options"]
    (tree / "sub" / "c.txt").write_bytes(b"GAMMA\n")
    result = parhash.audit(str(manifest), update=True)
    assert result.updated and result.exit_code == 1
    assert header_of(manifest)["options"] == before
    records = [json.loads(line) for line in manifest.read_text().splitlines()[1:]]
    by_path = {r["path"]: r["hash"] for r in records}
    assert by_path[str(tree / "sub" / "c.txt")] == sha256(b"GAMMA\n")
    assert str(tree / "skip.tmp") not in by_path


# -- one-command group, jobs resolved once, algorithm names -----------------------------------

FULL_APP = "from parhash.cli import app; app(prog_name='parhash')"


def run_full_app(*args: str) -> subprocess.CompletedProcess:
    """The CLI through ``app`` with all three commands built (what ``_app_for`` skips)."""
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-c", FULL_APP, *args], capture_output=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "--help"],
        ["check", "-h"],
        ["audit", "--help"],
        ["scan", "--bogus"],
        ["audit"],
        ["scan", "-a", "nope"],
        ["check", "-a", "nope", "-"],
        ["audit", "x", "--fail-on", "wrong"],
        ["--help"],
        ["sacn"],
    ],
)
def test_one_command_group_parses_and_helps_as_the_full_group(args):
    fast = run_cli(*args, env={"COLUMNS": "100"})
    full = run_full_app(*args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        full.returncode,
        full.stdout,
        full.stderr.decode(),
    )


def test_jobs_cap_is_warned_once_by_every_command(tree, tmp_path):
    """``--jobs`` is resolved once per run, by the command (``options.resolve_jobs``)."""
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    sums = sums_file(tmp_path / "x.sha256", [(sha256(TREE["a.txt"]), str(tree / "a.txt"))])
    for args in (["scan", tree], ["check", sums], ["audit", manifest]):
        result = run_cli(*args, "-j", "100000", "--no-progress")
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("capped at") == 1, result.stderr


def test_unknown_algorithm_names_the_choices():
    with pytest.raises(UnknownAlgorithm, match="choose from: xxh3, xxh128"):
        canonical(5)
    assert canonical("SHA3_256") == "sha3-256"
    result = run_cli("scan", "-a", "sha256,nope", ".")
    assert result.returncode == 2
    assert "unknown algorithm in 'sha256,nope'; choose from: xxh3," in result.stderr


# -- start-up ---------------------------------------------------------------------------------

#: Modules a scan of an empty directory never needs (a smoke test of what start-up loads; it
#: measures no time).
NOT_AT_START = [
    "rich",
    "socket",
    "secrets",
    "importlib.metadata",
    "sqlite3",
    "multiprocessing",
    "parhash.audit_store",
    "parhash.checking",
    "parhash.manifest",
    "parhash.commands.audit",
]


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "parhash", *args],
        capture_output=True,
        timeout=60,
    )
    names = {
        line.split("|")[-1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    return proc, names


def test_start_up_of_an_empty_scan_loads_only_what_it_needs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc, names = imported_by("scan", str(empty))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == b""
    assert "parhash.commands.scan" in names and "typer" in names
    assert sorted(set(NOT_AT_START) & names) == []


def test_version_imports_neither_typer_nor_the_model():
    proc, names = imported_by("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().startswith(f"parhash {parhash.__version__} (xxhash ")
    assert not {"typer", "parhash.model", "dataclasses"} & names


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("scan", "check", "audit"):
        assert f"  {command} " in result.text


# -- one palette -------------------------------------------------------------------------------


def test_one_palette_colours_the_audit_report_and_the_warnings(tree, tmp_path):
    """The audit classes and the stderr words keep their colours (the ANSI codes written
    out here) now that both come from ``output.STYLES``."""
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    (tree / "a.txt").write_bytes(b"alpha, modified\n")
    (tree / "new.txt").write_bytes(b"added\n")
    report = run_cli("audit", manifest, "--color", "always").text
    assert "\x1b[33mmodified" in report and "\x1b[32madded" in report, report
    assert report.count("\x1b[0m") == report.count("\x1b[3")
    warned = run_cli("scan", tree / "missing", "--color", "always")
    assert "parhash: \x1b[33mwarning:\x1b[0m " in warned.stderr, warned.stderr


def test_check_and_audit_are_the_library_calls_whatever_is_imported(tree, tmp_path):
    """``parhash.check``/``parhash.audit`` are functions; the modules that do the work have
    other names (checking.py, audit_store.py), so importing them shadows nothing."""
    import parhash.audit_store
    import parhash.checking

    assert callable(parhash.check) and callable(parhash.audit)
    assert not isinstance(parhash.check, type(sys)) and not isinstance(parhash.audit, type(sys))
    sums = sums_file(tmp_path / "x.sha256", [(sha256(TREE["a.txt"]), str(tree / "a.txt"))])
    assert parhash.check([str(sums)]).ok == 1
    manifest = tmp_path / "m.jsonl"
    take_manifest(tree, manifest)
    assert parhash.audit(str(manifest)).exit_code == 0
