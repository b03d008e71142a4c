"""`onlinepg bench --quick` end to end: every row of every section is measured or reported skipped.

Peers (torch, Vowpal Wabbit, River, scikit-learn) are optional (the `bench` extra): where they are missing their
rows must read "skipped (reason)", never vanish, so this passes with or without them.
"""
import json
import subprocess
import sys

# the rows a reader looks for, by a phrase of their name; each must be there, measured or skipped
EXPECTED = {
    1: ("onlinepg (Numba", "NumPy", "PyTorch", "GRPO step (G = 8", "TRL GRPOTrainer-style"),
    2: ("onlinepg PG", "Vowpal Wabbit", "River", "scikit-learn", "engine.run", "rounds/s vs Vowpal Wabbit",
        "N = 1 grid, k = 10, d = 20", "N = 1 grid, k = 50, d = 100",
        "online mistakes"),
    3: ("cost per token vs N", "cost per token vs k", "1 vs 2 cores"),
    4: ("mul_compare", "exp_compare", "pg_floor", "the real PG step", "N = 1 bandit round", "against the per-token floor"),
    5: ("Cold compile", "onlinepg warmup", "Warm start-up", "Default job, cold", "Default job, warm", "Peak RSS"),
    6: ("whole command", "projected to the same work"),
}


def test_bench_quick_produces_every_row(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "bench", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    assert md.strip() in res.stdout                       # the table is printed as written
    sections = {s["number"]: s for s in report["sections"]}
    assert sorted(sections) == [1, 2, 3, 4, 5, 6]
    for number, phrases in EXPECTED.items():
        rows = sections[number]["rows"]
        for phrase in phrases:
            assert any(phrase in r["what"] for r in rows), f"section {number}: no row for {phrase!r}"
        for r in rows:
            assert r["verdict"] != "ERROR", r
            assert bool(r["value"]) != bool(r["skipped"]), f"row neither measured nor skipped (or both): {r}"
            if r["target"] and not r["skipped"]:
                assert r["verdict"] in ("PASS", "MISS"), r
    # a skipped row is shown as such in the table
    for s in report["sections"]:
        for r in s["rows"]:
            if r["skipped"]:
                assert f"skipped ({r['skipped']})" in md


def test_bench_command_needs_the_checkout(monkeypatch):
    """Installed without the repository's bench/ folder, the command says so instead of failing obscurely."""
    import pytest
    from onlinepg import ConfigError
    from onlinepg.commands import bench
    monkeypatch.setattr(bench, "_repo_root", lambda: None)
    with pytest.raises(ConfigError, match="bench/ folder"):
        bench._orchestrator()
