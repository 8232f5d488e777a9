# Config validation, wildcard constraints and the helpers that turn the config into job specs.
import hashlib
import json
from pathlib import Path
import re

from snakemake.exceptions import WorkflowError

from ricepo import layout
from ricepo.atomic import write_text
from ricepo.config import RESOLVED_CONFIG, check_config
from ricepo.environments import RetrieverSettings
from ricepo.errors import RicepoError
from ricepo.identity import code_version
from ricepo.kernels import CPU_KERNELS
from ricepo.report.check import expected_file
from ricepo.report.results import PAPER_CLAIMS, collect
from ricepo.summary_baselines import KINDS as SUMMARY_BASELINES

try:
    # One-line errors naming the key (unknown keys, wrong types, unknown method names).
    _checked = check_config(config)
except RicepoError as e:
    raise WorkflowError(str(e))
config.clear()
config.update(_checked)

# Each configuration owns its outputs: switching configurations never mixes or hides results.
RUN = config["run_name"]
R = f"results/{RUN}"
REPORT = f"reports/{RUN}/report.html"
RESOLVED = f"{R}/{RESOLVED_CONFIG}"
DATA = f"{config['data']['root']}/{RUN}"
# Every job that computes a number takes the code version as a parameter, so Snakemake reruns it
# when the package's code changes (report jobs: the report code too; ricepo/identity.py).
CODE = code_version()
REPORT_CODE = code_version(with_report=True)
BENCHMARKS = list(config["benchmarks"])
RUNS = layout.runs(config)
ALL_TASKS = sorted({t for b in config["benchmarks"].values() for t in b["tasks"]})
ALL_BACKBONES = sorted({r.backbone for r in RUNS})
ALL_METHODS = sorted({r.method for r in RUNS})
ALL_VARIANTS = sorted({r.variant or layout.BASE for r in RUNS})


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    benchmark=_alternatives(BENCHMARKS),
    task=_alternatives(ALL_TASKS),
    backbone=_alternatives(ALL_BACKBONES) or "none",
    method=_alternatives(ALL_METHODS),
    variant=_alternatives(ALL_VARIANTS),
    dense_model=_alternatives(config.get("dense_models", {})) or "none",
    seed=r"\d+",
    summary=_alternatives(SUMMARY_BASELINES),


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


def run_of(wc):
    """The Run a train or eval job's wildcards name."""
    return layout.Run(wc.benchmark, wc.backbone, wc.method,
                      None if wc.variant == layout.BASE else wc.variant, int(wc.seed))


# What one training (`train`) or evaluation (`eval`) of a run reads from the config
# (ricepo.layout.job_spec), in a file of its own, written by the job_spec rule; the job takes it as an input, so
# it reruns when its spec changes and only then, and no command line carries the config.
SPEC = f"{R}/specs/{{kind}}/{layout.RUN_DIR}.json"


def spec_sha(wc):
    """The spec's hash: the job_spec rule's params (a dry run prints a hash, not the spec)."""
    return hashlib.sha256(layout.job_spec_json(config, run_of(wc), wc.kind).encode()).hexdigest()


def out(pattern):
    """An output pattern of ricepo.layout below this run's results folder, Snakemake wildcards kept."""
    return f"{R}/{pattern}"


def split_dir(benchmark, task):
    return f"{R}/{layout.path(layout.SPLIT_DIR, benchmark=benchmark, task=task)}"


def index_dir(benchmark, task):
    """Root of a task's indexes: bm25/ and dense/<model>/ below it."""
    return f"{R}/{layout.path(layout.INDEX_DIR, benchmark=benchmark, task=task)}"


def index_inputs(benchmark, task):
    """The index folders the benchmark's retriever reads that its split job does not write (BM25)."""
    retriever = RetrieverSettings.resolve(config["benchmarks"][benchmark]["retriever"], config.get("dense_models"))
    return [f"{index_dir(benchmark, task)}/{part}" for part in retriever.parts if part != "bm25"]


