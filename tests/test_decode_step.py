"""The static decode step (`agent/decode_step.py`): compiled, it samples what the eager loop samples,
alone or in a batch, with one graph per shape, no host sync inside, and tensors that keep their
addresses; where compiling fails the sampler falls back with one warning line."""

import copy

import pytest
import torch

# a logit added to end-of-sequence, so that rows end at different steps and the static loop moves
# to smaller buckets (with none, the tiny backbone's rows all run to the budget)
EOS_BIAS = {0.0: 1.0, 1.0: 5.0}  # by temperature: greedy ends 3 of 5 rows at once, sampling ends some later


def _biased(model, tok):
    bias = torch.zeros(len(tok))
    model.lm_head.register_forward_hook(lambda m, a, out: out + bias)
    model.eos_bias = lambda temperature: bias.index_fill_(0, torch.tensor([tok.eos_token_id]), EOS_BIAS[temperature])
    return model


@pytest.fixture(scope="module")
def tiny(tiny_backbone):
    from ricepo.agent.models import load_backbone

    model, tok = load_backbone(str(tiny_backbone))
    return _biased(model.eval(), tok), tok


def _contexts(tok, n: int = 5) -> list[list[int]]:
    texts = [
        "two sum of an array",
        "shortest path in a weighted graph with many nodes",
        "binary search",
        "longest common subsequence of two strings",
        "merge intervals",
        "topological sort of a graph",
    ]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts[:n]]


def _calls(sampler, tok, seed: int, temperature: float, ctx: list[list[int]] | None = None):
    """A reasoning call, a summary call continuing every row (as a round of the agent), then a call
    where one row has left and a new one joins."""
    g = torch.Generator().manual_seed(seed)
    sampler.model.eos_bias(temperature)
    ctx = ctx or _contexts(tok)
    first = sampler.sample(ctx, max_new_tokens=14, stop="</think>", temperature=temperature, generator=g)
    glue = tok("\n<summary>", add_special_tokens=False)["input_ids"]
    longer = [c + r.ids + glue for c, r in zip(ctx, first)]
    second = sampler.sample(longer, max_new_tokens=8, stop="</summary>", temperature=temperature, generator=g)
    # continuous batching: the first row leaves, the others go on, a new query takes a slot
    third = sampler.sample(
        [c + r.ids for c, r in zip(longer[1:], second[1:])] + [ctx[0][::-1]], max_new_tokens=8, stop="</think>", temperature=temperature, generator=g
    )
    return first + second + third, g.get_state()


def _assert_same(a, b, tol=1e-5):
    for x, y in zip(a, b, strict=True):
        assert x.ids == y.ids
        assert (x.stopped, x.eos) == (y.stopped, y.eos)
        assert x.logprobs == pytest.approx(y.logprobs, abs=tol)
        assert x.entropies == pytest.approx(y.entropies, abs=tol)


def test_the_compiled_step_samples_what_the_eager_loop_samples(tiny):
    """Inductor's graph, fp32, the same generator: the same tokens, log-probs and entropies within
    1e-5, rows ending alike, and the generator left where the eager loop leaves it (so the next
    call draws alike too), greedy and sampled, over a call and its continuation."""
    from ricepo.agent.sampling import TransformersSampler

    model, tok = tiny
    eager, compiled = TransformersSampler(model, tok, compile="off"), TransformersSampler(model, tok, compile="on")
    assert "compiled decode step" in compiled.describe() and "rollout.compile: off" in eager.describe()
    for temperature in (0.0, 1.0):
        ours, state = _calls(compiled, tok, 0, temperature)
        theirs, state_eager = _calls(eager, tok, 0, temperature)
        _assert_same(ours, theirs)
        assert torch.equal(state, state_eager)
        lengths = sorted(len(r.ids) for r in theirs[:5])
        assert lengths[0] < lengths[-1] == 14, "rows end at different steps: the loop changes bucket"
    assert compiled.step is not None, "no fallback happened"


def _counting_backend(graphs: list):
    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return backend


def test_one_graph_per_shape_without_host_syncs(tiny):
    """One graph per shape (rows bucket, storage rows and columns), whatever the calls' contexts,
    positions, stop strings and steps: over four calls, as many compilations as distinct shapes
    stepped; the captured graph holds the forward pass and the sampling, and no operation that
    reads a value back to the host."""
    from ricepo.agent.decode_step import decode_step
    from ricepo.agent.sampling import sample

    model, tok = tiny
    model.eos_bias(1.0)
    graphs, shapes, steps = [], set(), []
    compiled = torch.compile(decode_step, backend=_counting_backend(graphs), fullgraph=True, dynamic=False)

    def step(model, kv, r, b, rule):
        shapes.add((b, tuple(kv.mask.shape)))
        steps.append(b)
        return compiled(model, kv, r, b, rule)

    buffers: dict = {}
    for stop, seed in (("</think>", 1), ("</summary>", 2), ("</think>", 3), ("</summary>", 4)):
        ctx = [c[:: seed % 2 * 2 - 1] + [5] * seed for c in _contexts(tok, 4)]  # other tokens, other lengths
        sample(
            model, tok, ctx, max_new_tokens=10, stop=stop, temperature=1.0, generator=torch.Generator().manual_seed(seed), step=step, buffers=buffers
        )
    assert len(steps) > 3 * len(shapes) and len(shapes) >= 2
    assert len(graphs) == len(shapes), f"{len(graphs)} compilations for {len(shapes)} shapes"
    ops = {str(getattr(n.target, "__name__", n.target)) for gm in graphs for n in gm.graph.nodes if n.op in ("call_function", "call_method")}
    assert {"scaled_dot_product_attention", "log_softmax", "searchsorted", "isin"} <= ops, sorted(ops)
    syncing = {"item", "tolist", "nonzero", "multinomial", "masked_select", "_local_scalar_dense", "unique", "__bool__", "cpu", "numpy"}
    assert not ops & syncing, ops & syncing


