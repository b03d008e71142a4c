"""The console script: the default experiment end to end (shrunk), and its output contract."""
import json
import subprocess
import sys

from onlinepg.trace import read_table


def test_default_experiment_runs(tmp_path):
    out = tmp_path / "default"
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run", "--out", str(out), "--no-progress",
                          "--set", "run.rounds=60", "--set", "run.eval_every=20", "--set", "base.steps=50"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"run folder: {out}" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    ev = read_table(out / "eval").to_pylist()
    assert [e["round"] for e in ev] == [0, 20, 40, 60]
    assert ev[-1]["test_error"] < ev[0]["test_error"]       # post-training lowers the exact test error
    assert summary["orm_queries"] == 60 * 256


def test_resume_needs_out():
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run", "--resume"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "--resume needs --out" in res.stderr


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    """`onlinepg experiment ... | head -1`: no traceback when the reader leaves (exit 141, like SIGPIPE)."""
    import subprocess
    import sys
    cmd = (f"{sys.executable} -m onlinepg.cli experiment sgd-lr --scale small --seeds 1 --set T=400 "
           f"--out {tmp_path / 'e'} | head -c 1 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr, res.stderr
    assert "status=141" in res.stdout or "status=0" in res.stdout


def test_run_takes_the_name_of_a_shipped_example(tmp_path, capsys):
    from onlinepg.cli import main
    from onlinepg.shipped import example_configs
    assert {"best_of_m", "pg", "pg_batch", "pg_process", "perceptron", "sgd", "default"} <= set(example_configs())
    assert main(["run", "best_of_m", "--set", "run.rounds=50", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    saved = (tmp_path / "r" / "config.toml").read_text()
    assert 'name = "best_of_m"' in saved and "rounds = 50" in saved
    assert main(["run", "no_such_example", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "CONFIG: 'no_such_example'" in err and "best_of_m" in err and not (tmp_path / "x").exists()
