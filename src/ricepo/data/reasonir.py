"""ReasonIR training data (reasonir/reasonir-data, subset `hq`) as BRIGHT train queries per domain.

An hq row has `query`, `pos` and `neg`. A query is a string or an [instruction, query] list; each
positive is a string or an [instruction, text] list whose text is a BRIGHT document id (the hq
subset ships ids, not documents); negatives are document texts and are not needed for RL
training. A positive is resolved against the BRIGHT corpora, which gives the example its domain
(the first task in `bright.DOMAIN_PRIORITY` whose corpus holds it; only that domain's positives are
kept). Examples with no resolvable positive are counted in the report and dropped.

Output (`resources/data/reasonir/hq`): one `{task}.jsonl` per BRIGHT task with rows
`{"_id", "text", "metadata": {"instruction", "source_row"}, "positives": [doc ids]}`, and
`report.json` with the per-domain counts, the unresolved count and the source revision.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import RicepoError
from .bright import DOMAIN_PRIORITY, TASKS, read_rows, task_file
from .canonical import iter_jsonl, write_jsonl


def _text_of(value, path: Path, n: int, field: str) -> tuple[str, str]:
    """(instruction, text) of a string or an [instruction, text] pair."""
    if isinstance(value, str):
        return "", value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    raise RicepoError(f"{path}:{n}: {field} must be a string or an [instruction, text] pair, got {value!r:.80}")


def row_files(folder: Path) -> list[Path]:
    """The hq rows of a local copy: `hq/*.parquet|jsonl` or `*.parquet|jsonl` in the folder."""
    folder = Path(folder)
    for sub in (folder / "hq", folder):
        found = sorted(list(sub.glob("*.parquet")) + list(sub.glob("*.jsonl")))
        if found:
            return found
    raise RicepoError(f"{folder}: no ReasonIR hq files (expected hq/*.parquet or *.jsonl)")


def document_domains(bright_root: Path) -> dict[str, str]:
    """BRIGHT document id -> task, reading only the id column of every task's documents."""
    domain: dict[str, str] = {}
    for task in DOMAIN_PRIORITY:
        path = task_file(bright_root, "documents", task)
        for _, row in read_rows(path, columns=["id"] if path.suffix == ".parquet" else None):
            domain.setdefault(str(row["id"]), task)
    return domain


def resolve(files: list[Path], domain: dict[str, str]) -> tuple[dict[str, list[dict]], dict]:
    by_task: dict[str, list[dict]] = {t: [] for t in TASKS}
    rows = unresolved = 0
    for path in files:
        for n, row in read_rows(path, columns=["query", "pos"] if path.suffix == ".parquet" else None):
            rows += 1
            if "query" not in row or "pos" not in row:
                raise RicepoError(f"{path}:{n}: a ReasonIR row needs 'query' and 'pos'")
            instruction, query = _text_of(row["query"], path, n, "query")
            if not query.strip():
                raise RicepoError(f"{path}:{n}: empty query")
            ids = [_text_of(p, path, n, "pos")[1] for p in row["pos"] or []]
            tasks = [domain[i] for i in ids if i in domain]
            if not tasks:
                unresolved += 1
                continue
            task = min(tasks, key=DOMAIN_PRIORITY.index)
            by_task[task].append(
                {
                    "_id": f"reasonir-{rows - 1}",
                    "text": query,
                    "metadata": {"instruction": instruction, "source_row": rows - 1},
                    "positives": [i for i in ids if domain.get(i) == task],
                }
            )
    report = {"rows": rows, "unresolved": unresolved, "per_domain": {t: len(v) for t, v in by_task.items()}}
    return by_task, report


def build(files: list[Path], bright_root: Path, out_dir: Path, revision: str) -> dict:
    by_task, report = resolve(files, document_domains(bright_root))
    report["revision"] = revision
    with atomic_dir(out_dir) as tmp:
        for task, rows in by_task.items():
            write_jsonl(tmp / f"{task}.jsonl", rows)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return report


def read_domain(folder: Path, task: str) -> tuple[dict[str, dict], dict[str, dict[str, int]]]:
    """(train queries, train qrels) of one domain from `build`'s output."""
    path = Path(folder) / f"{task}.jsonl"
    queries, qrels = {}, {}
    for _, row in iter_jsonl(path):
        queries[row["_id"]] = {"text": row["text"], "metadata": row["metadata"]}
        qrels[row["_id"]] = {d: 1 for d in row["positives"]}
    return queries, qrels
