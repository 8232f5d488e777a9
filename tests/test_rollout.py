import math

import pytest
import torch

from conftest import ROLLOUT, TEMPLATE


@pytest.fixture(scope="module")
def rollouts(fixture_task, tiny_backbone):
    from ricepo.agent.models import load_backbone
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    model, tok = load_backbone(str(tiny_backbone))
    agent = Agent(TransformersSampler(model, tok), tok, TEMPLATE, RolloutSettings.from_config(ROLLOUT))
    jobs = [(f"{qid}#{g}", "leetcode", qid, q["text"]) for qid, q in list(queries.items())[:3] for g in range(2)]
    # seed 6: one of the six rows draws the end-of-sequence token early, the others run to full depth
    trajs = agent.rollout(jobs, {"leetcode": env}, torch.Generator().manual_seed(6))
    return model, tok, env, agent, trajs


def test_transcript_structure_and_loss_mask(rollouts):
    model, tok, env, agent, trajs = rollouts
    assert any(t.ended for t in trajs) and not all(t.ended for t in trajs), "this seed has both cases"
    for t in trajs:
        # the maximum depth, or fewer steps because the policy's eos ended the episode
        assert len(t.steps) == ROLLOUT["max_depth"] or (t.ended and len(t.steps) < ROLLOUT["max_depth"])
        assert [s.eos for s in t.steps[:-1]] == [False] * (len(t.steps) - 1)
        mask = t.loss_mask()
        kinds = [None] * len(t.tokens)
        for seg in t.segments:
            kinds[seg.start : seg.end] = [seg.kind] * (seg.end - seg.start)
        assert None not in kinds, "segments must tile the sequence"
        for i, (m, k) in enumerate(zip(mask, kinds)):
            assert m == (k in ("reasoning", "summary")), f"token {i} of kind {k} has mask {m}"
        obs = [s for s in t.segments if s.kind == "observation"]
        assert len(obs) == len(t.steps) - 1
        assert all("<tool_response>" in tok.decode(t.tokens[s.start : s.end]) for s in obs)
        # sampled tokens carry log-probs and entropies; harness tokens carry none
        for i, m in enumerate(mask):
            assert math.isnan(t.logprobs[i]) != m
        assert t.final_reward == t.steps[-1].local_reward


def test_spans_hold_exactly_the_sampled_tokens_of_their_text(rollouts):
    """Training uses the sampled ids, never a re-encoding; each span decodes to the step's text."""
    from ricepo.agent.rollout import strip_tags

    _, tok, _, _, trajs = rollouts
    for t in trajs:
        for i, step in enumerate(t.steps):
            for kind, text in (("reasoning", step.reasoning), ("summary", step.summary)):
                seg = t.span(kind, i)
                if seg is None:  # the reasoning ended the episode: no summary was sampled
                    assert kind == "summary" and step.eos and text == "" and not step.parseable
                    continue
                assert strip_tags(tok.decode(t.tokens[seg.start : seg.end], skip_special_tokens=True)) == text
                assert seg.end - seg.start <= ROLLOUT[f"max_{kind}_tokens"]


def test_sampled_logprobs_match_a_fresh_forward_pass(rollouts):
    """The trainer's recomputed log π (full sequence) must equal what sampling recorded."""
    from ricepo.train.trainer import sequence_logprobs

    model, _, _, agent, trajs = rollouts
    t = trajs[0]
    ids = torch.tensor([t.tokens])
    logp = sequence_logprobs(model, ids, torch.ones_like(ids), agent.s.temperature, len(agent.tok))[0]
    for i, m in enumerate(t.loss_mask()):
        if m:
            assert logp[i - 1].item() == pytest.approx(t.logprobs[i], abs=1e-4)
    # the trainer starts at the first trained token: the same numbers, fewer positions
    start = t.loss_mask().index(True)
    tail = sequence_logprobs(model, ids, torch.ones_like(ids), agent.s.temperature, len(agent.tok), start)[0]
    assert tail.shape[0] == len(t.tokens) - start
    assert torch.allclose(tail, logp[start - 1 :], atol=1e-5)


def full_depth(trajs):
    return next(t for t in trajs if len(t.steps) == ROLLOUT["max_depth"])


def test_an_eos_ends_the_episode_and_nothing_after_it_is_sampled_or_trained(rollouts):
    _, tok, _, _, trajs = rollouts
    for t in (t for t in trajs if t.ended):
        last = [s for s in t.segments if s.kind in ("reasoning", "summary")][-1]
        assert last.end == len(t.tokens), "the eos is the transcript's last token"
        assert t.tokens[-1] == tok.eos_token_id and t.loss_mask()[-1], "the eos is the policy's action: trained"
        assert t.final_reward == t.steps[-1].local_reward