def bm25_flags(wc):
    """The benchmark's BM25 settings as `ricepo index|retrieve` flags (the index and its baseline agree)."""
    r = config["benchmarks"][wc.benchmark]["retriever"]
    return f"--k1 {r['k1']} --b {r['b']} --stemmer {r['stemmer']}"


def report_inputs(name):
    return [str(p) for p in layout.ARTEFACTS[name].inputs(config, R)]


def log_collected(files, out, log):
    """A collect_* job: `files` gathered into `out`, and how many it holds in its log."""
    write_text(Path(log), f"{out}: {collect(R, files, out)} result files\n")


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
                    for t in layout.train_tasks(config, benchmark))


def kernel_env(wc=None):
    """The settings before a torch job's command that fix its CPU kernels (config `cpu_kernels`)."""
    return " ".join(f"{k}={v}" for k, v in CPU_KERNELS[config["cpu_kernels"]].items())


def train_processes(wc):
    """Processes (one GPU each) of a training run: its backbone's train.processes."""
    return layout.backbone_settings(config, wc.backbone, "train")["processes"]


def train_priority(wc):
    """Trainings before evaluations, and the longest trainings first: where fewer run at once than
    there are (a workstation's cores or GPUs), the DAG lasts as long as the longest one if it starts
    first, and longer if it waits for a shorter one. Its length: the rows it samples over the run
    (steps x queries per step x the method's rows per query)."""
    from ricepo.plan import rows_per_query

    train = layout.backbone_settings(config, wc.backbone, "train")
    rollout = layout.backbone_settings(config, wc.backbone, "rollout")
    run = run_of(wc)
    rows = rows_per_query(run.method, config["credit"].get(run.method, {}), run.variant, rollout["group_size"])
    return 10 + train["steps"] * train["queries_per_step"] * rows


def train_launcher(wc):
    """`ricepo`, or `accelerate launch` of it over the run's processes (the trainer wraps the
    policy for DDP or FSDP itself). Each run gets its own rendezvous port, so concurrent runs on
    one machine do not collide."""
    n = train_processes(wc)
    if n == 1:
        return "ricepo"
    key = layout.path(layout.RUN_DIR, run_of(wc))
    port = 29500 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 400
    return (f"accelerate launch --multi_gpu --num_processes {n} --num_machines 1 --mixed_precision no "
            f"--dynamo_backend no --main_process_port {port} -m ricepo")


def train_host_mb(wc):
    """Host memory of a training run (ricepo.plan.host_mb: an estimate), for the cluster."""
    from ricepo.plan import host_mb

    return host_mb(config, Path(R), "train", wc.benchmark, wc.backbone, layout.train_tasks(config, wc.benchmark))


def eval_host_mb(wc):
    from ricepo.plan import host_mb

    return host_mb(config, Path(R), "agent_eval", wc.benchmark, wc.backbone, [wc.task])


def index_host_mb(wc):
    from ricepo.plan import host_mb

    return host_mb(config, Path(R), "dense_index", wc.benchmark, tasks=[wc.task])


def _train_inputs(wc):
    tasks = config["benchmarks"][wc.benchmark]["tasks"]
    return ([split_dir(wc.benchmark, t) for t in tasks] + [i for t in tasks for i in index_inputs(wc.benchmark, t)]
            + backbone_inputs(wc.backbone))


def _policy(wc):
    run = run_of(wc)
    return f"{R}/{layout.path(layout.TRAIN_DIR, run)}/model" if run.trained else backbone_path(wc.backbone)


def _eval_inputs(wc):
    deps = [split_dir(wc.benchmark, wc.task), *index_inputs(wc.benchmark, wc.task)]
    return deps + ([_policy(wc)] if run_of(wc).trained else backbone_inputs(wc.backbone))


TABLES = layout.TABLES
FIGURES = layout.FIGURES

