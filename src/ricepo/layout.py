"""The run matrix and the results layout: what a config asks to run, and where each output lives.

A `Run` is one (benchmark, backbone, method, variant, seed): a named condition, trained once on
all of the benchmark's tasks and evaluated on each. The Snakemake rules build their inputs and
outputs from the patterns and functions here, and the report reads results through them, so the
two never disagree about a path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .credit import get_method
from .credit.registry import BASE_VARIANT as BASE

# Outputs below results/{run_name}/, as patterns whose fields are a Run's (and a task's).
RUN_DIR = "{benchmark}/{backbone}/{method}/{variant}/seed{seed}"
TRAIN_DIR = "train/" + RUN_DIR
EVAL_DIR = "eval/" + RUN_DIR + "/{task}"
BM25_DIR = "baselines/{benchmark}/bm25/{task}"
SUMMARY_BASELINE_DIR = "baselines/{benchmark}/{summary}/{task}"  # evaluate.summary_baselines (summary_baselines.KINDS)
SPLIT_DIR = "splits/{benchmark}/{task}"
# A training run's held-out scorings (train/validation.py), one JSON line each; empty when it holds none out.
VALIDATION_FILE = "validation.jsonl"
INDEX_DIR = "index/{benchmark}/{task}"
# The report's inputs, each result file gathered with its text into a few (ricepo.report.results):
# a run's evaluations and training logs, then every run of a (benchmark, backbone), and a baseline's
# retrievals of every task of a benchmark. A table reads a handful of files instead of hundreds,
# and still holds every number when an evaluation's own files are deleted.
RUN_RESULTS = "collected/runs/" + RUN_DIR + ".json"
GROUP_RESULTS = "collected/{benchmark}/{backbone}.json"
BASELINE_RESULTS = "collected/baselines/{benchmark}/{baseline}.json"  # baseline: bm25 or a summary baseline


@dataclass(frozen=True)
class Run:
    benchmark: str
    backbone: str
    method: str
    variant: str | None
    seed: int

    def fields(self) -> dict:
        return {**asdict(self), "variant": self.variant or BASE}

    @property
    def trained(self) -> bool:
        return get_method(self.method).rollout is not None

    @property
    def label(self) -> str:
        return get_method(self.method).label_of(self.variant)


def path(pattern: str, run: Run | None = None, **fields) -> str:
    """The relative path of one output: `pattern` filled from the run and `fields`."""
    return pattern.format(**(run.fields() if run else {}), **fields)


def runs(config: dict) -> list[Run]:
    """Every run the config asks for: each benchmark's methods on each of its backbones, the
    ablation variants on the ablation backbone only. An untrained method evaluated greedily is
    deterministic: one seed."""
    out = []
    abl = config.get("ablations") or {}
    for bench, spec in config["benchmarks"].items():
        for bb in spec["backbones"]:
            conditions = [(m, None) for m in spec["methods"]]
            if abl.get("benchmark") == bench and abl.get("backbone") == bb:
                conditions += [(abl["method"], v) for v in abl.get("variants", [])]
            for method, variant in conditions:
                deterministic = get_method(method).rollout is None and config["evaluate"]["decoding"] == "greedy"
                for seed in [0] if deterministic else config["seeds"]:
                    out.append(Run(bench, bb, method, variant, seed))
    return out


def template(config: dict, backbone: str) -> dict:
    family = config["backbones"][backbone]["family"]
    return config["templates"].get(family, config["templates"]["default"])


def train_tasks(config: dict, benchmark: str) -> list[str]:
    """The benchmark's tasks that have train queries: a training run of it trains on all of them."""
    bench = config["benchmarks"][benchmark]
    return [t for t in bench["tasks"] if bench["split_counts"][t]["train"] > 0]


def backbone_settings(config: dict, backbone: str, section: str) -> dict:
    """`config[section]` as `backbone`'s jobs run it: the backbone's own values over the shared
    ones (`backbones.<name>.train`, `.rollout`: the schema says which sections an entry may change)."""
    return {**config[section], **config["backbones"][backbone].get(section, {})}


# What an evaluation reads of `train:`: its sampler's precision. The rest cannot change its numbers
# (a trained policy's evaluation reruns when its training does, through the model it reads).
EVAL_TRAIN_KEYS = ("precision",)