def test_context_before_a_step_restarts_the_agent(rollouts):
    _, tok, _, _, trajs = rollouts
    t = full_depth(trajs)
    ctx = t.context_before(1)
    assert tok.decode(ctx).endswith("<think>\n")
    assert ctx == t.tokens[: t.span("reasoning", 1).start]
    assert t.steps[0].state == [f"query:{t.query_id}"]
    assert t.steps[1].state == t.steps[0].retrieved[: ROLLOUT["docs_in_observation"]]


def test_harness_text_round_trips_and_policy_spans_keep_their_sampled_ids(rollouts):
    """Harness segments (prompt, glue, observation) are encoded text, so decode→encode gives the same
    ids back. Policy spans hold exactly the ids that were sampled (one log-prob each) and are never
    re-encoded: a sampled sequence need not be the tokenizer's canonical encoding of its text."""
    _, tok, _, _, trajs = rollouts
    for t in trajs:
        for seg in t.segments:
            ids = t.tokens[seg.start : seg.end]
            if seg.kind in ("reasoning", "summary"):
                assert not any(math.isnan(x) for x in t.logprobs[seg.start : seg.end])
            elif seg.kind != "prompt":  # the prompt went through the chat template's special tokens
                assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids, seg


def test_branches_copy_the_prefix_and_continue_to_the_maximum_depth(rollouts):
    _, _, env, agent, trajs = rollouts
    t = full_depth(trajs)
    at_root = t.branch(0, "root")
    at_one = t.branch(1, "one", trainable_from=1)
    assert at_one.tokens == t.context_before(1) and at_one.steps == t.steps[:1]
    assert at_one.next_state == t.steps[1].state
    assert at_root.tokens == t.context_before(0) and at_root.steps == []
    # one batch mixes rows at different steps: each continues from its own step
    agent.advance([at_root, at_one], {"leetcode": env}, torch.Generator().manual_seed(1))
    for b in (at_root, at_one):
        assert len(b.steps) == ROLLOUT["max_depth"] or b.ended
        assert b.final_reward == b.steps[-1].local_reward
    assert at_one.tokens[: len(t.context_before(1))] == t.context_before(1)
    assert at_one.steps[0] == t.steps[0]
    # cost counts only what the branch sampled; the loss only covers steps from trainable_from on
    new = [s for s in at_one.segments if s.kind in ("reasoning", "summary") and s.step >= 1]
    assert at_one.generated_tokens == sum(s.end - s.start for s in new)
    mask = at_one.loss_mask()
    assert sum(mask) == at_one.generated_tokens
    assert not any(mask[: at_one.span("reasoning", 1).start])
    with pytest.raises(ValueError, match="no step 5"):
        t.branch(5, "x")


def test_content_tokens_drop_every_piece_of_a_tag_and_eos_with_smollm2(smollm2_tokenizer):
    """SmolLM2 writes `</summary>` as `</`, `summary`, `>`: none of them is summary content."""
    from ricepo.agent.rollout import content_tokens

    tok = smollm2_tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert len(enc("</summary>")) == 3
    ids = enc("protein folding</summary>")
    assert content_tokens(tok, ids) == [True, True, False, False, False]
    assert content_tokens(tok, enc("protein folding") + [tok.eos_token_id]) == [True, True, False]
    assert not any(content_tokens(tok, enc("<summary></summary>")))  # '></' belongs to two tags
    # a token that carries content and the start of a tag ('></' after 'x') counts as tag
    mixed = enc("x") + enc("<summary></summary>")[2:]
    assert tok.decode(mixed) == "x></summary>" and content_tokens(tok, mixed) == [True, False, False, False]
    assert content_tokens(tok, enc("no tags here")) == [True] * len(enc("no tags here"))


class ScriptedSampler:
    """A Sampler that returns set token ids (entropy 9.0 on tag pieces and eos, 1.0 on content),
    to drive the agent through cases a real policy produces only by chance."""

    def __init__(self, tok, script: list[list[list[int]]]):
        self.tok, self.script, self.calls = tok, list(script), []
        self.device = torch.device("cpu")

    def sample(self, contexts, *, max_new_tokens, stop, temperature, generator, top_p=1.0, top_k=0):
        from ricepo.agent.rollout import content_tokens
        from ricepo.agent.sampling import Sampled

        self.calls.append(len(contexts))
        out = []
        for ids in self.script.pop(0)[: len(contexts)]:
            keep = content_tokens(self.tok, ids)
            out.append(
                Sampled(
                    ids=ids,
                    logprobs=[-1.0] * len(ids),
                    entropies=[1.0 if k else 9.0 for k in keep],
                    stopped=stop in self.tok.decode(ids),
                    eos=ids[-1] == self.tok.eos_token_id,
                )
            )
        return out

    def reset(self):
        pass

    def sync_weights(self, model):
        pass


