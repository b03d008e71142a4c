"""PyTorch peer, written after the paper authors' published code (github.com/mousavih/rlvr-base-model-barrier,
``utils/model.py`` and ``utils/training.py::policy_gradient_train``): a flat float32 parameter, a Python loop
over positions that samples with softmax + ``torch.multinomial`` under ``no_grad``, then one batched
recomputation of all logits, ``log_softmax`` + ``gather``, loss ``−(A·logp).mean()``, ``backward`` and
``torch.optim.Adagrad``.

Layout (the reference's, not the kernels'): ``w[:d*k]`` is W1 as (d, k); ``w[d*k:]`` is W2 as (k, k)
indexed ``[a, prev]``. :func:`to_paper_layout` / :func:`from_paper_layout` convert float64[D] vectors.
"""
import numpy as np

from .peers_numpy import infer_k

try:
    import torch
    import torch.nn.functional as F
    HAVE_TORCH = True
except ImportError:  # the bench prints a "skipped" row instead
    torch = None
    HAVE_TORCH = False

SKIP_MESSAGE = "skipped (torch not installed: pip install -e .[bench])"


def to_paper_layout(w, d, k):
    """Kernel layout (W2T[prev, a]) → reference layout (W2[a, prev]); float64[D] → float64[D]."""
    return np.concatenate([w[:d * k], w[d * k:].reshape(k, k).T.ravel()])


def from_paper_layout(w, d, k):
    """Reference layout → kernel layout (the transpose is its own inverse)."""
    return to_paper_layout(w, d, k)


if HAVE_TORCH:
    class BigramPolicy(torch.nn.Module):
        """p_w(y_i | x, y_<i) = softmax(xᵀW1 + W2[:, y_{i−1}]) with w a single float32[D] parameter."""

        def __init__(self, d, k, w_init):
            super().__init__()
            self.d, self.k = d, k
            self.w = torch.nn.Parameter(torch.as_tensor(w_init, dtype=torch.float32).clone())

        def blocks(self):
            return self.w[:self.d * self.k].view(self.d, self.k), self.w[self.d * self.k:].view(self.k, self.k)

        def logits_next(self, x, y_prev):
            """x float32[B, d], y_prev int64[B] or None at the first position → float32[B, k]."""
            w1, w2 = self.blocks()
            base = x @ w1
            return base if y_prev is None else base + w2.T[y_prev]

        def logits(self, x, y):
            """All positions at once for a given response y int64[B, N] → float32[B, N, k]."""
            w1, w2 = self.blocks()
            out = (x @ w1).unsqueeze(1).expand(-1, y.shape[1], -1).clone()
            out[:, 1:, :] += w2.T[y[:, :-1]]
            return out

        @torch.no_grad()
        def sample_next(self, x, y_prev):
            p = F.softmax(self.logits_next(x, y_prev), dim=-1)
            return torch.multinomial(p, num_samples=1).squeeze(-1)