def job_spec(config: dict, run: Run, job: str = "train") -> dict:
    """Everything one job of `run` (`train` or `eval`) reads from the config: its spec, whose change reruns it."""
    backbone = config["backbones"][run.backbone]
    train = backbone_settings(config, run.backbone, "train")
    return {
        "benchmark": run.benchmark,
        "method": run.method,
        "variant": run.variant,
        "seed": int(run.seed),
        "backbone": {k: v for k, v in backbone.items() if k not in config},  # its sections: merged below
        "template": template(config, run.backbone),
        "rollout": backbone_settings(config, run.backbone, "rollout"),
        "train": train if job == "train" else {k: train[k] for k in EVAL_TRAIN_KEYS},
        "credit": dict(config["credit"].get(run.method, {})),
        # summary_baselines are BM25 jobs of their own: adding a row to the ceiling figure reruns no training
        "evaluate": {k: v for k, v in config["evaluate"].items() if k != "summary_baselines"},
        "retriever": config["benchmarks"][run.benchmark]["retriever"],
        "dense_models": config.get("dense_models", {}),
    }


def job_spec_json(config: dict, run: Run, job: str = "train") -> str:
    return json.dumps(job_spec(config, run, job), sort_keys=True)


def metrics_file(results: str | Path, run: Run, task: str) -> Path:
    return Path(results) / path(EVAL_DIR, run, task=task) / "metrics.json"


def train_log_file(results: str | Path, run: Run) -> Path:
    return Path(results) / path(TRAIN_DIR, run) / "log.jsonl"


def validation_file(results: str | Path, run: Run) -> Path:
    return Path(results) / path(TRAIN_DIR, run) / VALIDATION_FILE


def run_results_file(results: str | Path, run: Run) -> Path:
    return Path(results) / path(RUN_RESULTS, run)


def group_results_file(results: str | Path, benchmark: str, backbone: str) -> Path:
    return Path(results) / path(GROUP_RESULTS, benchmark=benchmark, backbone=backbone)


def baseline_results_file(results: str | Path, benchmark: str, baseline: str) -> Path:
    return Path(results) / path(BASELINE_RESULTS, benchmark=benchmark, baseline=baseline)


def run_result_files(config: dict, results: str | Path, run: Run) -> list[Path]:
    """What a run produced that a report reads: its evaluations' metrics and, when trained, its logs."""
    files = [metrics_file(results, run, t) for t in config["benchmarks"][run.benchmark]["tasks"]]
    return files + ([train_log_file(results, run), validation_file(results, run)] if run.trained else [])


def baseline_result_files(config: dict, results: str | Path, benchmark: str, baseline: str) -> list[Path]:
    tasks = config["benchmarks"][benchmark]["tasks"]
    if baseline == "bm25":
        return [bm25_metrics_file(results, benchmark, t) for t in tasks]
    return [summary_baseline_metrics_file(results, benchmark, baseline, t) for t in tasks]


def bm25_metrics_file(results: str | Path, benchmark: str, task: str) -> Path:
    return Path(results) / path(BM25_DIR, benchmark=benchmark, task=task) / "metrics.json"


def summary_baseline_metrics_file(results: str | Path, benchmark: str, summary: str, task: str) -> Path:
    return Path(results) / path(SUMMARY_BASELINE_DIR, benchmark=benchmark, summary=summary, task=task) / "metrics.json"


# --- the report's artefacts (in the page's order) and the runs each one reads --------------

ABLATION_CREDIT = [("ricepo", "case2"), ("ricepo", "case1"), ("ricepo", "random_case"), ("ricepo", None)]
ABLATION_TRIGGER = [("ricepo", "random_trigger"), ("ricepo", None)]
ABLATION_GATES = [("ricepo", "effect_only"), ("ricepo", "influence_only"), ("ricepo", None)]


