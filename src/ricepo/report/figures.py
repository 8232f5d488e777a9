"""The paper's figures from result files: reward curves (and validation curves), the entropy-gain
CDF, the training cost of each method (tokens generated and retriever calls per step, from the
step logs), and where the ceiling is (BM25, the agents, fixed summaries up to an oracle's).

Each figure is written as SVG and PNG, plus a JSON file holding exactly the plotted numbers
(what the report and the tests read).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from ..atomic import atomic_file, write_text  # noqa: E402
from ..credit import METHODS, get_method  # noqa: E402
from ..layout import runs  # noqa: E402
from ..summary_baselines import KINDS as SUMMARY_BASELINES  # noqa: E402
from .results import ResultFiles, load_paper  # noqa: E402


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    return [statistics.fmean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def _trained_cells(results: ResultFiles, order=None, read=ResultFiles.train_log) -> list[tuple[tuple, list[list[dict]]]]:
    """((benchmark, backbone, method, variant), what `read` gives of each seed: its step log, or
    its validation scorings) of every trained cell."""
    cells: dict[tuple, list] = {}
    for r in runs(results.config):
        if r.trained:
            cells.setdefault((r.benchmark, r.backbone, r.method, r.variant), []).append(read(results, r))
    return sorted(cells.items(), key=order or (lambda kv: (*kv[0][:3], kv[0][3] or "")))


def label(cell: dict) -> str:
    return get_method(cell["method"]).label_of(cell.get("variant"))


def validation_curves(results: ResultFiles) -> list[dict]:
    """Mean reward on the held-out validation queries at each scored step (0: before training),
    per trained cell, over the seeds that scored that step; with each query's reward averaged
    over seeds at the first and the last step (for the paired test of the claims); and the mean
    NDCG@10, share of steps that wrote a summary and share of queries whose final top 10 is the
    query alone's (None where a scoring predates them)."""
    curves = []
    for key, scorings in _trained_cells(results, read=ResultFiles.validation):
        scorings = [s for s in scorings if s]
        if not scorings:
            continue
        steps = sorted(set.intersection(*({v["step"] for v in s} for s in scorings)))
        at = [{v["step"]: v for v in s} for s in scorings]

        def per_query(step: int) -> dict[str, float]:
            return {q: statistics.fmean(a[step]["rewards"][q] for a in at) for q in at[0][step]["rewards"]}

        curves.append(
            {
                "benchmark": key[0],
                "backbone": key[1],
                "method": key[2],
                "variant": key[3],
                "seeds": len(scorings),
                "queries": len(at[0][steps[0]]["rewards"]),
                "steps": steps,
                "mean": [statistics.fmean(a[s]["reward_mean"] for a in at) for s in steps],
                **{
                    name: [statistics.fmean(a[s][key] for a in at) if all(key in a[s] for a in at) else None for s in steps]
                    for name, key in (
                        ("ndcg", "ndcg_mean"),
                        ("parseable", "parseable_rate"),
                        ("unchanged", "unchanged_rate"),
                        ("restate", "summary_restate_rate"),
                        ("better", "better_than_alone_rate"),
                        ("worse", "worse_than_alone_rate"),
                    )
                },
                "first": per_query(steps[0]),
                "last": per_query(steps[-1]),
            }
        )
    return curves


