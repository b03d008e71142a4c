"""Banditron (Kakade, Shalev-Shwartz and Tewari, 2008; docs/theory.md §4.7, N = 1): the multiclass perceptron
with bandit feedback. Predict ŷ = argmax_a ⟨w, φ(x, a)⟩, play ỹ from P = (1 − ε)·δ_ŷ + ε·Unif(k) (ε =
``p.eps``), observe only 1[ỹ = y*], and step by the unbiased estimate of the perceptron update,
w += 1[ỹ = y*]/P(ỹ)·φ(x, ỹ) − φ(x, ŷ) (step 1, no learning-rate rule).

The committed response is the played ỹ: mistakes count ỹ ≠ y*, as in the paper. One outcome query a round."""
from numba import njit

from ..features import finish_grad, token_grad
from ..rng import randint, uniform
from ..softmax import logsumexp
from ..updates import sq_norm
from .common import fill, score_and_argmax


@njit(cache=True)
def banditron_round(p, fm, w, w0, G2, x, j, ystar, ws):
    k = fm.k
    llstar, best = score_and_argmax(fm, w, x, j, ystar, ws)
    lg = ws.seq.lg
    played = randint(ws.state, k) if uniform(ws.state) < p.eps else best
    prob = (1.0 - p.eps) * (played == best) + p.eps / k
    ws.yc[0] = played
    logpc = lg[played] - logsumexp(lg)
    correct = played == ystar[0]
    fill(ws.g, 0.0)
    fill(ws.seq.coef, 0.0)
    fill(ws.seq.cu, 0.0)
    ws.seq.coef[best] = -1.0
    if correct:
        ws.seq.coef[played] += 1.0 / prob
    token_grad(fm, x, j, ws.yc, 0, ws.seq.coef, ws.seq.cu, ws.g)
    finish_grad(fm, x, j, ws.seq.cu, ws.g)
    gsq = sq_norm(ws.g)
    if gsq > 0.0:
        for q in range(w.shape[0]):
            w[q] += ws.g[q]
    return llstar, logpc, correct, 1.0 if correct else 0.0, 1, 0, 1, 1.0 if gsq > 0.0 else 0.0, gsq
