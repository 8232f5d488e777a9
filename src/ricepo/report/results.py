"""Reading measured results (eval metrics, train logs) and the paper's numbers."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from ..layout import Run, metrics_file, runs, train_log_file

PAPER_RESULTS = Path(__file__).resolve().parents[3] / "config" / "paper_results.yaml"


def load_paper(path: Path = PAPER_RESULTS) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)["tables"]


def read_ndcg(path: Path) -> float:
    return float(json.loads(path.read_text())["ndcg_cut_10"])


def _metric_files(config: dict, results: Path, benchmark: str, backbone: str, method: str, variant: str | None):
    """(seed, task, metrics.json path) of every planned run of this cell whose metrics exist."""
    for r in runs(config):
        if (r.benchmark, r.backbone, r.method, r.variant) != (benchmark, backbone, method, variant):
            continue
        for task in config["benchmarks"][benchmark]["tasks"]:
            path = metrics_file(results, r, task)
            if path.exists():
                yield r.seed, task, path


def measured(config: dict, results: Path, benchmark: str, backbone: str, method: str,
             variant: str | None = None) -> dict[int, dict[str, float]]:
    """{seed: {task: NDCG@10 x 100}} for every planned run of this cell whose metrics exist."""
    out: dict[int, dict[str, float]] = {}
    for seed, task, path in _metric_files(config, results, benchmark, backbone, method, variant):
        out.setdefault(seed, {})[task] = 100 * read_ndcg(path)
    return out


def per_query(config: dict, results: Path, benchmark: str, backbone: str, method: str,
              variant: str | None = None) -> dict[str, dict[str, float]]:
    """{task: {query id: NDCG@10 x 100 averaged over the seeds that ran}} from metrics.json."""
    out: dict[str, dict[str, list[float]]] = {}
    for _, task, path in _metric_files(config, results, benchmark, backbone, method, variant):
        for q, v in json.loads(path.read_text())["per_query"].items():
            out.setdefault(task, {}).setdefault(q, []).append(100 * float(v))
    return {t: {q: statistics.fmean(v) for q, v in qs.items()} for t, qs in out.items()}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def train_log(results: Path, run: Run) -> list[dict]:
    path = train_log_file(results, run)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
