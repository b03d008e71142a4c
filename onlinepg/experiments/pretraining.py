"""Shared steps of the pre-training experiments (pretrain-tail, pretrain-prm) on the constant-sequence family.

A pre-trained base is an engine run of adaptive-rate SGD (``algo.name = "sgd"``, one labelled sample a round) from
w = 0 for n rounds; its last checkpoint is the base of the post-training arms, which continue the same context
stream from index n (``task.offset``), so no context is reused as if it were fresh.
"""
import math

import numpy as np

from .. import config as C
from .. import lq
from ..build import build_task
from ..weights import load_policy
from ..trace import read_table

SGD = {"algo.name": "sgd", "algo.lr_rule": "adaptive"}


def instance(ctx, over):
    """The constant-sequence task (``tasks.ConstantTask``) of the shared config with ``over`` ({"task.key": value})."""
    sets = [f"{key}={C._toml_value(value)}" for key, value in over.items()]
    return build_task(C.resolve(C.apply_overrides(ctx.config, sets + ctx.config_sets)))


def sample_unit(task, eps):
    """1/(γ² ε): the pre-training sample size the theory compares n with (γ the family's exact margin)."""
    return 1.0 / (task.gamma ** 2 * eps)


def unseen_tail_mass(task, n):
    """Expected mass of the tail contexts that n i.i.d. draws never show: tail · (1 − tail/(M−1))^n."""
    return task.tail * (1.0 - task.tail / (task.M - 1)) ** n


def pretrain(ctx, task_over, factor, seed, n, eval_every=None):
    """Adaptive SGD on ``n`` labelled samples (arm ``pretrain``, cell n_factor = ``factor``) of the task given by
    ``task_over``. Returns (summary, path of the final weights)."""
    over = {**task_over, **SGD, "run.seed": seed, "run.rounds": n, "run.eval_every": eval_every or n}
    s, folder = ctx.run_arm("pretrain", {"n_factor": factor}, seed, over)
    return s, final_weights(folder)


def final_weights(folder):
    return str(sorted((folder / "checkpoints").glob("ckpt-*.npz"))[-1])


def base_profile(task, path, eps):
    """Exact likelihood profile of the weights at ``path`` over the task's distribution (every slot once):
    dict with log Q_q(ε), log Q^TL(ε), the error and the likelihoods' logs (float64[S])."""
    policy = load_policy(path)
    lik = lq.evaluate_likelihoods(policy, task.all_contexts())
    return {"log_Q": float(lq.likelihood_quantile(lik.loglik, eps)),
            "log_QTL": float(lq.token_likelihood_quantile(lik.min_token, eps)),
            "error": float(np.mean(1.0 - np.exp(lik.loglik))), "loglik": lik.loglik}


def queries_to(folder, eps, columns=("orm_queries", "prm_queries")):
    """Reward queries (sum of ``columns``) at the first evaluation with test error ≤ eps, or None."""
    ev = read_table(folder / "eval").to_pydict()
    for i, err in enumerate(ev["test_error"]):
        if err <= eps:
            return int(sum(ev[c][i] for c in columns))
    return None


def log_kN(task):
    return task.N * math.log(task.k)


def structured_queries_to(task, loglik, first, rounds, eps):
    """The structured strategy on the post-training stream (contexts ``first … first+rounds−1``): the first time a
    context appears it queries 0^N, then 1^N if that was wrong, and keeps the correct one (1 + B_j queries); a
    context not seen yet keeps the base's likelihood (``loglik`` per slot, as ``base_profile`` gives). Exact and
    vectorised. Returns (queries, rounds) at the first moment the error is ≤ eps, or (None, None)."""
    p_base = np.empty(task.M)
    p_base[task.slot_context] = np.exp(loglik)
    err_of = task.masses * (1.0 - p_base)                  # each context's share of the base's error
    J = task.draw(first, rounds).J
    ids, at = np.unique(J, return_index=True)
    order = np.argsort(at)
    ids, at = ids[order], at[order]
    error = err_of.sum() - np.cumsum(err_of[ids])         # the error once each new context is memorised
    queries = np.cumsum(1 + task.bits[ids])
    if err_of.sum() <= eps:
        return 0, 0
    hit = np.nonzero(error <= eps)[0]
    if not len(hit):
        return None, None
    return int(queries[hit[0]]), int(at[hit[0]]) + 1
