"""NDCG@10 with pytrec_eval doing the arithmetic: the one implementation behind training rewards
and evaluation (TREC run and excluded-id files: data/trec.py).

Conventions (stated once, used by training rewards and by evaluation alike):
- a run is {query_id: {doc_id: score}}; trec_eval orders by score, ties by doc id, as always;
- before scoring, a query's excluded documents (BRIGHT) and its own id are removed
  (`data.trec.without_excluded`);
- the mean is over every query that has judgments, a judged query missing from the run
  scoring 0 (trec_eval's -c), so an agent cannot gain by skipping hard queries.
"""

from __future__ import annotations

import math

import pytrec_eval

from .data.trec import without_excluded

METRIC = "ndcg_cut_10"


def ndcg10_per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """{query id: NDCG@10} for every judged query; a judged query with no ranking scores 0."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    scored = evaluator.evaluate({q: d for q, d in run.items() if q in qrels and d})
    return {q: float(scored[q][METRIC]) if q in scored else 0.0 for q in qrels}


def ndcg10_single(qrels: dict[str, int], ranking: list[tuple[str, float]]) -> float:
    """NDCG@10 of one ranked list (already filtered) against one query's judgments."""
    if not qrels:
        return 0.0
    return ndcg10_per_query({"q": qrels}, {"q": {d: float(s) for d, s in ranking}})["q"]


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], excluded: dict[str, set[str]] | None = None) -> dict:
    """{"ndcg_cut_10": mean, "per_query": {qid: value}, "n_queries": n}, excluded documents removed."""
    run = {qid: dict(without_excluded(qid, docs.items(), excluded or {})) for qid, docs in run.items()}
    per_query = ndcg10_per_query(qrels, run)
    mean = sum(per_query.values()) / len(per_query) if per_query else math.nan
    return {METRIC: mean, "per_query": per_query, "n_queries": len(per_query)}
