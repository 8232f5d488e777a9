"""BRIGHT (xlangai/BRIGHT) in its published layout, converted to the canonical format.

The Hub dataset has three configs, one split (file) per task:

    examples/{task}-00000-of-00001.parquet        query, reasoning, id, excluded_ids, gold_ids_long, gold_ids, gold_answer
    documents/{task}-00000-of-00001.parquet       id, content
    long_documents/{task}-00000-of-00001.parquet  id, content   (not for leetcode, aops, theoremqa_*)

A local copy may hold the same files as parquet or as `{task}.jsonl`. Test queries are every
example of the task; their judgments are `gold_ids` (short documents) or `gold_ids_long` (long),
per `benchmarks.bright.document_setting`. `excluded_ids` is kept in each query's metadata with
BRIGHT's "N/A" sentinel dropped, and an excluded id that is also gold is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import RicepoError
from .canonical import iter_jsonl

TASKS = (
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "leetcode",
    "pony",
    "aops",
    "theoremqa_questions",
    "theoremqa_theorems",
)
# Which task a ReasonIR positive belongs to when its id is in two corpora: aops and
# theoremqa_questions share one corpus, and the paper's appendix trains on aops (384 queries),
# never on theoremqa_questions (0).
DOMAIN_PRIORITY = tuple(t for t in TASKS if t != "theoremqa_questions") + ("theoremqa_questions",)
NO_LONG_DOCUMENTS = {"leetcode", "aops", "theoremqa_questions", "theoremqa_theorems"}
# Document counts of the Hub card (../shared/data/README.md), checked as a warning.
KNOWN_DOCS = {
    "biology": 57359,
    "earth_science": 121249,
    "economics": 50220,
    "psychology": 52835,
    "robotics": 61961,
    "stackoverflow": 107081,
    "sustainable_living": 60792,
    "pony": 7894,
    "leetcode": 413932,
    "aops": 188177,
    "theoremqa_questions": 188177,
    "theoremqa_theorems": 23839,
}
EXAMPLE_FIELDS = ("query", "id", "excluded_ids", "gold_ids", "gold_ids_long")


def read_rows(path: Path, columns: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """(line or row number, row) from a .jsonl or .parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=columns)
        yield from enumerate(table.to_pylist(), 1)
    else:
        yield from iter_jsonl(path)


def task_file(root: Path, config: str, task: str) -> Path:
    """The file of one task in a config folder: `{task}.jsonl`, `{task}.parquet` or `{task}-*.parquet`."""
    folder = Path(root) / config
    for pattern in (f"{task}.jsonl", f"{task}.parquet", f"{task}-*.parquet"):
        found = sorted(folder.glob(pattern))
        if len(found) > 1:
            raise RicepoError(
                f"{folder}: several files for task {task!r} ({', '.join(f.name for f in found)}); sharded splits are not expected in BRIGHT"
            )
        if found:
            return found[0]
    raise RicepoError(f"{folder}: no file for BRIGHT task {task!r} (expected {task}.jsonl or {task}-*.parquet)")


def read_documents(path: Path) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    for n, row in read_rows(path):
        doc_id, content = row.get("id"), row.get("content")
        if doc_id is None or content is None:
            raise RicepoError(f"{path}:{n}: a BRIGHT document needs 'id' and 'content'")
        doc_id = str(doc_id)
        if doc_id in corpus:
            raise RicepoError(f"{path}:{n}: duplicate document id {doc_id!r}")
        if not str(content).strip():
            raise RicepoError(f"{path}:{n}: document {doc_id!r} has empty content")
        corpus[doc_id] = {"title": "", "text": str(content)}
    return corpus


def read_examples(path: Path, setting: str) -> tuple[dict[str, dict], dict[str, dict[str, int]]]:
    """(queries, test qrels) of one task's examples file."""
    gold_key = {"short": "gold_ids", "long": "gold_ids_long"}[setting]
    queries: dict[str, dict] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, row in read_rows(path):
        missing = [k for k in EXAMPLE_FIELDS if k not in row]
        if missing:
            raise RicepoError(f"{path}:{n}: BRIGHT example lacks {', '.join(missing)}")
        qid = str(row["id"])
        if qid in queries:
            raise RicepoError(f"{path}:{n}: duplicate example id {qid!r}")
        if not str(row["query"]).strip():
            raise RicepoError(f"{path}:{n}: example {qid!r} has an empty query")
        excluded = [str(x) for x in row["excluded_ids"] or [] if str(x) != "N/A"]
        gold = [str(x) for x in row[gold_key] or []]
        if not gold:
            raise RicepoError(f"{path}:{n}: example {qid!r} has no {gold_key}")
        overlap = sorted(set(gold) & set(excluded))
        if overlap:
            raise RicepoError(f"{path}:{n}: example {qid!r} excludes its own gold document(s) {overlap}")
        queries[qid] = {"text": str(row["query"]), "metadata": {"excluded_ids": excluded}}
        qrels[qid] = {d: 1 for d in gold}
    return queries, qrels


def load_task(root: Path, task: str, setting: str) -> tuple[dict, dict, dict]:
    """(corpus, queries, test qrels) of one task from a folder in the published layout."""
    if setting == "long" and task in NO_LONG_DOCUMENTS:
        raise RicepoError(f"bright/{task}: BRIGHT has no long documents for this task; use benchmarks.bright.document_setting: short")
    config = {"short": "documents", "long": "long_documents"}[setting]
    docs_path = task_file(root, config, task)
    corpus = read_documents(docs_path)
    queries, qrels = read_examples(task_file(root, "examples", task), setting)
    for qid, docs in qrels.items():
        unknown = sorted(d for d in docs if d not in corpus)
        if unknown:
            raise RicepoError(f"bright/{task}: example {qid!r} judges document(s) {unknown[:3]} missing from {docs_path}")
    return corpus, queries, qrels
