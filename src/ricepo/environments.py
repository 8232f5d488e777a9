"""The retriever of a task, built in one place, and the agent's task environments.

A task's indexes live under one root: `bm25/` and `dense/<model>/` (`RetrieverSettings.parts`).
Training, evaluation, `ricepo index` and `ricepo retrieve` resolve a `RetrieverSettings` once from
the config and open retrievers through `make_retriever`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import retriever_settings
from .data.canonical import Dataset
from .errors import RicepoError
from .retrieval.bm25 import BM25Index
from .retrieval.dense import DenseIndex, EncoderSettings, HybridRetriever, settings_for
from .retrieval.retriever import TaskEnvironment


@dataclass(frozen=True)
class RetrieverSettings:
    """A benchmark's retriever, resolved once where a job starts (the schema's defaults filled,
    its dense model looked up in `dense_models`) and passed down to everything that opens it."""

    name: str = "bm25"  # bm25 | dense | hybrid
    k1: float = 0.9  # BM25 (the schema's defaults; `resolve` fills them from it)
    b: float = 0.4
    stemmer: str = "english"
    dense_model: str | None = None  # a `dense_models` key (dense, hybrid)
    dense_entry: dict = field(default_factory=dict)  # that key's `dense_models` entry
    dense_weights: dict = field(default_factory=dict)  # hybrid: task -> weight of the dense list, and "default"

    @classmethod
    def resolve(cls, retriever: dict | None = None, dense_models: dict | None = None) -> RetrieverSettings:
        """From a benchmark's `retriever` entry (None: BM25 with the schema's defaults)."""
        r = retriever_settings(retriever)
        entry = {}
        if r["name"] in ("dense", "hybrid"):
            if r["dense_model"] not in (dense_models or {}):
                raise RicepoError(
                    f"retriever {r['name']!r}: dense model {r['dense_model']!r} is not in dense_models "
                    f"({', '.join(sorted(dense_models or {})) or 'none defined'})"
                )
            entry = dict(dense_models[r["dense_model"]])
        return cls(
            name=r["name"],
            k1=float(r["k1"]),
            b=float(r["b"]),
            stemmer=r["stemmer"],
            dense_model=r["dense_model"],
            dense_entry=entry,
            dense_weights=dict(r["dense_weight"]),
        )

    @property
    def parts(self) -> list[str]:
        """The folders under a task's index root that this retriever reads: `bm25`, `dense/<model>`."""
        return (["bm25"] if self.name in ("bm25", "hybrid") else []) + ([f"dense/{self.dense_model}"] if self.name in ("dense", "hybrid") else [])

    @property
    def tag(self) -> str:
        """The tag a TREC run of this retriever carries (its settings, briefly)."""
        bm25 = f"bm25-k1={self.k1}-b={self.b}-{self.stemmer}"
        dense = f"dense-{self.dense_model}"
        return {"bm25": bm25, "dense": dense, "hybrid": f"hybrid-{bm25}-{dense}"}[self.name]

    def dense_weight(self, task: str) -> float:
        return float(self.dense_weights.get(task, self.dense_weights["default"]))

    def encoder(self) -> EncoderSettings:
        """The dense model's encoder settings (read from its folder where it has a sentence-transformers config)."""
        entry = dict(self.dense_entry)
        return settings_for(entry.pop("model"), **entry)


def build_index(corpus: dict[str, dict], part: str, settings: RetrieverSettings, out: Path) -> dict:
    """Build and save one index part (`bm25` or `dense`) of a corpus at `out`; what was built."""
    if part == "dense":
        encoder = settings.encoder()
        DenseIndex.build(corpus, encoder).save(out)
        return {"docs": len(corpus), "dense_model": encoder.model}
    BM25Index.build(corpus, settings.k1, settings.b, settings.stemmer).save(out)
    return {"docs": len(corpus), "k1": settings.k1, "b": settings.b, "stemmer": settings.stemmer}


def make_retriever(index_root: Path, task: str, settings: RetrieverSettings, corpus: dict[str, dict] | None = None):
    """The task's retriever as configured: BM25 (`index_root/bm25`), dense (`index_root/dense/<model>`,
    checked against the configured encoder) or their hybrid. Given the corpus, a part whose index is
    missing is built and saved there first; without it, a missing index is an error."""
    index_root = Path(index_root)
    for part, folder in (("bm25", "bm25"), ("dense", f"dense/{settings.dense_model}")):
        if corpus is not None and folder in settings.parts and not (index_root / folder).exists():
            build_index(corpus, part, settings, index_root / folder)
    bm25 = _checked_bm25(index_root / "bm25", settings) if settings.name in ("bm25", "hybrid") else None
    if settings.name == "bm25":
        return bm25
    dense = DenseIndex.load(index_root / "dense" / settings.dense_model, expect=settings.encoder())
    return dense if settings.name == "dense" else HybridRetriever(bm25, dense, settings.dense_weight(task))


def _checked_bm25(folder: Path, settings: RetrieverSettings) -> BM25Index:
    index = BM25Index.load(folder)
    built = {"k1": float(index.model.k1), "b": float(index.model.b), "stemmer": index.stemmer}
    wanted = {"k1": settings.k1, "b": settings.b, "stemmer": settings.stemmer}
    if built != wanted:
        raise RicepoError(f"{folder}: BM25 index built with {built}, not the configured {wanted}; delete it to rebuild")
    return index


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


def load_environment(
    task: str, split_dir: Path, index_root: Path, split: str, settings: RetrieverSettings | None = None
) -> tuple[TaskEnvironment, dict]:
    """A task's environment over its `split` queries, its retriever opened once (default: BM25)."""
    ds = Dataset(split_dir)
    env = TaskEnvironment(
        name=task,
        index=make_retriever(Path(index_root), task, settings or RetrieverSettings.resolve()),
        corpus=ds.corpus,
        qrels=ds.qrels.get(split, {}),
        excluded=ds.excluded,
    )
    return env, ds.split_queries(split)
