"""reports/report.html: one self-contained page (figures inline) rendered with jinja2."""
from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import jinja2

from ..atomic import write_text
from .tables import cell_text, fmt

PACKAGES = ["torch", "transformers", "bm25s", "pytrec-eval-terrier", "snakemake", "pandas", "matplotlib",
            "seaborn", "jinja2", "ricepo"]
TABLE_ORDER = ["table_bright_main", "table_beir_main", "table_ablation_credit", "table_ablation_trigger",
               "table_ablation_gates"]
FIGURE_ORDER = ["figure_entropy_cdf", "figure_ablation_bars", "figure_reward_curves", "figure_branching_cost"]
FIGURE_TITLES = {"figure_entropy_cdf": "Entropy-based triggering: per-task gain CDF (paper Figure 4)",
                 "figure_reward_curves": "Training reward curves (paper appendix A.6)",
                 "figure_branching_cost": "Training cost per step: tokens generated and retriever calls (ours)",
                 "figure_ablation_bars": "Credit-propagation and gate ablations per task (paper Figures 2 and 3)"}


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _machine() -> str:
    desc = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    try:
        import torch
        if torch.cuda.is_available():
            desc += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc


def provenance(config: dict, config_path: Path) -> dict:
    blob = json.dumps(config, sort_keys=True).encode()
    return {"commit": _git_commit(), "config_file": str(config_path), "config_sha256": hashlib.sha256(blob).hexdigest(),
            "run_name": config.get("run_name"), "seeds": config.get("seeds"), "packages": _versions(),
            "machine": _machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def render(config: dict, config_path: Path, tables_dir: Path, figures_dir: Path, out: Path) -> None:
    tables = [json.loads((tables_dir / f"{n}.json").read_text()) for n in TABLE_ORDER]
    figures = []
    for name in FIGURE_ORDER:
        png = base64.b64encode((figures_dir / f"{name}.png").read_bytes()).decode()
        figures.append({"id": name, "title": FIGURE_TITLES[name], "png": png,
                        "data": json.loads((figures_dir / f"{name}.json").read_text())})
    env = jinja2.Environment(loader=jinja2.PackageLoader("ricepo.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    env.filters["cell_text"] = cell_text
    html = env.get_template("report.html.j2").render(tables=tables, figures=figures,
                                                     prov=provenance(config, config_path), config=config)
    write_text(out, html)
