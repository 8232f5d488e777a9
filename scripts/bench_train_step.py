"""Speed of training steps and of an evaluation per method and precision on a configuration
(default: config/mini.yaml, SmolLM2-135M on the real SciFact): seconds for rollout / old+ref
pass / update, generated tokens per second, peak memory, the sampler-trainer log-prob gap, and
each step's mean training reward (the curve of each precision over the same steps).

    python scripts/bench_train_step.py [--config config/mini.yaml] [--methods grpo ricepo]
        [--precision fp32 bf16-mixed] [--steps 1] [--eval] [--eval-queries N]

Each (method, precision) runs in a fresh process, so peak memory is that run's own. Needs the
configuration's split, BM25 index and backbone built first, e.g.
    snakemake results/mini/splits/beir/scifact results/mini/index/beir/scifact/bm25 resources/models/smollm2_135m \\
        --cores all --configfile config/mini.yaml
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ricepo.config import load_config
from ricepo.layout import Run, job_spec

ROOT = Path(__file__).resolve().parents[1]


def job(cfg: dict, method: str, precision: str, steps: int) -> tuple[dict, str, dict]:
    bench = next(iter(cfg["benchmarks"]))
    spec_b = cfg["benchmarks"][bench]
    backbone = spec_b["backbones"][0]
    spec = job_spec(cfg, Run(bench, backbone, method, None, 0))
    spec["train"] = {**spec["train"], "steps": steps, "save_every": 0, "precision": precision}
    return spec, bench, spec_b


def peak_memory_mb() -> tuple[float, float]:
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cuda


def run_one(args) -> dict:
    """One (method, precision) in this process: training steps, or an evaluation (--eval)."""
    cfg = load_config(args.config)
    method = "prompting" if args.eval else args.methods[0]
    spec, bench, spec_b = job(cfg, method, args.precision[0], args.steps)
    results = Path(args.results or f"results/{cfg['run_name']}")
    if args.eval:
        from ricepo.evaluate.agent_eval import run_agent_eval

        task = spec_b["tasks"][0]
        split = results / "splits" / bench / task
        if args.eval_queries:  # a prefix of the test queries, in a copy of the split folder
            from ricepo.data.canonical import read_qrels, write_qrels

            sub = Path(tempfile.mkdtemp()) / task
            sub.mkdir(parents=True)
            for f in split.iterdir():
                if f.is_file():
                    (sub / f.name).symlink_to(f.resolve())
            (sub / "qrels").mkdir()
            for f in (split / "qrels").iterdir():
                qrels = read_qrels(f)
                keep = dict(list(qrels.items())[: args.eval_queries]) if f.stem == "test" else qrels
                write_qrels(sub / "qrels" / f.name, keep)
            split = sub
        t0 = time.time()
        with tempfile.TemporaryDirectory() as out:
            result = run_agent_eval(spec, cfg["backbones"][spec_b["backbones"][0]]["model"], task, split, results / "index" / bench / task, out)
        rss, cuda = peak_memory_mb()
        return {
            "eval_s": time.time() - t0,
            "queries": result["n_queries"],
            "ndcg_cut_10": result["ndcg_cut_10"],
            "peak_rss_mb": rss,
            "peak_cuda_mb": cuda,
        }
    from ricepo.train.run import run_training

    tasks = {t: (results / "splits" / bench / t, results / "index" / bench / t) for t in spec_b["tasks"] if spec_b["split_counts"][t]["train"] > 0}
    with tempfile.TemporaryDirectory() as out:
        log = run_training(spec, tasks, out)
    rss, cuda = peak_memory_mb()
    return {"log": log, "peak_rss_mb": rss, "peak_cuda_mb": cuda}


def in_subprocess(argv: list[str]) -> dict:
    got = subprocess.run([sys.executable, __file__, *argv, "--one"], capture_output=True, text=True)
    if got.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{got.stderr[-3000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config" / "mini.yaml"))
    ap.add_argument("--methods", nargs="+", default=["grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--eval", action="store_true", help="time the untrained backbone's test evaluation instead")
    ap.add_argument("--eval-queries", type=int, default=0, help="evaluate the first N test queries (0: all)")
    ap.add_argument("--results", help="where the split and index folders are (default: results/RUN_NAME)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args)), flush=True)
        return
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    common = ["--config", args.config, "--steps", str(args.steps)] + (["--results", args.results] if args.results else [])
    print(f"{args.config}: {args.steps} step(s) per run, {device}\n")
    if args.eval:
        print(f"{'evaluation':12s} {'queries':>7s} {'seconds':>8s} {'NDCG@10':>8s} {'peak RSS MB':>11s} {'peak CUDA MB':>12s}")
        for p in args.precision:
            r = in_subprocess([*common, "--precision", p, "--eval", "--eval-queries", str(args.eval_queries)])
            print(
                f"{p:12s} {r['queries']:7d} {r['eval_s']:8.1f} {100 * r['ndcg_cut_10']:8.2f} {r['peak_rss_mb']:11.0f} {r['peak_cuda_mb']:12.0f}",
                flush=True,
            )
        return
    print(
        f"{'method':10s} {'precision':10s} {'tokens':>7s} {'rollout s':>9s} {'tok/s':>7s} {'old+ref s':>9s} "
        f"{'update s':>8s} {'step s':>7s} {'gap mean':>9s} {'gap max':>8s} {'searches':>8s} {'peak RSS MB':>11s} "
        f"{'peak CUDA MB':>12s}"
    )
    curves = []
    for method in args.methods:
        for p in args.precision:
            r = in_subprocess([*common, "--methods", method, "--precision", p])
            log = r["log"]
            avg = {
                k: sum(s[k] for s in log) / len(log)
                for k in ("tokens_generated", "rollout_s", "old_ref_s", "update_s", "wall_s", "retriever_calls", "logprob_gap_mean")
            }
            print(
                f"{method:10s} {p:10s} {avg['tokens_generated']:7.0f} {avg['rollout_s']:9.1f} "
                f"{avg['tokens_generated'] / avg['rollout_s']:7.1f} {avg['old_ref_s']:9.1f} {avg['update_s']:8.1f} "
                f"{avg['wall_s']:7.1f} {avg['logprob_gap_mean']:9.4f} {max(s['logprob_gap_max'] for s in log):8.4f} "
                f"{avg['retriever_calls']:8.0f} {r['peak_rss_mb']:11.0f} {r['peak_cuda_mb']:12.0f}",
                flush=True,
            )
            curves.append((method, p, [s["reward_mean"] for s in log]))
    if args.steps > 1:
        print("\nmean training reward per step")
        for method, p, rewards in curves:
            print(f"{method:10s} {p:10s} " + " ".join(f"{x:.3f}" for x in rewards))


if __name__ == "__main__":
    main()