def test_tags_only_summaries_are_never_anchors_and_an_eos_ends_the_episode(smollm2_tokenizer, fixture_task):
    """Row A writes a real summary, row B only tags, row C ends with eos inside its summary, row D
    with eos inside its reasoning. Entropy scores use content tokens only; B's score is undefined
    so RICE-PO's trigger never picks it; C and D stop after their first step."""
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.credit.ricepo import select_anchors
    from ricepo.environments import load_environment
    from ricepo.train.collect import group_for_credit

    tok = smollm2_tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tok.eos_token_id
    script = [
        [enc("think</think>"), enc("think</think>"), enc("think</think>"), enc("think") + [eos]],  # round 1 reasoning
        [enc("graph search</summary>"), enc("<summary></summary>"), enc("graph") + [eos]],  # summaries (A, B, C)
        [enc("more</think>"), enc("more</think>")],  # round 2: A, B only
        [enc("shortest path</summary>"), enc("</summary>")],
    ]
    sampler = ScriptedSampler(tok, script)
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    qid, q = next(iter(queries.items()))
    agent = Agent(sampler, tok, TEMPLATE, RolloutSettings.from_config({**ROLLOUT, "max_depth": 2}))
    a, b, c, d = agent.rollout([(name, "leetcode", qid, q["text"]) for name in "ABCD"], {"leetcode": env})
    assert sampler.calls == [4, 3, 2, 2], "an ended row is not sampled again; D writes no summary"
    assert a.steps[0].summary_entropy == 1.0 and a.steps[0].summary == "graph search"
    assert math.isnan(b.steps[0].summary_entropy) and not b.steps[0].parseable
    assert [len(t.steps) for t in (a, b, c, d)] == [2, 2, 1, 1] and c.ended and d.ended and not a.ended
    assert c.steps[0].summary == "graph" and c.steps[0].summary_entropy == 1.0 and c.tokens[-1] == eos
    assert d.steps[0].summary == "" and d.span("summary", 0) is None and d.tokens[-1] == eos
    anchors = select_anchors(group_for_credit([a, b, c, d]), k=8)
    assert ["B", 0] not in anchors and ["B", 1] not in anchors and ["D", 0] not in anchors
    assert sorted(anchors) == [["A", 0], ["A", 1], ["C", 0]]


def test_empty_summary_retrieves_with_the_query_and_is_flagged(smollm2_tokenizer, fixture_task):
    """Row A writes a summary, row B only tags: B searches with the query alone (not with the tags,
    which a BM25 index may well ignore, so the text searched is what is checked), its step is
    unparseable and its final reward pays the format penalty."""
    from ricepo.agent.rollout import Agent, RolloutSettings, strip_tags
    from ricepo.environments import load_environment

    assert strip_tags("<summary><summary> </summary>") == ""
    assert strip_tags(" foo <summary>bar ") == "foo bar"
    tok = smollm2_tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    sampler = ScriptedSampler(tok, [[enc("think</think>")] * 2, [enc("graph search</summary>"), enc("<summary> </summary>")]])
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    qid, q = next(iter(queries.items()))
    searched = []
    rankings_for = env.rankings_for
    env.rankings_for = lambda items: searched.append([text for _, text in items]) or rankings_for(items)
    settings = RolloutSettings.from_config({**ROLLOUT, "max_depth": 1, "format_penalty": 0.25})
    a, b = Agent(sampler, tok, TEMPLATE, settings).rollout([(name, "leetcode", qid, q["text"]) for name in "AB"], {"leetcode": env})
    # the prompt's search, then the step's
    assert searched == [[q["text"]] * 2, [f"{q['text']} graph search", q["text"]]]
    alone = env.ranking_for(qid, q["text"])
    assert b.final_ranking == alone and b.steps[0].retrieved == [d for d, _ in alone[:10]]
    assert b.steps[0].summary == "" and not b.steps[0].parseable and a.steps[0].parseable
    assert b.steps[0].local_reward == env.score(qid, alone)
    assert b.final_reward == pytest.approx(b.steps[0].local_reward - 0.25)
    assert a.final_reward == a.steps[0].local_reward


