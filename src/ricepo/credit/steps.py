"""Step rows shared by GiGPO and HGPO: per-step rewards and discounted returns."""

from __future__ import annotations

from .registry import Param

# The settings of the step return, shared by both methods.
RETURN_PARAMS = {
    "gamma": Param({"type": "number", "minimum": 0, "maximum": 1, "default": 0.95}, doc="discount of the step return G"),
    "step_reward": Param(
        {"enum": ["final_only", "local"], "default": "final_only"}, doc="final_only: R at the last step; local: each step's retrieval reward"
    ),
}


def step_rewards(traj: dict, step_reward: str) -> list[float]:
    """`final_only`: R at the last step, 0 before; `local`: each step's r_loc."""
    steps = traj["steps"]
    if step_reward == "local":
        return [float(s["local_reward"]) for s in steps]
    if step_reward != "final_only":
        raise ValueError(f"step_reward must be final_only or local, not {step_reward!r}")
    return [0.0] * (len(steps) - 1) + [float(traj["final_reward"])] if steps else []


def returns(rewards: list[float], gamma: float) -> list[float]:
    """G_t = Σ_k γ^k r_{t+k}."""
    out, acc = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out
