"""The agent's retriever: one interface, a cache keyed on the exact query text, NDCG@10 rewards."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from ..data.trec import without_excluded
from ..metrics import ndcg10_single


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[tuple[str, float]]: ...


@dataclass
class CacheStats:
    searches: int = 0   # searches the retriever actually ran (distinct texts, while cached)
    hits: int = 0       # requests answered from the cache


@dataclass
class TaskEnvironment:
    """One benchmark task as the agent sees it: a retriever over its corpus and its judgments."""

    name: str
    index: Retriever          # BM25Index, DenseIndex or HybridRetriever
    corpus: dict[str, dict]
    qrels: dict[str, dict[str, int]]
    excluded: dict[str, set[str]]
    depth: int = 1000
    cache_size: int = 100_000
    stats: CacheStats = field(default_factory=CacheStats)
    _cache: OrderedDict = field(default_factory=OrderedDict)

    def search(self, text: str) -> list[tuple[str, float]]:
        if text in self._cache:
            self.stats.hits += 1
            self._cache.move_to_end(text)
            return self._cache[text]
        self.stats.searches += 1
        result = self.index.search(text, self.depth)
        self._cache[text] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def ranking_for(self, query_id: str, text: str) -> list[tuple[str, float]]:
        """The ranking as scored: the query's excluded documents and its own id removed."""
        return without_excluded(query_id, self.search(text), self.excluded)

    def score(self, query_id: str, ranking: list[tuple[str, float]]) -> float:
        """NDCG@10 of a ranking from `ranking_for` for query `query_id` (pytrec_eval)."""
        return ndcg10_single(self.qrels.get(query_id, {}), ranking)

    def reward(self, query_id: str, text: str) -> float:
        """NDCG@10 of retrieving with `text` for query `query_id`."""
        return self.score(query_id, self.ranking_for(query_id, text))
