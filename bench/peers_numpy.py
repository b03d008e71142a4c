"""NumPy peer: the same on-policy PG step, vectorised over the batch, a Python loop over positions only.

Weights use the kernel layout (float64[D], D = d·k + k²): ``w[:d*k]`` is W1 as (d, k), ``w[d*k:]`` is
W2T as (k, k) indexed ``[prev, a]``. Everything is float64 so the gradient can be checked against
onlinepg to ~1e-9.
"""
import numpy as np

ADAGRAD_EPS = 1e-10


def teacher_responses(X, W1s, W2s, N):
    """y* (int64[B, N]) of the teacher: y*_1 = argmax(W1* x), y*_i = argmax(W1* x + W2*[:, y*_{i−1}]).
    X float64[B, d], W1s float64[k, d], W2s float64[k, k]."""
    base = X @ W1s.T
    Y = np.empty((X.shape[0], N), np.int64)
    Y[:, 0] = base.argmax(axis=1)
    for i in range(1, N):
        Y[:, i] = (base + W2s[:, Y[:, i - 1]].T).argmax(axis=1)
    return Y


def split(w, d, k):
    """Views (W1 float64[d, k], W2T float64[k, k]) of a kernel-layout weight vector."""
    return w[:d * k].reshape(d, k), w[d * k:].reshape(k, k)


def sample(w, X, rng, Y, P):
    """Draw Y (int64[B, N], written) from p_w by inverse CDF; P (float64[B, N, k], written) gets the
    per-position probabilities, kept so the gradient never recomputes a softmax."""
    B, d = X.shape
    N, k = P.shape[1], P.shape[2]
    W1, W2T = split(w, d, k)
    u = X @ W1                                  # xᵀW1 once per sequence, as the kernels do
    U = rng.random((N, B, 1))
    for i in range(N):
        lg = u if i == 0 else u + W2T[Y[:, i - 1]]
        e = np.exp(lg - lg.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        P[:, i] = p
        # first a whose CDF exceeds the uniform; the clip covers a CDF that rounds to just under 1
        a = (np.cumsum(p, axis=1) <= U[i]).sum(axis=1)
        Y[:, i] = np.minimum(a, k - 1)


def probs(w, X, Y):
    """P (float64[B, N, k]) = p_w(· | x_b, Y[b, <i]) for given responses, fully vectorised."""
    B, d = X.shape
    N = Y.shape[1]
    k = infer_k(w.size, d)
    W1, W2T = split(w, d, k)
    lg = np.repeat((X @ W1)[:, None, :], N, axis=1)
    lg[:, 1:] += W2T[Y[:, :-1]]
    e = np.exp(lg - lg.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


def infer_k(D, d):
    """k from D = d·k + k² (positive root)."""
    return int(round((-d + np.sqrt(d * d + 4 * D)) / 2))


def score_grad(X, Y, P, A, scale):
    """g (float64[D]) = scale · Σ_b A[b] Σ_i ∇ log p_w(Y[b,i] | ·): the analytic score function
    (onehot(y) − p) contracted with the bigram features. A float64[B] is the sequence advantage."""
    B, d = X.shape
    N, k = P.shape[1], P.shape[2]
    sA = scale * A
    coef = P * (-sA)[:, None, None]
    flat = coef.reshape(B * N, k)
    flat[np.arange(B * N), Y.ravel()] += np.repeat(sA, N)
    gW1 = X.T @ coef.sum(axis=1)                          # context block: x ⊗ Σ_i coef_i
    # transition block: row prev of W2T collects the coefficients of every token that followed prev;
    # a one-hot GEMM keeps it in BLAS instead of a scatter-add
    prev = Y[:, :-1].ravel()
    onehot = (prev[:, None] == np.arange(k)).astype(np.float64)
    gW2T = onehot.T @ coef[:, 1:].reshape(-1, k)
    return np.concatenate([gW1.ravel(), gW2T.ravel()])


class NumpyPG:
    """State of the NumPy peer: weights w (float64[D]), Adagrad sum G2 (float64[D]), buffers Y, P."""

    name = "numpy (vectorised, float64)"

    def __init__(self, X, Ystar, w0, seed, lr=0.1):
        self.X, self.Ystar, self.lr = X, Ystar, lr
        self.w0, self.w, self.G2 = w0, w0.copy(), np.zeros_like(w0)
        B, N = Ystar.shape
        k = infer_k(w0.size, X.shape[1])
        self.Y = np.empty((B, N), np.int64)
        self.P = np.empty((B, N, k))
        self.rng = np.random.default_rng(seed)

    def reset(self):
        """Back to w0 and an empty Adagrad sum (the RNG stream moves on)."""
        self.w[:] = self.w0
        self.G2[:] = 0.0

    def step(self):
        """One on-policy PG step; returns the batch success fraction."""
        sample(self.w, self.X, self.rng, self.Y, self.P)
        correct = (self.Y == self.Ystar).all(axis=1)
        r = np.where(correct, 1.0, -1.0)
        B, N = self.Y.shape
        g = score_grad(self.X, self.Y, self.P, r - r.mean(), 1.0 / (B * N))
        self.G2 += g * g
        self.w += self.lr * g / (np.sqrt(self.G2) + ADAGRAD_EPS)
        return correct.mean()
