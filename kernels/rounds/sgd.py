"""SGD (docs/theory.md §4.1, statistical learning): learn from the labelled y*(x) every round."""
import numpy as np
from numba import njit

from ..sequence import accumulate_grad
from .common import fill, finish_update, score_and_commit


@njit(cache=True)
def sgd_round(p, fm, w, w0, G2, x, j, ystar, ws):
    """g = ∇ log p_w(y*|x); the committed response is an on-policy sample (it only counts mistakes)."""
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    fill(ws.adv, 1.0)
    accumulate_grad(fm, w, x, j, ystar, ws.adv, ws.tok, np.bool_(False), 1.0, ws.g, ws.seq)
    eta, gsq = finish_update(p, w, ws.g, G2)
    return llstar, logpc, correct, 1.0, 0, 0, fm.N, eta, gsq
