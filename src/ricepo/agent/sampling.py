"""Batched token sampling with a KV cache, keeping each sampled token's log-prob and entropy.

Written out instead of `generate()` because the credit methods need, for every sampled token,
log π(token) and the entropy of the full distribution at the rollout temperature, and because
a phase ends on a stop *string* (`</think>`, `</summary>`) that may span several tokens.

The decode loop is laid out as an inference engine's: keys and values written in place into
preallocated columns (`kv_cache.py`), stop strings matched on token ids by a table built once
per tokenizer (`stop_strings.py`), rows that end moved out of the forward pass, and per-token
results kept in tensors, read back once per call. It runs eagerly (`_decode_eager`) or as the
static step of `decode_step.py`, which `torch.compile` makes one graph (`rollout.compile`); both
sample alike. `scripts/bench_sampler.py` measures them against transformers' `generate()`.

A round samples twice (reasoning, then summary) and a trajectory has several rounds, each call
continuing the previous one's contexts. Re-encoding the whole context every call made prefill
the bulk of a CPU rollout, so `sample` returns a `PrefixCache` of the batch and the next call
feeds only each row's new tokens (harness glue, observations, the last sampled token). Rows
are rows of one cache with holes: each row's new tokens are right-aligned in the chunk,
masked padding fills the rest, and position ids count each row's own tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.profiler import record_function

from .decode_step import CompiledStep, Rule, choose_step, decode_static
from .distribution import pick
from .kv_cache import ColumnCache, passing
from .stop_strings import StopMatcher


@dataclass
class Sampled:
    ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    stopped: bool  # ended with the stop string
    eos: bool = False  # ended with the policy's end-of-sequence token: its episode is over


@dataclass
class PrefixCache:
    """The model's KV cache for a batch of rows, and which tokens of each row it holds."""

    kv: ColumnCache
    held: list[list[int]]  # each row's tokens in the cache, in order

    def plan(self, contexts: list[list[int]]) -> list[int | None]:
        """For each context, the cache row it continues, or None for a row that starts here (a
        query taking a finished one's slot). The continued rows keep their order (a row may have
        been dropped, e.g. a trajectory that ended); a context continues a row when it extends it
        by at least one token."""
        rows, r = [], 0
        for c in contexts:
            j = next((j for j in range(r, len(self.held)) if len(c) > len(self.held[j]) and c[: len(self.held[j])] == self.held[j]), None)
            rows.append(j)
            r = r if j is None else j + 1
        return rows

    def rows_for(self, contexts: list[list[int]]) -> list[int] | None:
        """The cache rows that `contexts` continue, in order; None unless every context continues one."""
        rows = self.plan(contexts)
        return None if None in rows else rows

    def usable_for(self, contexts: list[list[int]]) -> bool:
        return self.rows_for(contexts) is not None

    def select(self, rows: list[int]) -> PrefixCache:
        """The cache of `rows` only."""
        if rows != list(range(len(self.held))):
            self.kv.select(rows)
        return PrefixCache(kv=self.kv, held=[self.held[r] for r in rows])


def eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return {i for i in ids if i is not None}


