"""A decode step with static shapes, which `torch.compile` turns into one graph (and, on a GPU,
CUDA graphs replay with a single launch).

An eager decode step launches several hundred small kernels one by one; on a GPU the launches, not
the arithmetic, set its time (26 ms a step for a 1.5B model at 32 rows, nearly flat in the row
count). Compiling the step needs what inference engines' static caches have: every tensor at a
fixed address and of a fixed shape, and no host sync inside the step. So:

- keys and values go into storage of a fixed number of rows and columns (`ColumnCache.make_static`),
  each step writing the column a position tensor names; attention sees every column, masked;
- rows are padded to a power of two (a bucket); rows that finish stay in the batch (fed a masked
  pad, their results written past their length) until the running ones fit half the bucket: then
  the running rows are moved to the front in place and the next steps compute the smaller bucket;
- the uniforms are drawn outside the step, from the seeded generator, one per context in context
  order, as the eager loop draws them: padding rows and bucket moves change no draw;
- whether any row still runs is read back every `check_every` steps, not every step; the
  generator is then rewound to what the eager loop would have drawn.

The first token of a call comes from the prefill's logits, sampled by the same code outside the
step. `sampling.py` chooses this loop or the eager one (`rollout.compile`).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import torch

from ..decode_shapes import columns_bucket, rows_bucket
from ..errors import RicepoError
from .decode_attention import NAME, use_packed_attention
from .distribution import pick
from .kv_cache import ColumnCache


@dataclass(frozen=True)
class Rule:
    """What every step of one call applies (constants of a compiled graph, or its inputs)."""

    pad: int
    vocab: int
    temperature: float
    top_p: float
    top_k: int
    eos: torch.Tensor  # end-of-sequence ids
    table: torch.Tensor | None  # the stop string's automaton (None: no stop string)
    done: torch.Tensor  # the automaton's accepting state (a tensor: both stop strings share a graph)


class Rows:
    """The loop's per-row tensors, allocated once per storage size and reused by later calls (fixed
    addresses). Storage order (the KV cache's rows, R): tokens, running, states, positions, where
    (the context each storage row holds; padding rows hold n..R-1); uniforms and results by context
    (padding rows' results are never read)."""

    def __init__(self, storage_rows: int, width: int, device):
        r = storage_rows
        self.tokens = torch.zeros(r, dtype=torch.long, device=device)
        self.running = torch.zeros(r, dtype=torch.bool, device=device)
        self.states = torch.zeros(r, dtype=torch.long, device=device)
        self.positions = torch.zeros(r, dtype=torch.long, device=device)
        self.where = torch.zeros(r, dtype=torch.long, device=device)
        self.u = torch.zeros((r, 1), dtype=torch.float64, device=device)
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.ids = torch.zeros((r, width), dtype=torch.long, device=device)
        self.logps = torch.zeros((r, width), device=device)
        self.ents = torch.zeros((r, width), device=device)
        self.lengths = torch.zeros(r, dtype=torch.long, device=device)
        self.ended_eos = torch.zeros(r, dtype=torch.bool, device=device)
        self.ended_stop = torch.zeros(r, dtype=torch.bool, device=device)
        for t in self.tensors():
            torch._dynamo.mark_static_address(t)

    def tensors(self) -> list[torch.Tensor]:
        return [v for v in vars(self).values() if isinstance(v, torch.Tensor)]

    def start(self, where: torch.Tensor, positions: torch.Tensor) -> None:
        """A call over rows `where` (storage order) at `positions`; every result cleared."""
        n, r = len(where), len(self.tokens)
        for t in self.tensors():
            t.zero_()
        self.where[:n] = where
        self.where[n:] = torch.arange(n, r, device=where.device)
        self.positions[:n] = positions
        self.running[:n] = True

    def reorder_(self, order: torch.Tensor) -> None:
        for t in (self.tokens, self.running, self.states, self.positions, self.where):
            t.copy_(t.index_select(0, order))


def record(r: Rows, b: int, tokens, chosen, entropy, rule: Rule) -> None:
    """Keep the first `b` storage rows' sampled tokens, and end the rows that drew end-of-sequence
    or completed the stop string. A row that has ended writes past its length, where nothing reads."""
    going, rows = r.running[:b], r.where[:b]
    r.ids[rows, r.step] = tokens
    r.logps[rows, r.step] = chosen
    r.ents[rows, r.step] = entropy
    r.lengths[rows] += going.long()
    is_eos = torch.isin(tokens, rule.eos)
    if rule.table is None:
        is_stop = torch.zeros_like(is_eos)
    else:
        states = rule.table[r.states[:b], tokens]
        r.states[:b] = states
        is_stop = (states == rule.done) & ~is_eos
    r.ended_eos[rows] |= going & is_eos
    r.ended_stop[rows] |= going & is_stop
    r.running[:b] = going & ~(is_eos | is_stop)
    r.tokens[:b] = tokens
    r.step += 1


def decode_step(model, kv: ColumnCache, r: Rows, b: int, rule: Rule) -> None:
    """Feed the first `b` storage rows' last tokens (pad for rows that ended: a masked hole), then
    sample and record each row's next token. Every tensor it touches keeps its shape and address."""
    going = r.running[:b]
    kv.mask[kv.row_index[:b], kv.write] = going.long()
    out = model(
        input_ids=torch.where(going, r.tokens[:b], rule.pad)[:, None],
        attention_mask=kv.mask[:b, None, None, :].bool(),
        position_ids=r.positions[:b, None],
        use_cache=True,
        **{kv.keyword: kv.past},
        logits_to_keep=1,
    )
    kv.write += 1
    r.positions[:b] += going.long()
    u = r.u[r.where[:b]] if rule.temperature > 0 else None
    tokens, chosen, entropy = pick(out.logits[:, -1, :], rule.temperature, rule.vocab, rule.top_p, rule.top_k, u)
    record(r, b, tokens, chosen, entropy, rule)


def _fixed(rule: Rule, buffers: dict) -> Rule:
    """`rule` with its tensors copied into buffers kept between calls: CUDA graphs read them at the
    addresses they were captured with (the two stop strings' tables take turns in one buffer)."""

    def kept(name: str, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        buf = buffers.get(("rule", name))
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = buffers["rule", name] = torch.empty_like(t)
            torch._dynamo.mark_static_address(buf)
        return buf.copy_(t)

    return dataclasses.replace(rule, eos=kept("eos", rule.eos), table=kept("table", rule.table), done=kept("done", rule.done))


def decode_static(
    model,
    kv: ColumnCache,
    logits: torch.Tensor,
    where: torch.Tensor,
    positions: torch.Tensor,
    max_new_tokens: int,
    rule: Rule,
    generator: torch.Generator | None,
    step,
    buffers: dict,
    check_every: int = 8,
):
    """The decode loop over static steps (`step`: `decode_step`, compiled or not), from the
    prefill's `logits` for storage rows that hold contexts `where`. Returns, by context, the
    sampled ids, log-probs, entropies (rows × max_new_tokens), lengths, and whether each row ended
    on the stop string or on end-of-sequence; the cache is left in context order."""
    n, device = len(where), logits.device
    b = rows_bucket(n)
    kv.make_static(b, columns_bucket(kv.columns + max_new_tokens - 1))
    storage = kv.mask.shape[0]
    r = buffers.get(("rows", storage))
    if r is None or r.ids.shape[1] < max_new_tokens:
        r = buffers["rows", storage] = Rows(storage, max_new_tokens, device)
    r.start(where, positions)
    rule = _fixed(rule, buffers)

    def draw_uniforms():
        if rule.temperature > 0:
            r.u[:n] = torch.rand((n, 1), generator=generator, device=device, dtype=torch.float64)

    draw_uniforms()
    first = logits.new_zeros((b, logits.shape[1]))
    first[:n] = logits
    tokens, chosen, entropy = pick(first, rule.temperature, rule.vocab, rule.top_p, rule.top_k, r.u[r.where[:b]] if rule.temperature > 0 else None)
    record(r, b, tokens, chosen, entropy, rule)
    drawn, rewind = 1, (1, generator.get_state() if generator is not None else None)
    while drawn < max_new_tokens:
        if (drawn - 1) % check_every == 0:  # the one host sync: still running? fewer than half the bucket?
            alive = int(r.running[:b].sum())
            if alive == 0:
                break
            if rows_bucket(alive) < b:
                order = torch.cat(
                    [r.running[:b].nonzero().squeeze(1), (~r.running[:b]).nonzero().squeeze(1), torch.arange(b, storage, device=device)]
                )
                kv.reorder_(order)
                r.reorder_(order)
                b = rows_bucket(alive)
            rewind = (drawn, generator.get_state() if generator is not None else None)
        draw_uniforms()
        step(model, kv, r, b, rule)
        drawn += 1
    lengths = r.lengths[:n].clone()
    if rule.temperature > 0 and generator is not None:
        # the eager loop draws once per step until its last row ends: as many steps as the longest row
        at, state = rewind
        generator.set_state(state)
        for _ in range(int(lengths.max()) - at):
            torch.rand((n, 1), generator=generator, device=device, dtype=torch.float64)
    kv.reorder_(torch.argsort(r.where))
    kv.end_static(int(kv.write))
    kv.active = n
    return (r.ids[:n, :max_new_tokens], r.logps[:n, :max_new_tokens], r.ents[:n, :max_new_tokens], lengths, r.ended_stop[:n], r.ended_eos[:n])


COMPILE_SETTINGS = ("auto", "on", "off")


class CompiledStep:
    """`decode_step` compiled into one graph (`torch.compile`, fullgraph, static shapes; CUDA
    graphs on a GPU). Where compiling fails (inductor needs a C++ compiler and Python's headers on
    a CPU, Triton on a GPU), `rollout.compile: on` stops with the cause; `auto` warns once and
    runs the step uncompiled for the rest of the call (`failed` then tells the sampler to decode
    eagerly from the next call on). A failed compile has run nothing, so the step's tensors are as
    they were."""

    def __init__(self, device: torch.device, strict: bool):
        self.cuda, self.strict, self.failed = device.type == "cuda", strict, None
        # one graph per shape: rows bucket × columns bucket × temperature × with or without a stop
        # string, a few dozen over a run, past dynamo's default limit of 8 per function
        for limit in ("recompile_limit", "accumulated_recompile_limit"):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 1024))
        self.fn = torch.compile(decode_step, fullgraph=True, dynamic=False, mode="reduce-overhead" if self.cuda else "default")

    def __call__(self, *args) -> None:
        if self.failed:
            return decode_step(*args)
        try:
            return self.fn(*args)
        except Exception as e:  # dynamo, inductor, or the C++/Triton toolchain under them
            cause = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            if self.strict:
                raise RicepoError(
                    f"rollout.compile: on, and compiling the decode step failed ({cause}); set rollout.compile: auto to fall back to the eager step"
                ) from e
            self.failed = cause
            print(f"warning: compiling the decode step failed ({cause}); decoding eagerly", file=sys.stderr, flush=True)
            return decode_step(*args)

    def describe(self) -> str:
        if self.failed:
            return f"eager decode step (rollout.compile: auto; compiling failed: {self.failed})"
        return "compiled decode step (torch.compile, static shapes, grouped-query heads packed" + (", CUDA graphs)" if self.cuda else ")")


def choose_step(model, setting: str) -> tuple[CompiledStep | None, str]:
    """The decode step `rollout.compile` asks for: a `CompiledStep`, or None for the eager loop with
    the reason. `auto` compiles on a GPU, where an eager step is bound by kernel launches; on a CPU
    it keeps the eager loop: each new shape costs seconds of C++ compilation there, more than a
    short run gains (docs/measurements.md)."""
    if setting not in COMPILE_SETTINGS:
        raise RicepoError(f"rollout.compile: {setting!r} is not one of {', '.join(COMPILE_SETTINGS)}")
    if setting == "off":
        return None, "eager decode step (rollout.compile: off)"
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in ("sdpa", NAME):
        if setting == "on":
            raise RicepoError(
                f"rollout.compile: on, but the model's attention is {impl!r}; the static step "
                "passes sdpa's boolean mask (load it with attn_implementation='sdpa')"
            )
        return None, f"eager decode step (rollout.compile: auto; {impl} attention)"
    device = next(model.parameters()).device
    if setting == "auto" and device.type != "cuda":
        return None, "eager decode step (rollout.compile: auto; compiled on a GPU only)"
    use_packed_attention(model)
    return CompiledStep(device, strict=setting == "on"), ""
