"""Bring one benchmark task into the canonical layout, from the fixture, a local folder or the Hub."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import RicepoError
from .canonical import Dataset, write_corpus, write_qrels, write_queries
from .fixture import fixture_pool_sizes, make_fixture


def prepare(benchmark: str, task: str, spec: dict, out_dir: str | Path) -> dict:
    """spec: the benchmark's config entry. Writes `out_dir` atomically; returns counts."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    source = spec.get("source", "hub")
    if source == "fixture":
        fx = spec.get("fixture", {})
        counts = spec["split_counts"][task]
        n_train, n_test = fixture_pool_sizes(counts["train"], counts["test"])
        make_fixture(tmp, benchmark, task, n_docs=fx.get("docs_per_task", 240), n_topics=fx.get("topics", 12),
                     n_train=n_train, n_test=n_test, excluded=task in fx.get("excluded_tasks", []),
                     seed=fx.get("seed", 0))
    elif source == "local":
        folder = Path(spec["path"]) / task
        if not folder.is_dir():
            raise RicepoError(f"{benchmark}/{task}: local folder {folder} not found "
                              f"(benchmarks.{benchmark}.path must hold one folder per task in BEIR layout)")
        ds = Dataset(folder)
        write_corpus(tmp / "corpus.jsonl", ds.corpus)
        write_queries(tmp / "queries.jsonl", ds.queries)
        for split, qrels in ds.qrels.items():
            write_qrels(tmp / "qrels" / f"{split}.tsv", qrels)
    else:
        raise RicepoError(f"{benchmark}/{task}: source 'hub' is not implemented yet (planned: issue 3); "
                          f"set benchmarks.{benchmark}.source to 'local' with a path, or 'fixture'")
    ds = Dataset(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"docs": len(ds.corpus), "queries": {s: len(q) for s, q in ds.qrels.items()}}
