# RICE-PO reproduction harness. Targets: reproduce_all, table_bright_main, table_beir_main,
# table_ablation_credit, table_ablation_trigger, table_ablation_gates, figure_entropy_cdf,
# figure_reward_curves, figure_branching_cost, figure_ceiling, figure_ablation_bars, report. See README.md.
#
# `snakemake --lint` asks for a conda environment per rule. Answered: every rule calls the one
# `ricepo` CLI, so the whole workflow runs in one environment (environment.yml / pyproject.toml)
# rather than per-rule environments that would each have to install the package.
import os
import sys

from snakemake.utils import min_version

min_version("8.0")

# The rules, the code version they key on and every job they start run this checkout's package
# (src/ beside this file), whichever checkout `pip install -e` last pointed at: editing another
# clone never reruns or restarts this one's jobs.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/plan.smk"


rule reproduce_all:
    default_target: True
    input:
        REPORT,
        f"{R}/plan.txt",


include: "workflow/rules/cluster.smk"
