"""Tasks: teacher responses, context streams, exact-γ cells, α solves, staircase/bottleneck bases, margin."""
import math

import numpy as np
import pytest

import onlinepg as op


def teacher_reference(W1s, W2s, X, N):
    """y*_1 = argmax W1* x, y*_i = argmax(W1* x + W2*[:, y*_{i-1}]) with plain numpy."""
    Y = np.empty((len(X), N), np.int64)
    base = X @ W1s.T
    for b in range(len(X)):
        for i in range(N):
            s = base[b] if i == 0 else base[b] + W2s[:, Y[b, i - 1]]
            Y[b, i] = int(np.argmax(s))
    return Y


@pytest.mark.parametrize("kind", ["rademacher", "mixture"])
def test_teacher_responses_match_reference(kind):
    task = op.TeacherTask(6, 5, 7, contexts_kind=kind, centres=4, seed=3)
    b = task.draw(0, 200)
    np.testing.assert_array_equal(b.Ystar, teacher_reference(task.W1s, task.W2s, b.X, 7))


def test_teacher_responses_longer_than_the_vocabulary():
    """N ≫ k: the kernel memoises each context's transition table as its chain visits it; same path as the reference."""
    task = op.TeacherTask(4, 3, 40, seed=5)
    b = task.draw(0, 100)
    np.testing.assert_array_equal(b.Ystar, teacher_reference(task.W1s, task.W2s, b.X, 40))


def test_star_weights_rank_ystar_first():
    task = op.TeacherTask(6, 5, 7, seed=3)
    b = task.draw(0, 300)
    assert op.empirical_margin(task.features, task.star_weights(), b) > 0
    assert np.isclose(np.linalg.norm(task.star_weights()), 1.0)


def test_contexts_are_keyed_by_index():
    task = op.TeacherTask(9, 3, 2, contexts_kind="mixture", centres=5, seed=11)
    X, J = task.contexts(0, 50)
    X2a, J2a = task.contexts(0, 17)
    X2b, J2b = task.contexts(17, 33)
    np.testing.assert_array_equal(X, np.vstack([X2a, X2b]))
    np.testing.assert_array_equal(J, np.concatenate([J2a, J2b]))
    Xo, _ = task.contexts(0, 50, stream="other")
    assert not np.array_equal(X, Xo)


def test_rademacher_contexts():
    task = op.TeacherTask(70, 3, 2, seed=1)
    X, _ = task.contexts(0, 4000)
    assert set(np.unique(X)) == {-1.0, 1.0}
    assert abs(X.mean()) < 0.01                      # 280000 signs: sd of the mean 0.0019
    assert abs(np.corrcoef(X[:, 0], X[:, 64])[0, 1]) < 0.06   # the 64-bit word boundary is not shared


def test_mixture_contexts_geometry():
    d, M, sigma = 12, 4, 0.05
    task = op.TeacherTask(d, 3, 2, contexts_kind="mixture", centres=M, sigma=sigma, seed=2)
    X, J = task.contexts(0, 2000)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), math.sqrt(d))
    assert set(np.unique(J)) == set(range(M))
    # before rescaling, x = e_c + ξ with ‖ξ‖ ≤ σ: the centre coordinate dominates
    unit = X / math.sqrt(d)
    assert np.all(np.abs(unit[np.arange(len(J)), J] - 1) < 2 * sigma)
    counts = np.bincount(J, minlength=M)
    assert counts.min() > 400


def test_normalized_features_have_norm_at_most_one():
    task = op.TeacherTask(8, 4, 3, seed=0, normalize=True)
    X, _ = task.contexts(0, 100)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1 / math.sqrt(2))
    assert task.features.max_feature_norm(X) <= 1 + 1e-12


@pytest.mark.parametrize("gamma,N", [(0.1, 4), (0.05, 2), (0.3, 1)])
def test_cells_exact_gamma(gamma, N):
    task = op.CellsTask(k=5, N=N, gamma=gamma, seed=0)
    assert task.M == round(1 / (N * gamma ** 2))
    w = task.star_weights()
    assert np.isclose(np.linalg.norm(w), 1.0)
    g = op.empirical_margin(task.features, w, task.all_contexts())
    assert g == pytest.approx(1 / math.sqrt(task.M * N), rel=1e-12)
    assert g == pytest.approx(task.gamma, rel=1e-12)


