"""Best-of-m exploration (docs/theory.md §4.3, Algorithm 1; a reconstruction): if the on-policy sample is wrong, draw up
to m whole responses from ½q₀ + ½Unif and learn from the first correct one."""
import numpy as np
from numba import njit

from ..codes import MIXTURE
from ..sequence import accumulate_grad, sample_sequence
from .common import equal, fill, finish_update, score_and_commit


@njit(cache=True)
def best_of_m_round(p, fm, w, w0, G2, x, j, ystar, ws):
    N = fm.N
    llstar, logpc, correct = score_and_commit(fm, w, w0, x, j, ystar, ws)
    tokens = N
    orm = 1
    found = correct
    if found:
        ws.ytry[:] = ws.yc
        ws.lsetry[:] = ws.lsec
    else:
        for _ in range(p.m):
            sample_sequence(fm, w, w0, x, j, np.int64(MIXTURE), 0.0, ws.state, ws.ytry, ws.lsetry, ws.seq)
            tokens += N
            orm += 1
            if equal(ws.ytry, ystar):
                found = True
                break
    reward = 0.0
    if found:
        reward = 1.0
        fill(ws.adv, 1.0)
        accumulate_grad(fm, w, x, j, ws.ytry, ws.adv, ws.lsetry, np.bool_(True), 1.0, ws.g, ws.seq)
    eta, gsq = finish_update(p, w, ws.g, G2)
    return llstar, logpc, correct, reward, orm, 0, tokens, eta, gsq
