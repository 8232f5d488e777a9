"""The retriever with a fixed summary in the agent's place (`evaluate.summary_baselines`): rows of
the report's ceiling figure that say what a summary could add to the query.

The agent searches with the query and its summary, and first sees the query alone's top documents
(`rollout.docs_in_observation` of them). Three summaries that need no model:
- `shown_title`: the title of the first document shown, which an agent that copies what it reads
  without judging it would write (pseudo-relevance feedback);
- `best_shown_title`: of the shown documents' titles, the one whose search scores best, chosen with
  the qrels: an agent that judges perfectly which of what it was shown is relevant;
- `oracle_title`: the title of the query's best-judged relevant document, shown or not: the ceiling.
"""

from __future__ import annotations

from .errors import RicepoError

# In the figure's order (the oracle last: the ceiling); the schema's enum is these keys (tests/test_ceiling.py).
KINDS = {
    "shown_title": "Feedback: the query and the first shown document's title",
    "best_shown_title": "Feedback, judged: the query and the best shown title (chosen with the qrels)",
    "oracle_title": "Oracle: the query and a judged document's title",
}


def title_of(doc: dict) -> str:
    """A document's title, or its first 30 words where it has none (BRIGHT's documents have none)."""
    return doc.get("title") or " ".join(doc["text"].split()[:30])


def oracle_summary(judged: dict[str, int], corpus: dict[str, dict]) -> str:
    """The title of the query's best-judged relevant document (highest grade, then smallest id)."""
    relevant = [d for d, r in judged.items() if r > 0]
    if not relevant:
        raise RicepoError("oracle_title: a query has no judged relevant document to take a title from")
    return title_of(corpus[min(relevant, key=lambda d: (-judged[d], d))])


def candidate_summaries(kind: str, judged: dict[str, int], shown: list[str], corpus: dict[str, dict]) -> list[str]:
    """The summaries of one query the baseline chooses among (one, except for `best_shown_title`);
    `shown`: the ids of the documents the agent is shown first, in rank order."""
    if kind == "oracle_title":
        return [oracle_summary(judged, corpus)]
    if kind == "shown_title":
        return [title_of(corpus[d]) for d in shown[:1]]
    if kind == "best_shown_title":
        return [title_of(corpus[d]) for d in shown]
    raise RicepoError(f"summary baseline {kind!r}: not one of {', '.join(KINDS)}")
