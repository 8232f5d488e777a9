"""Batched token sampling with a KV cache, keeping each sampled token's log-prob and entropy.

Written out instead of `generate()` because the credit methods need, for every sampled token,
log π(token) and the entropy of the full distribution at the rollout temperature, and because
a phase ends on a stop *string* (`</think>`, `</summary>`) that may span several tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Sampled:
    ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    stopped: bool        # ended with the stop string (True) rather than eos or the budget


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return {i for i in ids if i is not None}


@torch.no_grad()
def sample(model, tokenizer, contexts: list[list[int]], *, max_new_tokens: int, stop: str,
           temperature: float, generator: torch.Generator | None) -> list[Sampled]:
    """Continue every context until `stop` appears, eos, or `max_new_tokens` (temperature 0: greedy)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    eos = _eos_ids(model, tokenizer)
    n, width = len(contexts), max(len(c) for c in contexts)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, ctx in enumerate(contexts):
        input_ids[i, width - len(ctx):] = torch.tensor(ctx)
        mask[i, width - len(ctx):] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    results = [Sampled([], [], [], False) for _ in range(n)]
    active = [True] * n
    next_pos = positions[:, -1:] + 1
    for _ in range(max_new_tokens):
        scaled = logits.float() / (temperature if temperature > 0 else 1.0)
        logp = torch.log_softmax(scaled, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        if temperature > 0:
            tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        else:
            tokens = logp.argmax(-1)
        chosen = logp.gather(-1, tokens[:, None]).squeeze(-1)
        tok_list, lp_list, ent_list = tokens.tolist(), chosen.tolist(), entropy.tolist()
        for i in range(n):
            if not active[i]:
                continue
            r = results[i]
            r.ids.append(tok_list[i])
            r.logprobs.append(lp_list[i])
            r.entropies.append(ent_list[i])
            if tok_list[i] in eos:
                active[i] = False
            elif stop in tokenizer.decode(r.ids[-8:], skip_special_tokens=False):
                r.stopped = True
                active[i] = False
        if not any(active):
            break
        feed = torch.tensor([t if a else pad for t, a in zip(tok_list, active)], device=device)[:, None]
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=-1)
        out = model(input_ids=feed, attention_mask=mask, position_ids=next_pos, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos = next_pos + 1
    return results
