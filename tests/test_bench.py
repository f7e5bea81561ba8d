"""Smoke test of the benchmark harness: bench/compare.py on its own tiny corpus.

Needs neither ../shared/make_corpus.py nor any peer tool (xxhsum is added if installed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import evict_from_page_cache

REPO = Path(__file__).resolve().parent.parent
COMPARE = REPO / "bench" / "compare.py"


def row(markdown: str, tool: str) -> list[str]:
    """The cells of the results-table row for ``tool``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == tool and re.fullmatch(r"[\d.]+", cells[1]):
            return cells
    raise AssertionError(f"no results row for {tool!r} in:\n{markdown}")


@pytest.mark.timeout(60)
def test_compare_tiny_smoke(tmp_path: Path) -> None:
    tools = ["parhash", "naive"]
    if shutil.which("xxhsum") and shutil.which("xargs"):
        tools.append("xxhsum")
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(COMPARE),
            "--corpus",
            "tiny",
            "--runs",
            "1",
            "--tools",
            ",".join(tools),
            "--out",
            str(out),
            "--corpus-dir",
            str(tmp_path / "corpora"),
            "--make-corpus",
            str(tmp_path / "no-such-make_corpus.py"),  # tiny must not need it
        ],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr

    reports = list(out.glob("tiny-*.md"))
    assert len(reports) == 1, list(out.iterdir())
    text = reports[0].read_text()
    assert text in proc.stdout  # the same Markdown is printed

    header = next(line for line in text.splitlines() if line.startswith("| tool | median wall"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    ratio_col = columns.index("tool / parhash")
    inverse_col = columns.index("parhash / tool")
    cells = {tool: row(text, tool) for tool in tools}
    assert cells["parhash"][ratio_col] == "1.00x"
    for tool in tools:
        assert float(cells[tool][1]) > 0  # median wall
        assert re.fullmatch(r"\d+\.\d\dx", cells[tool][ratio_col])
        assert re.fullmatch(r"\d+\.\d\dx", cells[tool][inverse_col])
        assert cells[tool][-1] == "0"  # exit status of every run
    # The corpus stamp marks a complete build and is reused.
    assert json.loads((tmp_path / "corpora" / "tiny.complete").read_text())["files"] == 200
    raw = json.loads(next(out.glob("tiny-*.json")).read_text())
    assert set(raw["runs"]) == set(tools)
    assert all(len(runs) == 1 for runs in raw["runs"].values())


# --------------------------------------------------------------------------- issue 11 rows

sys.path.insert(0, str(REPO / "bench"))
import compare  # noqa: E402  (bench/ is not a package)
from parent_cpu import read_usage  # noqa: E402

PARHASH_ROWS = ["parhash", "parhash-jsonl", "parhash-progress", "parhash-sha256"]
FIXTURE_ROWS = ["parhash-check", "parhash-audit"]


def peers_installed(*names: str) -> list[str]:
    """The peer rows whose executables are on PATH."""
    by_name = {t.name: t for t in compare.all_tools([])}
    return [n for n in names if not compare.missing_executables(by_name[n])]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One harness run on the tiny corpus with the issue-11 rows, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bench")
    tools = [*PARHASH_ROWS, *FIXTURE_ROWS, "naive"]
    tools += peers_installed("xxhsum", "sha256sum-check", "hashdeep-audit")
    out = tmp / "results"
    cmd = [sys.executable, str(COMPARE), "--corpus", "tiny", "--runs", "2"]
    cmd += ["--startup-runs", "2", "--tools", ",".join(tools), "--out", str(out)]
    cmd += ["--corpus-dir", str(tmp / "corpora")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    return {"proc": proc, "out": out, "tools": tools, "tmp": tmp}


def load(out: Path, pattern: str) -> dict:
    (path,) = out.glob(pattern)
    return json.loads(path.read_text())


@pytest.mark.timeout(180)
def test_issue11_rows_run_and_report_parent_cpu(tiny_run: dict) -> None:
    proc, out = tiny_run["proc"], tiny_run["out"]
    assert proc.returncode == 0, proc.stderr
    raw = load(out, "tiny-*.json")
    assert set(raw["runs"]) == set(tiny_run["tools"])
    for tool, runs in raw["runs"].items():
        assert [r["status"] for r in runs] == [0, 0], (tool, runs)  # check, audit: all OK
        for r in runs:
            assert r["others_cores"] is not None and r["others_cores"] >= 0  # the noise gauge
            if tool.startswith("parhash"):
                # The parent's own CPU: recorded, positive, and less than the whole tree's
                # (its four workers hashed the files).
                assert r["parent_cpu"] is not None and 0 < r["parent_cpu"] < r["cpu"], (tool, r)
            else:
                assert r["parent_cpu"] is None
    for tool in PARHASH_ROWS:  # the empty-directory twin of every scan row, per round
        startup = raw["startup_parent"][tool]
        assert len(startup) == 2 and all(s > 0 for s in startup), (tool, startup)
    md = next(out.glob("tiny-*.md")).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| tool | parent CPU"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for tool in [*PARHASH_ROWS, *FIXTURE_ROWS]:
        cells = row(md, tool)[: len(columns)]
        assert float(cells[columns.index("parent us/file")]) > 0
    for tool in PARHASH_ROWS:
        cells = row(md, tool)[: len(columns)]
        assert re.fullmatch(r"-?[\d.]+", cells[columns.index("net us/file")]), cells


@pytest.mark.timeout(180)
def test_startup_rows_and_targets_section(tiny_run: dict) -> None:
    proc, out = tiny_run["proc"], tiny_run["out"]
    assert proc.returncode == 0, proc.stderr
    startup = load(out, "startup-*.json")
    assert set(startup["runs"]) == {"parhash-startup", "parhash-startup-direct", "python-startup"}
    assert all(len(v) == 2 for v in startup["runs"].values())
    targets = load(out, "targets-*.json")["targets"]
    by_label = {t["target"]: t for t in targets}
    assert len(by_label) == len(compare.issue11_targets())
    start = next(t for t in targets if t["corpus"] == "startup")
    walls = startup["runs"]
    want = compare.statistics.median(r["wall"] for r in walls["parhash-startup"])
    want /= compare.statistics.median(r["wall"] for r in walls["python-startup"])
    assert start["value"] == pytest.approx(want)
    assert start["met"] == (want <= 3.5)
    # The tiny corpus is none of the issue's corpora: those targets say so, not a number.
    assert all(t["value"] is None for t in targets if t["corpus"] in ("small", "mixed"))
    md = next(out.glob("targets-*.md")).read_text()
    assert md in proc.stdout
    assert "| start-up: `scan EMPTYDIR` vs `python -I -c pass` | <= 3.50x |" in md


@pytest.mark.timeout(180)
def test_targets_from_saved_results(tiny_run: dict, tmp_path: Path) -> None:
    """--targets evaluates saved runs: the tiny runs relabelled as the small corpus give every
    small-corpus target a measured value and a verdict, computed from the raw runs."""
    assert tiny_run["proc"].returncode == 0, tiny_run["proc"].stderr
    raw = load(tiny_run["out"], "tiny-*.json")
    raw["corpus"] = "small"
    saved = tmp_path / "small.json"
    saved.write_text(json.dumps(raw))
    out = tmp_path / "targets"
    cmd = [sys.executable, str(COMPARE), "--targets", str(saved), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {(t["corpus"], t["tool"], t["peer"]): t for t in load(out, "targets-*.json")["targets"]}
    walls = {k: compare.statistics.median(r["wall"] for r in v) for k, v in raw["runs"].items()}
    check = rows[("small", "parhash-check", "parhash-sha256")]
    assert check["value"] == pytest.approx(walls["parhash-check"] / walls["parhash-sha256"])
    audit = rows[("small", "parhash-audit", "parhash-jsonl")]
    assert audit["value"] == pytest.approx(walls["parhash-audit"] / walls["parhash-jsonl"])
    naive = rows[("small", "parhash", "naive")]
    assert naive["value"] == pytest.approx(walls["naive"] / walls["parhash"])
    assert naive["met"] == (naive["value"] >= 5)
    files = raw["summary"]["files"]
    for tool in ("parhash", "parhash-jsonl"):
        parent = rows[("small", tool, None)]
        nets = [
            r["parent_cpu"] - s
            for r, s in zip(raw["runs"][tool], raw["startup_parent"][tool], strict=True)
        ]
        assert parent["value"] == pytest.approx(compare.statistics.median(nets) * 1e6 / files)
    text = next(out.glob("targets-*.md")).read_text()
    assert text in proc.stdout
    assert re.search(r"\| small, `audit` of the unchanged tree .*\*\*(met|missed)\*\*", text)


@pytest.mark.timeout(120)
def test_parent_cpu_wrapper_keeps_output_and_exit_status(tmp_path: Path) -> None:
    """bench/parent_cpu.py is parhash itself: same stdout, same exit status (0, and 1 for a
    missing path), plus its own CPU in the usage file, less than the tree's CPU."""
    tree = tmp_path / "tree"
    compare.build_tiny(str(tree), files=40)
    for args, status in ((["scan", str(tree)], 0), (["scan", str(tree), str(tmp_path / "no")], 1)):
        usage = tmp_path / "usage"
        plain = subprocess.run(
            [sys.executable, "-m", "parhash", *args], capture_output=True, cwd=REPO, timeout=60
        )
        started = os.times()
        wrapped = subprocess.run(
            [sys.executable, str(REPO / "bench" / "parent_cpu.py"), str(usage), *args],
            capture_output=True,
            cwd=REPO,
            timeout=60,
        )
        ended = os.times()
        assert plain.returncode == wrapped.returncode == status
        assert sorted(wrapped.stdout.splitlines()) == sorted(plain.stdout.splitlines())
        utime, stime, maxrss = read_usage(str(usage))
        tree_cpu = (ended.children_user - started.children_user) + (
            ended.children_system - started.children_system
        )
        assert 0 < utime + stime < tree_cpu
        assert maxrss > 0


def test_resident_fraction_sees_a_dropped_file(tmp_path: Path) -> None:
    """The warm-cache check: a file just written is resident; after fsync and
    POSIX_FADV_DONTNEED (this file only, not the machine's cache) it is not."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))
    assert compare.resident_fraction([str(path)]) == pytest.approx(1.0, abs=0.02)
    evict_from_page_cache(path)
    assert compare.resident_fraction([str(path)]) < 0.5


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="needs sha256sum")
def test_sums_fixture_is_read_by_sha256sum(tmp_path: Path) -> None:
    """The check rows' sums file, names with a backslash and a newline included, is one
    GNU sha256sum -c accepts line for line."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("plain", "back\\slash", "new\nline", "sp ace"):
        (tree / name).write_bytes(name.encode() * 100)
    sums = tmp_path / "sums"
    compare.make_sums(str(tree), str(sums))
    proc = subprocess.run(["sha256sum", "-c", str(sums)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(b": OK\n") == 4
