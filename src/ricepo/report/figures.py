"""The paper's figures from result files: reward curves and the entropy-gain CDF.

Each figure is written as SVG and PNG, plus a JSON file holding exactly the plotted numbers
(what the report and the tests read).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from ..config import runs  # noqa: E402
from .results import load_paper, measured, train_log  # noqa: E402
from .tables import METHOD_LABELS  # noqa: E402

CURVE_METHODS = ["grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"]


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    return [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def reward_curves(config: dict, results: Path) -> dict:
    """Mean training reward per step, per (benchmark, backbone, method), averaged over seeds."""
    curves = []
    for key in sorted({(r["benchmark"], r["backbone"], r["method"]) for r in runs(config) if r["method"] != "prompting"}):
        logs = [train_log(results, *key, r["seed"]) for r in runs(config) if (r["benchmark"], r["backbone"], r["method"]) == key]
        logs = [lg for lg in logs if lg]
        if not logs:
            continue
        n = min(len(lg) for lg in logs)
        raw = [statistics.fmean(lg[i]["reward_mean"] for lg in logs) for i in range(n)]
        curves.append({"benchmark": key[0], "backbone": key[1], "method": key[2], "seeds": len(logs),
                       "steps": list(range(1, n + 1)), "raw": raw, "smoothed": smooth(raw, max(3, n // 10))})
    return {"id": "figure_reward_curves", "curves": curves,
            "not_run": [m for m in CURVE_METHODS if not any(c["method"] == m for c in curves)]}


def plot_reward_curves(data: dict, out_dir: Path) -> None:
    benches = sorted({c["benchmark"] for c in data["curves"]}) or ["(none)"]
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 3.6), squeeze=False)
    palette = dict(zip(CURVE_METHODS + ["other"], sns.color_palette("tab10")))
    for ax, bench in zip(axes[0], benches):
        for c in [c for c in data["curves"] if c["benchmark"] == bench]:
            color = palette.get(c["method"], palette["other"])
            label = f"{METHOD_LABELS.get(c['method'], c['method'])} ({c['backbone']}, {c['seeds']} seed(s))"
            ax.plot(c["steps"], c["raw"], color=color, alpha=0.25, linewidth=1)
            ax.plot(c["steps"], c["smoothed"], color=color, linewidth=2, label=label)
        ax.set_title(f"{bench}: mean training reward (NDCG@10)")
        ax.set_xlabel("training step")
        ax.set_ylabel("reward")
        if data["not_run"]:
            ax.text(0.01, 0.01, "not run: " + ", ".join(METHOD_LABELS[m] for m in data["not_run"]),
                    transform=ax.transAxes, fontsize=7, color="gray")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    _save(fig, out_dir, "figure_reward_curves")


def entropy_cdf(config: dict, results: Path) -> dict:
    """Per-task NDCG@10 gain of RICE-PO over its random-trigger variant: paper's and ours."""
    paper = {r["method"]: r["values"] for r in load_paper()["table_ablation_trigger"]["rows"]}
    paper_gain = {t: paper["ricepo"][t] - paper["ricepo_random_trigger"][t] for t in paper["ricepo"]}
    abl = config.get("ablations") or {}
    ours_gain = {}
    if abl.get("benchmark") in config["benchmarks"]:
        full = measured(config, results, abl["benchmark"], abl["backbone"], "ricepo")
        rand = measured(config, results, abl["benchmark"], abl["backbone"], "ricepo_random_trigger")
        for task in config["benchmarks"][abl["benchmark"]]["tasks"]:
            a = [v[task] for v in full.values() if task in v]
            b = [v[task] for v in rand.values() if task in v]
            if a and b:
                ours_gain[task] = statistics.fmean(a) - statistics.fmean(b)

    def summary(gain: dict) -> dict:
        return {"gain": gain, "median": statistics.median(gain.values()) if gain else None,
                "positive": sum(v > 0 for v in gain.values()), "tasks": len(gain)}

    return {"id": "figure_entropy_cdf", "paper": summary(paper_gain), "ours": summary(ours_gain)}


def plot_entropy_cdf(data: dict, out_dir: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lines = []
    for key, style, label in (("paper", "--", "paper (Table 6)"), ("ours", "-", "ours (measured)")):
        s = data[key]
        if not s["gain"]:
            lines.append(f"{label}: not run")
            continue
        xs = sorted(s["gain"].values())
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", linestyle=style, linewidth=2, label=label)
        lines.append(f"{label}: median {s['median']:+.2f}, {s['positive']}/{s['tasks']} tasks > 0")
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("NDCG@10 gain, entropy trigger - random trigger (points)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("Entropy-based triggering: per-task gain CDF")
    ax.text(0.02, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, out_dir, "figure_entropy_cdf")


def _save(fig, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.svg")
    fig.savefig(out_dir / f"{name}.png", dpi=120)
    plt.close(fig)


FIGURES = {"figure_reward_curves": (reward_curves, plot_reward_curves),
           "figure_entropy_cdf": (entropy_cdf, plot_entropy_cdf)}


def build_figure(name: str, config: dict, results: Path, out_dir: Path) -> dict:
    compute, plot = FIGURES[name]
    data = compute(config, results)
    plot(data, out_dir)
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=1))
    return data
