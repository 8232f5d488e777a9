"""One paper-shaped training step on this machine, the plan's prediction beside what it measured,
and the plan's GPU-hours for `reproduce_all` on config/config.yaml.

The policy has the exact architecture of one of the paper's backbones (config/architectures/, at
random initialisation: no weights can be downloaded on a GPU node without network); the step uses
config/config.yaml's rollout and training settings on a BRIGHT-style fixture task with BM25, whose
train queries are replaced by BRIGHT's real biology queries when `--query-files` holds them
(../shared/data/bright/examples/), so prompts have BRIGHT's real lengths. A random policy never
closes its tags, so every round runs to its full budgets: the step is the plan's worst case.

    python scripts/paper_step.py [--backbone r1_distill_qwen_1p5b] [--method grpo] [--scale paper|tiny]
                                 [--queries N] [--query-files ../shared/data]

Prints seconds per phase, tokens per second, the plan's peak beside the measured peak (CUDA's
max_memory_allocated, or ricepo.memory_meter on a CPU), and `ricepo plan`'s projection of the
whole reproduction. AdamW's moments are allocated before the measured step by one optimizer step
on zero gradients (the moments stay zero, so the parameters do not move), so the one step measured
holds everything a later step of a real run holds. `--queries` (default: the config's queries per
step) shortens the rollout, which a random policy always runs to its full budgets; the peak depends
on the rows per sampler call and the micro-batches, not on the queries (the plan is given the same
number), so the GPU check runs 4 (one sampler call a round) to fit its budget. Not measured here:
the hybrid retriever's dense encoder (Diver-Retriever-4B cannot be downloaded offline); the plan
counts it and prints it apart. `--scale tiny` shrinks
model and batch to check the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("r1_distill_qwen_1p5b", "qwen2p5_3b_instruct", "qwen3_4b_thinking")


def fixture_environment(root: Path, query_files: Path | None):
    """A BRIGHT-style fixture task, split, BM25-indexed, its train queries BRIGHT's real biology
    queries where they are given; and a byte-level tokenizer trained on the corpus."""
    from transformers import AutoTokenizer

    from ricepo.agent.models import build_tiny_backbone
    from ricepo.data.canonical import read_corpus
    from ricepo.data.fixture import make_fixture
    from ricepo.data.splits import build_split
    from ricepo.environments import load_environment
    from ricepo.retrieval.bm25 import BM25Index, doc_text

    make_fixture(root / "data", "bright", "biology", n_docs=400, n_topics=16, n_train=64, n_test=8, excluded=True, seed=0)
    build_split(root / "data", root / "split", benchmark="bright", task="biology", counts={"train": 64, "test": 8}, seed=0)
    BM25Index.build(read_corpus(root / "split" / "corpus.jsonl"), 0.9, 0.4).save(root / "index" / "bm25")
    texts = [doc_text(d) for d in read_corpus(root / "data" / "corpus.jsonl").values()]
    build_tiny_backbone(root / "tokenizer", texts, seed=0)  # only its tokenizer is used
    env, queries = load_environment("biology", root / "split", root / "index", "train")
    real = query_files / "bright" / "examples" / "biology.jsonl" if query_files else None
    if real is not None and real.exists():
        texts = [json.loads(line)["query"] for line in real.read_text().splitlines() if line.strip()]
        queries = {qid: {**q, "text": texts[i % len(texts)]} for i, (qid, q) in enumerate(queries.items())}
    return env, queries, AutoTokenizer.from_pretrained(root / "tokenizer")


def allocate_optimizer_state(model, opt) -> None:
    """AdamW allocates its moments at its first step; a step on zero gradients allocates them and
    leaves the parameters where they were (a zero first moment moves nothing)."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)


