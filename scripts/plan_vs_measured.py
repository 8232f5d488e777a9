"""The plan's predicted peak memory of a training step beside the measured peak, on the CPU.

    python scripts/plan_vs_measured.py [--shapes tiny smollm2_135m r1_1p5b_2layers]

Each shape is a model built at random from an architecture: `tiny` (the smoke run's tiny Qwen2),
`smollm2_135m` (config/architectures/smollm2_135m.json, all 30 layers) and `r1_1p5b_2layers`
(DeepSeek-R1-Distill-Qwen-1.5B's exact layer, embedding and head shapes, 2 of its 28 layers). Each
takes two training steps (GRPO, bf16-mixed: float32 master weights, bf16 sampler copy and
reference, gradient checkpointing, two micro-batches per optimizer step) on a BRIGHT-style fixture
task with BM25, every row on the split's longest query (the plan is of the worst case); the
second step's rollout is the first with AdamW's state in memory, as in every later step.

How it measures: ricepo.memory_meter.PeakMemory sees every tensor storage created while it is
active, from the model's construction to the end of the second step, and keeps the peak of their
total: the CPU counterpart of CUDA's max_memory_allocated (tensors only: no allocator caching, no
library workspaces). The plan is ricepo.plan's, given the
same settings and the fixture split's token lengths (its tokenizer). Pass: within ±15 %.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "tiny": {
        "model_type": "qwen2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
    "smollm2_135m": json.loads((ROOT / "config" / "architectures" / "smollm2_135m.json").read_text()),
    "r1_1p5b_2layers": {**json.loads((ROOT / "config" / "architectures" / "r1_distill_qwen_1p5b.json").read_text()), "num_hidden_layers": 2},
}
ROLLOUT = {
    "group_size": 4,
    "max_depth": 2,
    "temperature": 1.0,
    "max_reasoning_tokens": 16,
    "max_summary_tokens": 8,
    "docs_in_observation": 3,
    "doc_max_chars": 150,
    "format_penalty": 0.0,
    "rows_per_call": 0,
    "empty_summary_search": "query",
    "compile": "off",
}
TEMPLATE = {"system": None, "user": "Search for documents that answer: {query}\n{documents}"}


def fixture(root: Path):
    from transformers import AutoTokenizer

    from ricepo.agent.models import build_tiny_backbone
    from ricepo.data.canonical import read_corpus
    from ricepo.data.fixture import make_fixture
    from ricepo.data.splits import build_split
    from ricepo.environments import load_environment
    from ricepo.retrieval.bm25 import BM25Index, doc_text

    make_fixture(root / "data", "bright", "biology", n_docs=200, n_topics=8, n_train=16, n_test=4, excluded=False, seed=0)
    build_split(root / "data", root / "split", benchmark="bright", task="biology", counts={"train": 16, "test": 4}, seed=0)
    BM25Index.build(read_corpus(root / "split" / "corpus.jsonl"), 0.9, 0.4).save(root / "index" / "bm25")
    build_tiny_backbone(root / "tok", [doc_text(d) for d in read_corpus(root / "data" / "corpus.jsonl").values()], seed=0)
    env, queries = load_environment("biology", root / "split", root / "index", "train")
    return env, queries, AutoTokenizer.from_pretrained(root / "tok")


def run(shape: str, root: Path, env, queries, tok) -> tuple[float, float, dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.config import section_defaults
    from ricepo.memory_meter import PeakMemory
    from ricepo.plan import GIB, measure_lengths, read_arch, split_texts, train_memory, train_shape
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.run import train_config
    from ricepo.train.trainer import Trainer

    arch_json = {k: v for k, v in SHAPES[shape].items() if not k.startswith("_")}
    if shape == "tiny":
        arch_json["vocab_size"] = len(tok)
    train = {
        **section_defaults("train"),
        **dict(
            steps=2,
            queries_per_step=2,
            micro_batch_size=2,
            ppo_mini_batches=2,
            gradient_checkpointing=True,
            precision="bf16-mixed",
            logprob_chunk_tokens=256,
            save_every=0,
        ),
    }
    spec = {"method": "grpo", "variant": None, "seed": 0, "rollout": ROLLOUT, "train": train, "credit": {}}
    cfg = train_config(spec)
    precision = resolve_precision("bf16-mixed", "cpu")
    q, d, src = split_texts(root / "split", "train", None)
    lens = measure_lengths(q, d, src, ROLLOUT, TEMPLATE, tok)
    arch = read_arch(shape, arch_json)
    rollout, update = train_memory(train_shape(train, ROLLOUT, {}, "grpo", None, arch, lens, {}))
    predicted = max(sum(rollout.values()), sum(update.values())) / GIB

    tracker = PeakMemory()
    torch.manual_seed(0)
    with tracker:
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch_json)).float()
        settings = RolloutSettings.from_config(ROLLOUT)
        sampler = TransformersSampler(model, tok, precision.sampler_dtype, compile=settings.compile)
        agent = Agent(sampler, tok, TEMPLATE, settings)
        # the plan is of the worst case: every row at the longest prompt (every round runs to its full
        # budgets anyway: a random model does not close its tags)
        longest = max(queries.items(), key=lambda kv: len(tok(kv[1]["text"])["input_ids"]))
        trainer = Trainer(
            model,
            tok,
            agent,
            {"biology": env},
            [("biology", longest[0], longest[1]["text"])],
            cfg,
            root / f"run-{shape}",
            identity={"plan_vs_measured": shape},
            precision=precision,
            parallel=Parallel.start("ddp"),
        )
        for _ in range(cfg.steps):
            trainer.train_step()
            trainer.step += 1
    peak = tracker.peak / GIB
    parts = {"rollout": {k: v / GIB for k, v in rollout.items() if v}, "update": {k: v / GIB for k, v in update.items() if v}}
    return predicted, peak, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env, queries, tok = fixture(root)
        for shape in args.shapes:
            predicted, measured, parts = run(shape, root, env, queries, tok)
            error = (predicted - measured) / measured
            rows.append((shape, predicted, measured, error))
            print(
                f"{shape}: plan {predicted * 1024:.1f} MiB, measured {measured * 1024:.1f} MiB, "
                f"error {error:+.1%} ({'within' if abs(error) <= 0.15 else 'OUTSIDE'} ±15 %)",
                flush=True,
            )
            for phase, p in parts.items():
                print(f"  plan {phase}: " + ", ".join(f"{k} {v * 1024:.1f}" for k, v in p.items()) + " MiB")
    print("\n| shape | plan (MiB) | measured (MiB) | error |\n|---|---|---|---|")
    for shape, predicted, measured, error in rows:
        print(f"| {shape} | {predicted * 1024:.1f} | {measured * 1024:.1f} | {error:+.1%} |")


if __name__ == "__main__":
    main()
