"""Likelihood Quantile (docs/theory.md §5): exact log-space evaluation against a NumPy reference (including
sequence likelihoods far below float64's range), the estimators against their definitions, the uniform policy's and
the staircase base's known values, and `onlinepg lq` on a real run folder and on saved weights."""
import math
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.special import logsumexp

import onlinepg as op
from onlinepg import lq as L
from onlinepg.cli import main as cli

# -- a plain NumPy reference, vectorised over contexts (written from docs/theory.md §1, not from the kernels) ---


def ref_token_logp(features, w, X, J, Y):
    """(n, N) log p_w(Y_i | x, Y_<i): logits ⟨w, φ(x, y_<i, ·)⟩ by the documented weight layouts."""
    k, N = features.k, features.N
    n = len(Y)
    out = np.empty((n, N))
    if features.kind == "bigram":
        d = features.d
        W1 = w[: d * k].reshape(d, k)
        W2T = w[d * k:].reshape(k, k)
        ctx = X @ W1
        for i in range(N):
            logits = ctx + (features.tscale * W2T[Y[:, i - 1]] if i > 0 else 0.0)
            out[:, i] = logits[np.arange(n), Y[:, i]] - logsumexp(logits, axis=1)
    else:
        W = w.reshape(features.M, N, k)
        for i in range(N):
            logits = W[J, i]
            out[:, i] = logits[np.arange(n), Y[:, i]] - logsumexp(logits, axis=1)
    return out


def random_bigram(n=300, d=4, k=7, N=6, scale=1.0, seed=0, normalize=False):
    rng = np.random.default_rng(seed)
    f = op.FeatureSpec("bigram", k, N, d=d, normalize=normalize)
    pol = op.Policy(f, scale * rng.standard_normal(f.D))
    batch = op.Batch(rng.standard_normal((n, d)), np.zeros(n, np.int64), rng.integers(0, k, (n, N)))
    return pol, batch


def random_cells(n=300, M=11, k=5, N=4, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    f = op.FeatureSpec("cells", k, N, M=M)
    pol = op.Policy(f, scale * rng.standard_normal(f.D))
    batch = op.Batch(np.zeros((n, 0)), rng.integers(0, M, n), rng.integers(0, k, (n, N)))
    return pol, batch


# -- exact evaluation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, kw", [(random_bigram, {}), (random_bigram, {"normalize": True}),
                                      (random_cells, {}),
                                      # N·log(min p) far below −745: exp() of these is 0 in float64
                                      (random_bigram, {"N": 600, "k": 10, "scale": 4.0, "n": 200}),
                                      (random_cells, {"N": 400, "k": 8, "scale": 5.0, "n": 200})],
                         ids=["bigram", "bigram-normalized", "cells", "bigram-underflow", "cells-underflow"])
