"""`ricepo data inspect`: counts of what a source holds (local folders today; the Hub in issue 3)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import RicepoError
from .canonical import iter_jsonl, read_corpus, read_qrels, read_queries

HUB_IDS = {"bright": "xlangai/BRIGHT", "beir": "BeIR/<dataset>", "reasonir": "reasonir/reasonir-data"}


def inspect_source(source: str, benchmark: str, task: str | None = None) -> dict:
    if source == "hub":
        dataset = HUB_IDS[benchmark]
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise RicepoError(f"{benchmark} ({dataset}): HF_HUB_OFFLINE=1, the Hub cannot be reached; "
                              f"download it where the network exists and pass its local folder instead of 'hub'")
        raise RicepoError(f"{benchmark} ({dataset}): reading from the Hub is not implemented yet (planned: issue 3); "
                          f"pass a local folder")
    path = Path(source)
    if path.is_file() and benchmark == "bright":
        n = sum(1 for _ in iter_jsonl(path))
        return {"queries": {"test": n}}
    if not path.is_dir():
        raise RicepoError(f"{benchmark}: source {path} is neither a folder nor 'hub'")
    out: dict = {}
    if (path / "corpus.jsonl").exists():
        out["docs"] = len(read_corpus(path / "corpus.jsonl"))
    qrels = {p.stem: read_qrels(p) for p in sorted((path / "qrels").glob("*.tsv"))} if (path / "qrels").is_dir() else {}
    if (path / "queries.jsonl").exists():
        queries = read_queries(path / "queries.jsonl")
        out["queries"] = {s: sum(1 for q in r if q in queries) for s, r in qrels.items()} or {"all": len(queries)}
    if qrels:
        out["qrels"] = {s: sum(len(d) for d in r.values()) for s, r in qrels.items()}
    return out
