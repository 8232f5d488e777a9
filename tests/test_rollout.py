import math

import pytest
import torch

from conftest import ROLLOUT, TEMPLATE


@pytest.fixture(scope="module")
def rollouts(fixture_task, tiny_backbone):
    from ricepo.agent.models import load_backbone
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    model, tok = load_backbone(str(tiny_backbone))
    agent = Agent(model, tok, TEMPLATE, RolloutSettings.from_config(ROLLOUT))
    jobs = [(f"{qid}#{g}", "leetcode", qid, q["text"]) for qid, q in list(queries.items())[:3] for g in range(2)]
    trajs = agent.rollout(jobs, {"leetcode": env}, torch.Generator().manual_seed(0))
    return model, tok, env, agent, trajs


def test_transcript_structure_and_loss_mask(rollouts):
    model, tok, env, agent, trajs = rollouts
    for t in trajs:
        assert len(t.steps) == ROLLOUT["max_depth"]
        mask = t.loss_mask()
        kinds = [None] * len(t.tokens)
        for seg in t.segments:
            kinds[seg.start:seg.end] = [seg.kind] * (seg.end - seg.start)
        assert None not in kinds, "segments must tile the sequence"
        for i, (m, k) in enumerate(zip(mask, kinds)):
            assert m == (k in ("reasoning", "summary")), f"token {i} of kind {k} has mask {m}"
        obs = [s for s in t.segments if s.kind == "observation"]
        assert len(obs) == ROLLOUT["max_depth"] - 1
        assert all("<tool_response>" in tok.decode(t.tokens[s.start:s.end]) for s in obs)
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
                assert strip_tags(tok.decode(t.tokens[seg.start:seg.end], skip_special_tokens=True)) == text
                assert seg.end - seg.start <= ROLLOUT[f"max_{kind}_tokens"]


def test_sampled_logprobs_match_a_fresh_forward_pass(rollouts):
    """The trainer's recomputed log π (full sequence) must equal what sampling recorded."""
    from ricepo.train.trainer import sequence_logprobs

    model, _, _, agent, trajs = rollouts
    t = trajs[0]
    ids = torch.tensor([t.tokens])
    logp = sequence_logprobs(model, ids, torch.ones_like(ids), agent.s.temperature)[0]
    for i, m in enumerate(t.loss_mask()):
        if m:
            assert logp[i - 1].item() == pytest.approx(t.logprobs[i], abs=1e-4)
    # the trainer starts at the first trained token: the same numbers, fewer positions
    start = t.loss_mask().index(True)
    tail = sequence_logprobs(model, ids, torch.ones_like(ids), agent.s.temperature, start)[0]
    assert tail.shape[0] == len(t.tokens) - start
    assert torch.allclose(tail, logp[start - 1:], atol=1e-5)


def test_context_before_a_step_restarts_the_agent(rollouts):
    _, tok, _, _, trajs = rollouts
    t = trajs[0]
    ctx = t.context_before(1)
    assert tok.decode(ctx).endswith("<think>\n")
    assert ctx == t.tokens[: t.span("reasoning", 1).start]
    assert t.steps[0].state == [f"query:{t.query_id}"]
    assert t.steps[1].state == t.steps[0].retrieved[: ROLLOUT["docs_in_observation"]]


def test_empty_summary_retrieves_with_the_query_and_is_flagged():
    from ricepo.agent.rollout import strip_tags
    assert strip_tags("<summary><summary> </summary>") == ""
    assert strip_tags(" foo <summary>bar ") == "foo bar"


def test_harness_text_round_trips_and_policy_spans_keep_their_sampled_ids(rollouts):
    """Harness segments (prompt, glue, observation) are encoded text, so decode→encode gives the same
    ids back. Policy spans hold exactly the ids that were sampled (one log-prob each) and are never
    re-encoded: a sampled sequence need not be the tokenizer's canonical encoding of its text."""
    _, tok, _, _, trajs = rollouts
    for t in trajs:
        for seg in t.segments:
            ids = t.tokens[seg.start:seg.end]
            if seg.kind in ("reasoning", "summary"):
                assert not any(math.isnan(x) for x in t.logprobs[seg.start:seg.end])
            elif seg.kind != "prompt":   # the prompt went through the chat template's special tokens
                assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids, seg


def test_branches_copy_the_prefix_and_continue_to_the_maximum_depth(rollouts):
    _, _, env, agent, trajs = rollouts
    t = trajs[0]
    at_root = t.branch(0, "root")
    at_one = t.branch(1, "one", trainable_from=1)
    assert at_one.tokens == t.context_before(1) and at_one.steps == t.steps[:1]
    assert at_one.next_state == t.steps[1].state
    assert at_root.tokens == t.context_before(0) and at_root.steps == []
    # one batch mixes rows at different steps: each continues from its own step
    agent.advance([at_root, at_one], {"leetcode": env}, torch.Generator().manual_seed(1))
    for b in (at_root, at_one):
        assert len(b.steps) == ROLLOUT["max_depth"]
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
