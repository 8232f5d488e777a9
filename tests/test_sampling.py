"""The prefix cache: continuing a batch from the previous call's KV cache gives what a fresh
prefill of the whole context gives, and only the new tokens are fed."""

import pytest
import torch

from conftest import ROLLOUT


@pytest.fixture(scope="module")
def tiny(tiny_backbone):
    from ricepo.agent.models import load_backbone

    model, tok = load_backbone(str(tiny_backbone))
    return model.eval(), tok


def _contexts(tok):
    texts = ["two sum of an array", "shortest path in a weighted graph with many nodes", "binary search"]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_cached_continuation_matches_a_fresh_prefill(tiny):
    from ricepo.agent.sampling import sample

    model, tok = tiny
    ctx = _contexts(tok)
    first, cache = sample(model, tok, ctx, max_new_tokens=6, stop="</think>", temperature=0.0, generator=None)
    # rows of different lengths get different glue, as the harness appends after a phase
    glue = [tok(g, add_special_tokens=False)["input_ids"] for g in ("\n<summary>", " x", " x y z q")]
    longer = [c + f.ids + g for c, f, g in zip(ctx, first, glue)]
    assert cache.usable_for(longer)

    new_tokens = max(len(lg) - len(h) for lg, h in zip(longer, cache.held))
    width = _cached_equals_fresh(model, tok, longer, cache)
    assert width == new_tokens < max(len(x) for x in longer), "only the new tokens are fed"


def _cached_equals_fresh(model, tok, contexts, cache) -> int:
    """Greedy continuation from `cache` equals a fresh prefill's (ids, log-probs, entropies);
    returns how many columns the cached call's first forward pass fed."""
    from ricepo.agent.sampling import sample

    widths = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: widths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        cached, _ = sample(model, tok, contexts, max_new_tokens=6, stop="</summary>", temperature=0.0, generator=None, cache=cache)
    finally:
        hook.remove()
    fresh, _ = sample(model, tok, contexts, max_new_tokens=6, stop="</summary>", temperature=0.0, generator=None)
    for a, b in zip(cached, fresh):
        assert a.ids == b.ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.entropies == pytest.approx(b.entropies, abs=1e-4)
    return widths[0]


def test_a_cache_of_other_rows_is_not_used(tiny):
    from ricepo.agent.sampling import sample

    model, tok = tiny
    ctx = _contexts(tok)
    _, cache = sample(model, tok, ctx, max_new_tokens=3, stop="</think>", temperature=0.0, generator=None)
    assert not cache.usable_for(ctx[:2])  # fewer rows
    assert not cache.usable_for([ctx[1], ctx[0], ctx[2]])  # rows swapped
    assert not cache.usable_for(cache.held)  # nothing new to feed
    torch.manual_seed(0)
    a, _ = sample(model, tok, ctx[:2], max_new_tokens=3, stop="</think>", temperature=0.0, generator=None, cache=cache)
    b, _ = sample(model, tok, ctx[:2], max_new_tokens=3, stop="</think>", temperature=0.0, generator=None)
    assert [x.ids for x in a] == [x.ids for x in b]


def test_top_p_and_top_k_keep_the_nucleus_by_hand():
    from ricepo.agent.distribution import truncated

    probs = torch.tensor([[0.05, 0.3, 0.5, 0.15]])  # unsorted on purpose
    kept = lambda p, k: truncated(probs.log(), p, k).exp()[0].tolist()  # noqa: E731
    assert kept(0.8, 0) == pytest.approx([0, 0.3, 0.5, 0])  # 0.5 + 0.3 reaches 0.8
    assert kept(0.81, 0) == pytest.approx([0, 0.3, 0.5, 0.15])
    assert kept(1.0, 1) == pytest.approx([0, 0, 0.5, 0])
    assert kept(0.01, 3) == pytest.approx([0, 0, 0.5, 0])  # the top token always stays
    assert kept(1.0, 0) == pytest.approx([0.05, 0.3, 0.5, 0.15])


