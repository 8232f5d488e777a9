"""NDCG@10 with pytrec_eval doing the arithmetic (TREC run and excluded-id files: data/trec.py).

Conventions (stated once, used by training rewards and by evaluation alike):
- a run is {query_id: {doc_id: score}}; trec_eval orders by score, ties by doc id, as always;
- before scoring, a query's excluded documents (BRIGHT) and its own id are removed;
- the mean is over every query that has judgments, a judged query missing from the run
  scoring 0 (trec_eval's -c), so an agent cannot gain by skipping hard queries.
"""
from __future__ import annotations

import math

import pytrec_eval

from ..data.trec import removed_for


METRIC = "ndcg_cut_10"


def ndcg10_single(qrels: dict[str, int], ranking: list[tuple[str, float]]) -> float:
    """NDCG@10 of one ranked list against one query's judgments."""
    if not qrels or not ranking:
        return 0.0
    evaluator = pytrec_eval.RelevanceEvaluator({"q": qrels}, {"ndcg_cut.10"})
    result = evaluator.evaluate({"q": {d: float(s) for d, s in ranking}})
    return float(result["q"][METRIC]) if "q" in result else 0.0


def filter_run(run: dict[str, dict[str, float]], excluded: dict[str, set[str]]) -> dict[str, dict[str, float]]:
    """Drop each query's excluded documents and its own id."""
    out = {}
    for qid, docs in run.items():
        drop = removed_for(qid, excluded)
        out[qid] = {d: s for d, s in docs.items() if d not in drop}
    return out


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 excluded: dict[str, set[str]] | None = None) -> dict:
    """{"ndcg_cut_10": mean, "per_query": {qid: value}, "n_queries": n}."""
    run = filter_run(run, excluded or {})
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    scored = evaluator.evaluate({q: d for q, d in run.items() if q in qrels and d})
    per_query = {q: float(scored[q][METRIC]) if q in scored else 0.0 for q in qrels}
    mean = sum(per_query.values()) / len(per_query) if per_query else math.nan
    return {METRIC: mean, "per_query": per_query, "n_queries": len(per_query)}