def test_cells_contexts_uniform_and_keyed():
    task = op.CellsTask(k=3, N=2, M=7, seed=4)
    _, J = task.contexts(0, 7000)
    counts = np.bincount(J, minlength=7)
    assert counts.min() > 850 and counts.max() < 1150
    _, Ja = task.contexts(100, 10)
    np.testing.assert_array_equal(Ja, J[100:110])


@pytest.mark.parametrize("alpha,k,N", [(0.5, 3, 1), (1e-3, 4, 5), (1e-6, 10, 20)])
def test_alpha_solve_closed_form(alpha, k, N):
    task = op.CellsTask(k=k, N=N, M=6, seed=1)
    base = op.cells_base(task, alpha)
    b = task.all_contexts()
    ll, mn, tok = base.loglik(None, b.J, b.Ystar)
    np.testing.assert_allclose(ll, math.log(alpha), rtol=1e-10)
    np.testing.assert_allclose(tok, math.log(alpha) / N, rtol=1e-10)
    beta = op.beta_for_alpha(alpha, k, N, task.gamma)
    p = math.exp(beta * task.gamma) / (math.exp(beta * task.gamma) + k - 1)
    assert p ** N == pytest.approx(alpha, rel=1e-12)


def test_staircase_is_a_step_function():
    task = op.CellsTask(k=4, N=3, M=40, seed=2)
    alphas, fractions = [1e-4, 1e-2, 0.5], [1, 1, 2]
    base, group = op.staircase_base(task, alphas, fractions)
    b = task.all_contexts()
    ll, _, _ = base.loglik(None, b.J, b.Ystar)
    np.testing.assert_allclose(np.exp(ll), np.array(alphas)[group], rtol=1e-10)
    np.testing.assert_array_equal(np.bincount(group), [10, 10, 20])


def test_bottleneck_profile():
    task = op.CellsTask(k=5, N=6, M=3, seed=0)
    base = op.bottleneck_base(task, 1e-3, position=2, easy=0.95)
    b = task.all_contexts()
    ll, mn, tok = base.loglik(None, b.J, b.Ystar)
    np.testing.assert_allclose(ll, math.log(1e-3), rtol=1e-10)
    np.testing.assert_allclose(np.exp(tok[:, [0, 1, 3, 4, 5]]), 0.95, rtol=1e-10)
    np.testing.assert_allclose(mn, tok[:, 2])
    flat = op.cells_base(task, 1e-3)
    _, mn_flat, _ = flat.loglik(None, b.J, b.Ystar)
    assert np.all(mn < mn_flat)                       # same α, much worse token-level profile


def test_teacher_base_hits_alpha():
    task = op.TeacherTask(10, 4, 6, seed=5)
    b = task.draw(0, 400)
    base = op.teacher_base(task, 0.02, b)
    ll, _, _ = base.loglik(b.X, b.J, b.Ystar)
    assert ll.mean() == pytest.approx(math.log(0.02), abs=1e-8)


def test_margin_negative_for_wrong_w():
    task = op.CellsTask(k=3, N=2, M=5, seed=0)
    assert op.empirical_margin(task.features, -task.star_weights(), task.all_contexts()) < 0


