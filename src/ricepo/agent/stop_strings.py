"""Stop strings matched on token ids, as inference engines match them: no text is decoded while
sampling.

A row's state is how many characters of the stop string its text currently ends with (the
Knuth–Morris–Pratt automaton's state). Every token's text is known in advance, so the state
after a token is a table lookup, `table[state, token]`, whatever pieces the tokenizer cuts the
stop string into (SmolLM2 writes `</think>` as `</`, `think`, `>`) and wherever inside a token
it ends. The state `len(stop)` means the text now contains the stop string.
"""

from __future__ import annotations

import torch


def token_texts(tokenizer) -> list[str]:
    """Each token id's text as it reads inside a longer text: after an anchor token, since some
    tokenizers drop a token's leading space when it is decoded alone."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1:]
    lead = tokenizer.decode(anchor, skip_special_tokens=False)
    pairs = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))], skip_special_tokens=False)
    return [t[len(lead) :] if t.startswith(lead) else tokenizer.decode([i], skip_special_tokens=False) for i, t in enumerate(pairs)]


def _failure(stop: str) -> list[int]:
    """KMP failure function: fail[k] = length of the longest proper border of stop[:k]."""
    fail, k = [0] * (len(stop) + 1), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k]
        k += stop[i] == stop[k]
        fail[i + 1] = k
    return fail


class StopMatcher:
    """The stop string's automaton over a tokenizer's vocabulary."""

    def __init__(self, tokenizer, stop: str):
        if not stop:
            raise ValueError("empty stop string")
        self.stop, self.done = stop, len(stop)
        fail = _failure(stop)

        def step(state: int, ch: str) -> int:
            while state and ch != stop[state]:
                state = fail[state]
            return state + (ch == stop[state])

        # A token without the stop string's first character can only extend a partial match
        # (then it is a piece of the stop string) or complete one (then it starts with one of
        # its suffixes); every other such token resets every state to 0, the table's default.
        pieces = {stop[a:b] for a in range(self.done) for b in range(a + 1, self.done + 1)}
        endings = tuple(stop[b:] for b in range(1, self.done))
        # rows past the accepting state are never reached; 16 at least, so that the agent's stop
        # strings share one shape (a compiled decode step takes the table as an input)
        table = torch.zeros((max(16, self.done + 1), len(tokenizer)), dtype=torch.long)
        table[self.done] = self.done  # a row that has matched stays matched
        for token, text in enumerate(token_texts(tokenizer)):
            if stop[0] not in text and text not in pieces and not text.startswith(endings):
                continue
            for start in range(self.done):
                state = start
                for ch in text:
                    state = step(state, ch)
                    if state == self.done:
                        break
                table[start, token] = state
        self.table = table

    def to(self, device) -> StopMatcher:
        self.table = self.table.to(device)
        return self

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each row's state after its token (sampled ids are always in the tokenizer's vocabulary)."""
        return self.table[states, tokens]