def test_evaluation_decoding_greedy_or_the_backbones_settings():
    from ricepo.agent.rollout import RolloutSettings

    rollout = {**ROLLOUT, "temperature": 1.0, "max_depth": 2}
    greedy = RolloutSettings.for_evaluation(rollout, "greedy", {"temperature": 0.6, "top_p": 0.95})
    assert (greedy.temperature, greedy.top_p, greedy.top_k) == (0.0, 1.0, 0)
    vendor = RolloutSettings.for_evaluation(rollout, "backbone", {"temperature": 0.6, "top_p": 0.95, "top_k": 20})
    assert (vendor.temperature, vendor.top_p, vendor.top_k, vendor.max_depth) == (0.6, 0.95, 20, 2)
    train = RolloutSettings.from_config(rollout)
    assert (train.top_p, train.top_k) == (1.0, 0)


def test_rows_dropped_from_the_batch_keep_their_cache(tiny):
    """A trajectory that ended drops out of the next call; the others still continue their rows."""
    from ricepo.agent.sampling import sample

    model, tok = tiny
    ctx = _contexts(tok)
    first, cache = sample(model, tok, ctx, max_new_tokens=4, stop="</think>", temperature=0.0, generator=None)
    glue = tok("\n<summary>", add_special_tokens=False)["input_ids"]
    keep = [ctx[0] + first[0].ids + glue, ctx[2] + first[2].ids + glue]
    assert cache.rows_for(keep) == [0, 2]
    assert cache.rows_for([keep[1], keep[0]]) is None  # out of order: a fresh prefill
    assert _cached_equals_fresh(model, tok, keep, cache) == len(glue) + 1, "only each row's last sampled token and the glue are fed"


def test_ids_past_the_tokenizer_are_not_actions():
    """Qwen's embedding has more rows than its tokenizer has tokens: those ids get no mass."""
    import math

    from ricepo.agent.distribution import policy_logprobs

    logp = policy_logprobs(torch.tensor([[0.0, 0.0, 5.0]]), 1.0, vocab=2)
    assert logp[0, :2].tolist() == pytest.approx([math.log(0.5)] * 2) and logp[0, 2] == float("-inf")
    # temperature 2 halves the logits before the softmax: [0, 1] -> softmax([0, 0.5])
    logp = policy_logprobs(torch.tensor([[0.0, 1.0]]), 2.0, vocab=2)
    assert logp.exp()[0].tolist() == pytest.approx([1 / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))])


def test_a_bf16_sampler_runs_its_own_copy_and_loads_the_trainers_weights(tiny_backbone):
    from ricepo.agent.models import load_backbone
    from ricepo.agent.sampling import TransformersSampler

    model, tok = load_backbone(str(tiny_backbone))
    sampler = TransformersSampler(model, tok, torch.bfloat16)
    assert sampler.copied and next(sampler.model.parameters()).dtype == torch.bfloat16
    # buffers (rotary frequencies) keep float32, as an inference engine keeps them
    assert all(b.dtype == torch.float32 for b in sampler.model.buffers() if b.is_floating_point())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    before = next(sampler.model.parameters()).float().clone()
    sampler.sync_weights(model)
    after = next(sampler.model.parameters()).float()
    assert torch.equal(after, next(model.parameters()).to(torch.bfloat16).float()) and not torch.equal(after, before)
    assert TransformersSampler(model, tok).model is model and TransformersSampler(model, tok, torch.float32).model is model


