"""Build the agent's task environments (retriever + judgments) from split folders and indexes."""
from __future__ import annotations

from pathlib import Path

from .data.canonical import Dataset
from .errors import RicepoError
from .retrieval.bm25 import BM25Index
from .retrieval.dense import DenseIndex, HybridRetriever, settings_for
from .retrieval.retriever import TaskEnvironment

BM25_ONLY = {"name": "bm25"}


def dense_weight(retriever: dict, task: str) -> float:
    weights = retriever.get("dense_weight", {})
    return float(weights.get(task, weights.get("default", 0.5)))


def index_parts(retriever: dict) -> list[str]:
    """The folders under a task's index root that its retriever reads: `bm25`, `dense/<model>`."""
    name = retriever.get("name", "bm25")
    return ((["bm25"] if name in ("bm25", "hybrid") else [])
            + ([f"dense/{retriever.get('dense_model')}"] if name in ("dense", "hybrid") else []))


def make_retriever(index_root: Path, task: str, retriever: dict, dense_models: dict):
    """The task's retriever as configured: BM25 (`index_root/bm25`), dense
    (`index_root/dense/<model>`, checked against the configured encoder) or their hybrid."""
    name = retriever.get("name", "bm25")
    bm25 = BM25Index.load(index_root / "bm25") if name in ("bm25", "hybrid") else None
    if name == "bm25":
        return bm25
    model = retriever.get("dense_model")
    if model not in dense_models:
        raise RicepoError(f"retriever {name!r} of {task}: dense model {model!r} is not in dense_models "
                          f"({', '.join(sorted(dense_models)) or 'none defined'})")
    entry = dict(dense_models[model])
    dense = DenseIndex.load(index_root / "dense" / model, expect=settings_for(entry.pop("model"), **entry))
    return dense if name == "dense" else HybridRetriever(bm25, dense, dense_weight(retriever, task))


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
    ds = Dataset(split_dir)
    env = TaskEnvironment(name=task, index=make_retriever(Path(index_root), task, retriever or BM25_ONLY, dense_models or {}),
                          corpus=ds.corpus, qrels=ds.qrels.get(split, {}), excluded=ds.excluded)
    return env, ds.split_queries(split)
