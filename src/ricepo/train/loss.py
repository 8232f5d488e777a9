"""Token-level PPO-clip with dual clip and a k3 KL penalty (verl's `compute_policy_loss`).

Per trained token with advantage A, ratio ρ = exp(logπ - logπ_old), the log-ratio clamped to ±20
first as verl clamps it (a log-ratio above 88.7 would overflow float32 to inf, and inf times a zero
advantage is NaN: one token would poison the step's loss):
    pg   = max(-A ρ, -A clip(ρ, 1-ε, 1+ε));   for A < 0 also capped at -A·c (dual clip c)
    kl   = e^d - d - 1 with d = logπ_ref - logπ   (k3, non-negative, unbiased for KL(π‖π_ref)),
           d clamped to ±20 and kl to at most 10, as verl clamps it: one token the policy has
           pushed far from the reference cannot dominate the batch's loss (or overflow e^d)
    loss = pg + β kl
aggregated over the masked tokens as `token-mean` (all tokens of the batch weigh alike),
`seq-mean-token-mean` or `seq-mean-token-sum`; the `seq-mean` modes divide by the rows that have
at least one trained token, as verl does (`trained_rows`).
"""

from __future__ import annotations

import torch

LOG_RATIO_CLAMP = 20.0  # |log-ratio| at most this before e^ (verl: the policy ratio and `low_var_kl`)
KL_CLAMP = 10.0  # k3 per token at most this (verl)


def token_losses(logp, old_logp, ref_logp, adv, *, clip_eps: float, dual_clip: float, kl_coef: float):
    """Elementwise (pg, kl, clipped-indicator) tensors, same shape as the inputs."""
    ratio = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    pg = torch.maximum(pg1, pg2)
    pg = torch.where(adv < 0, torch.minimum(pg, -adv * dual_clip), pg)
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    kl = (torch.exp(d) - d - 1).clamp(max=KL_CLAMP)
    clipped = (pg2 > pg1).float()
    return pg + kl_coef * kl, pg, kl, clipped


def trained_rows(mask: torch.Tensor) -> int:
    """The rows with at least one trained token: the divisor of the `seq-mean` modes."""
    return int((mask.sum(-1) > 0).sum())


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, *, total_tokens: float, total_seqs: float):
    """Sum of this micro-batch's share of the batch loss (so micro-batch gradients add up)."""
    mask = mask.float()
    if mode == "token-mean":
        return (values * mask).sum() / total_tokens
    per_seq = (values * mask).sum(-1)
    if mode == "seq-mean-token-mean":
        per_seq = per_seq / mask.sum(-1).clamp(min=1)
    elif mode != "seq-mean-token-sum":
        raise ValueError(f"unknown loss aggregation {mode!r}")
    return per_seq.sum() / total_seqs