@dataclass(frozen=True)
class Artefact:
    name: str
    kind: str  # claims | table | figure
    reads: str  # metrics (eval metrics.json) | train_logs (log.jsonl, validation.jsonl) |
    # ceiling (every main-table run's metrics, BM25 and the summary baselines) |
    # all (every other's)
    benchmark: str | None = None  # a main table's benchmark (with the BM25 row); None: the ablation benchmark
    conditions: tuple = ()  # an ablation's (method, variant) rows, in the paper's order
    title: str = ""

    def runs(self, config: dict) -> list[Run]:
        abl = config.get("ablations") or {}
        if self.reads == "all":
            return runs(config)
        if self.reads == "train_logs":
            return [r for r in runs(config) if r.trained]
        if self.reads == "ceiling":
            return [r for r in runs(config) if r.variant is None]
        if self.benchmark:
            return [r for r in runs(config) if r.benchmark == self.benchmark and r.variant is None]
        return [
            r
            for r in runs(config)
            if r.benchmark == abl.get("benchmark") and r.backbone == abl.get("backbone") and (r.method, r.variant) in self.conditions
        ]

    def baselines(self, config: dict) -> list[tuple[str, str]]:
        """The (benchmark, baseline) retrievals without an agent that this artefact shows."""
        if self.reads == "all":
            return list(dict.fromkeys(b for a in ARTEFACTS.values() if a.reads != "all" for b in a.baselines(config)))
        if self.reads == "ceiling":
            return [(b, kind) for b in config["benchmarks"] for kind in ["bm25", *config["evaluate"]["summary_baselines"]]]
        return [(self.benchmark, "bm25")] if self.benchmark in config["benchmarks"] else []

    def result_files(self, config: dict, results: str | Path) -> list[Path]:
        """Every result file whose numbers this artefact reads."""
        runs_ = self.runs(config)
        if self.reads == "train_logs":
            return [f(results, r) for r in runs_ for f in (train_log_file, validation_file)]
        files = [f for r in runs_ for f in run_result_files(config, results, r) if self.reads == "all" or f.name == "metrics.json"]
        return files + [f for b, kind in self.baselines(config) for f in baseline_result_files(config, results, b, kind)]

    def inputs(self, config: dict, results: str | Path) -> list[Path]:
        """The files its rule declares: the collected results of its runs' (benchmark, backbone)s and
        of its baselines, which hold its result files."""
        groups = dict.fromkeys((r.benchmark, r.backbone) for r in self.runs(config))
        return [group_results_file(results, *g) for g in groups] + [baseline_results_file(results, *b) for b in self.baselines(config)]


ARTEFACTS = {
    a.name: a
    for a in [
        Artefact("claims", "claims", "all", title="The paper's claims, checked"),
        Artefact("table_bright_main", "table", "metrics", benchmark="bright", title="BRIGHT: NDCG@10 per task"),
        Artefact("table_beir_main", "table", "metrics", benchmark="beir", title="BEIR: NDCG@10 per dataset"),
        Artefact("table_ablation_credit", "table", "metrics", conditions=tuple(ABLATION_CREDIT), title="Ablation: credit propagation (BRIGHT)"),
        Artefact("table_ablation_trigger", "table", "metrics", conditions=tuple(ABLATION_TRIGGER), title="Ablation: anchor trigger (BRIGHT)"),
        Artefact("table_ablation_gates", "table", "metrics", conditions=tuple(ABLATION_GATES), title="Ablation: gates (BRIGHT)"),
        Artefact(
            "figure_entropy_cdf",
            "figure",
            "metrics",
            conditions=tuple(ABLATION_TRIGGER),
            title="Entropy-based triggering: per-task gain CDF (paper Figure 4)",
        ),
        Artefact(
            "figure_ablation_bars",
            "figure",
            "metrics",
            conditions=tuple(dict.fromkeys(ABLATION_CREDIT + ABLATION_GATES)),
            title="Credit-propagation and gate ablations per task (paper Figures 2 and 3)",
        ),
        Artefact("figure_reward_curves", "figure", "train_logs", title="Training reward curves (paper appendix A.6)"),
        Artefact("figure_branching_cost", "figure", "train_logs", title="Training cost per step: tokens generated and retriever calls (ours)"),
        Artefact(
            "figure_ceiling",
            "figure",
            "ceiling",
            title="Where the ceiling is: BM25, the agents and fixed summaries up to an oracle's; how often summaries restate the query (ours)",
        ),
    ]
}
TABLES = [n for n, a in ARTEFACTS.items() if a.kind == "table"]
FIGURES = [n for n, a in ARTEFACTS.items() if a.kind == "figure"]
