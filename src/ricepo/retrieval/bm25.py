"""BM25 through bm25s, with our analyzer and a deterministic ranking.

Analyzer (bm25s' own pipeline, as in its published BEIR benchmark): lowercase, tokens of two or
more word characters, bm25s' English stopwords removed, then the Snowball English stemmer
(PyStemmer; `stemmer: none` turns it off). A document is indexed as "title text". Scores are
Lucene BM25 (bm25s `method="lucene"`) with the benchmark's k1 and b. The analyzer is saved with
the index, so queries are always analysed as the documents were. Ties are broken by the
document's position in corpus.jsonl, so the same query always gives the same ranking.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

# bm25s runs a JAX top-k at import wherever JAX is installed (as on CUDA images): JAX would then
# take 75% of the GPU in every process that searches, and a second such process fails to start
# (seen on an H200). Our ranking is numpy's (ranking.top_k); JAX, if imported, stays on the CPU.
os.environ["JAX_PLATFORMS"] = "cpu"
import bm25s  # noqa: E402
from bm25s.stopwords import STOPWORDS_EN

from ..atomic import atomic_dir
from ..errors import RicepoError
from .ranking import top_k

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOP = frozenset(STOPWORDS_EN)
STEMMERS = ("english", "none")


@cache
def _stemmer(name: str):
    if name not in STEMMERS:
        raise RicepoError(f"unknown stemmer {name!r}; known: {', '.join(STEMMERS)}")
    if name == "none":
        return None
    import Stemmer

    return Stemmer.Stemmer(name)


def analyze(text: str, stemmer: str = "english") -> list[str]:
    tokens = [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]
    stem = _stemmer(stemmer)
    return stem.stemWords(tokens) if stem else tokens


def doc_text(doc: dict) -> str:
    return f"{doc.get('title', '')} {doc.get('text', '')}".strip()


class BM25Index:
    """A bm25s index plus the corpus ids in index order."""

    def __init__(self, model: bm25s.BM25, doc_ids: list[str], stemmer: str):
        self.model = model
        self.doc_ids = doc_ids
        self.stemmer = stemmer
        self.threads = len(os.sched_getaffinity(0))  # search_many's threads

    @classmethod
    def build(cls, corpus: dict[str, dict], k1: float, b: float, stemmer: str = "english") -> BM25Index:
        doc_ids = list(corpus)
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index([analyze(doc_text(corpus[d]), stemmer) for d in doc_ids], show_progress=False)
        return cls(model, doc_ids, stemmer)

    def save(self, out_dir: str | Path) -> None:
        with atomic_dir(out_dir) as tmp:
            self.model.save(str(tmp), show_progress=False)
            (tmp / "doc_ids.json").write_text(json.dumps(self.doc_ids))
            (tmp / "analyzer.json").write_text(json.dumps({"stemmer": self.stemmer}))

    @classmethod
    def load(cls, index_dir: str | Path) -> BM25Index:
        index_dir = Path(index_dir)
        if not (index_dir / "doc_ids.json").exists() or not (index_dir / "analyzer.json").exists():
            raise RicepoError(f"{index_dir}: not a BM25 index of this version (no doc_ids.json or analyzer.json); build it with `ricepo index`")
        model = bm25s.BM25.load(str(index_dir))
        stemmer = json.loads((index_dir / "analyzer.json").read_text())["stemmer"]
        return cls(model, json.loads((index_dir / "doc_ids.json").read_text()), stemmer)

    def search_many(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        """`search` of every query, on `threads` threads (bm25s' scoring is numpy, which releases
        the GIL); results in the queries' order, each exactly as `search` gives it."""
        if self.threads <= 1 or len(queries) <= 1:
            return [self.search(q, k) for q in queries]
        with ThreadPoolExecutor(min(self.threads, len(queries))) as pool:
            return list(pool.map(lambda q: self.search(q, k), queries))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Top-k (doc_id, score), best first; ties broken by corpus order."""
        tokens = [t for t in analyze(query, self.stemmer) if t in self.model.vocab_dict]
        if not tokens:
            return []
        scores = self.model.get_scores(tokens)
        return [(d, s) for d, s in top_k(scores, self.doc_ids, k) if s > 0]
