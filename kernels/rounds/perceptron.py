"""The full-information multiclass perceptron (docs/theory.md §4.6, N = 1): predict the argmax, on a mistake add
φ(x, y*) − φ(x, ŷ) with step 1."""
from numba import njit

from ..features import finish_grad, token_grad
from ..softmax import logsumexp
from ..updates import sq_norm
from .common import equal, fill, score_and_argmax


@njit(cache=True)
def perceptron_round(p, fm, w, w0, G2, x, j, ystar, ws):
    llstar, best = score_and_argmax(fm, w, x, j, ystar, ws)
    fill(ws.g, 0.0)
    ws.yc[0] = best
    logpc = ws.seq.lg[best] - logsumexp(ws.seq.lg)
    correct = equal(ws.yc, ystar)
    if not correct:
        fill(ws.seq.coef, 0.0)
        fill(ws.seq.cu, 0.0)
        ws.seq.coef[ystar[0]] = 1.0
        ws.seq.coef[best] = -1.0
        token_grad(fm, x, j, ystar, 0, ws.seq.coef, ws.seq.cu, ws.g)
        finish_grad(fm, x, j, ws.seq.cu, ws.g)
    gsq = sq_norm(ws.g)
    eta = 0.0
    if gsq > 0.0:
        for q in range(w.shape[0]):
            w[q] += ws.g[q]
        eta = 1.0
    return llstar, logpc, correct, 1.0 if correct else 0.0, 0, 0, 0, eta, gsq
