"""Deterministic top-k over a score vector, shared by every retriever."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, doc_ids: list[str], k: int) -> list[tuple[str, float]]:
    """The k best (doc_id, score), best first; ties broken by position (corpus order), so the same
    scores always give the same ranking and so the same reward."""
    k = min(k, len(scores))
    if k <= 0:
        return []
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    cand = np.nonzero(scores >= kth)[0]
    order = cand[np.lexsort((cand, -scores[cand]))][:k]
    return [(doc_ids[i], float(scores[i])) for i in order]
