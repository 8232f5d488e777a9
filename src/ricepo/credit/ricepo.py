"""RICE-PO credit (our reconstruction of the paper's Eq. 1-9; docs/methods.md, 3.6).

Per anchor (i, t) with branches m = 0..M-1 (branch 0 is the original step):
    ℓ_m local reward of branch m's summary, F_m its final reward after continuing to depth D
    I = pstd(ℓ)  (influence),  U = pstd(F - ℓ)  (instability of the residual effect)
    g = 1[I ≥ τ_I]·1[U ≤ τ_R]                       (full; the variants change g)
    A_sum    = (ℓ_0 - mean ℓ) / (I + 1e-6), 0 when I = 0
    A_reason = g·A_sum + (1 - g)·A_traj            (`combine: replace`, the literal reading)
             = A_traj + g·A_sum                     (`combine: add`)
Every span of every trajectory gets A_traj (GRPO); the anchor's summary span gets A_sum and its
reasoning span A_reason.
Branch rows (m ≥ 1) that carry an "id" and their own step count "steps" (a branch ends where its
own continuation ends, before or after the original) are scored too, for `train_branches: true`
(our choice): steps before the anchor get 0 (they are copies of the original and are not
trained), the anchor step gets the branch's own A_sum_m = (ℓ_m - mean ℓ)/(I + 1e-6) and A_reason_m
by the same gate, and later steps A_traj_m = (F_m - mean_group R) / (std_group R + 1e-6), the
branch's final reward standardised with the group's GRPO statistics.
The ablations are variants of the method, overlays of its settings: the credit `rule` case1
(g ≡ 1), case2 (reasoning credit = population z-score of F over the branches, taken at branch 0),
random_case (case1 or case2 per anchor, seeded), effect_only (g = 1[U ≤ τ_R]), influence_only
(g = 1[I ≥ τ_I]); and random_trigger, the rollout's `trigger: random` (anchors drawn at random,
full gate).
"""

from __future__ import annotations

import math
import random

from .grpo import group_reward_stats, trajectory_advantages
from .registry import Method, Param, Variant, register
from .stats import EPS, mean, std

RULES = ("full", "case1", "case2", "random_case", "effect_only", "influence_only")


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


def gate(rule: str, influence: float, instability: float, tau_I: float, tau_R: float) -> int:
    if rule == "case1":
        return 1
    if rule == "effect_only":
        return int(instability <= tau_R)
    if rule == "influence_only":
        return int(influence >= tau_I)
    return int(influence >= tau_I and instability <= tau_R)


def anchor_credit(anchor: dict, query_id, rule: str, tau_I: float, tau_R: float, seed: int):
    """(g, propagated credit per branch, statistics) of one anchor. g is None where the rule does
    not gate: case2 and random_case take the propagated credit whole (the trainer's log counts
    only real gate decisions)."""
    stats = anchor_statistics(anchor["branches"])
    case = rule
    if rule == "random_case":
        case = random.Random(f"{seed}:{query_id}:{anchor['trajectory']}:{int(anchor['step'])}").choice(["case1", "case2"])
    propagated = stats["final_z"] if case == "case2" else stats["a_sum"]
    g = None if rule in ("case2", "random_case") else gate(case, stats["influence"], stats["instability"], tau_I, tau_R)
    return g, propagated, stats


def ricepo(group: dict, rule: str, tau_I: float, tau_R: float, combine: str, norm_by_std: bool, seed: int = 0) -> dict[str, list[dict]]:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
    if combine not in ("replace", "add"):
        raise ValueError(f"combine must be replace or add, not {combine!r}")
    traj_adv = trajectory_advantages(group, norm_by_std)
    out = {t["id"]: [{"reasoning": traj_adv[t["id"]], "summary": traj_adv[t["id"]]} for _ in t["steps"]] for t in group["trajectories"]}
    depth = {t["id"]: len(t["steps"]) for t in group["trajectories"]}
    r_mean, r_std = group_reward_stats(group)
    for anchor in group.get("anchors", []):
        tid, step = anchor["trajectory"], int(anchor["step"])
        if tid not in out or not 0 <= step < depth[tid]:
            raise ValueError(f"anchor ({tid!r}, {step}) names no step of the group")
        g, propagated, stats = anchor_credit(anchor, group.get("query_id"), rule, tau_I, tau_R, seed)
        g = 1 if g is None else g
        for m, branch in enumerate(anchor["branches"]):
            if m == 0:
                rid, base = tid, traj_adv[tid]
            elif "id" in branch:
                rid = branch["id"]
                # a branch runs on from the anchor by itself: it may end (EOS) before or after the original
                steps = int(branch.get("steps", 0))
                if steps <= step:
                    raise ValueError(f"branch {rid!r} of anchor ({tid!r}, {step}) needs its step count 'steps' > {step}, not {branch.get('steps')!r}")
                base = (float(branch["final_reward"]) - r_mean) / ((r_std + EPS) if norm_by_std else 1.0)
                out[rid] = [{"reasoning": 0.0, "summary": 0.0} for _ in range(step)] + [
                    {"reasoning": base, "summary": base} for _ in range(step, steps)
                ]
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


register(
    Method(
        "ricepo",
        "RICE-PO",
        rollout="branches",
        credit=ricepo,
        runtime=("seed",),
        params={
            "anchors": Param({"type": "integer", "minimum": 1, "default": 2}, "rollout", "k anchors per group (paper blank)"),
            "branches": Param(
                {"type": "integer", "minimum": 2, "default": 4}, "rollout", "M branches per anchor, the original included (paper blank)"
            ),
            "trigger": Param(
                {"enum": ["entropy", "random"], "default": "entropy"}, "rollout", "anchors at the top-k summary entropy, or drawn at random"
            ),
            "train_branches": Param({"type": "boolean", "default": False}, "rollout", "train branch rows too (from the anchor step on)"),
            "tau_I": Param({"type": "number", "minimum": 0, "default": 0.05}, doc="influence threshold τ_I (paper blank)"),
            "tau_R": Param({"type": "number", "minimum": 0, "default": 0.10}, doc="residual-effect threshold τ_R (paper blank)"),
            "combine": Param(
                {"enum": ["replace", "add"], "default": "replace"}, doc="replace (the literal reading of Eq. 9) or add the gated credit to A_traj"
            ),
            "rule": Param({"enum": list(RULES), "default": "full"}, doc="credit rule: full gate, or an ablation's"),
            "norm_by_std": Param({"type": "boolean", "default": True}, doc="A_traj divided by the group's std"),
        },
        variants={
            "case1": Variant("Case 1", {"rule": "case1"}),
            "case2": Variant("Case 2", {"rule": "case2"}),
            "random_case": Variant("Random", {"rule": "random_case"}),
            "random_trigger": Variant("Random Trigger", {"trigger": "random"}),
            "effect_only": Variant("Effect Only", {"rule": "effect_only"}),
            "influence_only": Variant("Influence Only", {"rule": "influence_only"}),
        },
    )
)
