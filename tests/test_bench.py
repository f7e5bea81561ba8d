"""Smoke test of the benchmark harness: bench/compare.py on its own tiny corpus.

Needs neither ../shared/make_corpus.py nor any peer tool (xxhsum is added if installed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
