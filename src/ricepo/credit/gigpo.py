"""GiGPO (Feng et al. 2025, "Group-in-Group Policy Optimization"; verl-agent gigpo/core_gigpo.py).

Episode advantage A^E: z-score (n-1) of R over every *step row* of the group (a trajectory of T
steps counts T times, as verl-agent does); a single row's advantage is R itself (verl's convention
is mean 0, std 1, which gives R/(1+1e-6) there: the same up to that epsilon).
Step advantage A^S: steps whose `state` is identical, at any time step, form an anchor group;
A^S = z-score (n-1) of the discounted return G over that group, 0 for a group of one.
A = A^E + ω·A^S on both spans of the step. `mode: mean_norm` drops the std in both terms.
"""

from __future__ import annotations

from .registry import Method, Param, register
from .stats import EPS, mean, std
from .steps import RETURN_PARAMS, returns, step_rewards


def _norm(values: list[float], remove_std: bool, singleton_is_identity: bool) -> list[float]:
    if len(values) == 1:
        return [values[0]] if singleton_is_identity else [0.0]
    m = mean(values)
    if remove_std:
        return [v - m for v in values]
    s = std(values, bessel=True)
    return [(v - m) / (s + EPS) for v in values]


def gigpo(group: dict, gamma: float, omega: float, mode: str, step_reward: str) -> dict[str, list[dict]]:
    remove_std = mode == "mean_norm"
    rows = [(t["id"], k) for t in group["trajectories"] for k in range(len(t["steps"]))]
    final = {t["id"]: float(t["final_reward"]) for t in group["trajectories"]}
    episode = dict(zip(rows, _norm([final[i] for i, _ in rows], remove_std, singleton_is_identity=True)))

    g = {}
    anchors: dict[str, list[tuple[str, int]]] = {}
    for t in group["trajectories"]:
        for k, value in enumerate(returns(step_rewards(t, step_reward), gamma)):
            g[(t["id"], k)] = value
            anchors.setdefault(str(t["steps"][k]["state"]), []).append((t["id"], k))
    step_adv = {}
    for members in anchors.values():
        step_adv.update(zip(members, _norm([g[m] for m in members], remove_std, singleton_is_identity=False)))

    out = {}
    for t in group["trajectories"]:
        out[t["id"]] = []
        for k in range(len(t["steps"])):
            a = episode[(t["id"], k)] + omega * step_adv[(t["id"], k)]
            out[t["id"]].append({"reasoning": a, "summary": a})
    return out


register(
    Method(
        "gigpo",
        "GiGPO",
        rollout="independent",
        credit=gigpo,
        params={
            **RETURN_PARAMS,
            "omega": Param({"type": "number", "default": 1.0}, doc="weight of the step advantage"),
            "mode": Param({"enum": ["std_norm", "mean_norm"], "default": "std_norm"}, doc="mean_norm drops the std"),
        },
    )
)
