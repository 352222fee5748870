"""The binary-reward toy: a tabular softmax policy over a population of problems with known correct-answer sets.

P problems, A answers. Problem x reads row `row[x]` of a logit table θ [R, A] (R = P / share), so `share` problems
see one softmax: share = 1 is a plain tabular policy (every problem independent, every Pass@k objective maximised by
p = 1 everywhere), share > 1 is a policy of limited capacity, where mass moved onto an answer that solves one problem
is taken from the answers that solve its row-mates. That coupling is what makes Pass@1 (mode seeking: all mass on the
answer solving most row-mates) and Pass@64 (covering: some mass on each row-mate's answer) pull apart, the toy
analogue of the Pass@1 / Pass@k trade-off of LLM training.

Everything is exact and differentiable in float64: p_x = Σ_a π_{row(x)}(a)·c_x(a), Pass@k(x) = 1 − (1 − p_x)^k with
1 − p_x summed over the wrong answers (no cancellation when p_x → 1). The score ∇_θ log π(a) = e_a − π of a softmax
row is closed form, so the policy-gradient estimate ĝ_x = (1/n) Σ_i A_i (e_{a_i} − π) (docs/methods.md §0) is
vectorised over problems and Monte-Carlo replicates without autograd. What this file leaves out: the estimators
(passk_exp.estimators), the objectives' surrogates (targets.py) and the training loop (train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TabularPopulation:
    """theta [R, A] float64 (the policy's parameters), row [P] long, correct [P, A] float64 in {0, 1}."""

    theta: Tensor
    row: Tensor
    correct: Tensor

    kind = "tabular"

    @classmethod
    def build(
        cls,
        problems: int,
        answers: int,
        share: int = 1,
        correct: int = 1,
        spread: float = 1.0,
        seed: int = 0,
    ) -> TabularPopulation:
        """A random population: each problem gets `correct` distinct correct answers drawn uniformly among `answers`,
        and each table row starts from logits N(0, spread²), so difficulty varies across problems (larger `spread`
        and more `answers` make a harder, more skewed mix). problems must be a multiple of share."""
        if problems < 1 or answers < 2:
            raise ValueError(f"problems={problems}, answers={answers}: need problems >= 1 and answers >= 2")
        if not 1 <= correct < answers:
            raise ValueError(f"correct={correct} answers per problem must be in [1, answers-1={answers - 1}]")
        if share < 1 or problems % share:
            raise ValueError(f"share={share} must be >= 1 and divide problems={problems}")
        if spread < 0:
            raise ValueError(f"spread={spread} must be >= 0")
        gen = torch.Generator().manual_seed(seed)
        rows = problems // share
        theta = spread * torch.randn(rows, answers, generator=gen, dtype=torch.float64)
        # `correct` distinct answers per problem: the first `correct` entries of a random permutation of each row.
        order = torch.rand(problems, answers, generator=gen).argsort(dim=-1)[:, :correct]
        mask = torch.zeros(problems, answers, dtype=torch.float64).scatter_(1, order, 1.0)
        row = torch.arange(problems) // share
        return cls(theta=theta, row=row, correct=mask)

    @property
    def problems(self) -> int:
        return self.correct.shape[0]

    @property
    def local_dim(self) -> int:
        """Size of one problem's parameter block (its row of the table)."""
        return self.theta.shape[1]

    def local(self, idx: Tensor, theta: Tensor | None = None) -> Tensor:
        """The parameter block each problem in `idx` [B] reads: [B, A] (rows repeat when problems share one)."""
        return (self.theta if theta is None else theta)[self.row[idx]]

    def fail_local(self, local: Tensor, idx: Tensor) -> Tensor:
        """1 − p for the problems idx [B] under their blocks local [B, A]: the softmax mass on wrong answers, [B]."""
        return (torch.softmax(local, dim=-1) * (1.0 - self.correct[idx])).sum(dim=-1)

    def success_local(self, local: Tensor, idx: Tensor) -> Tensor:
        """p = π(correct set) for problems idx [B] under blocks local [B, A], [B]; differentiable in `local`."""
        return (torch.softmax(local, dim=-1) * self.correct[idx]).sum(dim=-1)

    def success(self, theta: Tensor | None = None) -> Tensor:
        """p_x for every problem [P]; differentiable in theta (default: the current table)."""
        idx = torch.arange(self.problems)
        return self.success_local(self.local(idx, theta), idx)

    def pass_at_k(self, k: int, theta: Tensor | None = None) -> Tensor:
        """Exact Pass@k(x) = 1 − (1 − p_x)^k for every problem [P] (Chen et al. 2021; U Eq. 10)."""
        idx = torch.arange(self.problems)
        return 1.0 - self.fail_local(self.local(idx, theta), idx) ** k

    def sample(self, idx: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """n answers per problem in idx [B] from the current policy: (answers [B, n] long, rewards [B, n] float64)."""
        with torch.no_grad():
            probs = torch.softmax(self.local(idx), dim=-1)
            answers = torch.multinomial(probs, n, replacement=True, generator=gen)
            rewards = self.correct[idx].gather(1, answers)
        return answers, rewards

    def gradient_estimates(self, idx: Tensor, answers: Tensor, adv: Tensor) -> Tensor:
        """Per-problem ĝ_x = (1/n) Σ_i A_i (e_{a_i} − π_{row(x)}) (docs/methods.md §0) in each problem's block: [B, A].

        answers, adv: [B, n]. Σ_i A_i e_{a_i} is a scatter-add, Σ_i A_i π a rank-one correction: no one-hot tensor.
        """
        with torch.no_grad():
            probs = torch.softmax(self.local(idx), dim=-1)
            weighted = torch.zeros_like(probs).scatter_add_(1, answers, adv.to(probs.dtype))
            return (weighted - adv.sum(dim=-1, keepdim=True).to(probs.dtype) * probs) / answers.shape[1]

    def scatter(self, idx: Tensor, local: Tensor) -> Tensor:
        """Sum per-problem blocks local [B, A] into a theta-shaped [R, A] tensor (row-mates add up)."""
        return torch.zeros_like(self.theta).index_add_(0, self.row[idx], local)

    def log_prob(self, idx: Tensor, answers: Tensor, theta: Tensor | None = None) -> Tensor:
        """log π(a | x) [B, n]: the autograd reference for `gradient_estimates` in tests."""
        return torch.log_softmax(self.local(idx, theta), dim=-1).gather(1, answers)

    def kl_to(self, reference: Tensor, theta: Tensor | None = None) -> Tensor:
        """Mean over problems of KL(π_θ(·|x) ‖ π_ref(·|x)), exact and differentiable (the toy's `regularizer=kl`)."""
        idx = torch.arange(self.problems)
        logp = torch.log_softmax(self.local(idx, theta), dim=-1)
        logq = torch.log_softmax(self.local(idx, reference), dim=-1)
        return (logp.exp() * (logp - logq)).sum(dim=-1).mean()
