"""Speed of one training step per method on a configuration (default: config/mini.yaml, SmolLM2-135M
on the real SciFact): rollout tokens per second, update time, wall time, peak memory.

    python scripts/bench_train_step.py [--config config/mini.yaml] [--methods grpo ricepo] [--steps 1]

Needs the configuration's split, BM25 index and backbone built first, e.g.
    snakemake results/splits/beir/scifact results/index/beir/scifact/bm25 resources/models/smollm2_135m \\
        --cores all --configfile config/mini.yaml
On a GPU the step runs in bf16 on CUDA and the peak CUDA memory is reported too.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import torch
import yaml

from ricepo.config import check_config
from ricepo.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]


def merged(overlay: Path) -> dict:
    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out
    return check_config(merge(yaml.safe_load(open(ROOT / "config" / "config.yaml")), yaml.safe_load(open(overlay))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "mini.yaml"))
    ap.add_argument("--methods", nargs="+", default=["grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--results", default="results", help="where the split and index folders are")
    args = ap.parse_args()
    cfg = merged(Path(args.config))
    bench = next(iter(cfg["benchmarks"]))
    spec_b = cfg["benchmarks"][bench]
    backbone = spec_b["backbones"][0]
    tasks = {t: (Path(args.results) / "splits" / bench / t, Path(args.results) / "index" / bench / t)
             for t in spec_b["tasks"] if spec_b["split_counts"][t]["train"] > 0}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.config}: {bench}/{','.join(tasks)}, backbone {backbone}, {args.steps} step(s) per method, {device}\n")
    print(f"{'method':10s} {'tokens':>7s} {'rollout s':>9s} {'tok/s':>7s} {'update s':>8s} {'wall s':>7s} "
          f"{'calls':>6s} {'peak RSS MB':>11s} {'peak CUDA MB':>12s}")
    for method in args.methods:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        spec = {"benchmark": bench, "method": method, "variant": None, "seed": 0,
                "backbone": cfg["backbones"][backbone],
                "template": cfg["templates"].get(cfg["backbones"][backbone]["family"], cfg["templates"]["default"]),
                "rollout": cfg["rollout"], "train": {**cfg["train"], "steps": args.steps, "save_every": 0},
                "credit": cfg["credit"].get(method, {}), "evaluate": cfg["evaluate"],
                "retriever": spec_b["retriever"], "dense_models": cfg.get("dense_models", {})}
        with tempfile.TemporaryDirectory() as out:
            log = run_training(spec, tasks, out)
        n = len(log)
        avg = {k: sum(r[k] for r in log) / n for k in ("tokens_generated", "rollout_s", "update_s", "wall_s",
                                                          "retriever_calls")}
        cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
        print(f"{method:10s} {avg['tokens_generated']:7.0f} {avg['rollout_s']:9.1f} "
              f"{avg['tokens_generated'] / avg['rollout_s']:7.1f} {avg['update_s']:8.1f} {avg['wall_s']:7.1f} "
              f"{avg['retriever_calls']:6.0f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:11.0f} "
              f"{cuda:12.0f}", flush=True)


if __name__ == "__main__":
    main()
