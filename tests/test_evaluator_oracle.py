"""An independent oracle for what the engine reports at each evaluation: ``eval/`` (test_error,
test_error_avg, mean_loglik_star) and ``tracked/`` (loglik_star, likelihood), recomputed from the weights the
run saved (a checkpoint at every evaluation, base.npz at round 0) with the dense-φ NumPy reference
(tests/reference.py), on the held-out contexts rebuilt from the task's documented ``test`` stream, with y*
recomputed from the teacher's matrices (argmax path) or the cells table.

It also checks that the held-out set is disjoint from the contexts the run trained on (and the pretraining
stream), so a test error measured on training contexts cannot pass.
"""
import numpy as np
import pytest

from onlinepg import config as C
from onlinepg import build
from onlinepg.build import ContextStream, build_task
from onlinepg.engine import run
from onlinepg.tasks import CellsTask
from onlinepg.trace import read_table
from onlinepg.seeds import derive_seed
from reference import Model, sequence_loglik, token_probs
from reference_online import sample_policy_batch


def teacher_ystar(task, X):
    """y*_1 = argmax W1* x, y*_i = argmax (W1* x + W2*[:, y*_{i−1}]) in NumPy (paper §2)."""
    Y = np.empty((len(X), task.N), np.int64)
    for b, x in enumerate(X):
        s = task.W1s @ x
        Y[b, 0] = np.argmax(s)
        for i in range(1, task.N):
            Y[b, i] = np.argmax(s + task.W2s[:, Y[b, i - 1]])
    return Y


def model_of(task):
    f = task.features
    if f.kind == "bigram":
        return Model("bigram", f.k, f.N, f.tscale, d=f.d, M=0)
    return Model("cells", f.k, f.N, 1.0, d=0, M=f.M)


def held_out(task, n):
    """The held-out contexts by their definition: the first n of the task's 'test' stream (cells with
    M ≤ n: every context once, the exact expectation). Returns (X, J, Ystar)."""
    if isinstance(task, CellsTask):
        J = np.arange(task.M) if task.M <= n else task.contexts(0, n, stream="test")[1]
        return np.zeros((len(J), 0)), J, task.ystar[J]
    X, J = task.contexts(0, n, stream="test")
    return X, J, teacher_ystar(task, X)


def oracle_loglik(model, w, X, J, Y):
    return np.array([sequence_loglik(model, w, X[b], int(J[b]), Y[b])[0] for b in range(len(Y))])


def weights_at(out, round_):
    path = out / "base.npz" if round_ == 0 else out / "checkpoints" / f"ckpt-{round_:012d}.npz"
    with np.load(path) as z:
        return z["w"].copy()


CASES = {
    "teacher-sgd-centres": {
        "task": {"kind": "teacher", "d": 6, "k": 3, "N": 3, "contexts": "mixture", "centres": 4, "sigma": 0.6,
                 "test_contexts": 96},
        "base": {"kind": "pretrain", "steps": 3, "batch": 16},
        "algo": {"name": "sgd", "lr_rule": "adagrad", "lr": 0.3},
        "run": {"rounds": 300, "eval_every": 50}},
    "teacher-pg_batch-test": {
        "task": {"kind": "teacher", "d": 40, "k": 3, "N": 2, "contexts": "rademacher", "test_contexts": 80},
        "algo": {"name": "pg_batch", "reward": "pm1", "baseline": "batch_mean", "batch": 16, "lr_rule": "adagrad",
                 "lr": 0.3},
        "run": {"rounds": 30, "eval_every": 5, "tracked": "test", "tracked_count": 12}},
    "cells-drawn-test-set": {
        "task": {"kind": "cells", "k": 3, "N": 3, "M": 60, "test_contexts": 40},
        "base": {"kind": "alpha", "alpha": 0.2},
        "algo": {"name": "best_of_m", "m": 4},
        "run": {"rounds": 400, "eval_every": 100, "tracked": "test", "tracked_count": 7}},
    "cells-every-context": {
        "task": {"kind": "cells", "k": 3, "N": 2, "M": 5, "test_contexts": 40},
        "base": {"kind": "alpha", "alpha": 0.2},
        "algo": {"name": "pg_process", "variant": "explore", "m_tok": 2},
        "run": {"rounds": 200, "eval_every": 40}},
}


