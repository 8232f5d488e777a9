"""RLOO, REINFORCE leave-one-out (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for
free!"; Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs").

A_i = R_i - mean_{j≠i} R_j over the G trajectories of the query's group, i.e.
G/(G-1)·(R_i - mean R). A group of one has no other trajectory to compare with: A = 0 (our
choice). Every span (reasoning and summary) of every step of trajectory i receives A_i.
"""

from __future__ import annotations

from .registry import Method, register


def rloo(group: dict) -> dict[str, list[dict]]:
    rewards = {t["id"]: float(t["final_reward"]) for t in group["trajectories"]}
    total, n = sum(rewards.values()), len(rewards)
    adv = {i: (r - (total - r) / (n - 1)) if n > 1 else 0.0 for i, r in rewards.items()}
    return {t["id"]: [{"reasoning": adv[t["id"]], "summary": adv[t["id"]]} for _ in t["steps"]] for t in group["trajectories"]}


register(Method("rloo", "RLOO", rollout="independent", credit=rloo))