class TorchPG:
    """State of the PyTorch peer (float32, CPU). X float64[B, d] and Ystar int64[B, N] are converted once."""

    name = "pytorch (ref. code, float32)"

    def __init__(self, X, Ystar, w0, seed, lr=0.1, threads=2):
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        B, d = X.shape
        self.k = infer_k(w0.size, d)
        self.x = torch.as_tensor(X, dtype=torch.float32)
        self.ystar = torch.as_tensor(Ystar)
        self.w0, self.lr = to_paper_layout(w0, d, self.k), lr
        self.model = BigramPolicy(d, self.k, self.w0)
        self.opt = torch.optim.Adagrad(self.model.parameters(), lr=lr)

    def reset(self):
        """Back to w0 and a fresh Adagrad (the torch RNG moves on)."""
        with torch.no_grad():
            self.model.w.copy_(torch.as_tensor(self.w0, dtype=torch.float32))
        self.opt = torch.optim.Adagrad(self.model.parameters(), lr=self.lr)

    def sample(self):
        """Y int64[B, N] from the current policy. The reference re-stacks the whole prefix at every
        position (O(N²) copies) although only the last token is read; we pass the last token only, which
        favours the peer."""
        ys = []
        y_prev = None
        for _ in range(self.ystar.shape[1]):
            y_prev = self.model.sample_next(self.x, y_prev)
            ys.append(y_prev)
        return torch.stack(ys, dim=1)

    def loss(self, y, adv):
        """−mean_{b,i}[A_b log p_w(y_{b,i} | ·)]; adv float32[B]."""
        logp = F.log_softmax(self.model.logits(self.x, y), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return -(adv[:, None] * logp).mean()

    def step(self):
        """One on-policy PG step; returns the batch success fraction."""
        y = self.sample()
        correct = (y == self.ystar).all(dim=1)
        r = torch.where(correct, 1.0, -1.0)
        loss = self.loss(y, r - r.mean())
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return correct.float().mean().item()

    def ascent_grad(self, Y, A):
        """Kernel-layout float64[D] gradient of +mean(A·logp) at the current weights, for given Y (int64[B, N])
        and A (float64[B]); the sign matches onlinepg's ascent convention."""
        self.model.zero_grad()
        self.loss(torch.as_tensor(Y), torch.as_tensor(A, dtype=torch.float32)).backward()
        g = -self.model.w.grad.detach().double().numpy()
        return from_paper_layout(g, self.x.shape[1], self.k)


class TorchGRPO(TorchPG):
    """The GRPO step as TRL's ``GRPOTrainer`` computes it, on the same policy (float32, CPU): sample the batch
    under ``no_grad`` (B/G contexts × G, the rows arrive grouped), 0/1 rewards, advantages (r − group mean) /
    (group std + 1e-4), the old and reference per-token log-probabilities under ``no_grad``, then μ iterations of
    logits → ``log_softmax`` + ``gather``, ratio exp(logp − old), −min(ρA, clamp(ρ, 1 − ε, 1 + ε_high)A) +
    β·k3, token mean (DAPO), ``backward`` and ``torch.optim.Adagrad``."""

    name = "pytorch GRPO (TRL-style, float32)"

    def __init__(self, X, Ystar, w0, seed, lr=0.1, threads=2, G=8, mu=2, beta=0.04, eps=0.2, eps_high=0.28):
        super().__init__(X, Ystar, w0, seed, lr, threads)
        self.G, self.mu, self.beta, self.eps, self.eps_high = G, mu, beta, eps, eps_high
        self.ref = BigramPolicy(self.x.shape[1], self.k, self.w0)
        for q in self.ref.parameters():
            q.requires_grad_(False)

    def token_logp(self, model, y):
        return F.log_softmax(model.logits(self.x, y), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def advantages(self, r):
        g = r.view(-1, self.G)
        return ((g - g.mean(dim=1, keepdim=True)) / (g.std(dim=1, keepdim=True) + 1e-4)).view(-1)

    def surrogate_loss(self, y, adv, old, ref):
        logp = self.token_logp(self.model, y)
        ratio = torch.exp(logp - old)
        a = adv[:, None]
        per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - self.eps, 1 + self.eps_high) * a)
        if self.beta:
            d = ref - logp
            per_token = per_token + self.beta * (torch.exp(d) - d - 1)
        return per_token.mean()

    def step(self):
        y = self.sample()
        correct = (y == self.ystar).all(dim=1)
        adv = self.advantages(correct.float())
        with torch.no_grad():
            old = self.token_logp(self.model, y)
            ref = self.token_logp(self.ref, y) if self.beta else None
        for _ in range(self.mu):
            loss = self.surrogate_loss(y, adv, old, ref)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return correct.float().mean().item()

    def ascent_grad(self, Y, A):
        """Kernel-layout float64[D] ascent gradient of the first iteration (old = current weights) for given Y and
        advantages A (float64[B])."""
        y = torch.as_tensor(Y)
        with torch.no_grad():
            old = self.token_logp(self.model, y)
            ref = self.token_logp(self.ref, y)
        self.model.zero_grad()
        self.surrogate_loss(y, torch.as_tensor(A, dtype=torch.float32), old, ref).backward()
        g = -self.model.w.grad.detach().double().numpy()
        return from_paper_layout(g, self.x.shape[1], self.k)
