"""The console script's default job runs end to end."""
import subprocess
import sys


def test_default_job_runs():
    res = subprocess.run([sys.executable, "-m", "onlinepg.cli", "run"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    first, last = float(lines[0].split()[-1]), float(lines[-1].split()[-1])
    assert last < first                      # post-training lowers the exact test error
