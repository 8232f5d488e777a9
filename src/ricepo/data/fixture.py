"""A deterministic synthetic benchmark task in the canonical layout, for offline smoke runs.

Words are pronounceable pseudo-words so that a tokenizer trained on the corpus is meaningful.
Each query has two relevant documents that share three *answer* words found nowhere else; the
query itself holds only topic words (shared by a topic's documents) and *clue* words (each also
sprinkled over unrelated documents). Retrieval with the query alone is therefore mediocre,
and a query that names the answer words is near perfect: a better summary measurably scores
better, which is what gives the RL methods something to learn. With `excluded=True` each query
also gets a near-duplicate of its relevant documents listed in `metadata.excluded_ids`, as BRIGHT
does; scoring must drop it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from .canonical import write_corpus, write_qrels, write_queries

_ONSETS = "b c d f g h k l m n p r s t v z br dr gr kr pl st tr".split()
_VOWELS = "a e i o u ai ou".split()


def _words(rng: random.Random, n: int, taken: set) -> list[str]:
    out = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 3))))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def make_fixture(
    out_dir: str | Path, benchmark: str, task: str, *, n_docs: int, n_topics: int, n_train: int, n_test: int, excluded: bool, seed: int
) -> dict:
    """Write corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv; return the counts."""
    rng = random.Random(f"ricepo-fixture:{seed}:{benchmark}:{task}")
    taken: set = set()
    filler = _words(rng, 150, taken)
    topics = [_words(rng, 6, taken) for _ in range(n_topics)]
    clue_pool = _words(rng, 40, taken)
    n_queries = n_train + n_test

    def sentence(words: list[str]) -> str:
        words = list(words)
        rng.shuffle(words)
        return " ".join(words).capitalize() + "."

    corpus: dict[str, dict] = {}
    queries: dict[str, dict] = {}
    qrels = {"train": {}, "test": {}}
    titled = benchmark == "beir"

    def add_doc(words: list[str]) -> str:
        doc_id = f"{task}-d{len(corpus):04d}"
        title = sentence(rng.sample(filler, 2)) if titled else ""
        corpus[doc_id] = {"title": title, "text": sentence(words)}
        return doc_id

    for q in range(n_queries):
        topic = topics[q % n_topics]
        answer = _words(rng, 3, taken)
        clues = rng.sample(clue_pool, 2)
        gold = [add_doc(answer + clues + rng.sample(topic, 2) + rng.sample(filler, 8)) for _ in range(2)]
        qid = f"{task}-q{q:03d}"
        metadata: dict = {"answer_terms": answer}
        if excluded:
            metadata["excluded_ids"] = [add_doc(answer + clues + rng.sample(topic, 3) + rng.sample(filler, 4))]
        queries[qid] = {"text": sentence(rng.sample(topic, 2) + clues + rng.sample(filler, 3)), "metadata": metadata}
        split = "train" if q < n_train else "test"
        qrels[split][qid] = {d: 1 for d in gold}

    while len(corpus) < n_docs:
        topic = rng.choice(topics)
        add_doc(rng.sample(topic, 3) + rng.sample(clue_pool, 2) + rng.sample(filler, 10))

    out = Path(out_dir)
    write_corpus(out / "corpus.jsonl", corpus)
    write_queries(out / "queries.jsonl", queries)
    for split, rows in qrels.items():
        write_qrels(out / "qrels" / f"{split}.tsv", rows)
    return {"docs": len(corpus), "queries": {s: len(r) for s, r in qrels.items()}}


def fixture_pool_sizes(train: int, test: int) -> tuple[int, int]:
    """The fixture holds more train queries than the split samples, so sampling is exercised."""
    return math.ceil(1.5 * train), test
