"""The documented code examples run as written: the embedding example of docs/embedding.md (a user's own @njit
loop around the kernels), the Python API example of docs/api.md, and the front page's first example."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _first_python_block(path, after=""):
    text = path.read_text()
    if after:
        text = text.split(after, 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_embedding_example_runs(capsys):
    code = _first_python_block(ROOT / "docs" / "embedding.md")
    exec(compile(code, "docs/embedding.md", "exec"), {"__name__": "docs"})
    out = capsys.readouterr().out
    mistakes = int(re.search(r"online mistakes: (\d+) of 100000", out).group(1))
    # a learner, not a coin: far fewer mistakes than the uniform policy's 90%
    assert mistakes < 50_000


def test_api_example_runs():
    code = _first_python_block(ROOT / "docs" / "api.md")
    ns = {"__name__": "docs"}
    exec(compile(code, "docs/api.md", "exec"), ns)
    assert ns["smp"].Y.shape == (1024, 128)


def test_readme_first_example_runs(tmp_path, monkeypatch, capsys):
    code = _first_python_block(ROOT / "README.md", after="## A first example")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    error, orm_queries, _ = capsys.readouterr().out.split()
    assert (tmp_path / "runs" / "first" / "summary.json").exists()
    # best-of-m from a base at α = 0.01 solves the instance
    assert float(error) < 0.05 and int(orm_queries) > 0
