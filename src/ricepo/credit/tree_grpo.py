"""Tree-GRPO (Ji et al., "Tree Search for LLM Agent Reinforcement Learning"; AMAP-ML/Tree-GRPO).

Each trajectory is a root-to-leaf path of one of the query's trees (field `tree`). A_leaf =
z-score (n-1) of R over all leaves of the query (a lone leaf: mean 0, std 1, as GRPO) + z-score
(n-1) of R over the leaves of its own tree (our choice: a tree with one leaf adds 0, since there
is nothing within the tree to compare with). Every span of the leaf gets A_leaf.
"""

from __future__ import annotations

from .grpo import trajectory_advantages
from .registry import Method, Param, register
from .stats import EPS, mean, std


def tree_grpo(group: dict) -> dict[str, list[dict]]:
    inter = trajectory_advantages(group, norm_by_std=True)
    trees: dict = {}
    for t in group["trajectories"]:
        trees.setdefault(t.get("tree", 0), []).append(t)
    intra = {}
    for leaves in trees.values():
        rewards = [float(t["final_reward"]) for t in leaves]
        if len(leaves) == 1:
            intra[leaves[0]["id"]] = 0.0
            continue
        m, s = mean(rewards), std(rewards, bessel=True)
        intra.update({t["id"]: (r - m) / (s + EPS) for t, r in zip(leaves, rewards)})
    return {
        t["id"]: [{"reasoning": inter[t["id"]] + intra[t["id"]], "summary": inter[t["id"]] + intra[t["id"]]} for _ in t["steps"]]
        for t in group["trajectories"]
    }


register(
    Method(
        "tree_grpo",
        "Tree-GRPO",
        rollout="trees",
        credit=tree_grpo,
        params={
            "trees": Param({"type": "integer", "minimum": 1, "default": 2}, "rollout", "M trees per query"),
            "expansions": Param({"type": "integer", "minimum": 1, "default": 2}, "rollout", "N expansions per tree and round"),
            "rounds": Param({"type": "integer", "minimum": 1, "default": 1}, "rollout", "L expansion rounds"),
            "leaves": Param({"type": "integer", "minimum": 1, "default": 3}, "rollout", "K leaves kept per tree"),
        },
    )
)