@pytest.fixture(scope="module", params=list(CASES))
def finished(request, tmp_path_factory):
    user = {sec: dict(vals) for sec, vals in CASES[request.param].items()}
    user["run"].update(checkpoint_every=user["run"]["eval_every"], keep_checkpoints=0, progress=False, seed=5)
    out = tmp_path_factory.mktemp("oracle") / request.param
    run(user, out)
    cfg = C.resolve(user)
    return out, cfg, build_task(cfg)


def test_eval_table_matches_the_oracle(finished):
    out, cfg, task = finished
    model = model_of(task)
    X, J, Y = held_out(task, cfg.task.test_contexts)
    ev = read_table(out / "eval").to_pydict()
    rounds = ev["round"]
    assert rounds == list(range(0, cfg.run.rounds + 1, cfg.run.eval_every))
    errors = []
    for i, t in enumerate(rounds):
        ll = oracle_loglik(model, weights_at(out, t), X, J, Y)
        err = 1.0 - np.exp(ll).mean()
        errors.append(err)
        assert ev["test_error"][i] == pytest.approx(err, rel=1e-11, abs=1e-13), f"test_error at round {t}"
        assert ev["mean_loglik_star"][i] == pytest.approx(ll.mean(), rel=1e-11), f"mean_loglik_star at {t}"
        assert ev["test_error_avg"][i] == pytest.approx(np.mean(errors), rel=1e-11, abs=1e-13), \
            f"test_error_avg at round {t}"
    # not vacuous: the weights moved, and the error with them
    assert errors[-1] < errors[0] - 1e-3


def test_tracked_table_matches_the_oracle(finished):
    out, cfg, task = finished
    model = model_of(task)
    tr = read_table(out / "tracked").to_pydict()
    if cfg.run.tracked == "centres":
        c = task.centres
        Xt = np.zeros((c, task.d))
        Xt[np.arange(c), np.arange(c)] = np.sqrt(task.d)          # the noiseless centres, scaled like contexts
        Jt, ids = np.arange(c), np.arange(c)
        Yt = teacher_ystar(task, Xt)
    else:
        X, J, Y = held_out(task, cfg.task.test_contexts)
        n = min(cfg.run.tracked_count, len(J))
        Xt, Jt, Yt = X[:n], J[:n], Y[:n]
        ids = J[:n]                                                # the contexts' own ids (cells: the cell)
    rounds = sorted(set(tr["round"]))
    assert rounds == list(range(0, cfg.run.rounds + 1, cfg.run.eval_every))
    got_round = np.array(tr["round"])
    for t in rounds:
        sel = got_round == t
        np.testing.assert_array_equal(np.array(tr["tracked_id"])[sel], np.arange(len(Yt)))
        np.testing.assert_array_equal(np.array(tr["context_id"])[sel], ids)
        ll = oracle_loglik(model, weights_at(out, t), Xt, Jt, Yt)
        np.testing.assert_allclose(np.array(tr["loglik_star"])[sel], ll, rtol=1e-11, atol=1e-12,
                                   err_msg=f"tracked loglik_star at round {t}")
        np.testing.assert_allclose(np.array(tr["likelihood"])[sel], np.exp(ll), rtol=1e-11, atol=1e-14)


def _rows(X):
    return {tuple(x) for x in np.asarray(X)}


