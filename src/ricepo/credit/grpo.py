"""GRPO (Shao et al. 2024, DeepSeekMath), as verl's `compute_grpo_outcome_advantage`.

A_i = (R_i - mean_group R) / (std_group R + 1e-6), std with n-1 (torch.std's default, as verl).
A group of one has mean 0 and std 1 in verl, so its advantage is R itself. `norm_by_std=False` is
Dr. GRPO (A_i = R_i - mean). Every span (reasoning and summary) of every step of trajectory i
receives A_i.
"""

from __future__ import annotations

from .registry import Method, Param, register
from .stats import EPS, mean, std


def group_reward_stats(group: dict) -> tuple[float, float]:
    """(mean, n-1 std) of the group's final rewards; (0, 1) for a group of one, as verl."""
    rewards = [float(t["final_reward"]) for t in group["trajectories"]]
    if len(rewards) == 1:
        return 0.0, 1.0
    return mean(rewards), std(rewards, bessel=True)


def trajectory_advantages(group: dict, norm_by_std: bool) -> dict[str, float]:
    m, s = group_reward_stats(group)
    denom = s + EPS if norm_by_std else 1.0
    return {t["id"]: (float(t["final_reward"]) - m) / denom for t in group["trajectories"]}


def grpo(group: dict, norm_by_std: bool) -> dict[str, list[dict]]:
    adv = trajectory_advantages(group, norm_by_std)
    return {t["id"]: [{"reasoning": adv[t["id"]], "summary": adv[t["id"]]} for _ in t["steps"]] for t in group["trajectories"]}


NORM_BY_STD = Param({"type": "boolean", "default": True}, doc="false: Dr. GRPO (no division by the std)")
register(Method("grpo", "GRPO", rollout="independent", credit=grpo, params={"norm_by_std": NORM_BY_STD}))

# GRPO given RICE-PO's sampling budget: more trajectories per query instead of branches, so that a
# comparison with RICE-PO separates its credit from its extra samples. The group size that matches
# depends on where anchors fall; the claim that compares the two (config/paper_claims.yaml) checks
# the generated tokens per step measured in both runs' logs.
register(
    Method(
        "grpo_equal_cost",
        "GRPO at RICE-PO's tokens",
        rollout="independent",
        credit=grpo,
        params={
            "norm_by_std": NORM_BY_STD,
            "group_size": Param(
                {"type": "integer", "minimum": 1, "default": 12},
                "rollout",
                "trajectories per query, in place of rollout.group_size: set it so that a step generates as "
                "many tokens as RICE-PO's (default: the paper config's G 8 plus 2 anchors x 3 branches, each "
                "regrowing about 2 of 3 rounds)",
            ),
        },
    )
)
