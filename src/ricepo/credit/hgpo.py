"""HGPO (He et al. 2026, "Hierarchy-of-Groups Policy Optimization"; verl-agent recipe/hgpo).

Same step rows and returns G as GiGPO. For step s and level k = 1..min(K+1, s+1) the key is
(k, states of steps s-k+1..s of the same trajectory); k = 1 is GiGPO's anchor group. Each key
group of size ≥ 2 gives a_k = z-score of G with the *population* std; groups of one give
nothing, and items whose value is exactly 0 are dropped. "Exactly 0" is decided in exact rational
arithmetic (an item equal to its level's mean, so every item of a level of tied returns): in
floats the mean of three 0.7s is 0.6999999999999998, and a tied level would keep a ~1e-10 value
and take a share of the weights. A = Σ_k w_k a_k with
w_k = (k+1)^α / Σ_j (k_j+1)^α over the kept items; 0 when none is kept. `base_group: true` adds
the GRPO trajectory advantage as level k = 0.
"""

from __future__ import annotations

from fractions import Fraction

from .grpo import trajectory_advantages
from .registry import Method, Param, register
from .stats import EPS, mean, std
from .steps import RETURN_PARAMS, returns, step_rewards


def hgpo(group: dict, gamma: float, history: int, alpha: float, base_group: bool, step_reward: str) -> dict[str, list[dict]]:
    g, states = {}, {}
    for t in group["trajectories"]:
        states[t["id"]] = [str(s["state"]) for s in t["steps"]]
        for s, value in enumerate(returns(step_rewards(t, step_reward), gamma)):
            g[(t["id"], s)] = value
    keyed: dict[tuple, list[tuple[str, int]]] = {}
    for tid, sts in states.items():
        for s in range(len(sts)):
            for k in range(1, min(history + 1, s + 1) + 1):
                keyed.setdefault((k, tuple(sts[s - k + 1 : s + 1])), []).append((tid, s))
    levels: dict[tuple[str, int], list[tuple[int, float]]] = {row: [] for row in g}
    for (k, _), members in keyed.items():
        if len(members) < 2:
            continue
        values = [g[m] for m in members]
        m, sd = mean(values), std(values, bessel=False)
        exact_mean = sum(map(Fraction, values)) / len(values)
        for row, v in zip(members, values):
            levels[row].append((k, 0.0 if Fraction(v) == exact_mean else (v - m) / (sd + EPS)))
    if base_group:
        base = trajectory_advantages(group, norm_by_std=True)
        for tid, s in levels:
            levels[(tid, s)].append((0, base[tid]))

    out = {t["id"]: [] for t in group["trajectories"]}
    for t in group["trajectories"]:
        for s in range(len(t["steps"])):
            kept = [(k, a) for k, a in levels[(t["id"], s)] if a != 0.0]
            total = sum((k + 1) ** alpha for k, _ in kept)
            adv = sum((k + 1) ** alpha / total * a for k, a in kept) if kept else 0.0
            out[t["id"]].append({"reasoning": adv, "summary": adv})
    return out


register(
    Method(
        "hgpo",
        "HGPO",
        rollout="independent",
        credit=hgpo,
        params={
            **RETURN_PARAMS,
            "history": Param({"type": "integer", "minimum": 0, "default": 2}, doc="K: levels of history beyond the current state"),
            "alpha": Param({"type": "number", "default": 1.0}, doc="level weight exponent, w_k ∝ (k+1)^α"),
            "base_group": Param({"type": "boolean", "default": False}, doc="add the GRPO advantage as level 0"),
        },
    )
)
