"""`ricepo data inspect`: counts of what a source holds, read with the loaders' own checks.

Sources: `hub` (BRIGHT, ReasonIR), `ir_datasets` (BEIR), a BRIGHT examples file, or a folder in
one of the published layouts (BEIR's zip layout; BEIR topics + TREC qrels; BRIGHT's examples/ +
documents/; ReasonIR hq files). A collection folder, as `benchmarks.<name>.path` names it, takes
`--task`: BRIGHT's holds every task's files, BEIR's one folder per dataset.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RicepoError
from . import beir, bright, reasonir
from .canonical import read_corpus, read_qrels, read_queries
from .hub import download_hub
from .prepare import BRIGHT_HUB, REASONIR_HUB, local_hint


def _bright_counts(root: Path, task: str | None) -> dict:
    if not task:
        raise RicepoError(f"bright: {root} holds all tasks; name one with --task")
    queries, qrels = bright.read_examples(bright.task_file(root, "examples", task), "short")
    out: dict = {"queries": {"test": len(queries)}, "qrels": {"test": sum(len(d) for d in qrels.values())}}
    try:
        out["docs"] = len(bright.read_documents(bright.task_file(root, "documents", task)))
    except RicepoError:
        pass  # an examples-only copy (as ../shared/data) has no documents
    return out


def _beir_datasets(path: Path) -> list[str]:
    """The dataset folders of a BEIR collection folder (benchmarks.beir.path)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir() and ((p / "corpus.jsonl").exists() or any(p.glob("qrels.*.trec"))))


def _beir_folder(path: Path, task: str | None) -> dict:
    datasets = _beir_datasets(path)
    if datasets:
        if not task:
            raise RicepoError(f"beir: {path} holds the datasets {', '.join(datasets)}; name one with --task")
        if task not in datasets:
            raise RicepoError(f"beir: {path} has no dataset {task!r} (it holds {', '.join(datasets)})")
        path = path / task
    if not (path / "corpus.jsonl").exists() and any(path.glob("qrels.*.trec")):
        return beir.topic_counts(path)
    out: dict = {}
    if (path / "corpus.jsonl").exists():
        out["docs"] = len(read_corpus(path / "corpus.jsonl"))
    qrels = {p.stem: read_qrels(p) for p in sorted((path / "qrels").glob("*.tsv"))} if (path / "qrels").is_dir() else {}
    if (path / "queries.jsonl").exists():
        queries = read_queries(path / "queries.jsonl")
        out["queries"] = {s: sum(1 for q in r if q in queries) for s, r in qrels.items()} or {"all": len(queries)}
    if qrels:
        out["qrels"] = {s: sum(len(d) for d in r.values()) for s, r in qrels.items()}
    if not out:
        raise RicepoError(f"beir: {path} holds neither BEIR's zip layout nor topics + qrels")
    return out


def _from_hub(benchmark: str, task: str | None) -> dict:
    if benchmark == "bright":
        if not task:
            raise RicepoError("bright: name a task with --task to inspect the Hub copy")
        root, _ = download_hub(BRIGHT_HUB, [f"examples/{task}-*", f"documents/{task}-*"], local_hint("bright"))
        return _bright_counts(root, task)
    if benchmark == "reasonir":
        folder, _ = download_hub(REASONIR_HUB, ["hq/*"], local_hint("bright") + " (reasonir_path for ReasonIR)")
        return {"rows": sum(1 for f in reasonir.row_files(folder) for _ in bright.read_rows(f, ["query"]))}
    raise RicepoError(f"{benchmark}: not on the Hub; BEIR comes through ir_datasets (source 'ir_datasets')")


def _from_ir_datasets(benchmark: str, task: str | None) -> dict:
    if benchmark != "beir" or not task:
        raise RicepoError("ir_datasets: inspect a BEIR dataset (--benchmark beir --task NAME)")
    corpus, queries, qrels, _, _ = beir.load_ir_datasets(task)
    return {
        "docs": len(corpus),
        "queries": {s: sum(1 for q in r if q in queries) for s, r in qrels.items()},
        "qrels": {s: sum(len(d) for d in r.values()) for s, r in qrels.items()},
    }


def inspect_source(source: str, benchmark: str, task: str | None = None) -> dict:
    if source == "hub":
        return _from_hub(benchmark, task)
    if source == "ir_datasets":
        return _from_ir_datasets(benchmark, task)
    path = Path(source)
    if path.is_file() and benchmark == "bright":
        queries, qrels = bright.read_examples(path, "short")
        return {"queries": {"test": len(queries)}, "qrels": {"test": sum(len(d) for d in qrels.values())}}
    if not path.is_dir():
        raise RicepoError(f"{benchmark}: source {path} is neither a folder, an examples file, 'hub' nor 'ir_datasets'")
    if benchmark == "bright":
        return _bright_counts(path, task)
    if benchmark == "reasonir":
        return {"rows": sum(1 for f in reasonir.row_files(path) for _ in bright.read_rows(f, None))}
    return _beir_folder(path, task)