def test_a_row_alone_samples_as_inside_a_batch(tiny):
    """Greedy, fp32: a row decoded alone (bucket 1) equals the same row among five (bucket 8, three
    padding rows, rows leaving as they end)."""
    from ricepo.agent.decode_step import decode_step
    from ricepo.agent.sampling import sample

    model, tok = tiny
    model.eos_bias(0.0)
    ctx = _contexts(tok)
    step = torch.compile(decode_step, backend=_counting_backend([]), fullgraph=True, dynamic=False)
    batch, _ = sample(model, tok, ctx, max_new_tokens=12, stop="</think>", temperature=0.0, generator=None, step=step, buffers={})
    for i in (0, 3):
        alone, _ = sample(model, tok, [ctx[i]], max_new_tokens=12, stop="</think>", temperature=0.0, generator=None, step=step, buffers={})
        _assert_same(alone, [batch[i]])


def test_the_steps_tensors_keep_their_addresses(tiny_backbone):
    """Every tensor a step reads or writes (keys, values, mask, write position, per-row state and
    results, end-of-sequence ids and stop table, weights) has the same address at every step of a call, across the moves to smaller
    buckets, in the next calls continuing the rows (one leaving, a new one joining), and after
    `sync_weights`."""
    from ricepo.agent import decode_step as ds
    from ricepo.agent.models import load_backbone
    from ricepo.agent.sampling import TransformersSampler

    model, tok = load_backbone(str(tiny_backbone))
    _biased(model, tok).eos_bias(1.0)
    sampler = TransformersSampler(model, tok, separate=True, compile="on")
    seen, buckets = [], []

    def spy(model, kv, r, b, rule):
        kv_tensors = [kv.mask, kv.write] + [t for layer in kv.past.layers for t in (layer.store_k, layer.store_v)]
        rule_tensors = [rule.eos, rule.table, rule.done]  # the two calls' stop strings share a buffer
        seen.append(tuple(t.data_ptr() for t in kv_tensors + r.tensors() + rule_tensors + list(model.parameters())))
        buckets.append(b)
        return ds.decode_step(model, kv, r, b, rule)

    sampler._step.fn = spy  # the uncompiled step, watched
    g = torch.Generator().manual_seed(0)
    ctx = _contexts(tok)
    first = sampler.sample(ctx, max_new_tokens=14, stop="</think>", temperature=1.0, generator=g)
    assert min(buckets) < max(buckets), "rows ended and the loop moved to a smaller bucket"
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    sampler.sync_weights(model)
    glue = tok(" x", add_special_tokens=False)["input_ids"]
    longer = [c + r.ids + glue for c, r in zip(ctx, first)]
    second = sampler.sample(longer, max_new_tokens=4, stop="</summary>", temperature=1.0, generator=g)
    # continuous batching: a row leaves, the others continue, a new query takes a slot
    calls = len(seen)
    sampler.sample(
        [c + r.ids + glue for c, r in zip(longer[1:], second[1:])] + _contexts(tok, 6)[5:],
        max_new_tokens=4,
        stop="</think>",
        temperature=1.0,
        generator=g,
    )
    assert calls > 14 and len(seen) > calls and len(set(seen)) == 1
    assert torch.equal(next(sampler.model.parameters()), next(model.parameters()))


def test_a_failed_compile_falls_back_with_one_warning(tiny, capsys):
    """Where inductor cannot build (here: no C++ compiler), `auto` warns once and decodes eagerly,
    sampling what the eager loop samples; `on` stops with the cause."""
    import torch._inductor.config as inductor

    from ricepo.agent.decode_step import CompiledStep
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.errors import RicepoError

    model, tok = tiny
    model = copy.deepcopy(model)  # a model dynamo has not seen: its graphs compile anew
    ctx = [c * 10 for c in _contexts(tok, 3)]  # shapes no other test compiles, so no kernel is cached
    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++"), "fx_graph_cache": False}):
        sampler = TransformersSampler(model, tok, compile="on")
        sampler._step = CompiledStep(sampler.device, strict=False)  # as `auto` on a GPU
        ours, _ = _calls(sampler, tok, 0, 1.0, ctx)
        strict = TransformersSampler(model, tok, compile="on")
        with pytest.raises(RicepoError, match="rollout.compile: on, and compiling the decode step failed"):
            strict.sample(ctx, max_new_tokens=4, stop=None, temperature=1.0, generator=torch.Generator().manual_seed(0))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "compiling the decode step failed" in line]
    assert len(warnings) == 1, warnings
    assert sampler.step is None and "compiling failed" in sampler.describe()
    theirs, _ = _calls(TransformersSampler(model, tok, compile="off"), tok, 0, 1.0, ctx)
    _assert_same(ours, theirs)


def test_compile_setting_is_checked(tiny):
    from ricepo.agent.decode_step import choose_step
    from ricepo.decode_shapes import columns_bucket, rows_bucket
    from ricepo.errors import RicepoError

    model, _ = tiny
    with pytest.raises(RicepoError, match="rollout.compile: 'yes' is not one of auto, on, off"):
        choose_step(model, "yes")
    step, why = choose_step(model, "auto")
    assert step is None and why == "eager decode step (rollout.compile: auto; compiled on a GPU only)"
    assert [rows_bucket(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 16]
    assert [columns_bucket(c) for c in (1, 64, 65, 80, 81, 128, 129, 1000, 4097)] == [64, 64, 80, 80, 96, 128, 160, 1024, 5120]
