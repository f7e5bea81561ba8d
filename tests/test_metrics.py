"""``parhash audit --metrics FILE`` and the audit report's cache counts.

Real audits in subprocesses; the metrics file is read back with prometheus_client's own
text parser (what a collector accepts), and every expected value comes from how the test
built the tree (sizes from ``os.stat``, classes from what it changed), never from parhash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from prometheus_client.parser import text_string_to_metric_families

from parhash.audit_store import CLASSES

#: Writes older than this are not racy for the cache (cache_policy.RACY_NS is 2 s).
SETTLE_S = 2.2

TREE = {
    "keep.txt": b"unchanged content\n",
    "edit.txt": b"will be edited\n",
    "gone.txt": b"will be removed\n",
    "rot.bin": b"\x01" * 5000,
    "sub": {"deep.txt": b"deep" * 100},
}


def parse(path: Path) -> dict[str, dict]:
    """{family name: {"type", "help", "samples": {(labels...): value}}} via the real parser."""
    families = {}
    for family in text_string_to_metric_families(path.read_text("utf-8")):
        samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        families[family.name] = {"type": family.type, "help": family.documentation}
        families[family.name]["samples"] = samples
    return families


def value(families: dict, name: str, **labels: str) -> float:
    [(_, got)] = [
        (k, v)
        for k, v in families[name]["samples"].items()
        if all(dict(k).get(a) == b for a, b in labels.items())
    ]
    return got


def _manifest(tmp_path: Path, root: Path, *extra: str) -> Path:
    manifest = tmp_path / "m.jsonl"
    result = run_cli("scan", root, "-f", "jsonl", "-o", manifest, "-q", *extra)
    assert result.returncode == 0, result.stderr
    return manifest


def _changed_tree(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    """A manifest, then one file edited, one removed, one added and one corrupted (same
    size, mtime restored): the classes the audit must find."""
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    (root / "edit.txt").write_bytes(b"edited, and longer than before\n")
    (root / "gone.txt").unlink()
    (root / "new.txt").write_bytes(b"added")
    st = (root / "rot.bin").stat()
    (root / "rot.bin").write_bytes(b"\x02" * 5000)
    os.utime(root / "rot.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    expected = dict.fromkeys(CLASSES, 0)
    expected.update(modified=1, removed=1, added=1, corrupted=1, unchanged=2)
    return root, manifest, expected


def _tree_bytes(root: Path) -> int:
    return sum(Path(d, f).stat().st_size for d, _, names in os.walk(root) for f in names)


def _files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def _no_temporaries(directory: Path, *keep: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


def test_metrics_of_an_audit_without_cache(tmp_path):
    root, manifest, expected = _changed_tree(tmp_path)
    out = tmp_path / "textfile"
    out.mkdir()
    prom = out / "parhash.prom"
    before = time.time()
    result = run_cli("audit", manifest, "--metrics", prom)
    after = time.time()
    assert result.returncode == 1, result.stderr  # changes in --fail-on classes
    families = parse(prom)
    label = str(manifest)
    for kind in CLASSES:
        assert (
            value(families, "parhash_audit_files", manifest=label, **{"class": kind})
            == (expected[kind])
        )
    assert value(families, "parhash_audit_read_files") == _files(root)
    assert value(families, "parhash_audit_read_bytes") == _tree_bytes(root)
    assert value(families, "parhash_audit_exit_code") == 1
    assert 0 < value(families, "parhash_audit_duration_seconds") <= after - before
    ended = value(families, "parhash_audit_last_run_timestamp_seconds")
    assert before - 0.001 <= ended <= after
    assert value(families, "parhash_audit_last_success_timestamp_seconds") == ended
    # no cache: no cache families; every family is a gauge with its HELP text
    assert not [name for name in families if "cache" in name or "stalest" in name]
    for name, family in families.items():
        assert name.startswith("parhash_audit_")
        assert family["type"] == "gauge" and family["help"]
        assert {dict(k)["manifest"] for k in family["samples"]} == {label}
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    _no_temporaries(out, "parhash.prom")
    # the report itself is the same as without --metrics
    plain = run_cli("audit", manifest)
    assert (plain.returncode, plain.stdout) == (result.returncode, result.stdout)


def test_metrics_and_report_with_the_cache(tmp_path):
    root = write_tree(tmp_path / "tree", TREE)
    cache = tmp_path / "cache"
    time.sleep(SETTLE_S)  # hashed 2 s after the last write: trusted next time
    scanned_at = time.time()
    manifest = _manifest(tmp_path, root, "--cache-dir", cache)
    prom = tmp_path / "p.prom"
    n, size = _files(root), _tree_bytes(root)

    trusted = run_cli("audit", manifest, "--cache-dir", cache, "--metrics", prom, "-f", "json")
    assert trusted.returncode == 0, trusted.stderr
    families = parse(prom)
    assert value(families, "parhash_audit_cache_trusted_files") == n
    assert value(families, "parhash_audit_cache_verified_files") == 0
    assert value(families, "parhash_audit_cache_mismatched_files") == 0
    assert value(families, "parhash_audit_read_files") == 0
    assert value(families, "parhash_audit_read_bytes") == 0
    age = value(families, "parhash_audit_stalest_verification_age_seconds")
    assert 0 < age <= time.time() - scanned_at
    report = json.loads(trusted.stdout)["audit"]
    assert report["counts"]["unchanged"] == n
    cached = report["cache"]
    assert {k: cached[k] for k in ("trusted", "verified", "hashed", "read_bytes")} == {
        "trusted": n,
        "verified": 0,
        "hashed": 0,
        "read_bytes": 0,
    }
    assert cached["mismatched"] == 0
    assert cached["available"] is True
    assert scanned_at * 1e9 <= cached["stalest_verified_ns"] <= time.time() * 1e9
    assert 0 < cached["stalest_verification_age_s"] <= time.time() - scanned_at
    assert list(report)[-2:] == ["counts", "cache"]

    everything = run_cli("audit", manifest, "--cache-dir", cache, "--verify-budget", "100%")
    assert everything.returncode == 0, everything.stderr
    lines = everything.text.splitlines()
    assert lines[1:3] == ["0 changes", f"{n} unchanged"]
    assert lines[3].startswith(f"cache: 0 trusted, {n} verified by a full read, 0 new or ")
    assert len(lines) == 4

    budget = run_cli(
        "audit", manifest, "--cache-dir", cache, "--verify-budget", "100%", "--metrics", prom
    )
    assert budget.returncode == 0, budget.stderr
    families = parse(prom)
    assert value(families, "parhash_audit_cache_trusted_files") == 0
    assert value(families, "parhash_audit_cache_verified_files") == n
    assert value(families, "parhash_audit_read_files") == n
    assert value(families, "parhash_audit_read_bytes") == size
    assert "parhash_audit_stalest_verification_age_seconds" not in families  # none trusted


def test_without_cache_the_reports_have_no_cache_part(tmp_path):
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    human = run_cli("audit", manifest)
    assert human.returncode == 0
    assert [line for line in human.text.splitlines() if line.startswith("cache")] == []
    document = json.loads(run_cli("audit", manifest, "-f", "json").stdout)
    assert list(document["audit"]) == ["manifest", "algo", "roots", "selection", "counts"]


def test_a_failed_audit_keeps_the_last_success(tmp_path):
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    out = tmp_path / "textfile"
    out.mkdir()
    prom = out / "parhash.prom"
    assert run_cli("audit", manifest, "--metrics", prom).returncode == 0
    first = parse(prom)
    success = value(first, "parhash_audit_last_success_timestamp_seconds")

    (root / "keep.txt").rename(tmp_path / "elsewhere")
    os.rename(root, tmp_path / "moved-away")  # the recorded root is gone: fatal
    failed = run_cli("audit", manifest, "--metrics", prom)
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "does not exist" in failed.stderr
    assert failed.stdout == b""
    families = parse(prom)
    assert value(families, "parhash_audit_exit_code") == 2
    assert value(families, "parhash_audit_last_success_timestamp_seconds") == success
    assert value(families, "parhash_audit_last_run_timestamp_seconds") > success
    assert "parhash_audit_files" not in families  # a run that did not finish counts nothing
    _no_temporaries(out, "parhash.prom")

    os.rename(tmp_path / "moved-away", root)
    again = run_cli("audit", manifest, "--metrics", prom)
    assert again.returncode == 1  # keep.txt removed
    assert value(parse(prom), "parhash_audit_last_success_timestamp_seconds") > success


def test_a_first_run_that_fails_has_no_success(tmp_path):
    prom = tmp_path / "p.prom"
    result = run_cli("audit", tmp_path / "no-such.jsonl", "--metrics", prom)
    assert result.returncode == 2
    families = parse(prom)
    assert value(families, "parhash_audit_exit_code") == 2
    assert "parhash_audit_last_success_timestamp_seconds" not in families


def test_an_interrupted_audit_writes_its_exit_code(tmp_path):
    """SIGTERM while the audit waits for its manifest on stdin: exit 143, and the file
    says so (the last success is kept)."""
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    prom = tmp_path / "p.prom"
    first = run_cli("audit", "-", root, "--metrics", prom, input=manifest.read_bytes())
    assert first.returncode == 0, first.stderr
    success = value(parse(prom), "parhash_audit_last_success_timestamp_seconds", manifest="-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "parhash", "audit", "-", str(root), "--metrics", str(prom)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        lines = manifest.read_bytes().splitlines(keepends=True)
        proc.stdin.write(lines[0])  # the header only: the audit waits for entries
        proc.stdin.flush()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert b"Traceback" not in stderr
    families = parse(prom)
    assert value(families, "parhash_audit_exit_code") == 143
    assert value(families, "parhash_audit_last_success_timestamp_seconds") == success
    _no_temporaries(tmp_path, "p.prom", "m.jsonl", "tree")


def test_the_metrics_file_is_0644_whatever_the_umask(tmp_path):
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    prom = tmp_path / "p.prom"
    prom.write_text("old\n")
    prom.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "parhash", "audit", str(manifest), "--metrics", str(prom)],
        capture_output=True,
        preexec_fn=lambda: os.umask(0o077),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert "parhash_audit_exit_code" in parse(prom)


def test_an_unwritable_metrics_place_fails_before_reading(tmp_path):
    root = write_tree(tmp_path / "tree", TREE)
    manifest = _manifest(tmp_path, root)
    result = run_cli("audit", manifest, "--metrics", tmp_path / "no-dir" / "p.prom")
    assert result.returncode == 2
    assert result.stdout == b""  # no report: nothing was audited
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("parhash: error: cannot write ")
    assert "Traceback" not in result.stderr
    dash = run_cli("audit", manifest, "--metrics", "-")
    assert dash.returncode == 2 and "--metrics" in dash.stderr


def test_the_file_never_appears_partial(tmp_path):
    """A reader polling the file while audits replace it, as the collector does at each
    scrape, only ever sees a whole file (every family, the last line ending in a newline)."""
    root = write_tree(tmp_path / "tree", {f"f{i:03}": b"x" * i for i in range(200)})
    manifest = _manifest(tmp_path, root)
    out = tmp_path / "textfile"
    out.mkdir()
    prom = out / "parhash.prom"
    seen: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(prom.read_text("utf-8"))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(4):
            assert run_cli("audit", manifest, "--metrics", prom).returncode == 0
    finally:
        stop.set()
        reader.join()
    assert seen
    for text in set(seen):
        assert text.endswith("\n")
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "parhash_audit_last_success_timestamp_seconds" in names
        assert "parhash_audit_files" in names
    _no_temporaries(out, "parhash.prom")


def test_label_values_are_escaped(tmp_path):
    """A manifest whose name holds a quote, a backslash, a newline and a byte that is not
    UTF-8: the parser gives back the name (that byte as the text ``\\xff``)."""
    root = write_tree(tmp_path / "tree", {"a": b"a"})
    raw = os.fsencode(tmp_path) + b'/m"an\\if\nest\xff.jsonl'
    name = os.fsdecode(raw)
    assert run_cli("scan", root, "-f", "jsonl", "-o", name, "-q").returncode == 0
    prom = tmp_path / "p.prom"
    result = run_cli("audit", name, "--metrics", prom)
    assert result.returncode == 0, result.stderr
    families = parse(prom)
    [labels] = families["parhash_audit_exit_code"]["samples"]
    expected = os.fsencode(tmp_path).decode() + '/m"an\\if\nest\\xff.jsonl'
    assert dict(labels) == {"manifest": expected}


def test_a_write_that_fails_at_the_end_is_fatal(tmp_path):
    """The place was writable when the audit started and is gone at its end: one line,
    exit 2 (a dashboard would go on showing the last run), nothing left behind."""
    from parhash.commands.audit import AuditResult
    from parhash.exit_codes import ExitCode
    from parhash.metrics import AuditMetrics

    where = tmp_path / "textfile"
    where.mkdir()
    metrics = AuditMetrics.for_manifest(str(where / "p.prom"), "m.jsonl")
    metrics.check()
    assert list(where.iterdir()) == []
    where.rmdir()
    warnings: list[str] = []
    metrics.result = AuditResult(ExitCode.OK, dict.fromkeys(CLASSES, 0), ["/r"])
    assert metrics.finish(ExitCode.OK, warnings.append) is ExitCode.FATAL
    assert len(warnings) == 1 and warnings[0].startswith("error: cannot write ")
    assert not where.exists()


@pytest.mark.parametrize("code", [0, 1])
def test_render_completed(code):
    """In-process: what a completed run's file holds, parsed back."""
    from parhash.commands.audit import AuditResult
    from parhash.exit_codes import ExitCode
    from parhash.metrics import Snapshot, render
    from parhash.model import CacheCounts, Summary

    counts = dict.fromkeys(CLASSES, 0) | {"corrupted": 2, "unchanged": 7}
    cache = CacheCounts(trusted=6, verified=1, hashed=2, read_bytes=123, mismatched=1)
    cache.stalest_ns = 1_000 * 10**9
    summary = Summary(files=9, bytes=999, cache=cache)
    result = AuditResult(ExitCode(code), counts, ["/r"], summary=summary)
    text = render(Snapshot("/m.jsonl", code, 1.5, 4_600.25, 4_600.25, result))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_class = {s.labels["class"]: s.value for s in families["parhash_audit_files"].samples}
    assert by_class == counts
    single = {name: f.samples[0].value for name, f in families.items() if len(f.samples) == 1}
    assert single == {
        "parhash_audit_read_files": 3,
        "parhash_audit_read_bytes": 123,
        "parhash_audit_cache_trusted_files": 6,
        "parhash_audit_cache_verified_files": 1,
        "parhash_audit_cache_mismatched_files": 1,
        "parhash_audit_stalest_verification_age_seconds": 3_600.25,
        "parhash_audit_duration_seconds": 1.5,
        "parhash_audit_exit_code": code,
        "parhash_audit_last_run_timestamp_seconds": 4_600.25,
        "parhash_audit_last_success_timestamp_seconds": 4_600.25,
    }