def test_log_space_values_match_numpy_reference(make, kw):
    pol, batch = make(**kw)
    lik = L.evaluate_likelihoods(pol, batch, token_logp=True, chunk=64)
    tok = ref_token_logp(pol.features, pol.w, batch.X, batch.J, batch.Ystar)
    np.testing.assert_allclose(lik.token_logp, tok, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(lik.loglik, tok.sum(1), rtol=1e-11)
    np.testing.assert_allclose(lik.min_token, tok.min(1), rtol=1e-11)
    if pol.features.N >= 400:
        assert lik.loglik.max() < -745.0                 # every sequence likelihood underflows float64...
        assert np.all(np.prod(np.exp(tok), axis=1) == 0.0)   # ...so linear space would have given 0
        assert np.all(np.isfinite(lik.loglik))
        q = L.likelihood_quantile(lik, [0.1, 0.5, 0.9])
        np.testing.assert_allclose(q, np.quantile(tok.sum(1), [0.1, 0.5, 0.9], method="inverted_cdf"),
                                   rtol=1e-11)


@pytest.mark.parametrize("kind, k, N", [("bigram", 10, 400), ("bigram", 2, 1), ("bigram", 16, 16),
                                        ("cells", 3, 700), ("cells", 4, 2)])
def test_uniform_policy_exact(kind, k, N):
    """w = 0: Q(ε) = k^−N and Q^TL(ε) = 1/k for every ε (k = 10, N = 400 is 1e-400)."""
    f = op.FeatureSpec(kind, k, N, d=5 if kind == "bigram" else 0, M=7 if kind == "cells" else 0)
    rng = np.random.default_rng(1)
    n = 257
    X = rng.standard_normal((n, f.context_dim))
    batch = op.Batch(X, rng.integers(0, max(f.M, 1), n), rng.integers(0, k, (n, N)))
    lik = L.evaluate_likelihoods(op.Policy(f), batch)
    eps = np.array([1e-3, 0.01, 0.25, 0.5, 0.999])
    np.testing.assert_allclose(L.likelihood_quantile(lik, eps), -N * math.log(k), rtol=1e-13)
    np.testing.assert_allclose(L.token_likelihood_quantile(lik, eps), -math.log(k), rtol=1e-13)
    np.testing.assert_allclose(lik.loglik, -N * math.log(k), rtol=1e-13)
    if (k, N) == (10, 400):
        assert L.format_likelihood(L.likelihood_quantile(lik, 0.5)) == "1.00e-400"


@pytest.mark.parametrize("make", [random_bigram, random_cells])
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_token_lq_dominates_sequence_lq(make, scale):
    pol, batch = make(n=500, scale=scale, seed=7)
    lik = L.evaluate_likelihoods(pol, batch)
    assert np.all(lik.min_token >= lik.loglik)
    eps = np.linspace(0.001, 0.999, 97)
    assert np.all(L.token_likelihood_quantile(lik, eps) >= L.likelihood_quantile(lik, eps))


def test_staircase_base_gives_step_function():
    task = op.CellsTask(k=5, N=6, M=60, seed=3)
    alphas, fractions = [1e-5, 1e-2, 0.3], [1.0, 2.0, 3.0]       # groups of 10, 20, 30 contexts
    base, group = op.staircase_base(task, alphas, fractions)
    assert np.bincount(group).tolist() == [10, 20, 30]
    lik = L.evaluate_task(base, task, 10_000)                      # M ≤ n: all 60 contexts, once each
    assert len(lik) == task.M
    log_a = np.log(alphas)
    eps = np.array([0.01, 1 / 6, 0.17, 0.3, 0.5, 0.51, 0.99])
    order = np.array([math.ceil(Fraction(str(e)) * 60) for e in eps])    # 1, 10, 11, 18, 30, 31, 60
    step = np.searchsorted([10, 30, 60], order, side="left")             # group holding that order statistic
    np.testing.assert_allclose(L.likelihood_quantile(lik, eps), log_a[step], rtol=1e-12)
    np.testing.assert_allclose(L.token_likelihood_quantile(lik, eps), log_a[step] / task.N, rtol=1e-12)
    # the CDF is flat between the steps, with heights the cumulative group fractions
    between = np.log([1e-7, 1e-3, 0.1, 0.9])
    np.testing.assert_array_equal(L.likelihood_cdf(lik, between), [0.0, 1 / 6, 0.5, 1.0])
    np.testing.assert_allclose(np.exp(L.alpha_tail(lik, between)),
                               np.exp(between) * np.array([1.0, 5 / 6, 0.5, 0.0]), rtol=1e-12)


def test_chunks_threads_and_streaming_give_identical_numbers(num_threads):
    task = op.TeacherTask(d=8, k=6, N=12, contexts_kind="rademacher", seed=2)
    pol = op.Policy(task.features, 0.5 * np.random.default_rng(0).standard_normal(task.features.D))
    n = 1000
    batch = task.draw(0, n, stream=L.LQ_STREAM)
    ref = L.evaluate_likelihoods(pol, batch, chunk=n, token_logp=True)
    runs = [L.evaluate_likelihoods(pol, batch, chunk=37, token_logp=True), L.evaluate_task(pol, task, n, chunk=300)]
    for threads in (1, 2):
        with num_threads(threads):
            runs.append(L.evaluate_likelihoods(pol, batch, chunk=512))
    for r in runs:
        np.testing.assert_array_equal(r.loglik, ref.loglik)
        np.testing.assert_array_equal(r.min_token, ref.min_token)
    np.testing.assert_array_equal(runs[0].token_logp, ref.token_logp)
    assert runs[1].token_logp is None


# -- estimators against their definitions --------------------------------------------------------------

def test_estimators_match_definitions():
    rng = np.random.default_rng(5)
    ll = np.round(rng.normal(-50, 20, 1000), 1).clip(max=0)     # rounded: many ties
    mt = ll / 7
    eps = np.array([0.001, 0.0015, 0.1, 0.25, 0.7, 0.999])
    q = L.likelihood_quantile(ll, eps)
    s = np.sort(ll)
    for e, qe in zip(eps, q):
        assert qe == s[math.ceil(Fraction(str(e)) * len(ll)) - 1]
        assert np.mean(ll < qe) < e <= np.mean(ll <= qe)     # the lower empirical quantile
    np.testing.assert_array_equal(L.token_likelihood_quantile(mt, eps), np.sort(mt)[
        [math.ceil(Fraction(str(e)) * len(ll)) - 1 for e in eps]])
    grid = np.concatenate([np.unique(ll)[::37], [-1e4, 0.0, 1.0]])
    np.testing.assert_array_equal(L.likelihood_cdf(ll, grid), [np.mean(ll <= a) for a in grid])
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(L.alpha_tail(ll, grid), [a + np.log(np.mean(ll > a)) for a in grid])
    # ⌈εn⌉ is exact for decimal ε although 0.7·10 = 7.000000000000001 in float64
    assert L.likelihood_quantile(np.arange(-10.0, 0.0), 0.7) == -4.0
    assert isinstance(L.likelihood_quantile(ll, 0.5), float) and L.likelihood_cdf(ll, -3.0) <= 1.0
    prof = L.lq_profile(L.Likelihoods(ll, mt), eps)
    assert set(prof) == {"eps", "Q", "Q_TL", "log_Q", "log_Q_TL"}
    np.testing.assert_array_equal(prof["log_Q"], q)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), [0.5, 2.0], "half"])
