"""The agent's retriever: one interface, a cache keyed on the exact query text, NDCG@10 rewards."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from ..data.trec import without_excluded
from ..metrics import ndcg10_single


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[tuple[str, float]]: ...

    def search_many(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]: ...


@dataclass
class CacheStats:
    searches: int = 0  # searches the retriever actually ran (distinct texts, while cached)
    hits: int = 0  # requests answered from the cache


@dataclass
class TaskEnvironment:
    """One benchmark task as the agent sees it: a retriever over its corpus and its judgments."""

    name: str
    index: Retriever  # BM25Index, DenseIndex or HybridRetriever
    corpus: dict[str, dict]
    qrels: dict[str, dict[str, int]]
    excluded: dict[str, set[str]]
    depth: int = 1000
    cache_size: int = 100_000
    stats: CacheStats = field(default_factory=CacheStats)
    _cache: OrderedDict = field(default_factory=OrderedDict)

    def search_many(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        """The ranking of every text: the texts not in the cache searched in one call to the
        retriever (a repeat within `texts` counts as a cache hit, as it would one by one)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        found = dict(zip(missing, self.index.search_many(missing, self.depth))) if missing else {}
        self.stats.searches += len(missing)
        self.stats.hits += len(texts) - len(missing)
        out = []
        for t in texts:
            if t in found:
                self._cache[t] = found[t]
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def search(self, text: str) -> list[tuple[str, float]]:
        return self.search_many([text])[0]

    def rankings_for(self, items: list[tuple[str, str]]) -> list[list[tuple[str, float]]]:
        """For each (query id, text): the ranking as scored, the query's excluded documents and
        its own id removed. All texts are searched in one batch."""
        rankings = self.search_many([text for _, text in items])
        return [without_excluded(qid, r, self.excluded) for (qid, _), r in zip(items, rankings)]

    def scores_uncounted(self, items: list[tuple[str, str]]) -> list[float]:
        """NDCG@10 of each (query id, text), searched past the cache and its counts: a figure the
        step log reports beside a method's searches must not change what it says they cost."""
        rankings = self.index.search_many([text for _, text in items], self.depth)
        return [self.score(qid, without_excluded(qid, r, self.excluded)) for (qid, _), r in zip(items, rankings)]

    def ranking_for(self, query_id: str, text: str) -> list[tuple[str, float]]:
        return self.rankings_for([(query_id, text)])[0]

    def score(self, query_id: str, ranking: list[tuple[str, float]]) -> float:
        """NDCG@10 of a ranking from `ranking_for` for query `query_id` (pytrec_eval)."""
        return ndcg10_single(self.qrels.get(query_id, {}), ranking)

    def reward(self, query_id: str, text: str) -> float:
        """NDCG@10 of retrieving with `text` for query `query_id`."""
        return self.score(query_id, self.ranking_for(query_id, text))