def test_draw_samples_the_distribution_and_never_a_zero_probability_token():
    from ricepo.agent.distribution import draw

    probs = torch.tensor([[0.1, 0.2, 0.0, 0.7], [0.0, 0.0, 1.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([draw(probs, g) for _ in range(20000)])
    freq = torch.stack([(draws[:, 0] == i).float().mean() for i in range(4)])
    assert freq.tolist() == pytest.approx([0.1, 0.2, 0.0, 0.7], abs=0.01)  # 4 standard errors at n = 20000
    assert (draws[:, 0] != 2).all() and (draws[:, 1] == 2).all()


def _reference_sample(model, tok, contexts, max_new_tokens, stop, temperature, generator):
    """The sampler's contract with no cache and no tricks: each step recomputes every row's whole
    context, draws one uniform per row in row order until every row has ended, and looks for
    the stop string in the decoded text."""
    from ricepo.agent.distribution import draw, policy_logprobs
    from ricepo.agent.sampling import Sampled, eos_ids

    eos, rows = eos_ids(model, tok), [list(c) for c in contexts]
    out = [Sampled([], [], [], False) for _ in contexts]
    active = [True] * len(rows)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = torch.stack([model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows])
            logp = policy_logprobs(logits, temperature, len(tok))
            entropy = -(logp.exp() * logp.masked_fill(logp == float("-inf"), 0.0)).sum(-1)
            tokens = draw(logp.exp(), generator) if temperature > 0 else logp.argmax(-1)
            for i, t in enumerate(tokens.tolist()):
                if not active[i]:
                    continue
                r = out[i]
                r.ids.append(t)
                r.logprobs.append(logp[i, t].item())
                r.entropies.append(entropy[i].item())
                rows[i].append(t)
                if t in eos:
                    r.eos, active[i] = True, False
                elif stop in tok.decode(r.ids, skip_special_tokens=False):
                    r.stopped, active[i] = True, False
            if not any(active):
                break
    return out


def _assert_same(ours, ref):
    for a, b in zip(ours, ref):
        assert (a.ids, a.stopped, a.eos) == (b.ids, b.stopped, b.eos)
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.entropies == pytest.approx(b.entropies, abs=1e-4)


def test_the_sampler_matches_a_full_recompute_in_fp32_with_the_same_generator(tiny):
    """Tokens, log-probs, entropies and how each phase ended, at temperature 1 with one seed, for
    a batch with repeated contexts and a shared prefix (prefilled once), rows that end at
    different steps (moved out of the forward pass), and a second call continuing the cache."""
    from ricepo.agent.sampling import sample

    model, tok = tiny
    head = tok("Question: ", add_special_tokens=False)["input_ids"]
    ctx = [head + c for c in _contexts(tok)]
    ctx = [ctx[0], ctx[1], ctx[0], ctx[2], ctx[1], ctx[0]]
    ours, cache = sample(model, tok, ctx, max_new_tokens=12, stop="e", temperature=1.0, generator=torch.Generator().manual_seed(3))
    ref = _reference_sample(model, tok, ctx, 12, "e", 1.0, torch.Generator().manual_seed(3))
    _assert_same(ours, ref)
    assert len({len(r.ids) for r in ours}) >= 3, "rows must end at different steps for this test to mean anything"

    glue = tok(" x y", add_special_tokens=False)["input_ids"]
    longer = [c + r.ids + glue for c, r in zip(ctx, ours)]
    keep = [longer[i] for i in (0, 2, 3, 5)]
    ours2, _ = sample(model, tok, keep, max_new_tokens=8, stop="e", temperature=1.0, generator=torch.Generator().manual_seed(4), cache=cache)
    _assert_same(ours2, _reference_sample(model, tok, keep, 8, "e", 1.0, torch.Generator().manual_seed(4)))


def test_top_k_1_or_a_tiny_top_p_samples_the_greedy_tokens_and_records_the_full_distribution(tiny):
    """Truncation changes which token is drawn, never what is recorded: top_k 1, or a top_p below
    1/vocab (the top token alone holds at least that much), leaves only the most likely token, so
    every generator draws the greedy tokens, with the log-probs and entropies of the whole
    distribution. At temperature 1 that is the unscaled distribution temperature 0 reports."""
    from ricepo.agent.sampling import sample

    model, tok = tiny
    ctx = _contexts(tok)

    def run(temperature, seed, **truncation):
        return sample(
            model, tok, ctx, max_new_tokens=8, stop="</think>", temperature=temperature, generator=torch.Generator().manual_seed(seed), **truncation
        )[0]

    greedy = run(0.0, 0)
    assert all(h > 1.0 for r in greedy for h in r.entropies), "a spread distribution, or truncation changes nothing"
    for seed in range(3):
        assert [r.ids for r in run(1.0, seed)] != [r.ids for r in greedy], "without truncation the draw is random"
        for truncation in ({"top_k": 1}, {"top_p": 0.5 / len(tok)}):
            _assert_same(run(1.0, seed, **truncation), greedy)


def test_a_multi_token_stop_string_ends_a_phase_exactly_where_the_text_ends(smollm2_tokenizer):
    """SmolLM2 writes `</think>` as `</`, `think`, `>`: the token-id automaton must stop on the
    token that completes the string, as a search of the decoded text does, wherever the
    tokenizer cuts it (inside a longer token, after a false start, never at all)."""
    from ricepo.agent.stop_strings import StopMatcher

    tok, stop = smollm2_tokenizer, "</think>"
    matcher = StopMatcher(tok, stop)

    def first_hit(ids):
        states = torch.zeros(1, dtype=torch.long)
        for i, t in enumerate(ids):
            states = matcher.advance(states, torch.tensor([t]))
            if states.item() == matcher.done:
                return i
        return None

    def by_text(ids):
        return next((i for i in range(len(ids)) if stop in tok.decode(ids[: i + 1], skip_special_tokens=False)), None)

    for text in [
        "so the answer is x</think>",
        "a </think>\nb",
        "<</think>",
        "</thi</think>",
        "</th ink>",
        "</think",
        "think>",
        "<</<//think></think>",
    ]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert first_hit(ids) == by_text(ids), text
    ids = tok("so the answer is x</think>", add_special_tokens=False)["input_ids"]
    assert len(ids) > 3 and first_hit(ids) == len(ids) - 1

    # random cuts of the stop string, each part tokenised alone, between random pieces of it;
    # one part in three left out (a false start): hits, near misses and overlaps in every order
    vocab_pieces = {stop[a:b] for a in range(len(stop)) for b in range(a + 1, len(stop) + 1)}
    pieces = [tok(w, add_special_tokens=False)["input_ids"] for w in sorted(vocab_pieces | {" ", "\n", "x"})]
    g = torch.Generator().manual_seed(0)

    def randint(n):
        return int(torch.randint(n, (1,), generator=g))

    hits = 0
    for _ in range(500):
        cuts = sorted({randint(len(stop) - 1) + 1 for _ in range(randint(4))})
        parts = [stop[a:b] for a, b in zip([0] + cuts, cuts + [len(stop)])]
        if randint(3) == 0:
            del parts[randint(len(parts))]
        ids = [t for _ in range(randint(3)) for t in pieces[randint(len(pieces))]]
        ids += [t for p in parts for t in tok(p, add_special_tokens=False)["input_ids"]]
        ids += [t for _ in range(randint(3)) for t in pieces[randint(len(pieces))]]
        assert first_hit(ids) == by_text(ids), tok.decode(ids)
        hits += first_hit(ids) is not None
    assert 100 < hits < 450


def test_rows_that_start_beside_cached_rows_and_repacked_holes_match_a_fresh_prefill(tiny):
    """Continuous batching: a new row takes a finished row's slot, prefilled apart and appended to
    the cache; over rounds the left rows' columns become holes, and the layout is repacked once
    they are half of it. Every round's continuation equals a fresh prefill's."""
    from ricepo.agent.sampling import sample

    model, tok = tiny
    texts = ["two sum", "graph path", "binary search tree", "heap sort", "trie of words", "union find", "dp"]
    starts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    glue = tok(" x", add_special_tokens=False)["input_ids"]
    first, cache = sample(model, tok, starts[:2], max_new_tokens=5, stop="</think>", temperature=0.0, generator=None)
    rows = [c + r.ids + glue for c, r in zip(starts[:2], first)]
    columns, repacked = [], False
    for new in starts[2:]:
        rows = [rows[1], new]  # the older row left; a new query takes its slot
        assert cache.plan(rows) == [1, None]
        got, cache = sample(model, tok, rows, max_new_tokens=5, stop="</think>", temperature=0.0, generator=None, cache=cache)
        fresh, _ = sample(model, tok, rows, max_new_tokens=5, stop="</think>", temperature=0.0, generator=None)
        _assert_same(got, fresh)
        repacked |= bool(columns) and cache.kv.columns < columns[-1]
        columns.append(cache.kv.columns)
        rows = [c + r.ids + glue for c, r in zip(rows, got)]
    assert repacked, columns
    assert max(columns) <= 2 * max(len(h) for h in cache.held) + 2 * (5 + len(glue))


def test_without_a_stop_string_rows_run_to_eos_or_the_budget_and_decode_alike(tiny):
    """`stop=None` (the benchmark's raw decoding): no row ends on a string, so a row that writes
    `</think>` runs on; up to where a row with the stop string ends, both give the same tokens."""
    from ricepo.agent.sampling import sample

    model, tok = tiny
    ctx = _contexts(tok)
    free, _ = sample(model, tok, ctx, max_new_tokens=12, stop=None, temperature=1.0, generator=torch.Generator().manual_seed(3))
    stopped, _ = sample(model, tok, ctx, max_new_tokens=12, stop="e", temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert not any(r.stopped for r in free) and all(r.eos or len(r.ids) == 12 for r in free)
    assert any(r.stopped for r in stopped), "the control: a one-letter stop string ends some row"
    for f, s in zip(free, stopped):
        assert f.ids[: len(s.ids)] == s.ids and len(f.ids) >= len(s.ids)