def test_bad_eps_is_one_clear_error(bad):
    with pytest.raises(op.ConfigError, match=r"eps must be finite numbers in \(0, 1\)"):
        L.likelihood_quantile(np.zeros(4), bad)


def test_bad_inputs_are_config_errors():
    pol, batch = random_bigram(n=10)
    with pytest.raises(op.ConfigError, match="contexts must be an integer >= 1"):
        L.evaluate_task(pol, op.TeacherTask(d=4, k=7, N=6), -5)
    with pytest.raises(op.ConfigError, match="do not match the task"):
        L.evaluate_task(pol, op.TeacherTask(d=4, k=7, N=5), 10)
    with pytest.raises(op.ConfigError, match="chunk must be an integer >= 1"):
        L.evaluate_likelihoods(pol, batch, chunk=0)
    with pytest.raises(op.ConfigError, match="batch must be an onlinepg.Batch"):
        L.evaluate_likelihoods(pol, (batch.X, batch.J, batch.Ystar))
    with pytest.raises(op.ConfigError, match="Ystar entries must be in"):
        L.evaluate_likelihoods(pol, op.Batch(batch.X, batch.J, batch.Ystar + 7))
    with pytest.raises(op.ConfigError, match="non-empty 1-D"):
        L.likelihood_quantile(np.array([]), 0.5)
    with pytest.raises(op.ConfigError, match="must not contain NaN"):
        L.likelihood_cdf([0.0, float("nan")], -1.0)


# -- `onlinepg lq` on a run folder and on weights files --------------------------------------------------

