"""Bring one benchmark task into the canonical layout, from the fixture, a local folder, the Hub
(BRIGHT) or ir_datasets (BEIR).

Output folder (written atomically): corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv as
the source has them, and source.json (where it came from, its revision, the document count and
the published count it was checked against).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import RicepoError
from . import beir, bright, reasonir
from .canonical import Dataset, write_corpus, write_qrels, write_queries
from .fixture import fixture_pool_sizes, make_fixture
from .hub import download_hub

BRIGHT_HUB = "xlangai/BRIGHT"
REASONIR_HUB = "reasonir/reasonir-data"


def local_hint(benchmark: str) -> str:
    return f"download it where the network exists and set benchmarks.{benchmark}.source: local with benchmarks.{benchmark}.path pointing at the copy"


def bright_root(spec: dict, patterns: list[str]) -> tuple[Path, str]:
    """A folder in BRIGHT's published layout holding `patterns`, and its revision."""
    if spec["source"] == "local":
        return Path(spec["path"]), f"local:{Path(spec['path']).resolve()}"
    return download_hub(BRIGHT_HUB, patterns, local_hint("bright"))


def prepare_reasonir(spec: dict, out_dir: str | Path) -> dict:
    """ReasonIR hq resolved against every BRIGHT corpus (one folder for all BRIGHT tasks)."""
    root, bright_rev = bright_root(spec, ["documents/*"])
    if spec["source"] == "local":
        if not spec.get("reasonir_path"):
            raise RicepoError(
                "config error at benchmarks.bright.reasonir_path: a local BRIGHT source with train "
                "queries needs a local copy of reasonir/reasonir-data (hq)"
            )
        files, rev = reasonir.row_files(Path(spec["reasonir_path"])), f"local:{Path(spec['reasonir_path']).resolve()}"
    else:
        folder, rev = download_hub(REASONIR_HUB, ["hq/*"], local_hint("bright") + " (reasonir_path for ReasonIR)")
        files = reasonir.row_files(folder)
    return reasonir.build(files, root, Path(out_dir), revision=f"{REASONIR_HUB}@{rev}; {BRIGHT_HUB}@{bright_rev}")


def _bright(task: str, spec: dict, reasonir_dir: Path | None) -> tuple[dict, dict, dict, str]:
    setting = spec.get("document_setting", "short")
    config = {"short": "documents", "long": "long_documents"}[setting]
    root, revision = bright_root(spec, [f"examples/{task}-*", f"{config}/{task}-*"])
    corpus, queries, test = bright.load_task(root, task, setting)
    qrels = {"test": test}
    if spec["split_counts"][task]["train"] > 0:
        if reasonir_dir is None:
            raise RicepoError(f"bright/{task}: train queries need the ReasonIR folder (--reasonir)")
        if setting == "long":
            raise RicepoError(f"bright/{task}: ReasonIR positives are short-document ids; train with document_setting: short")
        train_queries, qrels["train"] = reasonir.read_domain(reasonir_dir, task)
        clash = sorted(set(train_queries) & set(queries))
        if clash:
            raise RicepoError(f"bright/{task}: train and test query ids collide: {clash[:3]}")
        queries = {**queries, **train_queries}
    return corpus, queries, qrels, f"{BRIGHT_HUB}@{revision}"


def _source_checksums(folder: Path) -> dict[str, str]:
    from .splits import sha256

    files = [folder / "corpus.jsonl", folder / "queries.jsonl", *sorted((folder / "qrels").glob("*.tsv"))]
    return {str(f.relative_to(folder)): sha256(f) for f in files if f.exists()}


def _beir(task: str, spec: dict) -> tuple[dict, dict, dict, str, dict]:
    if spec["source"] == "ir_datasets":
        return beir.load_ir_datasets(task)
    folder = Path(spec["path"]) / task
    if not folder.is_dir():
        raise RicepoError(
            f"beir/{task}: local folder {folder} not found (benchmarks.beir.path must hold one folder per dataset in BEIR's zip layout)"
        )
    ds = Dataset(folder, splits=beir.SPLITS)
    return (ds.corpus, beir.without_metadata(ds.queries), ds.qrels, f"local:{folder.resolve()}", _source_checksums(folder))


def prepare(benchmark: str, task: str, spec: dict, out_dir: str | Path, reasonir_dir: str | Path | None = None) -> dict:
    """spec: the benchmark's config entry. Writes `out_dir` atomically; returns what source.json holds."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        source = spec["source"]
        known, source_sha = None, {}
        if source == "fixture":
            fx = spec.get("fixture", {})
            counts = spec["split_counts"][task]
            n_train, n_test = fixture_pool_sizes(counts["train"], counts["test"])
            make_fixture(
                tmp,
                benchmark,
                task,
                n_docs=fx.get("docs_per_task", 240),
                n_topics=fx.get("topics", 12),
                n_train=n_train,
                n_test=n_test,
                excluded=task in fx.get("excluded_tasks", []),
                seed=fx.get("seed", 0),
            )
            revision = f"fixture:seed={fx.get('seed', 0)}"
        else:
            if benchmark == "bright":
                corpus, queries, qrels, revision = _bright(task, spec, Path(reasonir_dir) if reasonir_dir else None)
                known = bright.KNOWN_DOCS.get(task)
            else:
                corpus, queries, qrels, revision, source_sha = _beir(task, spec)
                known = beir.KNOWN_DOCS.get(task)
            write_corpus(tmp / "corpus.jsonl", corpus)
            write_queries(tmp / "queries.jsonl", queries)
            for split, split_qrels in qrels.items():
                write_qrels(tmp / "qrels" / f"{split}.tsv", split_qrels)
        ds = Dataset(tmp, splits=beir.SPLITS)
        if known is not None and len(ds.corpus) != known:
            print(f"warning: {benchmark}/{task}: {len(ds.corpus)} documents, the published corpus has {known}", file=sys.stderr)
        info = {
            "benchmark": benchmark,
            "task": task,
            "source": source,
            "revision": revision,
            "docs": len(ds.corpus),
            "known_docs": known,
            "queries": {s: len(q) for s, q in ds.qrels.items()},
            "source_sha256": source_sha,
        }
        (tmp / "source.json").write_text(json.dumps(info, indent=2))
    return info
