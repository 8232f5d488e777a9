"""BM25 through bm25s, with our analyzer and a deterministic ranking.

Analyzer: lowercase, tokens of two or more word characters (bm25s' default pattern), English
stopwords of bm25s removed, no stemming. A document is indexed as "title text". Scores are
Lucene BM25 (bm25s `method="lucene"`) with the benchmark's k1 and b. Ties are broken by the
document's position in corpus.jsonl, so the same query always gives the same ranking.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from ..errors import RicepoError

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOP = frozenset(STOPWORDS_EN)


def analyze(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def doc_text(doc: dict) -> str:
    return f"{doc.get('title', '')} {doc.get('text', '')}".strip()


class BM25Index:
    """A bm25s index plus the corpus ids in index order."""

    def __init__(self, model: bm25s.BM25, doc_ids: list[str]):
        self.model = model
        self.doc_ids = doc_ids

    @classmethod
    def build(cls, corpus: dict[str, dict], k1: float, b: float) -> "BM25Index":
        doc_ids = list(corpus)
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index([analyze(doc_text(corpus[d])) for d in doc_ids], show_progress=False)
        return cls(model, doc_ids)

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save(str(out_dir), show_progress=False)
        (out_dir / "doc_ids.json").write_text(json.dumps(self.doc_ids))

    @classmethod
    def load(cls, index_dir: str | Path) -> "BM25Index":
        index_dir = Path(index_dir)
        if not (index_dir / "doc_ids.json").exists():
            raise RicepoError(f"{index_dir}: not a BM25 index (no doc_ids.json); build it with `ricepo index`")
        model = bm25s.BM25.load(str(index_dir))
        return cls(model, json.loads((index_dir / "doc_ids.json").read_text()))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Top-k (doc_id, score), best first; ties broken by corpus order."""
        tokens = [t for t in analyze(query) if t in self.model.vocab_dict]
        if not tokens:
            return []
        scores = self.model.get_scores(tokens)
        k = min(k, len(scores))
        if k <= 0:
            return []
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        cand = np.nonzero(scores >= kth)[0]
        order = cand[np.lexsort((cand, -scores[cand]))][:k]
        return [(self.doc_ids[i], float(scores[i])) for i in order if scores[i] > 0]
