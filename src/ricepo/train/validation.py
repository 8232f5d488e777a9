"""Learning you can see: a fixed set of training queries held out and scored greedily while the
policy trains (verl's `test_freq`), so a curve shows it improving on queries it never trains on.

The set is drawn once with a fixed seed from the sorted train queries, so every method and seed
of a configuration holds out the same queries (their curves compare query by query). It is scored
before the first step, every `train.validation_every` steps and after the last, with the agent's
test-time settings (greedy) and the training reward (final NDCG@10 less the format penalty),
beside what tells a better search from a hollow gain: the NDCG alone, the share of steps that wrote
a summary, the share of summaries that restate the query, and the share of queries whose final top
10 is the query alone's (the measures of the test evaluation, `summaries`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..agent.rollout import Agent
from ..errors import RicepoError
from ..retrieval.retriever import TaskEnvironment
from ..summaries import overlap_figures, same_top, shares_versus_alone, summary_overlaps
from .distributed import gather_objects, shard

# The draw's seed: fixed, so the held-out set depends on the train queries alone.
HOLD_OUT_SEED = "ricepo-validation"

Query = tuple[str, str, str]  # (task, query id, text)


def hold_out(queries: list[Query], n: int) -> tuple[list[Query], list[Query]]:
    """(train, validation): `n` queries drawn from `queries` with a fixed seed; both keep the
    order the queries came in."""
    if n == 0:
        return queries, []
    if n >= len(queries):
        raise RicepoError(f"train.validation_queries: {n} held out of {len(queries)} train queries leaves none to train on")
    picked = set(random.Random(HOLD_OUT_SEED).sample(sorted(queries), n))
    return [q for q in queries if q not in picked], [q for q in queries if q in picked]


def due(step: int, steps: int, every: int) -> bool:
    """Whether the validation set is scored after `step` steps (step 0: before training)."""
    return step in (0, steps) or (every > 0 and step % every == 0)


@dataclass
class Validator:
    agent: Agent  # the policy's sampler with test-time (greedy) settings
    envs: dict[str, TaskEnvironment]
    queries: list[Query]
    slots: int  # trajectories in flight (evaluate.slots)
    restate_share: float  # a summary restates the query from this word overlap on (evaluate.restate_overlap)

    def score(self, step: int, rank: int = 0, world: int = 1) -> dict:
        """One scoring: {"step", "reward_mean", "ndcg_mean", "parseable_rate", "unchanged_rate",
        "better_than_alone_rate", "worse_than_alone_rate", "summary_restate_rate", "summary_query_overlap", "rewards" and "ndcg": {"task/query id":
        value}}; each process scores its share and every process gets the whole. The reward is the
        final NDCG@10 less the format penalty; the NDCG, `parseable_rate` (the steps that wrote a
        summary, as the training log's), `summary_restate_rate` (summaries whose words are mostly
        the query's), `unchanged_rate` (queries whose final top 10 is the query alone's) and the
        shares of queries whose final search scores above and below the query alone's tell a
        policy that searches better from one that only learned to write summaries, to stop writing
        them (a step without one searches with the question alone), to restate the query, or to
        write what the retriever ignores."""
        share = shard(self.queries, rank, world)
        jobs = [(f"{task}/{qid}", task, qid, text) for task, qid, text in share]
        alone = self._alone(share)
        generator = torch.Generator(device=self.agent.sampler.device).manual_seed(0)  # greedy draws nothing
        mine = {
            t.id: (
                t.final_reward,
                t.steps[-1].local_reward,
                sum(s.parseable for s in t.steps),
                len(t.steps),
                same_top(t.final_ranking, alone[t.id]),
                summary_overlaps(t.query, t.steps),
                self.envs[t.task].score(t.query_id, alone[t.id]),
            )
            for t in self.agent.stream(jobs, self.envs, generator, self.slots)
        }
        scored = {k: v for part in gather_objects(mine) for k, v in part.items()}
        keys = [f"{task}/{qid}" for task, qid, _ in self.queries]
        rewards, ndcg = {k: scored[k][0] for k in keys}, {k: scored[k][1] for k in keys}
        summaries = overlap_figures([o for k in keys for o in scored[k][5]], self.restate_share)
        return {
            "step": step,
            "reward_mean": sum(rewards.values()) / len(keys),
            "ndcg_mean": sum(ndcg.values()) / len(keys),
            "parseable_rate": sum(scored[k][2] for k in keys) / max(1, sum(scored[k][3] for k in keys)),
            "unchanged_rate": sum(scored[k][4] for k in keys) / len(keys),
            **shares_versus_alone(ndcg, {k: scored[k][6] for k in keys}),
            "summary_restate_rate": summaries["summary_restate_rate"],
            "summary_query_overlap": summaries["summary_query_overlap"],
            "rewards": rewards,
            "ndcg": ndcg,
        }

    def _alone(self, queries: list[Query]) -> dict[str, list]:
        """The query alone's ranking for each query, by "task/query id" (after the first scoring
        the retriever's cache answers these)."""
        out = {}
        for task, env in self.envs.items():
            items = [(qid, text) for t, qid, text in queries if t == task]
            if items:
                out |= {f"{task}/{qid}": ranking for (qid, _), ranking in zip(items, env.rankings_for(items))}
        return out
