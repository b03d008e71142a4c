"""The README's embedding example (a user's own @njit loop around the kernels) runs as documented."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_embedding_example_runs(capsys):
    text = README.read_text()
    section = text.split("## Kernels and embedding", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README-embedding", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    mistakes = int(re.search(r"online mistakes: (\d+) of 100000", out).group(1))
    # a learner, not a coin: far fewer mistakes than the uniform policy's 90%
    assert mistakes < 50_000


def test_readme_api_example_runs():
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns = {"__name__": "readme"}
    exec(compile(code, "README-api", "exec"), ns)
    assert ns["smp"].Y.shape == (1024, 128)