def _prefill(model, pad: int, kv: ColumnCache, new: list[list[int]], starts: list[int], device) -> torch.Tensor:
    """Run each row's `new` tokens (right-aligned, positions from `starts`) into `kv`; the logits
    of each row's last token."""
    n, width = len(new), max(len(x) for x in new)
    ids = torch.full((n, width), pad, dtype=torch.long)
    chunk_mask = torch.zeros((n, width), dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    for i, (x, s) in enumerate(zip(new, starts)):
        ids[i, width - len(x) :] = torch.tensor(x)
        chunk_mask[i, width - len(x) :] = 1
        positions[i, width - len(x) :] = torch.arange(s, s + len(x))
    out = model(
        input_ids=ids.to(device),
        attention_mask=kv.add_columns(chunk_mask.to(device)),
        position_ids=positions.to(device),
        use_cache=True,
        **passing(model, kv.past),
        logits_to_keep=1,
    )
    return out.logits[:, -1, :]


def _shared_prefill(model, pad: int, contexts: list[list[int]], max_new_tokens: int, device):
    """A fresh batch's cache and last-token logits, computing what rows share once, as engines'
    prefix caches do: identical contexts (a group's G rollouts of one prompt) are fed once, and
    the prefix every context starts with (the system prompt) once for all, then copied."""
    distinct = list(dict.fromkeys(map(tuple, contexts)))
    which = {c: i for i, c in enumerate(distinct)}
    shared = min(len(c) for c in distinct) - 1  # each row keeps a token to score
    for i in range(shared):
        if any(c[i] != distinct[0][i] for c in distinct[1:]):
            shared = i
            break
    width = max(len(c) for c in distinct) - shared
    kv = ColumnCache(model, 1 if shared else len(distinct), device)
    kv.reserve(shared + width + max_new_tokens - 1)
    if shared:
        _prefill(model, pad, kv, [list(distinct[0][:shared])], [0], device)
        kv.select([0] * len(distinct))
    logits = _prefill(model, pad, kv, [list(c[shared:]) for c in distinct], [shared] * len(distinct), device)
    rows = torch.tensor([which[tuple(c)] for c in contexts], device=device)
    kv.select(rows)
    return kv, logits[rows]


def _compact_every(live: int) -> int:
    """Finished rows that make it worth moving them out of the forward pass: each move copies the
    fed rows' cache once, each finished row left in costs a row of every later step."""
    return max(1, live // 4)


def _decode_eager(
    model,
    kv: ColumnCache,
    logits: torch.Tensor,
    where: torch.Tensor,
    positions: torch.Tensor,
    max_new_tokens: int,
    rule: Rule,
    generator: torch.Generator | None,
):
    """The eager decode loop (as `decode_step.decode_static`, which it is the fallback of): rows
    that end leave the forward pass once a quarter of them have; every step reads back whether
    any row still runs."""
    device, n = logits.device, len(where)
    states = torch.zeros(n, dtype=torch.long, device=device)  # stop-string automaton, storage order
    running = torch.ones(n, dtype=torch.bool, device=device)  # storage order
    ids = torch.zeros((n, max_new_tokens), dtype=torch.long, device=device)  # context order from here on
    logps = torch.zeros((n, max_new_tokens), device=device)
    ents = torch.zeros((n, max_new_tokens), device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    ended_eos = torch.zeros(n, dtype=torch.bool, device=device)
    ended_stop = torch.zeros(n, dtype=torch.bool, device=device)
    live = n
    for step in range(max_new_tokens):
        with record_function("decode/sampling"):
            u = None
            if rule.temperature > 0:
                u = torch.rand((n, 1), generator=generator, device=device, dtype=torch.float64)[where[:live]]
            tokens, chosen, entropy = pick(logits, rule.temperature, rule.vocab, rule.top_p, rule.top_k, u)
        with record_function("decode/bookkeeping"):
            rows_fed, going = where[:live], running[:live]
            mine = rows_fed[going]
            ids[mine, step], logps[mine, step], ents[mine, step] = tokens[going], chosen[going], entropy[going]
            lengths[mine] += 1
            is_eos = torch.isin(tokens, rule.eos)
            if rule.table is None:
                is_stop = torch.zeros_like(is_eos)
            else:
                states[:live] = rule.table[states[:live], tokens]
                is_stop = (states[:live] == rule.done) & ~is_eos
            ended_eos[rows_fed] |= going & is_eos
            ended_stop[rows_fed] |= going & is_stop
            running[:live] = going & ~(is_eos | is_stop)
            still = int(running[:live].sum())
            if still == 0 or step == max_new_tokens - 1:  # the last token is fed by the next call
                break
            if live - still >= _compact_every(live):
                order = torch.cat([running[:live].nonzero().squeeze(1), (~running[:live]).nonzero().squeeze(1), torch.arange(live, n, device=device)])
                kv.permute(order)
                where, positions, states, running = where[order], positions[order], states[order], running[order]
                tokens, live = tokens[order[:still]], still
                kv.active = live
            going = running[:live]
            feed = torch.where(going, tokens, rule.pad)[:, None]
            attend = kv.add_columns(going[:, None].long())
        with record_function("decode/forward"):
            out = model(
                input_ids=feed,
                attention_mask=attend,
                position_ids=positions[:live, None],
                use_cache=True,
                **passing(model, kv.past),
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :]
        positions[:live] += going
    kv.permute(torch.argsort(where))  # back to context order
    kv.active = n
    return ids, logps, ents, lengths, ended_stop, ended_eos


@torch.inference_mode()
def sample(
    model,
    tokenizer,
    contexts: list[list[int]],
    *,
    max_new_tokens: int,
    stop: str | StopMatcher | None,
    temperature: float,
    generator: torch.Generator | None,
    top_p: float = 1.0,
    top_k: int = 0,
    cache: PrefixCache | None = None,
    step=None,
    buffers: dict | None = None,
) -> tuple[list[Sampled], PrefixCache]:
    """Continue every context until `stop` appears, eos, or `max_new_tokens` (temperature 0: greedy).
    `top_p`/`top_k` truncate the distribution tokens are drawn from; the recorded log-prob and
    entropy are always those of the full distribution at `temperature` (the policy's own).
    `cache` (from the previous call) is reused for the rows whose contexts extend it; the other
    contexts start rows of their own in it. `stop` may be given as its `StopMatcher`, built once
    for the tokenizer, or None (rows end at eos or the budget only).

    `step`: None for the eager decode loop; else the static decode step (`decode_step.decode_step`,
    compiled or not) and `buffers`, where the static loop keeps its per-row tensors between calls.
    The eager loop's three parts run under profiler ranges (`decode/forward`, `decode/sampling`,
    `decode/bookkeeping`: `scripts/bench_sampler.py --profile`); outside a profiler they cost nothing
    measurable.

    Random numbers are drawn as if every row were sampled at every step until all have ended
    (rows × 1 uniforms per step, in row order), so dropping finished rows from the forward pass
    changes no draw."""
    device = next(model.parameters()).device
    pad, vocab, n = tokenizer.pad_token_id, len(tokenizer), len(contexts)
    eos = torch.tensor(sorted(eos_ids(model, tokenizer)), device=device)
    matcher = stop if isinstance(stop, StopMatcher) or stop is None else StopMatcher(tokenizer, stop).to(device)
    plan = cache.plan(contexts) if cache is not None else [None] * n
    going_on = [i for i, r in enumerate(plan) if r is not None]
    starting = [i for i, r in enumerate(plan) if r is None]
    if going_on:
        cache = cache.select([plan[i] for i in going_on])
        kv = cache.kv
        if kv.holes() > kv.columns // 2:
            kv.repack()
        if starting:
            fresh, fresh_logits = _shared_prefill(model, pad, [contexts[i] for i in starting], max_new_tokens, device)
            kv.append(fresh)
            kv.active = len(going_on)  # the rows that started here have been fed
        new = [contexts[i][len(h) :] for i, h in zip(going_on, cache.held)]
        kv.reserve(kv.columns + max(map(len, new)) + max_new_tokens - 1)
        logits = _prefill(model, pad, kv, new, [len(h) for h in cache.held], device)
        kv.active = kv.rows
        if starting:
            logits = torch.cat([logits, fresh_logits])
    else:
        kv, logits = _shared_prefill(model, pad, contexts, max_new_tokens, device)

    order = torch.tensor(going_on + starting, device=device)  # the context each storage row holds
    positions = torch.tensor([len(contexts[i]) for i in going_on + starting], device=device)
    rule = Rule(
        pad,
        vocab,
        temperature,
        top_p,
        top_k,
        eos,
        None if matcher is None else matcher.table,
        torch.tensor(matcher.done if matcher is not None else -1, device=device),
    )
    if step is None:
        out = _decode_eager(model, kv, logits, order, positions, max_new_tokens, rule, generator)
    else:
        out = decode_static(model, kv, logits, order, positions, max_new_tokens, rule, generator, step, {} if buffers is None else buffers)
    ids, logps, ents, lengths, ended_stop, ended_eos = out
    ids_l, lp_l, ent_l, len_l = ids.tolist(), logps.tolist(), ents.tolist(), lengths.tolist()
    results = [
        Sampled(ids_l[i][:k], lp_l[i][:k], ent_l[i][:k], stopped=bool(s), eos=bool(e))
        for i, (k, s, e) in enumerate(zip(len_l, ended_stop.tolist(), ended_eos.tolist()))
    ]
    held = [c + r.ids[:-1] for c, r in zip(contexts, results)]
    return results, PrefixCache(kv=kv, held=held)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """`t` whole: a sharded (FSDP, DTensor) tensor is gathered from every process (all must call)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def cast_parameters(model, dtype: torch.dtype):
    """`model` with its parameters in `dtype` and its buffers as they were: rotary frequencies
    stay float32, as inference engines keep them (`model.to(bf16)` would round them too)."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


class Sampler(Protocol):
    """What rollouts need from an inference engine: contexts in; per context the sampled token
    ids, their log-probs and the entropies of the full distribution at `temperature` out.
    An engine may keep state between calls on the same rows (a prefix cache); `reset` drops it.
    `sync_weights` loads the trainer's weights after an update. The transformers sampler below
    is the one shipped and tested; a vLLM or SGLang one would implement the same three methods."""

    def sample(
        self,
        contexts: list[list[int]],
        *,
        max_new_tokens: int,
        stop: str | None,
        temperature: float,
        generator: torch.Generator | None,
        top_p: float = 1.0,
        top_k: int = 0,
    ) -> list[Sampled]: ...

    def reset(self) -> None: ...

    def sync_weights(self, model) -> None: ...


class TransformersSampler:
    """Batched sampling with a transformers model, continuing from the previous call's KV cache.
    With `dtype` other than the model's (bf16-mixed training), or when `separate` (the trainer
    will shard the model: FSDP), it samples with its own copy of the weights in that dtype,
    refreshed by `sync_weights` in place; otherwise it runs the model itself. `compile`
    (`rollout.compile`: auto | on | off) chooses the compiled static decode step or the eager
    loop (`decode_step.choose_step`)."""

    def __init__(self, model, tokenizer, dtype: torch.dtype | None = None, separate: bool = False, compile: str = "auto"):
        self.tokenizer = tokenizer
        self.copied = separate or (dtype is not None and dtype != next(model.parameters()).dtype)
        self.model = cast_parameters(copy.deepcopy(model), dtype).eval().requires_grad_(False) if self.copied else model
        self._cache: PrefixCache | None = None
        self._stops: dict[str, StopMatcher] = {}
        self._step, self._eager_why = choose_step(self.model, compile)
        self._buffers: dict = {}  # the static loop's per-row tensors, kept between calls (fixed addresses)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def step(self) -> CompiledStep | None:
        """The compiled step this sampler decodes with; None when it decodes eagerly."""
        return None if self._step is None or self._step.failed else self._step

    def describe(self) -> str:
        """One line for the logs: how this sampler decodes, and why."""
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        how = self._step.describe() if self._step is not None else self._eager_why
        return (
            f"sampler: transformers {type(self.model).__name__}, {dtype}, {how}, preallocated KV "
            f"cache, stop strings on token ids, finished rows leave the batch"
        )

    def sample(self, contexts, *, max_new_tokens, stop, temperature, generator, top_p=1.0, top_k=0):
        if stop is not None and stop not in self._stops:
            self._stops[stop] = StopMatcher(self.tokenizer, stop).to(self.device)
        results, self._cache = sample(
            self.model,
            self.tokenizer,
            contexts,
            max_new_tokens=max_new_tokens,
            stop=self._stops.get(stop),
            temperature=temperature,
            generator=generator,
            top_p=top_p,
            top_k=top_k,
            cache=self._cache,
            step=self.step,
            buffers=self._buffers,
        )
        return results

    def reset(self) -> None:
        self._cache = None

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        if not self.copied:
            return
        # one tensor at a time: a sharded (FSDP) parameter is gathered alone, then dropped
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            mine.copy_(full_tensor(theirs))
