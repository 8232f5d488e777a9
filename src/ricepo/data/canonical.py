"""The canonical dataset layout of DESIGN.md, read and written with line-level integrity errors.

    corpus.jsonl      {"_id", "title", "text"}
    queries.jsonl     {"_id", "text", "metadata": {...}}   (BRIGHT: metadata.excluded_ids)
    qrels/{split}.tsv query-id  corpus-id  score           (header line, as BEIR)

QRELS may also be TREC's four columns (`qid Q0 docid rel`), which is how several BEIR topic
files are distributed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_file
from ..errors import RicepoError


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every non-blank line; a missing file is an error naming it."""
    if not path.exists():
        raise RicepoError(f"{path}: {what} not found")
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object); a malformed line is an error naming file and line."""
    path = Path(path)
    for lineno, line in _lines(path, "file"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RicepoError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise RicepoError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, obj


def _records(path: str | Path, kind: str, build) -> dict[str, dict]:
    """{id: build(obj)} of a JSONL file of objects with unique `_id`s, in file order; `build`
    returns None for a record with nothing to read (an error naming the file and line)."""
    path = Path(path)
    out: dict[str, dict] = {}
    for lineno, obj in iter_jsonl(path):
        if "_id" not in obj:
            raise RicepoError(f"{path}:{lineno}: missing key '_id'")
        rid = str(obj["_id"])
        if rid in out:
            raise RicepoError(f"{path}:{lineno}: duplicate id {rid!r}")
        record = build(obj)
        if record is None:
            empty = "empty title and text" if kind == "document" else "empty text"
            raise RicepoError(f"{path}:{lineno}: {kind} {rid!r} has {empty}")
        out[rid] = record
    return out


def _document(obj: dict) -> dict | None:
    title, text = str(obj.get("title") or ""), str(obj.get("text") or "")
    return {"title": title, "text": text} if (title.strip() or text.strip()) else None


def _query(obj: dict) -> dict | None:
    text = str(obj.get("text") or "")
    return {"text": text, "metadata": obj.get("metadata") or {}} if text.strip() else None


def read_corpus(path: str | Path) -> dict[str, dict]:
    """{doc_id: {"title", "text"}} in file order."""
    return _records(path, "document", _document)


def read_queries(path: str | Path) -> dict[str, dict]:
    """{query_id: {"text", "metadata"}} in file order."""
    return _records(path, "query", _query)


def iter_columns(path: str | Path, what: str = "file", sep: str | None = None, header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a column file (whitespace-separated, or by `sep`); blank lines and,
    with `header`, a first line naming the query-id column are skipped; a missing file is an error
    naming it (`what`: how the message calls it)."""
    for lineno, line in _lines(Path(path), what):
        parts = line.rstrip("\n").split(sep) if sep else line.split()
        if header and lineno == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        yield lineno, parts


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """{query_id: {doc_id: relevance}} from BEIR tsv (header) or TREC four-column qrels."""
    qrels: dict[str, dict[str, int]] = {}
    for lineno, parts in iter_columns(path, header=True):
        if len(parts) == 3:
            qid, doc_id, rel = parts
        elif len(parts) == 4:
            qid, _, doc_id, rel = parts
        else:
            raise RicepoError(f"{path}:{lineno}: expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}")
        try:
            rel_value = int(float(rel))
        except ValueError:
            raise RicepoError(f"{path}:{lineno}: relevance {rel!r} is not a number") from None
        if doc_id in qrels.setdefault(qid, {}):
            raise RicepoError(f"{path}:{lineno}: duplicate judgment for ({qid}, {doc_id})")
        qrels[qid][doc_id] = rel_value
    return qrels


def check_qrels(qrels: dict, queries: dict, corpus: dict | None, path: str | Path) -> None:
    """Every judged query and document must exist; names the first offender."""
    for qid, docs in qrels.items():
        if qid not in queries:
            raise RicepoError(f"{path}: judged query {qid!r} is not in queries.jsonl")
        if corpus is not None:
            for doc_id in docs:
                if doc_id not in corpus:
                    raise RicepoError(f"{path}: query {qid!r} judges unknown document {doc_id!r}")


def write_jsonl(path: str | Path, rows) -> None:
    with atomic_file(path, encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_corpus(path, corpus: dict[str, dict]) -> None:
    write_jsonl(path, ({"_id": d, "title": v["title"], "text": v["text"]} for d, v in corpus.items()))


def write_queries(path, queries: dict[str, dict]) -> None:
    write_jsonl(path, ({"_id": q, "text": v["text"], "metadata": v.get("metadata", {})} for q, v in queries.items()))


def write_qrels(path, qrels: dict[str, dict[str, int]]) -> None:
    with atomic_file(path, encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for doc_id, rel in docs.items():
                f.write(f"{qid}\t{doc_id}\t{rel}\n")


def excluded_ids(queries: dict[str, dict]) -> dict[str, set[str]]:
    """BRIGHT's per-query excluded documents (the "N/A" sentinel dropped)."""
    out = {}
    for qid, q in queries.items():
        ids = {str(x) for x in q.get("metadata", {}).get("excluded_ids", []) or [] if str(x) != "N/A"}
        if ids:
            out[qid] = ids
    return out


class Dataset:
    """One benchmark task in the canonical layout, loaded and cross-checked."""

    def __init__(self, root: str | Path, splits: tuple[str, ...] = ("train", "test")):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RicepoError(f"dataset folder {self.root} not found")
        self.corpus = read_corpus(self.root / "corpus.jsonl")
        self.queries = read_queries(self.root / "queries.jsonl")
        self.qrels: dict[str, dict[str, dict[str, int]]] = {}
        for split in splits:
            qpath = self.root / "qrels" / f"{split}.tsv"
            if qpath.exists():
                self.qrels[split] = read_qrels(qpath)
                check_qrels(self.qrels[split], self.queries, self.corpus, qpath)
        self.excluded = excluded_ids(self.queries)
        for qid, ids in self.excluded.items():
            for split_qrels in self.qrels.values():
                gold = {d for d, r in split_qrels.get(qid, {}).items() if r > 0}
                if gold & ids:
                    raise RicepoError(f"{self.root}/queries.jsonl: query {qid!r} excludes its own gold document(s) {sorted(gold & ids)}")

    def split_queries(self, split: str) -> dict[str, dict]:
        if split not in self.qrels:
            raise RicepoError(f"{self.root}: no qrels/{split}.tsv")
        return {q: self.queries[q] for q in self.qrels[split]}