def test_held_out_set_is_disjoint_from_training(finished):
    out, cfg, task = finished
    n = cfg.task.test_contexts
    test = build.test_batch(task, cfg)
    X, J, Y = held_out(task, n)
    # the engine's test set is the held-out set defined above ...
    np.testing.assert_array_equal(test.J, J)
    np.testing.assert_array_equal(test.X, X)
    np.testing.assert_array_equal(test.Ystar, Y)
    if isinstance(task, CellsTask):
        # cells contexts are ids from a finite set: a drawn test set is its own stream of ids, not the training
        # stream's (the exact case, M ≤ n, is every id once and has nothing to be disjoint from)
        if task.M > n:
            train = ContextStream(task, cfg).batch(0, n).J
            assert not np.array_equal(train, J)
        return
    # ... and no held-out context is one the run trained on or the base was pretrained on
    per_round = cfg.algo.batch if cfg.algo.name == "pg_batch" or (cfg.algo.name == "sgd" and cfg.algo.batch > 1) else 1
    train = ContextStream(task, cfg).batch(0, cfg.run.rounds * per_round).X
    pre = task.contexts(0, cfg.base.steps * cfg.base.batch, stream="pretrain")[0]
    held = _rows(X)
    assert len(held) == n, "the held-out contexts are not distinct"
    assert not held & _rows(train), "held-out contexts appear in the training stream"
    if cfg.base.kind == "pretrain":
        assert not held & _rows(pre), "held-out contexts appear in the pretraining stream"
    # the trace's first training contexts are indeed the training stream's (the check above used the right one)
    ids = read_table(out / "rounds").column("context_id").to_numpy()
    assert np.array_equal(ids[:5], ContextStream(task, cfg).batch(0, 5 * per_round).J[::per_round])


def _pass_numpy(ll, k):
    """pass@k by the textbook formula in long double (enough for these instances' likelihoods)."""
    p = np.exp(np.asarray(ll, np.longdouble))
    return float(np.mean(1 - (1 - p) ** np.longdouble(k)))


def test_practice_metrics_match_the_oracle(finished):
    """passk/ and eval/'s crossover_k, delta_se and support columns, from the oracle's likelihoods of the
    checkpointed weights and of the base (the weights of round 0)."""
    out, cfg, task = finished
    model = model_of(task)
    X, J, Y = held_out(task, cfg.task.test_contexts)
    ev = read_table(out / "eval").to_pydict()
    pk = read_table(out / "passk").to_pydict()
    ks = [int(k) for k in cfg.run.pass_k]
    base = oracle_loglik(model, weights_at(out, 0), X, J, Y)
    base_pass = [_pass_numpy(base, k) for k in ks]
    eps = -np.log(cfg.run.support_zeta) / cfg.run.support_k
    for i, t in enumerate(ev["round"]):
        ll = oracle_loglik(model, weights_at(out, t), X, J, Y)
        rows = [r for r in range(len(pk["round"])) if pk["round"][r] == t]
        assert [pk["k"][r] for r in rows] == ks
        mine = [_pass_numpy(ll, k) for k in ks]
        np.testing.assert_allclose([pk["pass_at_k"][r] for r in rows], mine, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose([pk["base_pass_at_k"][r] for r in rows], base_pass, rtol=1e-9, atol=1e-15)
        lead = mine[0] > base_pass[0]
        over = [k for k, a, b in zip(ks, mine, base_pass) if b > a]
        assert ev["crossover_k"][i] == (0 if not lead else over[0] if over else -1)
        assert ev["delta_se"][i] == pytest.approx(_pass_numpy(base, cfg.run.delta_se_k) - _pass_numpy(ll, 1),
                                                  rel=1e-9, abs=1e-15)
        w = weights_at(out, t)
        n = min(cfg.run.entropy_contexts, len(J))
        ent = [float(-np.sum(P * np.log(P))) for P in (token_probs(model, w, X[b], int(J[b]), Y[b]) for b in range(n))]
        assert ev["entropy_ystar"][i] == pytest.approx(np.mean(ent) / cfg.task.N, rel=1e-10)
        # the sampled entropy: one on-policy draw per context from stream t·n + b of the run's "entropy" seed,
        # the exact next-token entropies along it (the reference's own sampler and probabilities)
        seed = derive_seed(cfg.run.seed, "entropy")
        Yh = sample_policy_batch(model, w, X[:n], J[:n], seed, t * n)
        ent = [float(-np.sum(P * np.log(P))) for P in (token_probs(model, w, X[b], int(J[b]), Yh[b])
                                                       for b in range(n))]
        assert ev["entropy_sampled"][i] == pytest.approx(np.mean(ent) / cfg.task.N, rel=1e-10)
        inb, inp = np.exp(base) >= eps, np.exp(ll) >= eps
        assert ev["support_preserved"][i] == pytest.approx(np.mean(inb & inp))
        assert ev["support_shrunk"][i] == pytest.approx(np.mean(inb & ~inp))
        assert ev["support_expanded"][i] == pytest.approx(np.mean(~inb & inp))
