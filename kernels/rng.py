"""Explicit, checkpointable random streams for the kernels.

Every independent unit of work (a round, a sequence of a batch) owns one xoshiro256++ stream whose
state is a ``uint64[4]`` row held by the caller. Kernels advance the row in place, so a state array can be
copied into a checkpoint and restored bit for bit; there is no global RNG anywhere in ``kernels``.

Streams are keyed, not chained: ``seed_stream(seed, stream)`` derives the state of stream ``stream`` from a
64-bit seed with SplitMix64, so the stream used by round ``t`` is the same whatever chunk size, thread count
or resume point the driver used to reach it.
"""
import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True)
def splitmix64(z):
    """SplitMix64 finaliser of a uint64 (a bijective avalanche mix)."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def seed_stream(seed, stream, state):
    """Fill ``state`` (uint64[4]) with the xoshiro256++ state of stream ``stream`` under ``seed``.

    Both keys are non-negative integers below 2**63. Distinct (seed, stream) pairs give unrelated streams:
    the pair is hashed twice through SplitMix64 before the four state words are drawn.
    """
    key = splitmix64(np.uint64(seed) * _GOLDEN + np.uint64(0x632BE59BD9B4E019))
    key = splitmix64(key ^ (np.uint64(stream) * _M1 + _GOLDEN))
    for i in range(4):
        key = key + _GOLDEN
        state[i] = splitmix64(key)


@njit(cache=True)
def seed_streams(seed, first_stream, states):
    """Seed rows ``states[b]`` (uint64[B, 4]) as streams ``first_stream + b``."""
    for b in range(states.shape[0]):
        seed_stream(seed, first_stream + b, states[b])


@njit(cache=True)
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True)
def next_u64(state):
    """Advance a xoshiro256++ state (uint64[4]) in place and return the next 64-bit output."""
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    result = _rotl(s0 + s3, 23) + s0
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
    return result


@njit(cache=True)
def uniform(state):
    """A float64 uniform on [0, 1) with 53 random bits."""
    return np.float64(next_u64(state) >> np.uint64(11)) * _INV53


@njit(cache=True)
def randint(state, n):
    """A uniform integer in {0, …, n−1} (n ≥ 1), by multiply-shift on 53 random bits."""
    j = np.int64(uniform(state) * n)
    return j if j < n else n - 1