TINY = {"task": {"kind": "teacher", "d": 6, "k": 5, "N": 8, "contexts": "mixture", "centres": 4,
                 "test_contexts": 64},
        "base": {"kind": "pretrain", "steps": 5, "batch": 32},
        "algo": {"name": "pg_batch", "reward": "pm1", "baseline": "batch_mean", "lr_rule": "adagrad",
                 "batch": 32},
        "run": {"rounds": 20, "eval_every": 10, "checkpoint_every": 10, "keep_checkpoints": 0,
                "progress": False}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lq") / "run"
    op.run(TINY, out)
    return out


def lq_cli(capsys, *argv):
    code = cli(["lq", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_on_run_folder(run_dir, capsys):
    code, out, err = lq_cli(capsys, run_dir, "--contexts", 300, "--eps", 0.1, 0.5, 0.9)
    assert code == 0, err
    assert "ckpt-000000000020.npz (round 20)" in out and "300 fresh contexts" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0.1 ", "0.5 ", "0.9 "))]
    assert [r[0] for r in rows] == ["0.1", "0.5", "0.9"]
    table = pq.read_table(run_dir / "lq.parquet")
    assert table.column_names == ["eps", "Q", "Q_TL", "log_Q", "log_Q_TL"]
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["onlinepg.lq.weights"].endswith("ckpt-000000000020.npz") and meta["onlinepg.lq.n"] == "300"
    # the same numbers as evaluating the final checkpoint directly on stream 'lq'
    task = op.TeacherTask(d=6, k=5, N=8, contexts_kind="mixture", centres=4)
    lik = L.evaluate_task(op.load_policy(run_dir / "checkpoints" / "ckpt-000000000020.npz"), task, 300)
    np.testing.assert_array_equal(table.column("log_Q").to_numpy(), L.likelihood_quantile(lik, [0.1, 0.5, 0.9]))
    np.testing.assert_array_equal(table.column("log_Q_TL").to_numpy(),
                                  L.token_likelihood_quantile(lik, [0.1, 0.5, 0.9]))
    # the Python twin
    rep = L.lq_report(run_dir, contexts=300, eps=[0.1, 0.5, 0.9], write=False)
    np.testing.assert_array_equal(rep.table["log_Q"], table.column("log_Q").to_numpy())
    assert rep.text().splitlines()[0] == out.splitlines()[0]


def test_cli_which_and_weights_files(run_dir, tmp_path, capsys):
    args = ("--contexts", 200, "--eps", 0.2, 0.6)
    base = L.lq_report(run_dir, contexts=200, eps=[0.2, 0.6], which="base", write=False)
    mid = L.lq_report(run_dir, contexts=200, eps=[0.2, 0.6], which="10", write=False)
    assert base.source.round == 0 and mid.source.round == 10
    assert not np.array_equal(base.likelihoods.loglik, mid.likelihoods.loglik)
    # a checkpoint file: the config is found two folders up
    code, out, err = lq_cli(capsys, run_dir / "checkpoints" / "ckpt-000000000010.npz", *args)
    assert code == 0, err
    t = pq.read_table(run_dir / "checkpoints" / "lq.parquet")
    np.testing.assert_array_equal(t.column("log_Q").to_numpy(), mid.table["log_Q"])
    # a save_policy file elsewhere needs --config
    w = tmp_path / "weights.npz"
    op.save_policy(op.load_policy(run_dir / "base.npz"), w)
    code, out, err = lq_cli(capsys, w, *args)
    assert code == 2 and "pass --config CONFIG.toml" in err
    code, out, err = lq_cli(capsys, w, *args, "--config", run_dir / "config.toml")
    assert code == 0, err
    np.testing.assert_array_equal(pq.read_table(tmp_path / "lq.parquet").column("log_Q").to_numpy(),
                                  base.table["log_Q"])


@pytest.mark.parametrize("argv, message", [
    (["{run}", "--eps", "0", "0.5"], "eps must be finite numbers in (0, 1)"),
    (["{run}", "--contexts", "-4"], "contexts must be an integer >= 1"),
    (["{run}/missing"], "does not exist"),
    (["{run}/eval"], "not a run folder"),
    (["{run}", "--which", "7"], "no checkpoint of round 7"),
    (["{run}/base.npz", "--which", "base"], "--which selects weights inside a run folder"),
    (["{run}", "--config", "{run}/nope.toml"], "--config"),
    (["{run}", "--out", "{run}/base.npz"], "is a file, not a folder"),      # --out is a folder, like elsewhere
    (["{run}", "--out", "{run}"], "is not empty"),
])
def test_cli_errors_are_one_clear_line(run_dir, capsys, argv, message):
    code, out, err = lq_cli(capsys, *[a.format(run=run_dir) for a in argv])
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cells_run_uses_all_contexts(tmp_path, capsys):
    cfg = {"task": {"kind": "cells", "k": 4, "N": 5, "M": 40},
           "base": {"kind": "staircase", "alphas": [1e-6, 0.25], "fractions": [1.0, 3.0]},
           "algo": {"name": "pg", "behaviour": "uniform"},
           "run": {"rounds": 10, "eval_every": 10, "progress": False}}
    op.run(cfg, tmp_path / "cells")
    code, out, err = lq_cli(capsys, tmp_path / "cells", "--which", "base", "--eps", 0.2, 0.3)
    assert code == 0, err
    assert "all M = 40 contexts" in out
    q = pq.read_table(tmp_path / "cells" / "lq.parquet").column("Q").to_numpy()
    np.testing.assert_allclose(q, [1e-6, 0.25], rtol=1e-10)      # groups of 10 and 30 contexts
