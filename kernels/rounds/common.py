"""What every per-round algorithm shares: its parameters, its work space and the small steps all rounds take.

A round kernel has the signature ``round(p, fm, w, w0, G2, x, j, ystar, ws)`` and returns the tuple
``(loglik_star, sampled_logprob, correct, reward, orm, prm, tokens, lr, gsq)``: the exact log p_{w_t}(y*|x),
the score of the committed response ŷ_t and whether it is y* (progressive validation: both before learning),
the round's reward, the reward queries and sampled tokens it spent, and the step size and squared gradient
norm of its update (gsq = 0: no update). ``ws.state`` holds the round's RNG stream, already seeded.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from ..codes import BASELINES, BEHAVIOURS, LR_RULES, POLICY
from ..features import prepare, token_logits
from ..sequence import sample_sequence, sequence_loglik, sequence_workspace
from ..updates import apply_update, sq_norm

RoundParams = namedtuple("RoundParams", ["behaviour", "pm1", "baseline", "group_size", "m", "m_tok", "rule",
                                         "std_scale", "lr", "eps", "iw_clip"])
RoundParams.__doc__ = """Parameters of a per-round algorithm, read by attribute inside the kernels.

behaviour (int, a BEHAVIOURS code), pm1 (bool: ±1 rewards instead of 0/1), baseline (int, a BASELINES code),
group_size (int ≥ 1: samples per round, pg), m (int: best_of_m exploration draws), m_tok (int: pg_process
candidates per position), rule (int, an LR_RULES code), std_scale (bool), lr (float), eps (float: eps_mixture
weight), iw_clip (float: ζ of the clipped importance weight, 0 = off). Build it with ``round_params``."""


def round_params(behaviour="policy", reward="01", baseline="none", group_size=1, m=8, m_tok=8,
                 lr_rule="adaptive", std_scale=False, lr=0.1, eps=0.1, iw_clip=0.0):
    """``RoundParams`` from the config's names (the same keys as the ``[algo]`` table), with the exact scalar
    types the kernels are compiled for (so every run hits the same compiled specialisation)."""
    return RoundParams(int(BEHAVIOURS[behaviour]), bool(reward == "pm1"), int(BASELINES[baseline]),
                       int(group_size), int(m), int(m_tok), int(LR_RULES[lr_rule]), bool(std_scale), float(lr),
                       float(eps), float(iw_clip))


PARAM_KEYS = ("behaviour", "reward", "baseline", "group_size", "m", "m_tok", "lr_rule", "std_scale", "lr", "eps",
              "iw_clip")  # round_params' arguments: the [algo] config keys the round kernels read


RoundWorkspace = namedtuple("RoundWorkspace", ["state", "g", "seq", "yc", "lsec", "ytry", "lsetry", "adv", "tok",
                                               "Ys", "lses", "logps", "logqs", "rewards", "gadv"])
RoundWorkspace.__doc__ = """Scratch of the round kernels: ``round_workspace(fm, D, G)`` allocates it once."""


@njit(cache=True)
def round_workspace(fm, D, G):
    """Every scratch array a round kernel needs, for a feature map ``fm``, D weights and G samples a round.

    state uint64[4] (the round's RNG stream); g float64[D] (the update's gradient); seq the per-sequence kernels'
    ``SequenceWorkspace`` (float64[k] rows u, u0, lg, lg0, e, coef, cu); yc, ytry
    int64[N] and lsec, lsetry, adv, tok float64[N] (committed / exploration responses and their
    normalisers, advantages, per-token log-probs); Ys int64[G, N], lses float64[G, N], logps, logqs float64[G],
    rewards and gadv float64[G, 1] (a PG round's samples, rewards and advantages)."""
    k = fm.k
    N = fm.N
    return RoundWorkspace(np.empty(4, np.uint64), np.zeros(D), sequence_workspace(k), np.empty(N, np.int64),
                          np.empty(N), np.empty(N, np.int64), np.empty(N), np.empty(N), np.empty(N),
                          np.empty((G, N), np.int64), np.empty((G, N)), np.empty(G), np.empty(G), np.empty((G, 1)),
                          np.empty((G, 1)))


@njit(cache=True)
def equal(a, b):
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


@njit(cache=True)
def correct_prefix_len(y, ystar):
    """Length of the longest common prefix of y and y* (int64[N] each)."""
    for i in range(y.shape[0]):
        if y[i] != ystar[i]:
            return i
    return y.shape[0]


@njit(cache=True)
def reward_of(ok, pm1):
    """The outcome reward: 1 if correct, else 0 (or −1 with ±1 rewards)."""
    return 1.0 if ok else (-1.0 if pm1 else 0.0)


@njit(cache=True)
def fill(a, value):
    for i in range(a.shape[0]):
        a[i] = value


@njit(cache=True)
def score_and_commit(fm, w, w0, x, j, ystar, ws):
    """Progressive validation for a sampling learner: the exact log p_w(y*|x) (per-token log-probs into
    ``ws.tok``), then the committed response ŷ ~ p_w drawn into ``ws.yc`` with its normalisers in ``ws.lsec``.
    Also clears the gradient ``ws.g``. Returns (log p_w(y*|x), log p_w(ŷ|x), ŷ == y*); samples N tokens."""
    llstar, _ = sequence_loglik(fm, w, x, j, ystar, ws.tok, ws.seq)
    fill(ws.g, 0.0)
    logpc, _ = sample_sequence(fm, w, w0, x, j, np.int64(POLICY), 0.0, ws.state, ws.yc, ws.lsec, ws.seq)
    return llstar, logpc, equal(ws.yc, ystar)


@njit(cache=True)
def score_and_argmax(fm, w, x, j, ystar, ws):
    """Progressive validation for an argmax learner (N = 1): the exact log p_w(y*|x), then the first position's
    logits into ``ws.seq.lg`` and their argmax ŷ (ties to the smallest token). Returns (log p_w(y*|x), ŷ)."""
    llstar, _ = sequence_loglik(fm, w, x, j, ystar, ws.tok, ws.seq)
    prepare(fm, w, x, j, ws.seq.u)
    token_logits(fm, w, x, j, ws.seq.u, ws.yc, 0, ws.seq.lg)
    best = 0
    for a in range(1, fm.k):
        if ws.seq.lg[a] > ws.seq.lg[best]:
            best = a
    return llstar, best


@njit(cache=True)
def finish_update(p, w, g, G2):
    """w += η g under the rule ``p.rule`` if g ≠ 0; returns (η, ‖g‖²), (0, 0) without an update."""
    gsq = sq_norm(g)
    if gsq > 0.0:
        return apply_update(p.rule, w, g, p.lr, G2)
    return 0.0, 0.0
