"""Every trained method learns a task a tiny model can learn, and does not when the sign of the
advantage is flipped.

The task: every training query is answered by one document, the one about "apple"; the corpus has
one document per word of a small vocabulary, and the query's own words match none of them. An
episode has two rounds (reasoning and summary each; the first round's top document is shown before
the second). A summary retrieves with "query ⊕ summary" and the reward is the last round's
NDCG@10: 1 when the final summary says "apple" and the apple document ranks first, less when other
words push it down, and 0 without it. The policy is a tiny random Llama over a 39-token word-level
vocabulary, so a 3-token summary says "apple" about 7% of the time at the start: rare enough that
the reward starts low, common enough that each step's groups hold a success to learn from. The
real trainer, rollouts, retriever and credit functions run; nothing is mocked except, in the
control, the sign.

Two rounds, because one round hides most of what the methods do: every row's only state is the
query, so GiGPO's and HGPO's step groups are the whole group (GRPO), Tree-GRPO can only expand at
the root, and RICE-PO's residual (final minus local reward) is always 0.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from conftest import train_settings
from ricepo.credit import METHODS as REGISTERED

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "maple",
    "tiger",
    "piano",
    "lemon",
    "ocean",
    "eagle",
    "candle",
    "rocket",
    "garden",
    "silver",
    "winter",
    "forest",
    "violin",
    "copper",
    "desert",
    "island",
    "planet",
    "marble",
    "thunder",
    "meadow",
]
QUERY_WORDS = ["find", "which", "document", "answers", "this"]
METHODS = [name for name, m in REGISTERED.items() if m.rollout]  # every trained method
# HGPO learns last: its credit for the final summary comes only from rows that retrieved the same
# document in the first round. With seed 0 it passes the thresholds by step 30; other seeds
# (a stand-in for other machines' numerics) needed up to 45 steps, so 60 leaves a margin.
STEPS, WINDOW = 60, 5
# The thresholds the test states: over the last WINDOW steps the mean training reward must exceed
# the first WINDOW steps' mean by RISE, and reach FLOOR; with the sign flipped it must not rise.
RISE, FLOOR, FLIPPED_RISE = 0.5, 0.8, 0.05
ROLLOUT = {
    "group_size": 8,
    "max_depth": 2,
    "temperature": 1.0,
    "max_reasoning_tokens": 1,
    "max_summary_tokens": 3,
    "docs_in_observation": 1,
    "doc_max_chars": 40,
    "format_penalty": 0.0,
    "rows_per_call": 0,
    "empty_summary_search": "query",
    "compile": "off",
}
TEMPLATE = {"system": "", "user": "{query} {documents}"}


def build_word_backbone(out: Path) -> None:
    """A tiny random Llama whose tokenizer knows only the task's words, the agent tags and ChatML.
    (Llama, not Qwen2, because transformers rebuilds a Qwen2 checkpoint's tokenizer as byte-level
    BPE; a Llama checkpoint keeps the tokenizer it was saved with.)"""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from ricepo.agent.models import AGENT_TAGS, CHATML_TEMPLATE

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS + QUERY_WORDS)}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    word_level.decoder = decoders.WordPiece()  # joins the words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=word_level, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="[UNK]", additional_special_tokens=["<|im_start|>"]
    )
    tok.add_tokens(AGENT_TAGS)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="module")
def apple_task(tmp_path_factory):
    from ricepo.data.canonical import read_corpus, write_corpus, write_qrels, write_queries
    from ricepo.retrieval.bm25 import BM25Index

    root = tmp_path_factory.mktemp("apple")
    split = root / "split"
    (split / "qrels").mkdir(parents=True)
    write_corpus(split / "corpus.jsonl", {f"d-{w}": {"title": "", "text": f"{w} {w} {w}"} for w in WORDS})
    queries = {f"q{i:02d}": {"text": " ".join(QUERY_WORDS[j % len(QUERY_WORDS)] for j in range(i, i + 3)), "metadata": {}} for i in range(16)}
    write_queries(split / "queries.jsonl", queries)
    write_qrels(split / "qrels" / "train.tsv", {q: {"d-apple": 1} for q in queries})
    BM25Index.build(read_corpus(split / "corpus.jsonl"), 0.9, 0.4).save(root / "index" / "bm25")
    build_word_backbone(root / "backbone")
    from ricepo.agent.models import load_backbone

    _, tok = load_backbone(str(root / "backbone"))
    ids = tok("apple river </summary>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 and tok.decode(ids) == "apple river </summary>", "the word-level tokenizer was rebuilt"
    return root


def train(apple_task: Path, method: str, out: Path) -> list[dict]:
    from ricepo.train.run import run_training

    spec = {
        "benchmark": "apple",
        "method": method,
        "variant": None,
        "seed": 0,
        "backbone": {"model": str(apple_task / "backbone"), "family": "words"},
        "template": TEMPLATE,
        "rollout": ROLLOUT,
        "credit": {},
        "evaluate": {"decoding": "greedy"},
        "train": {**train_settings(), "steps": STEPS, "queries_per_step": 4, "learning_rate": 3e-3, "micro_batch_size": 64, "save_every": 0},
    }
    return run_training(spec, {"apple": (apple_task / "split", apple_task / "index")}, out)


def rise(log: list[dict]) -> tuple[float, float]:
    first = statistics.fmean(r["reward_mean"] for r in log[:WINDOW])
    last = statistics.fmean(r["reward_mean"] for r in log[-WINDOW:])
    return first, last


@pytest.mark.parametrize("method", METHODS)
def test_every_trained_method_learns_the_apple_task(apple_task, tmp_path, method):
    log = train(apple_task, method, tmp_path / method)
    first, last = rise(log)
    curve = " ".join(f"{r['reward_mean']:.2f}" for r in log)
    assert last >= first + RISE and last >= FLOOR, f"{method}: reward {first:.3f} -> {last:.3f}: {curve}"


def test_with_the_advantage_sign_flipped_grpo_does_not_learn(apple_task, tmp_path, monkeypatch):
    """The control: the same run with every token's advantage negated must not rise, or the test
    above could pass for a reason other than learning from the credit."""
    from ricepo.train import trainer

    honest = trainer.token_advantages
    monkeypatch.setattr(trainer, "token_advantages", lambda t, spans: [-a for a in honest(t, spans)])
    first, last = rise(train(apple_task, "grpo", tmp_path / "flipped"))
    assert last <= first + FLIPPED_RISE, f"flipped sign, reward {first:.3f} -> {last:.3f}"
