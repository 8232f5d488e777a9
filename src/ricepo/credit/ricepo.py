"""RICE-PO credit (our reconstruction; ../shared/reference/algorithms.md, paper Eq. 1-9).

Per anchor (i, t) with branches m = 0..M-1 (branch 0 is the original step):
    ℓ_m local reward of branch m's summary, F_m its final reward after continuing to depth D
    I = pstd(ℓ)  (influence),  U = pstd(F - ℓ)  (instability of the residual effect)
    g = 1[I ≥ τ_I]·1[U ≤ τ_R]                       (full; the variants change g)
    A_sum    = (ℓ_0 - mean ℓ) / (I + 1e-6), 0 when I = 0
    A_reason = g·A_sum + (1 - g)·A_traj            (`combine: replace`, the literal reading)
             = A_traj + g·A_sum                     (`combine: add`)
Every span of every trajectory gets A_traj (GRPO); the anchor's summary span gets A_sum and its
reasoning span A_reason.
Branch rows (m ≥ 1) that carry an "id" are scored too, for `train_branches: true` (our choice):
steps before the anchor get 0 (they are copies of the original and are not trained), the anchor
step gets the branch's own A_sum_m = (ℓ_m - mean ℓ)/(I + 1e-6) and A_reason_m by the same gate,
and later steps A_traj_m = (F_m - mean_group R) / (std_group R + 1e-6), the branch's final reward
standardised with the group's GRPO statistics.
Variants: case1 (g ≡ 1), case2 (reasoning credit = population z-score of F over the branches,
taken at branch 0), random_case (case1 or case2 per anchor, seeded), random_trigger (full gate;
the anchors were drawn at random upstream), effect_only (g = 1[U ≤ τ_R]), influence_only
(g = 1[I ≥ τ_I]).
"""
from __future__ import annotations

import math
import random

from .grpo import group_reward_stats, trajectory_advantages
from .registry import register
from .stats import EPS, mean, std

TAU_I, TAU_R = 0.05, 0.10   # algorithms.md defaults (paper blank)
VARIANTS = ("full", "case1", "case2", "random_case", "random_trigger", "effect_only", "influence_only")


def anchor_statistics(branches: list[dict]) -> dict:
    """Influence, instability, and per branch m the summary credit a_sum[m] and final z-score final_z[m]."""
    local = [float(b["local_reward"]) for b in branches]
    final = [float(b["final_reward"]) for b in branches]
    influence = std(local, bessel=False)
    instability = std([f - l for f, l in zip(final, local)], bessel=False)
    a_sum = [(x - mean(local)) / (influence + EPS) if influence > 0 else 0.0 for x in local]
    final_std = std(final, bessel=False)
    final_z = [(x - mean(final)) / (final_std + EPS) for x in final]
    return {"influence": influence, "instability": instability, "a_sum": a_sum, "final_z": final_z}


def gate(variant: str, influence: float, instability: float, tau_I: float, tau_R: float) -> int:
    if variant == "case1":
        return 1
    if variant == "effect_only":
        return int(instability <= tau_R)
    if variant == "influence_only":
        return int(influence >= tau_I)
    return int(influence >= tau_I and instability <= tau_R)


@register("ricepo")
def ricepo(group: dict, variant: str = "full", tau_I: float = TAU_I, tau_R: float = TAU_R, combine: str = "replace",
           seed: int = 0, norm_by_std: bool = True) -> dict[str, list[dict]]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if combine not in ("replace", "add"):
        raise ValueError(f"combine must be replace or add, not {combine!r}")
    traj_adv = trajectory_advantages(group, norm_by_std)
    out = {t["id"]: [{"reasoning": traj_adv[t["id"]], "summary": traj_adv[t["id"]]} for _ in t["steps"]]
           for t in group["trajectories"]}
    depth = {t["id"]: len(t["steps"]) for t in group["trajectories"]}
    r_mean, r_std = group_reward_stats(group)
    for anchor in group.get("anchors", []):
        tid, step = anchor["trajectory"], int(anchor["step"])
        if tid not in out or not 0 <= step < depth[tid]:
            raise ValueError(f"anchor ({tid!r}, {step}) names no step of the group")
        stats = anchor_statistics(anchor["branches"])
        case = variant
        if variant == "random_case":
            case = random.Random(f"{seed}:{group.get('query_id')}:{tid}:{step}").choice(["case1", "case2"])
        g = 1 if case == "case2" else gate(case, stats["influence"], stats["instability"], tau_I, tau_R)
        propagated = stats["final_z"] if case == "case2" else stats["a_sum"]
        for m, branch in enumerate(anchor["branches"]):
            if m == 0:
                rid, base = tid, traj_adv[tid]
            elif "id" in branch:
                rid = branch["id"]
                base = (float(branch["final_reward"]) - r_mean) / ((r_std + EPS) if norm_by_std else 1.0)
                out[rid] = [{"reasoning": 0.0, "summary": 0.0} for _ in range(step)] + \
                           [{"reasoning": base, "summary": base} for _ in range(step, depth[tid])]
            else:
                continue
            if combine == "replace":
                summary, reasoning = stats["a_sum"][m], g * propagated[m] + (1 - g) * base
            else:
                summary, reasoning = base + stats["a_sum"][m], base + g * propagated[m]
            out[rid][step] = {"reasoning": reasoning, "summary": summary}
    return out


def select_anchors(group: dict, k: int, trigger: str = "entropy", seed: int = 0) -> list[list]:
    """The k steps RICE-PO would branch at: top-k summary entropy (ties: earlier step, then earlier
    trajectory), or k drawn uniformly (seeded) for the random-trigger ablation."""
    pool = []
    for order, t in enumerate(group["trajectories"]):
        for step, s in enumerate(t["steps"]):
            h = s.get("summary_entropy")
            if h is not None and not (isinstance(h, float) and math.isnan(h)):
                pool.append((float(h), step, order, t["id"]))
    if trigger == "random":
        pool.sort(key=lambda x: (x[1], x[2]))
        chosen = random.Random(f"{seed}:{group.get('query_id')}").sample(pool, min(k, len(pool)))
    elif trigger == "entropy":
        chosen = sorted(pool, key=lambda x: (-x[0], x[1], x[2]))[:k]
    else:
        raise ValueError(f"trigger must be entropy or random, not {trigger!r}")
    return [[tid, step] for _, step, _, tid in chosen]