def paper_arch(backbone: str, scale: str) -> dict:
    arch = {k: v for k, v in json.loads((ROOT / "config" / "architectures" / f"{backbone}.json").read_text()).items() if not k.startswith("_")}
    if scale == "tiny":
        arch.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    return arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", choices=BACKBONES, default=BACKBONES[0])
    ap.add_argument("--method", default="grpo")
    ap.add_argument("--scale", choices=["paper", "tiny"], default="paper")
    ap.add_argument("--query-files", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--queries", type=int, help="queries per step (default: the backbone's queries_per_step)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], help="the sampler's decode step (default: the config's rollout.compile)")
    ap.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless the step ran on CUDA and its measured peak is at most the plan's + PLAN_ERROR "
        "(ricepo.plan: the headroom every plan keeps)",
    )
    args = ap.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM

    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.config import load_config
    from ricepo.layout import backbone_settings, template
    from ricepo.memory_meter import PeakMemory
    from ricepo.plan import GIB, PLAN_ERROR, format_plan, measure_lengths, plan_config, read_arch, train_memory, train_shape
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.run import train_config
    from ricepo.train.trainer import Trainer

    config = load_config()
    # the backbone's own settings, in one process (a sharded backbone's step is its per-GPU share
    # only under several processes: tests/test_distributed.py checks that path)
    rollout = backbone_settings(config, args.backbone, "rollout")
    train = {**backbone_settings(config, args.backbone, "train"), "processes": 1}
    if args.scale == "tiny":
        rollout.update(group_size=2, max_reasoning_tokens=16, max_summary_tokens=8)
        train.update(queries_per_step=2)
    if args.queries:
        train.update(queries_per_step=args.queries)
    par = Parallel.start("ddp")
    cuda = par.device.type == "cuda"
    precision = resolve_precision(train["precision"], par.device)
    credit = config["credit"].get(args.method, {})
    prompt_template = template(config, args.backbone)
    query_files = Path(args.query_files) if Path(args.query_files).exists() else None
    with tempfile.TemporaryDirectory() as tmp:
        env, queries, tok = fixture_environment(Path(tmp), query_files)
        arch_json = paper_arch(args.backbone, args.scale)
        lens = measure_lengths(
            [q["text"] for q in queries.values()],
            [f"{d.get('title', '')}: {d['text']}" for d in list(env.corpus.values())[:200]],
            "fixture corpus, BRIGHT biology queries" if query_files else "fixture",
            rollout,
            prompt_template,
            tok,
        )
        shape = train_shape({**train, "precision": precision.name}, rollout, credit, args.method, None, read_arch(args.backbone, arch_json), lens, {})
        planned = {phase: sum(parts.values()) / GIB for phase, parts in zip(("rollout", "update"), train_memory(shape))}
        meter = PeakMemory(par.device.type)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with meter:
            torch.manual_seed(0)
            with torch.device(par.device):
                model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch_json)).float()
            n_params = sum(p.numel() for p in model.parameters())
            settings = RolloutSettings.from_config({**rollout, **({"compile": args.compile} if args.compile else {})})
            sampler = TransformersSampler(model, tok, precision.sampler_dtype, compile=settings.compile)
            agent = Agent(sampler, tok, prompt_template, settings)
            cfg = train_config({"method": args.method, "seed": 0, "rollout": rollout, "train": {**train, "steps": 2}, "credit": credit})
            trainer = Trainer(
                model,
                tok,
                agent,
                {"biology": env},
                [("biology", q, v["text"]) for q, v in queries.items()],
                cfg,
                Path(tmp) / "run",
                identity={"paper_step": args.scale},
                precision=precision,
                parallel=par,
            )
            allocate_optimizer_state(trainer.model, trainer.opt)
            t0 = time.time()
            record = trainer.train_step()
            wall = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / GIB if cuda else meter.peak / GIB
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(
        f"paper-shaped step ({args.scale}): {args.method}, {args.backbone} ({n_params / 1e9:.2f}B parameters at "
        f"random), {device}, {precision.describe()}"
    )
    print(
        f"  {cfg.queries_per_step} queries x G {rollout['group_size']} x {rollout['max_depth']} rounds, "
        f"budgets {rollout['max_reasoning_tokens']}/{rollout['max_summary_tokens']} tokens, "
        f"{rollout['rows_per_call'] or 'all'} rows per sampler call, {cfg.ppo_mini_batches} PPO mini-batches, "
        f"micro-batches of <= {cfg.micro_batch_size} rows / {cfg.micro_batch_tokens or 'any'} tokens, "
        f"gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}; lengths: {lens.source}, "
        f"longest row {lens.context} tokens"
    )
    print(
        f"  rollout {record['rollout_s']:.1f} s ({record['tokens_generated']} tokens, "
        f"{record['tokens_generated'] / record['rollout_s']:.0f} tok/s) | old+ref {record['old_ref_s']:.1f} s | "
        f"update {record['update_s']:.1f} s | step {wall:.1f} s"
    )
    print(
        f"  peak memory: plan {max(planned.values()):.2f} GiB (rollout {planned['rollout']:.2f}, update "
        f"{planned['update']:.2f}; every row at the longest prompt; no dense retriever) | measured {peak:.2f} GiB "
        f"({'max_memory_allocated' if cuda else 'ricepo.memory_meter'}) | error "
        f"{(max(planned.values()) - peak) / peak:+.1%}"
    )
    print(f"  sampler-trainer log-prob gap: mean {record['logprob_gap_mean']:.4f}, max {record['logprob_gap_max']:.4f}")
    plans = plan_config(config, ROOT / "results" / config["run_name"], query_files)
    summary = [line for line in format_plan(plans, "plan").splitlines() if line.startswith("estimated GPU-hours")]
    print(f"projected reproduce_all on config/config.yaml (ricepo plan; {plans[0].gpu}-class GPUs): {summary[0]}")
    if args.check:
        over = peak / max(planned.values()) - 1  # the plan's own headroom (ricepo.plan.usable_gib)
        failures = ([] if cuda else ["the step did not run on CUDA"]) + (
            [f"the measured peak exceeds the plan's by {over:.1%} (more than PLAN_ERROR, {PLAN_ERROR:.0%})"] if over > PLAN_ERROR else []
        )
        for failure in failures:
            print(f"paper step: FAILED: {failure}")
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
