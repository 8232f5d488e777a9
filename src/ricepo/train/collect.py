"""What each method rolls out in one training step, and the groups its credit function sees.

Every method uses the same agent, retriever and sampling; they differ in which rows they
generate (docs/methods.md, 3):

A method names its collector (`Method.rollout`, credit/):

- `independent` (grpo, gigpo, hgpo, ...): G trajectories per query (grpo_equal_cost: its own G).
- `trees` (tree_grpo): M trees per query, each one full chain, then L rounds of N expansions from
  points drawn uniformly (with replacement) from {root} ∪ {non-leaf turns} of the tree as it stood
  at the start of the round; the first K leaves of each tree in creation order are kept (our
  choice; with the defaults N·L + 1 = K, all are kept). Each kept leaf is a root-to-leaf row.
- `branches` (ricepo): G trajectories per query, k anchors chosen from them (summary entropy, or
  at random for the random-trigger variant), M - 1 branches from the context before each
  anchor's reasoning, each continued to the maximum depth. Branch rows are trained only with
  `train_branches: true`, and then only from the anchor step on.

A collector returns the rows to train on, their span advantages, and what it cost: every token
sampled (also for discarded leaves and untrained branches) counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from ..agent.rollout import Agent, Trajectory
from ..credit import compute_credit, get_method
from ..credit.ricepo import anchor_credit, select_anchors
from ..retrieval.retriever import TaskEnvironment


@dataclass
class Collected:
    rows: list[Trajectory]  # trajectories that enter the loss
    spans: dict[str, list[dict]]  # row id -> per step {"reasoning": A, "summary": A}
    rollouts: list[Trajectory]  # every row sampled this step (cost), trained or not
    extra: dict = field(default_factory=dict)  # method-specific figures for the step log


@dataclass
class StepContext:
    agent: Agent
    envs: dict[str, TaskEnvironment]
    generator: torch.Generator
    method: str
    credit_params: dict
    group_size: int
    seed: int  # training seed
    step: int  # training step (0-based), so seeded draws differ between steps


def group_for_credit(trajs: list[Trajectory]) -> dict:
    """The CLI's JSON group form of one query's trajectories."""
    return {
        "query_id": trajs[0].query_id,
        "trajectories": [
            {
                "id": t.id,
                "final_reward": t.final_reward,
                "tree": t.tree,
                "steps": [{"state": "|".join(s.state), "local_reward": s.local_reward, "summary_entropy": s.summary_entropy} for s in t.steps],
            }
            for t in trajs
        ],
    }


def _jobs(batch: list[tuple[str, str, str]], copies: int, tag: str = "") -> list[tuple[str, str, str, str]]:
    """Row ids `<batch position>/<task>/<query id>#<tag><copy>`: unique even when a batch holds a
    query twice; the part before '#' names the group."""
    return [(f"{i}/{task}/{qid}#{tag}{c}", task, qid, text) for i, (task, qid, text) in enumerate(batch) for c in range(copies)]


def batch_position(row: Trajectory) -> int:
    """The position in this process's batch of the query a row answers (the id's first part)."""
    return int(row.id.split("/", 1)[0])


def group_of(row: Trajectory) -> str:
    """The query group a row belongs to (its id's part before '#', `_jobs`)."""
    return row.id.split("#")[0]


def _by_query(trajs: list[Trajectory]) -> dict[str, list[Trajectory]]:
    groups: dict[str, list[Trajectory]] = {}
    for t in trajs:
        groups.setdefault(group_of(t), []).append(t)
    return groups


def _credit(ctx: StepContext, group: dict, **overrides) -> dict[str, list[dict]]:
    return compute_credit(ctx.method, group, **{**ctx.credit_params, **overrides})


def independent(ctx: StepContext, batch: list[tuple[str, str, str]], group_size: int | None = None) -> Collected:
    """G trajectories per query: rollout.group_size, or the method's own `group_size`."""
    trajs = ctx.agent.rollout(_jobs(batch, group_size or ctx.group_size), ctx.envs, ctx.generator)
    spans: dict[str, list[dict]] = {}
    for members in _by_query(trajs).values():
        spans.update(_credit(ctx, group_for_credit(members)))
    return Collected(rows=trajs, spans=spans, rollouts=trajs)


def trees(ctx: StepContext, batch: list[tuple[str, str, str]], trees: int, expansions: int, rounds: int, leaves: int) -> Collected:
    chains = ctx.agent.rollout(_jobs(batch, trees, "t"), ctx.envs, ctx.generator)
    forest: dict[tuple[str, int], list[Trajectory]] = {}
    nodes: dict[str, list[str]] = {}  # row id -> id of the tree node of each of its turns
    for i, t in enumerate(chains):
        t.tree = i % trees
        forest.setdefault((group_of(t), t.tree), []).append(t)
        nodes[t.id] = [f"{t.id}:{s}" for s in range(len(t.steps))]
    rng = random.Random(f"{ctx.seed}:{ctx.step}:trees")
    everything = list(chains)
    for r in range(rounds):
        new = []
        for (group, tree), members in forest.items():
            # Expansion points: the root (cut at step 0) or a non-leaf turn d (cut after it, at d + 1);
            # a chain the policy ended early has fewer turns.
            points, seen = [(members[0], 0)], set()
            for t in members:
                for d in range(len(t.steps) - 1):
                    if nodes[t.id][d] not in seen:
                        seen.add(nodes[t.id][d])
                        points.append((t, d + 1))
            for n in range(expansions):
                owner, cut = rng.choice(points)
                leaf = owner.branch(cut, f"{group}#t{tree}.{r * expansions + n + 1}")
                leaf.tree = tree
                new.append((members, leaf, owner, cut))
        ctx.agent.advance([leaf for _, leaf, _, _ in new], ctx.envs, ctx.generator)
        for members, leaf, owner, cut in new:
            nodes[leaf.id] = nodes[owner.id][:cut] + [f"{leaf.id}:{s}" for s in range(cut, len(leaf.steps))]
            members.append(leaf)
            everything.append(leaf)
    kept = [t for members in forest.values() for t in members[:leaves]]
    spans: dict[str, list[dict]] = {}
    for members in _by_query(kept).values():
        spans.update(_credit(ctx, group_for_credit(members)))
    return Collected(rows=kept, spans=spans, rollouts=everything, extra={"leaves_per_query": len(kept) / max(len(batch), 1)})


def branches(ctx: StepContext, batch: list[tuple[str, str, str]], anchors: int, branches: int, trigger: str, train_branches: bool) -> Collected:
    trajs = ctx.agent.rollout(_jobs(batch, ctx.group_size), ctx.envs, ctx.generator)
    draw_seed = ctx.seed * 1_000_003 + ctx.step
    plan = []  # (group key, original, step, branch rows)
    groups = _by_query(trajs)
    for key, members in groups.items():
        by_id = {t.id: t for t in members}
        for tid, step in select_anchors(group_for_credit(members), anchors, trigger, draw_seed):
            orig = by_id[tid]
            rows = [orig.branch(step, f"{tid}@{step}.b{m}", trainable_from=step) for m in range(1, branches)]
            plan.append((key, orig, step, rows))
    grown = [b for *_, rows in plan for b in rows]
    ctx.agent.advance(grown, ctx.envs, ctx.generator)

    group_json = {key: group_for_credit(members) for key, members in groups.items()}
    gates, influence = [], []
    for key, orig, step, rows in plan:
        arms = [{"local_reward": orig.steps[step].local_reward, "final_reward": orig.final_reward}]
        arms += [{"id": b.id, "steps": len(b.steps), "local_reward": b.steps[step].local_reward, "final_reward": b.final_reward} for b in rows]
        anchor = {"trajectory": orig.id, "step": step, "branches": arms}
        group_json[key].setdefault("anchors", []).append(anchor)
        p = ctx.credit_params
        g, _, stats = anchor_credit(anchor, group_json[key]["query_id"], p["rule"], p["tau_I"], p["tau_R"], draw_seed)
        influence.append(stats["influence"])
        if g is not None:
            gates.append(g)
    spans: dict[str, list[dict]] = {}
    for group in group_json.values():
        spans.update(_credit(ctx, group, seed=draw_seed))
    rows = trajs + (grown if train_branches else [])
    extra = {"anchors": len(plan), "branch_rows": len(grown), "anchor_influence_mean": sum(influence) / len(influence) if influence else 0.0}
    if gates:
        extra["gate_open_rate"] = sum(gates) / len(gates)
    return Collected(rows=rows, spans=spans, rollouts=trajs + grown, extra=extra)


def sampled_step_sums(rollouts: list[Trajectory]) -> dict:
    """The step log's per-step sums over every step sampled this training step, each once: a
    branch or a leaf copies its steps before the cut from the row it grew from, and those are
    counted with that row (counting them again would weight RICE-PO's and Tree-GRPO's rates
    toward early steps against GRPO's)."""
    steps = [s for t in rollouts for s in t.steps[t.generated_from :]]
    return {
        "n_steps": len(steps),
        "local_reward_sum": sum(s.local_reward for s in steps),
        "parseable_sum": sum(s.parseable for s in steps),
        "closed_sum": sum(s.closed_think and s.closed_summary for s in steps),
        "eos_sum": sum(s.eos for s in steps),
    }


COLLECTORS = {"independent": independent, "trees": trees, "branches": branches}


def collect(ctx: StepContext, batch: list[tuple[str, str, str]], rollout_params: dict) -> Collected:
    return COLLECTORS[get_method(ctx.method).rollout](ctx, batch, **rollout_params)
