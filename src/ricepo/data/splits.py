"""The paper's train/test splits (appendix A.1), seeded, stable across machines, with a manifest.

Test takes every judged test query and must match the configured count exactly. Train samples
the configured count from the judged queries of the source's `train_from` split (train, or dev
where a dataset publishes no train qrels): queries are ordered by
sha256("{seed}:{benchmark}/{task}:{query id}") and the first N kept, which gives the same
sample on every machine and Python version. A source that holds fewer queries than the config
asks for is refused with the shortfall named.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import RicepoError
from .canonical import Dataset, write_qrels, write_queries
from .trec import write_excluded


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_sample(ids: list[str], n: int, seed: int, scope: str) -> list[str]:
    key = lambda q: hashlib.sha256(f"{seed}:{scope}:{q}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(ids, key=key)[:n], key=ids.index)


def build_split(
    dataset_dir: str | Path, out_dir: str | Path, *, benchmark: str, task: str, counts: dict[str, int], seed: int, train_from: str = "train"
) -> dict:
    ds = Dataset(dataset_dir, splits=tuple(dict.fromkeys((train_from, "test"))))
    scope = f"{benchmark}/{task}"
    source = {"train": train_from, "test": "test"}
    chosen: dict[str, list[str]] = {}
    for split in ("train", "test"):
        want = counts[split]
        pool = list(ds.qrels.get(source[split], {}))
        if split == "test" and len(pool) != want:
            short = f"short by {want - len(pool)}" if len(pool) < want else f"{len(pool) - want} more"
            raise RicepoError(
                f"split {split} of {scope}: config wants {want} queries, the source has "
                f"{len(pool)} ({short}); fix benchmarks.{benchmark}.split_counts.{task}.{split}"
            )
        if len(pool) < want:
            raise RicepoError(
                f"split {split} of {scope}: config wants {want} queries, the source's "
                f"{source[split]} split has {len(pool)} (short by {want - len(pool)})"
            )
        chosen[split] = stable_sample(pool, want, seed, scope) if split == "train" else pool

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        keep = set(chosen["train"]) | set(chosen["test"])
        write_queries(tmp / "queries.jsonl", {q: v for q, v in ds.queries.items() if q in keep})
        for split, ids in chosen.items():
            write_qrels(tmp / "qrels" / f"{split}.tsv", {q: ds.qrels[source[split]][q] for q in ids})
        write_excluded(tmp / "excluded.tsv", {q: ids for q, ids in ds.excluded.items() if q in keep})
        os.symlink(os.path.relpath(Path(dataset_dir).resolve() / "corpus.jsonl", tmp.resolve()), tmp / "corpus.jsonl")
        files = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv", "excluded.tsv"]
        origin = json.loads((Path(dataset_dir) / "source.json").read_text()) if (Path(dataset_dir) / "source.json").exists() else {}
        manifest = {
            "benchmark": benchmark,
            "task": task,
            "seed": seed,
            "source": str(dataset_dir),
            "source_revision": origin.get("revision"),
            "source_sha256": origin.get("source_sha256", {}),
            "train_from": train_from,
            "counts": {s: len(ids) for s, ids in chosen.items()},
            "judgments": {s: sum(len(ds.qrels[source[s]][q]) for q in ids) for s, ids in chosen.items()},
            "docs": len(ds.corpus),
            "sha256": {f: sha256(tmp / f) for f in files},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
