"""RICE-PO's branch collector on rollouts a real policy produces only by chance (a scripted
sampler): a trajectory the policy ended early whose branch runs on past it, and the step log's
per-step sums counting every sampled step once."""

import pytest
import torch

from conftest import ROLLOUT, TEMPLATE
from test_rollout import ScriptedSampler


@pytest.fixture
def collected(smollm2_tokenizer, fixture_task):
    """One query, G = 1: A writes a summary at step 0 and ends with eos inside its step-1 summary.
    Both of its steps are anchors (k = 2, one branch each, M = 2): A@0.b1 grows from before step 0
    and runs all 3 steps; A@1.b1 copies step 0 and samples steps 1 and 2."""
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.credit import get_method
    from ricepo.environments import load_environment
    from ricepo.train.collect import StepContext, collect

    tok = smollm2_tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    think, summary = enc("think</think>"), enc("graph search</summary>")
    script = [
        [think],
        [summary],
        [think],
        [enc("graph") + [tok.eos_token_id]],  # A
        [think, think],
        [summary, summary],
        [think, think],
        [summary, summary],  # both branches, 2 rounds
        [think],
        [summary],
    ]  # A@0.b1's third step
    sampler = ScriptedSampler(tok, script)
    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    qid, q = next(iter(queries.items()))
    agent = Agent(sampler, tok, TEMPLATE, RolloutSettings.from_config({**ROLLOUT, "max_depth": 3}))
    credit, rollout = get_method("ricepo").settings({"anchors": 2, "branches": 2, "train_branches": True})
    ctx = StepContext(
        agent=agent,
        envs={"leetcode": env},
        generator=torch.Generator().manual_seed(0),
        method="ricepo",
        credit_params=credit,
        group_size=1,
        seed=0,
        step=0,
    )
    got = collect(ctx, [("leetcode", qid, q["text"])], rollout)
    assert not sampler.script, "every scripted call was made"
    return got


def test_a_branch_that_runs_past_its_ended_original_is_credited_at_every_step(collected):
    from ricepo.train.trainer import token_advantages

    rows = {t.id.split("#")[1]: t for t in collected.rows}
    assert {k: len(t.steps) for k, t in rows.items()} == {"0": 2, "0@0.b1": 3, "0@1.b1": 3}
    assert rows["0"].ended and not rows["0@0.b1"].ended
    for t in collected.rows:
        assert len(collected.spans[t.id]) == len(t.steps)
        assert len(token_advantages(t, collected.spans[t.id])) == len(t.tokens)
    # A@1.b1's copied step 0 is not trained; its sampled steps are
    late = collected.spans[rows["0@1.b1"].id]
    assert late[0] == {"reasoning": 0.0, "summary": 0.0} and late[2]["summary"] != 0.0


def test_the_step_log_counts_each_sampled_step_once(collected):
    from ricepo.train.collect import sampled_step_sums

    # A's 2 steps, A@0.b1's 3, A@1.b1's steps 1 and 2 (its step 0 is A's, already counted)
    sums = sampled_step_sums(collected.rollouts)
    assert sums["n_steps"] == 2 + 3 + 2
    assert sums["eos_sum"] == 1 and sums["parseable_sum"] == 7
    a, early, late = sorted(collected.rollouts, key=lambda t: t.id)
    sampled = a.steps + early.steps + late.steps[1:]
    assert sums["local_reward_sum"] == pytest.approx(sum(s.local_reward for s in sampled))
