"""One paper-shaped training step on this machine, and what `reproduce_all` on config/config.yaml
would cost from it.

The policy has the exact architecture of the paper's 1.5B backbone (DeepSeek-R1-Distill-Qwen-1.5B,
config/architectures/r1_distill_qwen_1p5b.json) at random initialisation, since no weights can be
downloaded on a GPU node without network; the step uses config/config.yaml's training settings
(32 queries x G 8, 3 retrieval rounds, 512/128 reasoning/summary token budgets, precision auto)
on a fixture task with BM25. A random policy never closes its tags, so every round runs to the
full budgets: the step's token count is the most a real step can generate.

    python scripts/paper_step.py [--method grpo] [--scale paper|tiny]

Prints seconds per phase, tokens per second, peak GPU memory, and the projected GPU-hours of the
full reproduction (its assumptions printed beside it). `--scale tiny` shrinks model and batch to
check the script itself on a CPU.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from ricepo.config import check_config
from ricepo.layout import runs

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "config" / "architectures" / "r1_distill_qwen_1p5b.json"
# Parameters of the other backbones relative to the 1.5B one, for the projection (model cards).
PARAMS_B = {"r1_distill_qwen_1p5b": 1.78, "qwen3_4b_thinking": 4.02, "qwen2p5_3b_instruct": 3.09}


def fixture_environment(root: Path):
    """A BRIGHT-style fixture task, split, BM25-indexed, and a byte-level tokenizer trained on it."""
    from transformers import AutoTokenizer

    from ricepo.agent.models import build_tiny_backbone
    from ricepo.data.canonical import read_corpus
    from ricepo.data.fixture import make_fixture
    from ricepo.data.splits import build_split
    from ricepo.environments import load_environment
    from ricepo.retrieval.bm25 import BM25Index, doc_text

    make_fixture(root / "data", "bright", "biology", n_docs=400, n_topics=16, n_train=64, n_test=8,
                 excluded=True, seed=0)
    build_split(root / "data", root / "split", benchmark="bright", task="biology", counts={"train": 64, "test": 8},
                seed=0)
    BM25Index.build(read_corpus(root / "split" / "corpus.jsonl"), 0.9, 0.4).save(root / "index" / "bm25")
    texts = [doc_text(d) for d in read_corpus(root / "data" / "corpus.jsonl").values()]
    build_tiny_backbone(root / "tokenizer", texts, seed=0)   # only its tokenizer is used
    env, queries = load_environment("biology", root / "split", root / "index", "train")
    return env, queries, AutoTokenizer.from_pretrained(root / "tokenizer")


def paper_model(scale: str, device: torch.device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = {k: v for k, v in json.loads(ARCH.read_text()).items() if not k.startswith("_")}
    if scale == "tiny":
        arch.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**arch))
    return model.float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="grpo")
    ap.add_argument("--scale", choices=["paper", "tiny"], default="paper")
    args = ap.parse_args()

    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import make_accelerator
    from ricepo.train.run import train_config
    from ricepo.train.trainer import Trainer

    config = check_config(yaml.safe_load(open(ROOT / "config" / "config.yaml")))
    rollout, train = dict(config["rollout"]), dict(config["train"])
    if args.scale == "tiny":
        rollout.update(group_size=2, max_reasoning_tokens=16, max_summary_tokens=8)
        train.update(queries_per_step=2)
    acc = make_accelerator()
    precision = resolve_precision(train["precision"], acc.device)
    with tempfile.TemporaryDirectory() as tmp:
        env, queries, tok = fixture_environment(Path(tmp))
        model = paper_model(args.scale, acc.device)
        n_params = sum(p.numel() for p in model.parameters())
        sampler = TransformersSampler(model, tok, precision.sampler_dtype)
        agent = Agent(sampler, tok, config["templates"]["r1_distill"], RolloutSettings.from_config(rollout))
        cfg = train_config({"method": args.method, "seed": 0, "rollout": rollout, "train": {**train, "steps": 1},
                            "credit": config["credit"].get(args.method, {})})
        trainer = Trainer(model, tok, agent, {"biology": env}, [("biology", q, v["text"]) for q, v in queries.items()],
                          cfg, Path(tmp) / "run", identity={"paper_step": args.scale}, precision=precision,
                          accelerator=acc)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        record = trainer.train_step()
        wall = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"paper-shaped step ({args.scale}): {args.method}, {n_params / 1e9:.2f}B parameters "
          f"({ARCH.name} at random), {device}, {precision.describe()}")
    print(f"  {cfg.queries_per_step} queries x G {rollout['group_size']} x {rollout['max_depth']} rounds, "
          f"budgets {rollout['max_reasoning_tokens']}/{rollout['max_summary_tokens']} tokens, "
          f"{cfg.ppo_mini_batches} PPO mini-batches of micro-batch {cfg.micro_batch_size}")
    print(f"  rollout {record['rollout_s']:.1f} s ({record['tokens_generated']} tokens, "
          f"{record['tokens_generated'] / record['rollout_s']:.0f} tok/s) | old+ref {record['old_ref_s']:.1f} s | "
          f"update {record['update_s']:.1f} s | step {wall:.1f} s | peak GPU memory {peak:.1f} GiB")
    print(f"  sampler-trainer log-prob gap: mean {record['logprob_gap_mean']:.4f}, max {record['logprob_gap_max']:.4f}")
    project(config, record, wall)


def project(config: dict, record: dict, step_s: float) -> None:
    """GPU-hours of `reproduce_all` on config/config.yaml from this step: training runs at their
    step count, costed as this step times the method's rows per query relative to G (Tree-GRPO's
    expansions, RICE-PO's branches) and the backbone's size relative to 1.5B; evaluations at
    this step's rollout seconds per row, one greedy row per test query."""
    g = config["rollout"]["group_size"]
    tree, rice = config["credit"]["tree_grpo"], config["credit"]["ricepo"]
    rows = {"tree_grpo": tree["trees"] * (1 + tree["expansions"] * tree["rounds"]),
            "ricepo": g + rice["anchors"] * (rice["branches"] - 1)}
    per_row_s = record["rollout_s"] / record["trajectories"]
    train_h = eval_h = 0.0
    n_train = n_eval = 0
    for run in runs(config):
        size = PARAMS_B[run.backbone] / PARAMS_B["r1_distill_qwen_1p5b"]
        bench = config["benchmarks"][run.benchmark]
        if run.trained:
            n_train += 1
            train_h += config["train"]["steps"] * step_s * rows.get(run.method, g) / g * size / 3600
        for task in bench["tasks"]:
            n_eval += 1
            eval_h += bench["split_counts"][task]["test"] * per_row_s * size / 3600
    print(f"projected reproduce_all on config/config.yaml: {n_train} training runs {train_h:.0f} GPU-h + "
          f"{n_eval} evaluations {eval_h:.0f} GPU-h = {train_h + eval_h:.0f} GPU-hours on this GPU "
          f"(assumes steps cost as this one: full token budgets, cost linear in rows and parameters)")


if __name__ == "__main__":
    main()
