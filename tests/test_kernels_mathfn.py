"""kernels.mathfn.exp_nonpos: the vectorisable exp on (−∞, 0]."""
import math

import numpy as np

from onlinepg.kernels.mathfn import exp_nonpos


def _grid():
    rng = np.random.default_rng(5)
    ln2 = math.log(2.0)
    pts = [np.linspace(-708.0, 0.0, 20001), -708.0 * rng.random(20000), -rng.random(2000) * 1e-3]
    # the Cody–Waite reduction switches n at odd multiples of ln2/2: probe both sides of many of them
    half = (np.arange(-2042, 1) + 0.5) * ln2
    half = half[half >= -708.0]
    pts += [half, np.nextafter(half, 0.0), np.nextafter(half, -1.0)]
    pts.append(np.array([0.0, -0.0, -1e-300, -5e-324, -1e-17, -0.5 * ln2, -ln2, -1.0, -707.9999999, -708.0]))
    return np.concatenate(pts)


def test_exp_nonpos_relative_error():
    x = _grid()
    got = np.array([exp_nonpos(v) for v in x])
    want = np.exp(x)
    rel = np.abs(got - want) / want
    worst = int(np.argmax(rel))
    assert rel[worst] < 1e-14, f"exp_nonpos({x[worst]!r}) = {got[worst]!r}, numpy {want[worst]!r}"
    assert exp_nonpos(0.0) == 1.0


def test_exp_nonpos_zero_below_minus_708():
    for v in (np.nextafter(-708.0, -np.inf), -708.5, -709.0, -745.0, -746.0, -1e4, -1e300, -np.inf):
        assert exp_nonpos(float(v)) == 0.0
    assert exp_nonpos(-708.0) > 0.0
