"""The documented code examples run as written: the embedding example of docs/embedding.md (a user's own @njit
loop around the kernels), the Python API example of docs/api.md, and the front page's first example."""
import pathlib
import re

import numpy as np
import pytest
from numba import njit

import onlinepg.kernels as K
from conftest import JIT_DISABLED

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _first_python_block(path, after=""):
    text = path.read_text()
    if after:
        text = text.split(after, 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.skipif(JIT_DISABLED, reason="the snippet's 100 000 rounds take ~45 s as plain Python; the JIT pass "
                                        "runs it, and the kernel tests cover the kernels it calls")
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


@pytest.mark.skipif(JIT_DISABLED, reason="a whole engine run, ~2 min as plain Python; the JIT pass runs it, and the "
                                        "kernel tests cover the kernels it calls")
def test_readme_first_example_runs(tmp_path, monkeypatch, capsys):
    code = _first_python_block(ROOT / "README.md", after="## A first example")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    error, orm_queries, _ = capsys.readouterr().out.split()
    assert (tmp_path / "runs" / "first" / "summary.json").exists()
    # best-of-m from a base at α = 0.01 solves the instance
    assert float(error) < 0.05 and int(orm_queries) > 0


@njit
def _user_bandit_loop(p, fm, w, X, ystar, seed):
    """A user's loop around a round kernel: parameters by name, scratch from one workspace, no hand allocation."""
    ws = K.round_workspace(fm, w.shape[0], p.group_size)
    G2 = np.empty(0)                                        # Adagrad state (unused by the adaptive rule)
    mistakes = 0
    for t in range(X.shape[0]):
        K.seed_stream(seed, t, ws.state)                    # one RNG stream per round
        llstar, logp, correct, reward, orm, prm, tokens, eta, gsq = K.pg_round(p, fm, w, w, G2, X[t], t,
                                                                               ystar[t:t + 1], ws)
        mistakes += not correct
    return mistakes


def test_round_kernel_embeds_with_a_workspace():
    d, k, T = 20, 10, 20_000
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 1.0], size=(T, d))
    ystar = np.argmax(X @ rng.standard_normal((d, k)), axis=1)
    fm = K.FeatureMap(K.BIGRAM, k, 1, 1.0)
    p = K.round_params(lr_rule="adaptive")                  # on-policy PG, 0/1 reward, η = 1/(4 + 2‖g‖²)
    w = np.zeros(d * k + k * k)
    mistakes = _user_bandit_loop(p, fm, w, X, ystar, 42)
    assert mistakes < 0.6 * T                               # the uniform policy errs 90% of the time
    # the engine's own driver plays the same rounds with the same kernel: identical weights
    w2 = np.zeros_like(w)
    counters = np.zeros(K.NCOUNT)
    K.run_rounds("pg", p, fm, w2, w2, np.empty(0), X, np.arange(T), ystar[:, None].copy(), 0, 42, counters,
                 1 << 62, np.empty((1, K.NTRACE)))
    assert counters[K.codes.C_MIST_SAMPLED] == mistakes and np.array_equal(w, w2)


def test_round_kernel_example_in_the_docs_runs(capsys):
    code = _first_python_block(ROOT / "docs" / "embedding.md", after="## A whole algorithm per call")
    exec(compile(code, "docs/embedding.md#rounds", "exec"), {"__name__": "docs"})
    mistakes = int(re.search(r"round-kernel mistakes: (\d+) of 20000", capsys.readouterr().out).group(1))
    assert mistakes < 0.6 * 20000                          # the uniform policy errs 90% of the time


def test_batched_step_example_in_the_docs_runs_and_learns(capsys):
    """docs/embedding.md's pg_step loop runs as written, and 60 PRM steps raise log p(y*|x) above the uniform
    policy's N·log(1/k) (a loop that never learned would stay there)."""
    code = _first_python_block(ROOT / "docs" / "embedding.md", after="## A whole batched step per call")
    exec(compile(code, "docs/embedding.md#pg_step", "exec"), {"__name__": "docs"})
    ll = float(re.search(r"mean log p\(y\*\|x\) at the last step: (\S+)", capsys.readouterr().out).group(1))
    assert ll > 16 * np.log(1 / 16) + 3
