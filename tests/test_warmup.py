"""`onlinepg warmup`: its tour of tiny runs covers every round kernel and the batched algorithms."""
from onlinepg import config as C
from onlinepg.build import build_task
from onlinepg.kernels import rounds as R
from onlinepg.learners import is_batched
from onlinepg.warmup import TOUR, tour_configs


def test_tour_covers_every_round_kernel_and_the_batched_algorithms():
    kinds, batched = set(), set()
    for name, user in tour_configs():
        cfg = C.resolve(user)
        if is_batched(cfg):
            batched.add((cfg["algo"]["name"], cfg["algo"]["reward_type"]))
            continue
        task = build_task(cfg)
        kinds.add(R.round_kind(cfg["algo"]["name"], R.round_params(**{k: cfg["algo"][k] for k in R.PARAM_KEYS}),
                               task.features.fm, cfg["algo"]["variant"]))
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
