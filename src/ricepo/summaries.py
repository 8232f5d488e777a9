"""How a policy's summaries relate to the query: the two ways a summary can raise the reward without
searching better (restating the query; writing what the retriever ignores), measured on the test
evaluation (`agent_eval`) and on the held-out validation set while training (`train.validation`)."""
from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")


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
    return {"summary_query_overlap": sum(overlaps) / len(overlaps) if overlaps else None,
            "summary_restate_rate": sum(o >= restate_share for o in overlaps) / len(overlaps) if overlaps else None,
            "summaries": len(overlaps)}


def summary_figures(steps_by_query: dict[str, tuple[str, list]], restate_share: float) -> dict:
    """`overlap_figures` over every step with a summary of {query id: (query, steps)}."""
    return overlap_figures([o for query, steps in steps_by_query.values() for o in summary_overlaps(query, steps)],
                           restate_share)


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