@pytest.mark.parametrize("mode", ["query", "last_summary"])
def test_a_last_step_without_a_summary_scores_the_query_alone_or_the_last_summary(smollm2_tokenizer, fixture_task, mode):
    """Two steps: a summary, then only tags (A) or an eos inside the reasoning (B). The last step
    searches, and so the final reward scores, with the query alone (`empty_summary_search: query`)
    or with the query and step 0's summary (`last_summary`); the penalty applies either way."""
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.environments import load_environment

    tok = smollm2_tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    qid, q = next(iter(queries.items()))
    # a summary in the corpus's own words (a far-down document's), so that it moves the ranking
    far = env.ranking_for(qid, q["text"])[30][0]
    summary = " ".join(env.corpus[far]["text"].split()[:4])
    assert env.ranking_for(qid, q["text"]) != env.ranking_for(qid, f"{q['text']} {summary}")
    sampler = ScriptedSampler(
        tok,
        [
            [enc("think</think>")] * 2,
            [enc(f"{summary}</summary>")] * 2,
            [enc("more</think>"), enc("more") + [tok.eos_token_id]],
            [enc("<summary></summary>")],
        ],
    )
    settings = RolloutSettings.from_config({**ROLLOUT, "max_depth": 2, "format_penalty": 0.25, "empty_summary_search": mode})
    a, b = Agent(sampler, tok, TEMPLATE, settings).rollout([(n, "leetcode", qid, q["text"]) for n in "AB"], {"leetcode": env})
    assert a.steps[0].summary == summary
    expected = env.ranking_for(qid, q["text"] if mode == "query" else f"{q['text']} {summary}")
    for t in (a, b):
        assert len(t.steps) == 2 and t.steps[0].parseable and not t.steps[1].parseable
        assert t.final_ranking == expected
        assert t.final_reward == pytest.approx(env.score(qid, expected) - 0.25)
    assert b.ended and b.steps[1].summary == ""


def test_each_distinct_search_is_run_once_and_counted_once(rollouts, fixture_task):
    """`retriever_calls` in the step log counts searches the retriever ran; repeats are cache hits."""
    from ricepo.environments import load_environment

    _, _, _, agent, _ = rollouts
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    ran = []
    search = env.index.search
    env.index.search = lambda text, k: ran.append(text) or search(text, k)
    jobs = [(f"{qid}#{g}", "leetcode", qid, q["text"]) for qid, q in list(queries.items())[:3] for g in range(2)]
    trajs = agent.rollout(jobs, {"leetcode": env}, torch.Generator().manual_seed(3))
    requests = 3 * 2 + sum(len(t.steps) for t in trajs)  # the prompt's first search per row, one per step
    assert env.stats.searches == len(ran) == len(set(ran))
    assert env.stats.searches + env.stats.hits == requests


def test_streamed_evaluation_refills_slots_and_samples_what_the_model_gives(rollouts, fixture_task):
    """Continuous batching: every job comes back once, no sampler call holds more than `slots`
    rows, a trajectory that ended early frees its slot for the next query while the others go on,
    and every sampled token's recorded log-prob is what a fresh forward pass over the finished
    transcript gives (the cache of rows that started beside others held exactly their tokens)."""
    from ricepo.environments import load_environment
    from ricepo.train.trainer import sequence_logprobs

    model, _, _, agent, _ = rollouts
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    jobs = [(f"{qid}#{g}", "leetcode", qid, q["text"]) for qid, q in list(queries.items())[:4] for g in range(2)]
    calls = []  # per sampler call: each context's cache row, None for a row starting there
    sample = agent.sampler.sample

    def recorded(contexts, **kw):
        cache = agent.sampler._cache
        calls.append(cache.plan(contexts) if cache else [None] * len(contexts))
        return sample(contexts, **kw)

    agent.sampler.sample = recorded
    try:
        trajs = list(agent.stream(jobs, {"leetcode": env}, torch.Generator().manual_seed(14), slots=3))
    finally:
        agent.sampler.sample = sample
    assert sorted(t.id for t in trajs) == sorted(j[0] for j in jobs)
    assert max(map(len, calls)) == 3
    assert any(t.ended and len(t.steps) < ROLLOUT["max_depth"] for t in trajs), "this seed ends one episode early"
    assert any(None in c and any(r is not None for r in c) for c in calls), "a row started beside cached rows"
    for t in trajs:
        ids = torch.tensor([t.tokens])
        logp = sequence_logprobs(model, ids, torch.ones_like(ids), agent.s.temperature, len(agent.tok))[0]
        for i, m in enumerate(t.loss_mask()):
            if m:
                assert logp[i - 1].item() == pytest.approx(t.logprobs[i], abs=1e-4), (t.id, i)
