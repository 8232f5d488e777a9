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