def test_the_readme_recipe_runs(tmp_path):
    """The nightly service of the README, run as written (paths moved into tmp_path): its
    options parse, the cache fills on the first night and is trusted on the next."""
    import shlex

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Nightly audits with the cache", 1)[1]
    unit = section.split("```ini", 1)[1].split("```", 1)[0]
    joined = unit.replace("\\\n", " ")
    [exec_start] = [line for line in joined.splitlines() if line.startswith("ExecStart=")]
    [environment] = [line for line in joined.splitlines() if line.startswith("Environment=")]
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[:2] == ["/usr/local/bin/parhash", "audit"]
    # 20 files of one size: 5% of them by count and by bytes is exactly one file
    root = write_tree(tmp_path / "tree", {f"f{i:02}": b"%08d" % i for i in range(20)})
    manifest = _manifest(tmp_path, root)
    textfile = tmp_path / "textfile_collector"
    textfile.mkdir()
    moved = {
        "/var/lib/parhash/data.jsonl": str(manifest),
        "/var/lib/node_exporter/textfile_collector/parhash.prom": str(textfile / "parhash.prom"),
    }
    args = [moved.get(word, word) for word in words[1:]]
    assert set(moved.values()) <= set(args)
    key, _ = environment.removeprefix("Environment=").split("=", 1)
    env = {key: str(tmp_path / "cache")}
    time.sleep(SETTLE_S)
    for night in (1, 2):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        families = parse(textfile / "parhash.prom")
        trusted = value(families, "parhash_audit_cache_trusted_files")
        verified = value(families, "parhash_audit_cache_verified_files")
        assert (trusted, verified) == ((0, 0) if night == 1 else (19, 1))
    assert (tmp_path / "cache" / "cache.sqlite3").is_file()
