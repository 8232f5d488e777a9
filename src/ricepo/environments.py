"""The retriever of a task, built in one place, and the agent's task environments.

A task's indexes live under one root: `bm25/` and `dense/<model>/` (`index_parts`). Training,
evaluation, `ricepo index` and `ricepo retrieve` all open retrievers through `make_retriever`.
"""
from __future__ import annotations

from pathlib import Path

from .config import retriever_settings
from .data.canonical import Dataset
from .errors import RicepoError
from .retrieval.bm25 import BM25Index
from .retrieval.dense import DenseIndex, EncoderSettings, HybridRetriever, settings_for
from .retrieval.retriever import TaskEnvironment


def dense_weight(retriever: dict, task: str) -> float:
    weights = retriever["dense_weight"]
    return float(weights.get(task, weights["default"]))


def index_parts(retriever: dict) -> list[str]:
    """The folders under a task's index root that its retriever reads: `bm25`, `dense/<model>`."""
    retriever = retriever_settings(retriever)
    name = retriever["name"]
    return ((["bm25"] if name in ("bm25", "hybrid") else [])
            + ([f"dense/{retriever['dense_model']}"] if name in ("dense", "hybrid") else []))


def encoder_settings(retriever: dict, dense_models: dict, task: str) -> EncoderSettings:
    """The configured encoder of a dense or hybrid retriever (a `dense_models` entry)."""
    model = retriever["dense_model"]
    if model not in dense_models:
        raise RicepoError(f"retriever {retriever['name']!r} of {task}: dense model {model!r} is not in dense_models "
                          f"({', '.join(sorted(dense_models)) or 'none defined'})")
    entry = dict(dense_models[model])
    return settings_for(entry.pop("model"), **entry)


def build_index(corpus: dict[str, dict], part: str, retriever: dict, dense_models: dict, out: Path,
                task: str = "") -> dict:
    """Build and save one index part (`bm25` or `dense`) of a corpus at `out`; what was built."""
    if part == "dense":
        settings = encoder_settings(retriever, dense_models, task)
        DenseIndex.build(corpus, settings).save(out)
        return {"docs": len(corpus), "dense_model": settings.model}
    BM25Index.build(corpus, retriever["k1"], retriever["b"], retriever["stemmer"]).save(out)
    return {"docs": len(corpus), "k1": retriever["k1"], "b": retriever["b"], "stemmer": retriever["stemmer"]}


def make_retriever(index_root: Path, task: str, retriever: dict, dense_models: dict,
                   corpus: dict[str, dict] | None = None):
    """The task's retriever as configured: BM25 (`index_root/bm25`), dense (`index_root/dense/<model>`,
    checked against the configured encoder) or their hybrid. Given the corpus, a part whose index is
    missing is built and saved there first; without it, a missing index is an error."""
    index_root, retriever = Path(index_root), retriever_settings(retriever)
    for part, folder in (("bm25", "bm25"), ("dense", f"dense/{retriever['dense_model']}")):
        if corpus is not None and folder in index_parts(retriever) and not (index_root / folder).exists():
            build_index(corpus, part, retriever, dense_models, index_root / folder, task)
    name = retriever["name"]
    bm25 = _checked_bm25(index_root / "bm25", retriever) if name in ("bm25", "hybrid") else None
    if name == "bm25":
        return bm25
    dense = DenseIndex.load(index_root / "dense" / retriever["dense_model"],
                            expect=encoder_settings(retriever, dense_models, task))
    return dense if name == "dense" else HybridRetriever(bm25, dense, dense_weight(retriever, task))


def _checked_bm25(folder: Path, retriever: dict) -> BM25Index:
    index = BM25Index.load(folder)
    built = {"k1": float(index.model.k1), "b": float(index.model.b), "stemmer": index.stemmer}
    wanted = {"k1": float(retriever["k1"]), "b": float(retriever["b"]), "stemmer": retriever["stemmer"]}
    if built != wanted:
        raise RicepoError(f"{folder}: BM25 index built with {built}, not the configured {wanted}; delete it to rebuild")
    return index


def retriever_tag(retriever: dict) -> str:
    """The tag a TREC run of this retriever carries (its settings, briefly)."""
    retriever = retriever_settings(retriever)
    bm25 = f"bm25-k1={retriever['k1']}-b={retriever['b']}-{retriever['stemmer']}"
    dense = f"dense-{retriever['dense_model']}"
    return {"bm25": bm25, "dense": dense, "hybrid": f"hybrid-{bm25}-{dense}"}[retriever["name"]]


def parse_task_args(items: list[str]) -> dict[str, tuple[Path, Path]]:
    """`TASK=SPLIT_DIR:INDEX_ROOT` items -> {task: (split dir, index root holding bm25/ and dense/)}."""
    out = {}
    for item in items:
        try:
            task, dirs = item.split("=", 1)
            split_dir, index_dir = dirs.split(":", 1)
        except ValueError:
            raise RicepoError(f"--task {item!r}: expected TASK=SPLIT_DIR:INDEX_ROOT") from None
        out[task] = (Path(split_dir), Path(index_dir))
    return out


def load_environment(task: str, split_dir: Path, index_root: Path, split: str, retriever: dict | None = None,
                     dense_models: dict | None = None) -> tuple[TaskEnvironment, dict]:
    """A task's environment over its `split` queries; `retriever` is the benchmark's entry (None: BM25)."""
    ds = Dataset(split_dir)
    env = TaskEnvironment(name=task, index=make_retriever(Path(index_root), task, retriever, dense_models or {}),
                          corpus=ds.corpus, qrels=ds.qrels.get(split, {}), excluded=ds.excluded)
    return env, ds.split_queries(split)