def reward_curves(results: ResultFiles) -> dict:
    """Mean training reward per step, per (benchmark, backbone, method, variant), averaged over
    seeds, with the shares of the step's sampled searches that score above and below the query
    alone's (smoothed; None where a log predates them); and the validation curves where the runs
    held queries out."""
    curves = []
    for key, logs in _trained_cells(results):
        logs = [lg for lg in logs if lg]
        if not logs:
            continue
        n = min(len(lg) for lg in logs)
        window = max(3, n // 10)

        def mean_of(field: str) -> list[float] | None:
            return [statistics.fmean(lg[i][field] for lg in logs) for i in range(n)] if all(field in lg[i] for lg in logs for i in range(n)) else None

        raw, better, worse = mean_of("reward_mean"), mean_of("better_than_alone_rate"), mean_of("worse_than_alone_rate")
        curves.append(
            {
                "benchmark": key[0],
                "backbone": key[1],
                "method": key[2],
                "variant": key[3],
                "seeds": len(logs),
                "steps": list(range(1, n + 1)),
                "raw": raw,
                "smoothed": smooth(raw, window),
                "better": better and smooth(better, window),
                "worse": worse and smooth(worse, window),
            }
        )
    planned = dict.fromkeys(r.method for r in runs(results.config) if r.trained)
    return {
        "id": "figure_reward_curves",
        "curves": curves,
        "validation": validation_curves(results),
        "not_run": [m for m in planned if not any(c["method"] == m for c in curves)],
    }


def plot_reward_curves(data: dict, out_dir: Path) -> None:
    benches = sorted({c["benchmark"] for c in data["curves"]}) or ["(none)"]
    versus = any(c["better"] for c in data["curves"])
    panels = 1 + versus + bool(data["validation"])
    fig, axes = plt.subplots(panels, len(benches), figsize=(5.5 * len(benches), 3.6 * panels), squeeze=False)
    palette = dict(zip(METHODS, sns.color_palette("tab10", len(METHODS))))
    for ax, bench in zip(axes[1] if versus else [], benches):
        for c in [c for c in data["curves"] if c["benchmark"] == bench and c["better"]]:
            ax.plot(c["steps"], c["better"], color=palette[c["method"]], linewidth=2, label=label(c))
            ax.plot(c["steps"], c["worse"], color=palette[c["method"]], linewidth=1.5, linestyle="--")
        ax.set_title(f"{bench}: searches better (solid) / worse (dashed) than the query alone", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("share of sampled searches (smoothed)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    for ax, bench in zip(axes[-1] if data["validation"] else [], benches):
        for c in [c for c in data["validation"] if c["benchmark"] == bench]:
            ax.plot(
                c["steps"],
                c["mean"],
                color=palette[c["method"]],
                marker="o",
                linewidth=2,
                label=f"{label(c)} ({c['backbone']}, {c['seeds']} seed(s))",
            )
        ax.set_title(f"{bench}: validation reward, greedy ({data['validation'][0]['queries']} held-out queries)")
        ax.set_xlabel("training step (0: before training)")
        ax.set_ylabel("reward")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    for ax, bench in zip(axes[0], benches):
        for c in [c for c in data["curves"] if c["benchmark"] == bench]:
            color = palette[c["method"]]
            text = f"{label(c)} ({c['backbone']}, {c['seeds']} seed(s))"
            ax.plot(c["steps"], c["raw"], color=color, alpha=0.25, linewidth=1)
            ax.plot(c["steps"], c["smoothed"], color=color, linewidth=2, label=text)
        ax.set_title(f"{bench}: mean training reward (NDCG@10)")
        ax.set_xlabel("training step")
        ax.set_ylabel("reward")
        if data["not_run"]:
            ax.text(
                0.01, 0.01, "not run: " + ", ".join(get_method(m).label for m in data["not_run"]), transform=ax.transAxes, fontsize=7, color="gray"
            )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    _save(fig, out_dir, "figure_reward_curves")


def entropy_cdf(results: ResultFiles) -> dict:
    """Per-task NDCG@10 gain of RICE-PO over its random-trigger variant: paper's and ours."""
    config = results.config
    paper = {r.get("variant"): r["values"] for r in load_paper()["table_ablation_trigger"]["rows"]}
    paper_gain = {t: paper[None][t] - paper["random_trigger"][t] for t in paper[None]}
    abl = config.get("ablations") or {}
    ours_gain = {}
    if abl.get("benchmark") in config["benchmarks"]:
        full = results.measured(abl["benchmark"], abl["backbone"], "ricepo")
        rand = results.measured(abl["benchmark"], abl["backbone"], "ricepo", "random_trigger")
        for task in config["benchmarks"][abl["benchmark"]]["tasks"]:
            a = [v[task] for v in full.values() if task in v]
            b = [v[task] for v in rand.values() if task in v]
            if a and b:
                ours_gain[task] = statistics.fmean(a) - statistics.fmean(b)

    def summary(gain: dict) -> dict:
        return {
            "gain": gain,
            "median": statistics.median(gain.values()) if gain else None,
            "positive": sum(v > 0 for v in gain.values()),
            "tasks": len(gain),
        }

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


ABLATION_PANELS = (("table_ablation_credit", "Credit propagation"), ("table_ablation_gates", "Gates"))


def ablation_bars(results: ResultFiles) -> dict:
    """Per-task NDCG@10 of each credit and gate ablation variant: ours (mean over seeds) and the paper's."""
    config = results.config
    paper = load_paper()
    abl = config.get("ablations") or {}
    panels = []
    for table, title in ABLATION_PANELS:
        rows = paper[table]["rows"]
        tasks = list(rows[0]["values"])
        series = []
        for r in rows:
            seeds = (
                results.measured(abl["benchmark"], abl["backbone"], r["method"], r.get("variant"))
                if abl.get("benchmark") in config["benchmarks"]
                else {}
            )
            ours = {t: statistics.fmean(v[t] for v in seeds.values() if t in v) for t in tasks if any(t in v for v in seeds.values())}
            series.append(
                {"method": r["method"], "variant": r.get("variant"), "label": label(r), "paper": r["values"], "ours": ours, "seeds": sorted(seeds)}
            )
        panels.append({"table": table, "title": title, "tasks": tasks, "series": series})
    return {"id": "figure_ablation_bars", "backbone": abl.get("backbone"), "panels": panels}


def plot_ablation_bars(data: dict, out_dir: Path) -> None:
    fig, axes = plt.subplots(len(data["panels"]), 1, figsize=(12, 3.4 * len(data["panels"])), squeeze=False)
    for ax, panel in zip(axes[:, 0], data["panels"]):
        tasks, n = panel["tasks"], len(panel["series"])
        width = 0.8 / n
        colors = sns.color_palette("tab10")
        for i, s in enumerate(panel["series"]):
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(tasks))]
            ax.bar(
                xs, [s["paper"][t] for t in tasks], width, color="none", edgecolor=colors[i], hatch="//", linewidth=0.8, label=f"{s['label']} (paper)"
            )
            measured_x = [(x, s["ours"][t]) for x, t in zip(xs, tasks) if t in s["ours"]]
            if measured_x:
                ax.bar(
                    [x for x, _ in measured_x],
                    [v for _, v in measured_x],
                    width * 0.6,
                    color=colors[i],
                    label=f"{s['label']} (ours, seeds {s['seeds']})",
                )
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{panel['title']} ablation per BRIGHT task (hatched: paper; solid: ours, {data['backbone']})", fontsize=9)
        ax.legend(fontsize=6, ncol=2, loc="upper right")
    _save(fig, out_dir, "figure_ablation_bars")


COST_KEYS = (("tokens_generated", "tokens generated"), ("retriever_calls", "searches run (cache hits not counted)"))


def branching_cost(results: ResultFiles) -> dict:
    """Mean per training step, over steps and seeds, of every trained (benchmark, backbone, method),
    and its ratio to GRPO on the same benchmark and backbone."""
    config = results.config
    rows = []
    methods = [m for b in config["benchmarks"].values() for m in b["methods"]]

    def order(kv):  # the config's method order, each method's variants after it in their declared order
        (bench, backbone, method, variant), _ = kv
        variants = list(get_method(method).variants)
        return (bench, backbone, methods.index(method) if method in methods else len(methods), method, variants.index(variant) + 1 if variant else 0)

    for key, logs in _trained_cells(results, order):
        steps = [s for lg in logs if lg for s in lg]
        if not steps:
            continue
        row = {
            "benchmark": key[0],
            "backbone": key[1],
            "method": key[2],
            "variant": key[3],
            "seeds": sum(1 for lg in logs if lg),
            "steps": len(steps),
        }
        for k, _ in COST_KEYS + (("retriever_cache_hits", ""), ("wall_s", "")):
            row[k] = statistics.fmean(s[k] for s in steps)
        rows.append(row)
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if (r["method"], r["variant"]) == ("grpo", None) and r["benchmark"] == row["benchmark"] and r["backbone"] == row["backbone"]
            ),
            None,
        )
        row["relative_to_grpo"] = {k: row[k] / base[k] for k, _ in COST_KEYS + (("wall_s", ""),)} if base else None
    return {"id": "figure_branching_cost", "rows": rows}


