"""NDCG@10 with pytrec_eval doing the arithmetic, and TREC run files.

Conventions (stated once, used by training rewards and by evaluation alike):
- a run is {query_id: {doc_id: score}}; trec_eval orders by score, ties by doc id, as always;
- before scoring, a query's excluded documents (BRIGHT) and its own id are removed;
- the mean is over every query that has judgments, a judged query missing from the run
  scoring 0 (trec_eval's -c), so an agent cannot gain by skipping hard queries.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytrec_eval

from ..atomic import atomic_file
from ..errors import RicepoError

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
        drop = excluded.get(qid, set()) | {qid}
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


def write_run(path: str | Path, run: dict[str, list[tuple[str, float]]], tag: str) -> None:
    """TREC run: `qid Q0 docid rank score tag`, ranks from 1 in the given order."""
    with atomic_file(path) as f:
        for qid, ranking in run.items():
            for rank, (doc_id, score) in enumerate(ranking, 1):
                f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    path = Path(path)
    if not path.exists():
        raise RicepoError(f"{path}: run file not found")
    run: dict[str, dict[str, float]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise RicepoError(f"{path}:{lineno}: a TREC run line has 6 columns, got {len(parts)}")
            try:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
            except ValueError:
                raise RicepoError(f"{path}:{lineno}: score {parts[4]!r} is not a number") from None
    return run


def read_excluded(path: str | Path) -> dict[str, set[str]]:
    """EXCL.tsv: one `query-id<TAB>corpus-id` pair a line (a header line is allowed)."""
    path = Path(path)
    if not path.exists():
        raise RicepoError(f"{path}: excluded-ids file not found")
    out: dict[str, set[str]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip() or (lineno == 1 and parts[0] in ("query-id", "query_id", "qid")):
                continue
            if len(parts) != 2:
                raise RicepoError(f"{path}:{lineno}: expected `query-id<TAB>corpus-id`")
            out.setdefault(parts[0], set()).add(parts[1])
    return out


def write_excluded(path: str | Path, excluded: dict[str, set[str]]) -> None:
    with atomic_file(path) as f:
        f.write("query-id\tcorpus-id\n")
        for qid in sorted(excluded):
            for doc_id in sorted(excluded[qid]):
                f.write(f"{qid}\t{doc_id}\n")
