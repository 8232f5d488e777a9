"""How a policy's summaries relate to the query: the two ways a summary can raise the reward without
searching better (restating the query; writing what the retriever ignores), measured on the test
evaluation (`agent_eval`) and on the held-out validation set while training (`train.validation`);
and how a training step's searches compare with the query alone's (`versus_alone`)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
_SAME = 1e-9  # two NDCG@10s closer than this are the same score (pytrec_eval's float rounding)


def query_overlap(summary: str, query: str) -> float:
    """The share of the summary's distinct words (lowercased letters and digits) that occur in the
    query: 1.0 for a summary that only restates it."""
    words = set(_WORD.findall(summary.lower()))
    return len(words & set(_WORD.findall(query.lower()))) / len(words) if words else 0.0


def summary_overlaps(query: str, steps: list) -> list[float]:
    """`query_overlap` of each of a trajectory's steps that wrote a summary."""
    return [query_overlap(s.summary, query) for s in steps if s.summary]


def overlap_figures(overlaps: list[float], restate_share: float) -> dict:
    """How the policy's summaries relate to the query, from their overlaps (`summary_overlaps`):
    the mean word overlap and the share that restate it (overlap >= `restate_share`)."""
    return {
        "summary_query_overlap": sum(overlaps) / len(overlaps) if overlaps else None,
        "summary_restate_rate": sum(o >= restate_share for o in overlaps) / len(overlaps) if overlaps else None,
        "summaries": len(overlaps),
    }


def summary_figures(steps_by_query: dict[str, tuple[str, list]], restate_share: float) -> dict:
    """`overlap_figures` over every step with a summary of {query id: (query, steps)}."""
    return overlap_figures([o for query, steps in steps_by_query.values() for o in summary_overlaps(query, steps)], restate_share)


def same_top(final: list, alone: list, depth: int = 10) -> bool:
    """Whether a final search ranks the same top `depth` documents, in the same order, as the query
    alone (rankings as (doc id, score) lists)."""
    return [d for d, _ in final[:depth]] == [d for d, _ in alone[:depth]]


def unchanged_rate(finals: dict[str, list], alone: dict[str, list], depth: int = 10) -> float | None:
    """The share of queries whose final search ranks the same top `depth` as the query alone: where
    the policy's summaries changed nothing. A policy can raise its reward up to the query alone's
    by writing summaries the retriever ignores (words outside the index's vocabulary) or that only
    restate the query; this counts the first kind too."""
    same = [same_top(finals[q], alone[q], depth) for q in finals]
    return sum(same) / len(same) if same else None


def above(score: float, other: float) -> bool:
    """Whether NDCG@10 `score` is above `other` by more than float rounding."""
    return score > other + _SAME


def shares_versus_alone(final: dict[str, float], alone: dict[str, float]) -> dict:
    """The shares of queries whose final search scores above and below the query alone's, from
    their NDCG@10s by query (None for no queries)."""
    n = len(final)
    return {
        "better_than_alone_rate": sum(above(v, alone[q]) for q, v in final.items()) / n if n else None,
        "worse_than_alone_rate": sum(above(alone[q], v) for q, v in final.items()) / n if n else None,
    }


def versus_alone(sampled: list[tuple[str, float, float]], trained: list[tuple[str, float]]) -> dict:
    """How one training step's searches compare with the query alone's, as counts (summed over
    processes; the trainer turns them into rates). `sampled`: (query group, final NDCG@10, the query
    alone's NDCG@10) of every trajectory the step sampled; `trained`: (query group, reward) of every
    row that enters the loss. A policy that learns to search better raises the share of searches
    above the query alone; one that learns a hollow gain raises the share equal to it (the rest).

    - `searches_better`, `searches_worse`: trajectories whose final search scores above / below the
      query alone's;
    - `groups_with_better`: queries where at least one of the policy's own samples searches better
      than the query alone (something better for the credit to push toward);
    - `groups_with_signal`: queries whose trained rows' rewards are not all equal (GRPO's group
      advantages are zero on the others, so they teach it nothing);
    - `groups`: the step's queries."""
    better: dict[str, bool] = {}
    counts = {"searches_better": 0, "searches_worse": 0}
    for group, final, alone in sampled:
        counts["searches_better"] += above(final, alone)
        counts["searches_worse"] += above(alone, final)
        better[group] = better.get(group, False) or above(final, alone)
    rewards: dict[str, list[float]] = {}
    for group, reward in trained:
        rewards.setdefault(group, []).append(reward)
    return counts | {
        "groups": len(better),
        "groups_with_better": sum(better.values()),
        "groups_with_signal": sum(above(max(r), min(r)) for r in rewards.values()),
    }
