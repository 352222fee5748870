"""The continuous-reward toy for PKPO's max@k estimators: a Gaussian policy per problem, rewarded by closeness to a
target.

Problem x has a target t_x; the policy draws y ~ N(μ_x, σ_x²) with parameters θ_x = (μ_x, log σ_x), and the reward is
g(y) = exp(−(y − t_x)²/2) ∈ (0, 1] (the reward's width is the unit of length). max@k(x) = E[max of k iid rewards]
(W §3.1) is exact up to quadrature error (~1e-12): M_k = g(min_i |y_i − t|), so with s the distance to the target
    E[M_k] = ∫_0^∞ (1 − (1 − q(s))^k) · s·e^{−s²/2} ds,   q(s) = P(|y − t| < s) = Φ((t+s−μ)/σ) − Φ((t−s−μ)/σ),
integrated by composite Gauss–Legendre on [0, 12] with extra breakpoints at |t − μ| ± 10σ so a narrow policy is
resolved; the breakpoints are detached (the limits of the whole range are fixed), so autograd gives the exact gradient.
The score ∇_θ log N(y; μ, σ) = ((y−μ)/σ², ((y−μ)/σ)² − 1) is closed form. What this file leaves out: binary rewards
(tabular.py), the estimators and the training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

_S_MAX = 12.0  # s·e^{−s²/2} < 1e-29 beyond: the tail of the integral is below float64 resolution
_NODES = 128  # Gauss–Legendre nodes per sub-interval (64 leaves ~1e-9 errors for k = 16 and σ = 0.05)
_WINDOW = 10.0  # breakpoints at |t − μ| ± _WINDOW·σ, where q(s) rises from 0 to its plateau


@lru_cache(maxsize=None)
def gauss_legendre(nodes: int) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.legendre.leggauss(nodes)
    return torch.from_numpy(x), torch.from_numpy(w)


def _phi(x: Tensor) -> Tensor:
    """Standard normal CDF via erfc (accurate in both tails, differentiable)."""
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


@dataclass
class GaussianPopulation:
    """theta [P, 2] float64 = (μ, log σ) per problem, target [P] float64."""

    theta: Tensor
    target: Tensor

    kind = "gaussian"

    @classmethod
    def build(cls, problems: int, offset: float = 2.0, sigma: float = 0.5, seed: int = 0) -> GaussianPopulation:
        """Targets at 0; initial means at distance uniform in [0, offset] (random side), initial σ = sigma (in reward
        widths). A larger offset / smaller sigma is a harder mix: fewer early samples land near the target."""
        if problems < 1:
            raise ValueError(f"problems={problems} must be >= 1")
        if offset < 0 or sigma <= 0:
            raise ValueError(f"offset={offset} must be >= 0 and sigma={sigma} > 0")
        gen = torch.Generator().manual_seed(seed)
        distance = offset * torch.rand(problems, generator=gen, dtype=torch.float64)
        side = torch.where(torch.rand(problems, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
        theta = torch.stack([side * distance, torch.full((problems,), math.log(sigma), dtype=torch.float64)], dim=-1)
        return cls(theta=theta, target=torch.zeros(problems, dtype=torch.float64))

    @property
    def problems(self) -> int:
        return self.target.shape[0]

    @property
    def local_dim(self) -> int:
        return 2

    def local(self, idx: Tensor, theta: Tensor | None = None) -> Tensor:
        return (self.theta if theta is None else theta)[idx]

    def max_at_k_local(self, local: Tensor, idx: Tensor, k: int) -> Tensor:
        """Exact max@k for problems idx [B] under parameters local [B, 2]: [B], differentiable in `local`."""
        mu, sigma = local[:, 0], local[:, 1].exp()
        gap = (self.target[idx] - mu).abs().detach()
        width = _WINDOW * sigma.detach()
        cuts = torch.stack(
            [torch.zeros_like(gap), (gap - width).clamp(0, _S_MAX), (gap + width).clamp(0, _S_MAX),
             torch.full_like(gap, _S_MAX)], dim=-1
        )  # [B, 4]: three sub-intervals (some possibly empty)
        x, w = gauss_legendre(_NODES)
        lo, hi = cuts[:, :-1, None], cuts[:, 1:, None]  # [B, 3, 1]
        s = (lo + hi) / 2 + (hi - lo) / 2 * x  # [B, 3, nodes]
        weights = (hi - lo) / 2 * w
        t, m, sd = (v[:, None, None] for v in (self.target[idx], mu, sigma))
        miss = _phi((t - s - m) / sd) + _phi(-(t + s - m) / sd)  # 1 − q(s) without cancellation
        integrand = (1.0 - miss**k) * s * torch.exp(-0.5 * s**2)
        return (weights * integrand).sum(dim=(-1, -2))

    def max_at_k(self, k: int, theta: Tensor | None = None) -> Tensor:
        """Exact max@k for every problem [P] (W §3.1); max@1 is the expected reward."""
        idx = torch.arange(self.problems)
        return self.max_at_k_local(self.local(idx, theta), idx, k)

    def rewards_of(self, idx: Tensor, y: Tensor) -> Tensor:
        return torch.exp(-0.5 * (y - self.target[idx, None]) ** 2)

    def sample(self, idx: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """n draws per problem in idx [B]: (y [B, n], rewards [B, n] in (0, 1])."""
        with torch.no_grad():
            local = self.local(idx)
            noise = torch.randn(len(idx), n, generator=gen, dtype=torch.float64)
            y = local[:, :1] + local[:, 1:].exp() * noise
        return y, self.rewards_of(idx, y)

    def gradient_estimates(self, idx: Tensor, y: Tensor, adv: Tensor) -> Tensor:
        """Per-problem ĝ_x = (1/n) Σ_i A_i ∇_θ log N(y_i; μ, σ) (docs/methods.md §0 scale): [B, 2] over (μ, log σ)."""
        with torch.no_grad():
            local = self.local(idx)
            z = (y - local[:, :1]) / local[:, 1:].exp()
            adv = adv.to(z.dtype)
            d_mu = (adv * z).mean(dim=-1) / local[:, 1].exp()
            d_log_sigma = (adv * (z**2 - 1.0)).mean(dim=-1)
            return torch.stack([d_mu, d_log_sigma], dim=-1)

    def scatter(self, idx: Tensor, local: Tensor) -> Tensor:
        return torch.zeros_like(self.theta).index_add_(0, idx, local)

    def log_prob(self, idx: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """log N(y; μ, σ²) [B, n]: the autograd reference for `gradient_estimates` in tests."""
        local = self.local(idx, theta)
        mu, log_sigma = local[:, :1], local[:, 1:]
        return -0.5 * ((y - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)

    def kl_to(self, reference: Tensor, theta: Tensor | None = None) -> Tensor:
        """Mean over problems of KL(N(μ, σ²) ‖ N(μ_ref, σ_ref²)), closed form and differentiable."""
        cur = self.theta if theta is None else theta
        mu, ls, mu0, ls0 = cur[:, 0], cur[:, 1], reference[:, 0], reference[:, 1]
        return (ls0 - ls + ((2 * ls).exp() + (mu - mu0) ** 2) / (2 * (2 * ls0).exp()) - 0.5).mean()
