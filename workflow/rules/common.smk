# Config validation, wildcard constraints and the helpers that turn the config into job specs.
import hashlib
import json
from pathlib import Path
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ricepo.config import base_method, check_config, runs
from ricepo.environments import index_parts
from ricepo.errors import RicepoError
from ricepo.identity import code_version

try:
    # One-line errors naming the key (unknown keys, wrong types, unknown method names).
    _checked = check_config(config)
except RicepoError as e:
    raise WorkflowError(str(e))
config.clear()
config.update(_checked)
validate(config, "../schemas/config.schema.yaml")

# Each configuration owns its outputs: switching configurations never mixes or hides results.
RUN = config["run_name"]
R = f"results/{RUN}"
REPORT = f"reports/{RUN}/report.html"
DATA = f"{config['data']['root']}/{RUN}"
# Every job that computes a number takes the code version as a parameter, so Snakemake reruns it
# when the package's code changes (report jobs: the report code too; ricepo/identity.py).
CODE = code_version()
BENCHMARKS = list(config["benchmarks"])
RUNS = runs(config)
ALL_TASKS = sorted({t for b in config["benchmarks"].values() for t in b["tasks"]})
ALL_BACKBONES = sorted({r["backbone"] for r in RUNS})
ALL_METHODS = sorted({r["method"] for r in RUNS})
TRAINED_RUNS = [r for r in RUNS if r["method"] != "prompting"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    benchmark=_alternatives(BENCHMARKS),
    task=_alternatives(ALL_TASKS),
    backbone=_alternatives(ALL_BACKBONES) or "none",
    method=_alternatives(ALL_METHODS),
    dense_model=_alternatives(config.get("dense_models", {})) or "none",
    seed=r"\d+",


def bench(wildcards):
    return config["benchmarks"][wildcards.benchmark]


def data_spec(benchmark):
    """A benchmark's config entry less what does not shape its data (so that changing the
    retriever or the methods does not prepare the data again), as JSON."""
    spec = config["benchmarks"][benchmark]
    return json.dumps({k: v for k, v in spec.items() if k not in ("retriever", "backbones", "methods")},
                      sort_keys=True)


def backbone_path(name):
    """Hub id or local folder of a backbone (tiny backbones are built under resources/models)."""
    return config["backbones"][name]["model"]


def built_backbones(kind):
    """Regex of the backbones the workflow builds itself with `kind` (never matches if none)."""
    names = [n for n, b in config["backbones"].items() if b.get("build") == kind]
    return _alternatives(names) if names else "(?!x)x"


def backbone_inputs(name):
    bb = config["backbones"][name]
    return [bb["model"]] if bb.get("build") else []


def template(name):
    family = config["backbones"][name]["family"]
    return config["templates"].get(family, config["templates"]["default"])


def job_spec(benchmark, backbone, method, seed):
    """Everything one train/eval job reads from the config, as JSON (params: a change reruns it)."""
    base, variant = base_method(method)
    credit = dict(config["credit"].get(base, {}))
    return json.dumps({
        "benchmark": benchmark, "method": base, "variant": variant, "seed": int(seed),
        "backbone": config["backbones"][backbone], "template": template(backbone),
        "rollout": config["rollout"], "train": config["train"], "credit": credit,
        "evaluate": config["evaluate"],
        "retriever": config["benchmarks"][benchmark]["retriever"],
        "dense_models": config.get("dense_models", {}),
    }, sort_keys=True)


def split_dir(benchmark, task):
    return f"{R}/splits/{benchmark}/{task}"


def index_dir(benchmark, task):
    """Root of a task's indexes: bm25/ and dense/<model>/ below it."""
    return f"{R}/index/{benchmark}/{task}"


def index_inputs(benchmark, task):
    """The index folders the benchmark's retriever reads."""
    return [f"{index_dir(benchmark, task)}/{part}" for part in index_parts(config["benchmarks"][benchmark]["retriever"])]


def eval_metrics(benchmark, backbones=None, methods=None):
    """metrics.json of every planned run of a benchmark (optionally restricted)."""
    out = []
    for r in RUNS:
        if r["benchmark"] != benchmark:
            continue
        if backbones is not None and r["backbone"] not in backbones:
            continue
        if methods is not None and r["method"] not in methods:
            continue
        for task in config["benchmarks"][benchmark]["tasks"]:
            out.append(f"{R}/eval/{benchmark}/{r['backbone']}/{r['method']}/seed{r['seed']}/{task}/metrics.json")
    return out


def train_logs(benchmark=None):
    return [f"{R}/train/{r['benchmark']}/{r['backbone']}/{r['method']}/seed{r['seed']}/log.jsonl"
            for r in TRAINED_RUNS if benchmark in (None, r["benchmark"])]


# --- inputs and params of the rules -------------------------------------------------------


def _reasonir_input(wc):
    """BRIGHT tasks from a real source take their train queries from the resolved ReasonIR data."""
    spec = config["benchmarks"][wc.benchmark]
    if wc.benchmark == "bright" and spec["source"] != "fixture" and spec["split_counts"][wc.task]["train"] > 0:
        return [f"{DATA}/reasonir/hq"]
    return []


def _fixture_corpora(wildcards):
    return [f"{DATA}/{b}/{t}" for b, spec in config["benchmarks"].items() for t in spec["tasks"]]


def _task_args(benchmark):
    return " ".join(f"--task {t}={split_dir(benchmark, t)}:{index_dir(benchmark, t)}"
                    for t in config["benchmarks"][benchmark]["tasks"]
                    if config["benchmarks"][benchmark]["split_counts"][t]["train"] > 0)


def train_launcher(wc):
    """`ricepo`, or `accelerate launch` of it over train.processes processes (DDP or FSDP). Each
    run gets its own rendezvous port, so concurrent runs on one machine do not collide."""
    n = config["train"]["processes"]
    if n == 1:
        return "ricepo"
    mode = "--use_fsdp --fsdp_sharding_strategy FULL_SHARD" if config["train"]["distributed"] == "fsdp" else "--multi_gpu"
    key = f"{wc.benchmark}/{wc.backbone}/{wc.method}/{wc.seed}"
    port = 29500 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 400
    return (f"accelerate launch {mode} --num_processes {n} --num_machines 1 --mixed_precision no "
            f"--dynamo_backend no --main_process_port {port} -m ricepo")


def _train_inputs(wc):
    tasks = config["benchmarks"][wc.benchmark]["tasks"]
    return ([split_dir(wc.benchmark, t) for t in tasks] + [i for t in tasks for i in index_inputs(wc.benchmark, t)]
            + backbone_inputs(wc.backbone))


def _policy(wc):
    if wc.method == "prompting":
        return backbone_path(wc.backbone)
    return f"{R}/train/{wc.benchmark}/{wc.backbone}/{wc.method}/seed{wc.seed}/model"


def _eval_inputs(wc):
    deps = [split_dir(wc.benchmark, wc.task), *index_inputs(wc.benchmark, wc.task)]
    return deps + (backbone_inputs(wc.backbone) if wc.method == "prompting" else [_policy(wc)])


TABLES = ["table_bright_main", "table_beir_main", "table_ablation_credit", "table_ablation_trigger",
          "table_ablation_gates"]
FIGURES = ["figure_entropy_cdf", "figure_reward_curves", "figure_branching_cost", "figure_ablation_bars"]
ABL = config.get("ablations") or {}


def bm25_metrics(benchmark):
    if benchmark not in config["benchmarks"]:
        return []
    return [f"{R}/baselines/{benchmark}/bm25/{t}/metrics.json" for t in config["benchmarks"][benchmark]["tasks"]]


def _ablation_metrics(methods):
    if not ABL.get("benchmark"):
        return []
    return eval_metrics(ABL["benchmark"], backbones=[ABL["backbone"]], methods=methods)


REPORT_INPUTS = {
    "table_bright_main": lambda: eval_metrics("bright") + bm25_metrics("bright") if "bright" in config["benchmarks"] else [],
    "table_beir_main": lambda: eval_metrics("beir") + bm25_metrics("beir") if "beir" in config["benchmarks"] else [],
    "table_ablation_credit": lambda: _ablation_metrics(["ricepo", "ricepo_case1", "ricepo_case2", "ricepo_random_case"]),
    "table_ablation_trigger": lambda: _ablation_metrics(["ricepo", "ricepo_random_trigger"]),
    "table_ablation_gates": lambda: _ablation_metrics(["ricepo", "ricepo_effect_only", "ricepo_influence_only"]),
    "figure_entropy_cdf": lambda: _ablation_metrics(["ricepo", "ricepo_random_trigger"]),
    "figure_reward_curves": lambda: train_logs(),
    "figure_branching_cost": lambda: train_logs(),
    "figure_ablation_bars": lambda: _ablation_metrics(["ricepo", "ricepo_case1", "ricepo_case2", "ricepo_random_case",
                                                       "ricepo_effect_only", "ricepo_influence_only"]),
}