@pytest.mark.parametrize("call,field", [
    (lambda: op.CellsTask(k=3, N=2, gamma=1.5), "task.gamma"),
    (lambda: op.CellsTask(k=3, N=2, gamma=0.0), "task.gamma"),
    (lambda: op.CellsTask(k=1, N=2, M=3), "task.k"),
    (lambda: op.CellsTask(k=3, N=0, M=3), "task.N"),
    (lambda: op.TeacherTask(0, 3, 2), "features.d"),
    (lambda: op.TeacherTask(4, 3, 2, contexts_kind="gauss"), "task.contexts"),
    (lambda: op.TeacherTask(4, 3, 2, contexts_kind="mixture", centres=9), "task.centres"),
    (lambda: op.cells_base(op.CellsTask(k=3, N=2, M=3), 1.0), "alpha"),
    (lambda: op.cells_base(op.CellsTask(k=3, N=2, M=3), -0.1), "alpha"),
    (lambda: op.bottleneck_base(op.CellsTask(k=3, N=4, M=3), 0.5, easy=0.5), "alpha"),
    (lambda: op.staircase_base(op.CellsTask(k=3, N=4, M=3), [0.1, 0.2], [1]), "fractions"),
])
def test_bad_task_input_names_the_field(call, field):
    with pytest.raises(op.ConfigError, match=field.replace("[", r"\[")):
        call()


@pytest.mark.parametrize("contexts", ["rademacher", "mixture"])
def test_normalize_scales_features_only_not_the_task(contexts):
    """y*(x) is a property of the task: normalised features give the same y* as the raw teacher, and the
    teacher's weights in the normalised feature space still pick y* by argmax."""
    kw = dict(contexts_kind=contexts, centres=8, seed=3)
    raw = op.TeacherTask(32, 32, 16, **kw)
    nrm = op.TeacherTask(32, 32, 16, normalize=True, **kw)
    a, b = raw.draw(0, 300), nrm.draw(0, 300)
    np.testing.assert_array_equal(a.Ystar, b.Ystar)
    np.testing.assert_allclose(b.X, a.X / np.sqrt(2 * 32), rtol=1e-15)
    np.testing.assert_array_equal(nrm.responses(b.X), b.Ystar)
    np.testing.assert_array_equal(raw.centre_contexts().Ystar, nrm.centre_contexts().Ystar)
    star = op.Policy(nrm.features, 1e5 * nrm.star_weights())   # near-argmax: the greedy path of w* is y*
    ll, _, _ = star.loglik(b.X, b.J, b.Ystar)
    assert np.exp(ll).mean() > 0.9


@pytest.mark.parametrize("kind", ["iid", "shuffle"])
def test_stream_offset_continues_the_stream(kind):
    from onlinepg import config as C
    from onlinepg.build import ContextStream, build_task
    cfg = C.resolve({"task": {"d": 6, "k": 3, "N": 2, "contexts": "rademacher", "stream": kind, "pool": 50}})
    moved = C.resolve({"task": {**cfg.task.to_dict(), "offset": 37}})
    task = build_task(cfg)
    whole, tail = ContextStream(task, cfg).batch(0, 100), ContextStream(task, moved).batch(0, 63)
    np.testing.assert_array_equal(tail.X, whole.X[37:])
    np.testing.assert_array_equal(tail.J, whole.J[37:])
    np.testing.assert_array_equal(tail.Ystar, whole.Ystar[37:])


@pytest.mark.parametrize("contexts", ["rademacher", "mixture"])
def test_context_stream_read_ahead_gives_the_contexts_of_each_request(contexts):
    """A batched learner's stream draws several steps' contexts in one window; the windows hold the same bits as
    drawing each request alone, and a request outside the window (a jump back, a resume) is drawn afresh."""
    from onlinepg import config as C
    from onlinepg.build import ContextStream, build_task
    cfg = C.resolve({"task": {"kind": "teacher", "d": 8, "k": 4, "N": 6, "contexts": contexts, "centres": 4}})
    task = build_task(cfg)
    stream = ContextStream(task, cfg)
    stream.AHEAD = 3
    for step in [0, 1, 2, 3, 4, 9, 10, 2, 11, 12, 13, 14]:
        b = stream.batch(step * 7, 7, until=15 * 7)
        ref = task.draw(step * 7, 7)
        np.testing.assert_array_equal(b.X, ref.X)
        np.testing.assert_array_equal(b.J, ref.J)
        np.testing.assert_array_equal(b.Ystar, ref.Ystar)
    assert len(stream._window[1].J) <= 3 * 7 and stream._window[0] + len(stream._window[1].J) <= 15 * 7
