"""TREC run files and BRIGHT's excluded-ids files, read with line-level errors.

RUN.trec    qid Q0 docid rank score tag       (6 columns; ranks from 1)
EXCL.tsv    query-id<TAB>corpus-id             (one pair a line; a header line is allowed)
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_file
from ..errors import RicepoError
from .canonical import iter_columns


def write_run(path: str | Path, run: dict[str, list[tuple[str, float]]], tag: str) -> None:
    """TREC run: `qid Q0 docid rank score tag`, ranks from 1 in the given order."""
    with atomic_file(path) as f:
        for qid, ranking in run.items():
            for rank, (doc_id, score) in enumerate(ranking, 1):
                f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for lineno, parts in iter_columns(path, "run file"):
        if len(parts) != 6:
            raise RicepoError(f"{path}:{lineno}: a TREC run line has 6 columns, got {len(parts)}")
        try:
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
        except ValueError:
            raise RicepoError(f"{path}:{lineno}: score {parts[4]!r} is not a number") from None
    return run


def read_excluded(path: str | Path) -> dict[str, set[str]]:
    """EXCL.tsv: one `query-id<TAB>corpus-id` pair a line (a header line is allowed)."""
    out: dict[str, set[str]] = {}
    for lineno, parts in iter_columns(path, "excluded-ids file", sep="\t", header=True):
        if len(parts) != 2:
            raise RicepoError(f"{path}:{lineno}: expected `query-id<TAB>corpus-id`")
        out.setdefault(parts[0], set()).add(parts[1])
    return out


def write_excluded(path: str | Path, excluded: dict[str, set[str]]) -> None:
    with atomic_file(path) as f:
        f.write("query-id\tcorpus-id\n")
        for qid in sorted(excluded):
            for doc_id in sorted(excluded[qid]):
                f.write(f"{qid}\t{doc_id}\n")


def without_excluded(query_id: str, ranking, excluded: dict[str, set[str]]) -> list[tuple[str, float]]:
    """`ranking` ((doc id, score) pairs) less what the query's ranking must not hold when scored:
    its excluded documents (BRIGHT) and its own id (a corpus that also holds the queries)."""
    drop = excluded.get(query_id, set()) | {query_id}
    return [(d, s) for d, s in ranking if d not in drop]