def plot_branching_cost(data: dict, out_dir: Path) -> None:
    groups = sorted({(r["benchmark"], r["backbone"]) for r in data["rows"]}) or [("(none)", "")]
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 0.4 + 0.32 * max(len(data["rows"]), 4) + 1.2 * len(groups)), squeeze=False)
    for (bench, backbone), ax_row in zip(groups, axes):
        rows = [r for r in data["rows"] if (r["benchmark"], r["backbone"]) == (bench, backbone)]
        labels = [label(r) for r in rows]
        for ax, (key, title) in zip(ax_row, COST_KEYS):
            values = [r[key] for r in rows]
            ax.barh(labels, values, color=sns.color_palette("tab10")[0 if key == "tokens_generated" else 1])
            for y, r in enumerate(rows):
                ratio = f"  ×{r['relative_to_grpo'][key]:.2f} GRPO" if r["relative_to_grpo"] else ""
                ax.text(r[key], y, ratio, va="center", fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{bench} ({backbone}): {title} per training step", fontsize=9)
            ax.margins(x=0.25)
            if not rows:
                ax.text(0.5, 0.5, "no training logs", ha="center", transform=ax.transAxes)
    _save(fig, out_dir, "figure_branching_cost")


def ceiling(results: ResultFiles) -> dict:
    """Per benchmark and backbone, NDCG@10 x 100 averaged over the benchmark's tasks (and seeds) of
    BM25 with the raw query, each agent (the prompting agent is the policy before training), and
    the fixed summaries of evaluate.summary_baselines, up to the oracle's; and each agent's
    summaries: mean word overlap with the query, the share that restate it (summaries.summary_figures), the share of queries whose
    final top 10 is the query alone's (summaries.unchanged_rate: summaries that changed nothing), and the
    shares whose final search scores above and below the query alone's (summaries.shares_versus_alone)."""
    config = results.config
    groups = []
    for bench, spec in config["benchmarks"].items():
        tasks = spec["tasks"]

        def baseline(read) -> float | None:
            got = [read(t) for t in tasks]
            return 100 * statistics.fmean(g["ndcg_cut_10"] for g in got) if got and all(got) else None

        fixed = [
            {"row": label, "summary": kind, "ndcg": baseline(lambda t, k=kind: results.summary_baseline(bench, k, t))}
            for kind, label in SUMMARY_BASELINES.items()
            if kind in config["evaluate"]["summary_baselines"]
        ]
        for backbone in spec["backbones"]:
            rows = [{"row": "BM25, the query alone", "ndcg": baseline(lambda t: results.bm25(bench, t))}]
            for method in spec["methods"]:
                got = [m for _, _, m in results._metrics_of(bench, backbone, method, None)]
                if not got:
                    rows.append({"row": get_method(method).label, "method": method, "ndcg": None})
                    continue
                figures = {
                    k: [m[k] for m in got if m.get(k) is not None]
                    for k in ("summary_query_overlap", "summary_restate_rate", "unchanged_rate", "better_than_alone_rate", "worse_than_alone_rate")
                }
                rows.append(
                    {
                        "row": get_method(method).label,
                        "method": method,
                        "ndcg": 100 * statistics.fmean(m["ndcg_cut_10"] for m in got),
                        **{k: statistics.fmean(v) if v else None for k, v in figures.items()},
                    }
                )
            groups.append({"benchmark": bench, "backbone": backbone, "tasks": tasks, "rows": rows + fixed})
    return {"id": "figure_ceiling", "restate_overlap": config["evaluate"]["restate_overlap"], "groups": groups}


def plot_ceiling(data: dict, out_dir: Path) -> None:
    measured = [g for g in data["groups"] if any(r["ndcg"] is not None for r in g["rows"])]
    groups = measured or [{"benchmark": "(none)", "backbone": "", "rows": []}]
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 0.8 + 0.4 * max(len(g["rows"]) for g in groups) * len(groups)), squeeze=False)
    for g, (left, right) in zip(groups, axes):
        rows = [r for r in g["rows"] if r["ndcg"] is not None]
        left.barh([r["row"] for r in rows], [r["ndcg"] for r in rows], color=sns.color_palette("tab10")[0])
        for y, r in enumerate(rows):
            left.text(r["ndcg"], y, f" {r['ndcg']:.2f}", va="center", fontsize=7)
        left.invert_yaxis()
        left.margins(x=0.2)
        left.set_title(f"{g['benchmark']} ({g['backbone']}): NDCG@10, mean over tasks", fontsize=9)
        agents = [r for r in rows if r.get("summary_restate_rate") is not None or r.get("unchanged_rate") is not None]
        shares = [
            (f"summaries restating the query (>= {data['restate_overlap']:.0%} of their words)", "summary_restate_rate"),
            ("queries whose final top 10 is the query alone's", "unchanged_rate"),
            ("queries searched better than the query alone", "better_than_alone_rate"),
            ("queries searched worse than the query alone", "worse_than_alone_rate"),
        ]
        height = 0.8 / len(shares)
        for k, (label, key) in enumerate(shares):
            right.barh(
                [y + height * k for y in range(len(agents))],
                [math.nan if r.get(key) is None else 100 * r[key] for r in agents],
                height=height,
                label=label,
                color=sns.color_palette("tab10")[1 + k],
            )
        right.set_yticks([y + 0.4 - height / 2 for y in range(len(agents))], [r["row"] for r in agents])
        right.invert_yaxis()
        right.set_xlim(0, 100)
        right.legend(fontsize=7, loc="lower right")
        right.set_title("% of summaries / of queries", fontsize=9)
        if not rows:
            left.text(0.5, 0.5, "nothing measured", ha="center", transform=left.transAxes)
    _save(fig, out_dir, "figure_ceiling")


def _save(fig, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_file(out_dir / f"{name}.svg", "wb") as f:
        fig.savefig(f, format="svg")
    with atomic_file(out_dir / f"{name}.png", "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


FIGURES = {
    "figure_reward_curves": (reward_curves, plot_reward_curves),
    "figure_entropy_cdf": (entropy_cdf, plot_entropy_cdf),
    "figure_branching_cost": (branching_cost, plot_branching_cost),
    "figure_ablation_bars": (ablation_bars, plot_ablation_bars),
    "figure_ceiling": (ceiling, plot_ceiling),
}


def build_figure(name: str, results: ResultFiles, out_dir: Path) -> dict:
    compute, plot = FIGURES[name]
    data = compute(results)
    plot(data, out_dir)
    write_text(out_dir / f"{name}.json", json.dumps(data, indent=1))
    return data
