"""Build the agent's task environments (retriever + judgments) from split folders and indexes."""
from __future__ import annotations

from pathlib import Path

from .data.canonical import Dataset
from .errors import RicepoError
from .retrieval.bm25 import BM25Index
from .retrieval.retriever import TaskEnvironment


def require_bm25(spec: dict) -> None:
    """Only BM25 backs the agent today: refuse, rather than silently substitute, another retriever."""
    name = spec.get("retriever", {}).get("name", "bm25")
    if name != "bm25":
        raise RicepoError(f"retriever {name!r} is not implemented yet (dense and hybrid: issue 4); "
                          f"set the benchmark's retriever.name to bm25")


def parse_task_args(items: list[str]) -> dict[str, tuple[Path, Path]]:
    """`TASK=SPLIT_DIR:INDEX_DIR` items -> {task: (split dir, index dir)}."""
    out = {}
    for item in items:
        try:
            task, dirs = item.split("=", 1)
            split_dir, index_dir = dirs.split(":", 1)
        except ValueError:
            raise RicepoError(f"--task {item!r}: expected TASK=SPLIT_DIR:INDEX_DIR") from None
        out[task] = (Path(split_dir), Path(index_dir))
    return out


def load_environment(task: str, split_dir: Path, index_dir: Path, split: str) -> tuple[TaskEnvironment, dict]:
    ds = Dataset(split_dir)
    env = TaskEnvironment(name=task, index=BM25Index.load(index_dir), corpus=ds.corpus,
                          qrels=ds.qrels.get(split, {}), excluded=ds.excluded)
    return env, ds.split_queries(split)
