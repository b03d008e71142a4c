"""`onlinepg warmup`: its tour of tiny runs covers every round kernel and the batched algorithms."""
from onlinepg import config as C
from onlinepg.build import build_task
from onlinepg.kernels import rounds as R
from onlinepg.warmup import TOUR, tour_configs


def test_tour_covers_every_round_kernel_and_the_batched_algorithms():
    kinds, batched = set(), set()
    for name, user in tour_configs():
        cfg = C.resolve(user)
        if cfg.algo.batched:
            batched.add((cfg.algo.name, cfg.algo.reward_type))
            continue
        task = build_task(cfg)
        kinds.add(R.round_kind(cfg.algo.name, R.round_params(**{k: getattr(cfg.algo, k) for k in R.PARAM_KEYS}),
                               task.features.fm, cfg.algo.variant))
    assert kinds == set(R.ROUNDS), f"no warm-up run for {set(R.ROUNDS) - kinds}"
    assert {("pg_batch", "outcome"), ("pg_batch", "process"), ("sgd", "outcome")} <= batched
    assert len(TOUR) == len(tour_configs())


def test_the_tour_compiles_the_parallel_kernels_too():
    """The tour's sizes are tiny in lanes; inside ``rows_decide`` its batches above PARALLEL_MIN_ROWS rows take the
    parallel kernels (which paper-sized runs call), and the shipped lane threshold is back afterwards."""
    import onlinepg as op
    import onlinepg.kernels as K
    from onlinepg.warmup import rows_decide
    spec = op.FeatureSpec("bigram", 4, 3, d=6)
    before = K.PARALLEL_MIN_LANES
    assert spec.kernel("pg_step", 256) is K.pg_step_serial
    with rows_decide():
        assert spec.kernel("pg_step", 256) is K.pg_step
        assert spec.kernel("pg_step", K.PARALLEL_MIN_ROWS - 1) is K.pg_step_serial
    assert K.PARALLEL_MIN_LANES == before


def test_compile_ahead_skips_cached_kernels_and_its_helper_compiles_what_is_missing(monkeypatch):
    """``compile_ahead.ahead``: with the evaluation kernels in the cache, no helper starts; with them missing (here:
    reported missing), a helper process compiles or loads them — the kernel ``Policy.scorer`` would pick, with its
    argument types — and exits cleanly; a 'custom' map never gets one."""
    import numpy as np
    from numba import njit
    import onlinepg as op
    from onlinepg import compile_ahead
    spec = op.FeatureSpec("bigram", 4, 3, d=6)
    kernel, args = compile_ahead._eval_call(spec, 7, "loglik_batch_serial")
    kernel(*args)                                   # compiled (or loaded) here: now in the cache
    assert kernel is spec.kernel("loglik_batch", 7)
    assert compile_ahead._eval_kernels(spec, [7, 0], 5) == {"loglik_batch_serial": 7, "entropy_batch": 5,
                                                            "sample_batch_serial": 5}
    for name, n in compile_ahead._eval_kernels(spec, [7], 5).items():
        compile_ahead._eval_call(spec, n, name)[0](*compile_ahead._eval_call(spec, n, name)[1])   # types accepted
    assert compile_ahead._cached(kernel, args)
    assert not compile_ahead._cached(kernel, args[:-1] + (np.empty((7, 3), np.int64),))    # other types: not cached
    assert compile_ahead.ahead(spec, [7, 0]).proc is None
    custom = op.FeatureSpec("custom", 4, 3, d=6, D_custom=spec.D, phi=njit(lambda x, y, i, a, out: None))
    assert compile_ahead.ahead(custom, [7]).proc is None
    monkeypatch.setattr(compile_ahead, "_cached", lambda kernel, args: False)
    helper = compile_ahead.ahead(spec, [7, 2], 3)
    assert helper.proc is not None and helper.proc.wait(120) == 0
    helper.wait()
    assert helper.proc is None
    helper.wait()                                   # idempotent
