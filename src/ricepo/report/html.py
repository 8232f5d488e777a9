"""reports/report.html: one self-contained page (figures inline) rendered with jinja2."""

from __future__ import annotations

import base64
import datetime
import importlib.metadata
import json
from pathlib import Path

import jinja2

from ..atomic import write_text
from ..errors import RicepoError
from ..layout import ARTEFACTS, FIGURES, TABLES, backbone_settings, runs
from .provenance import git_commit, machine
from .results import config_sha256
from .tables import cell_text, fmt

PACKAGES = ["torch", "transformers", "bm25s", "pytrec-eval-terrier", "snakemake", "pandas", "matplotlib", "seaborn", "jinja2", "ricepo"]


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance_text(p: dict) -> str:
    """A cell's provenance as its tooltip."""
    check = f"{p['check']}, graded {p['check_kind']}" if p.get("check_kind") else p["check"]
    return "\n".join(
        [
            f"check: {check}",
            f"command: {p['command']}",
            f"config sha256: {p['config_sha256'][:16]}",
            f"seeds: {', '.join(map(str, p['seeds'])) or '-'}",
            "metrics files:",
            *p["metrics_files"],
        ]
    )


EMPTY_SUMMARY_SEARCH = {"query": "the question alone", "last_summary": "the question with the trajectory's latest earlier summary"}


def reward_choices(config: dict) -> list[str]:
    """How the training reward treats a step without a summary, per trained backbone (a backbone
    may set its own `rollout:`): our choices, which the paper does not state."""
    out: dict[str, list[str]] = {}
    for backbone in dict.fromkeys(r.backbone for r in runs(config) if r.trained):
        rollout = backbone_settings(config, backbone, "rollout")
        text = (
            f"a step without a summary searches with {EMPTY_SUMMARY_SEARCH[rollout['empty_summary_search']]} "
            f"(so does the final reward, when it is the last step), and the final reward loses "
            f"{rollout['format_penalty']:g} when any step has no summary"
        )
        out.setdefault(text, []).append(backbone)
    return [f"{', '.join(backbones)}: {text}" for text, backbones in out.items()]


def provenance(config: dict, config_files: list[str]) -> dict:
    return {
        "commit": git_commit(),
        "config_file": " ".join(map(str, config_files)) or "config/config.yaml",
        "config_sha256": config_sha256(config),
        "run_name": config.get("run_name"),
        "seeds": config.get("seeds"),
        "packages": _versions(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "reward": reward_choices(config),
    }


def render(config: dict, config_files: list[str], inputs: list[Path], out: Path) -> None:
    """The page from the claims' and tables' JSON and the figures' JSON and PNG files among `inputs`."""
    by_name = {Path(p).name: Path(p) for p in inputs}

    def handed(name: str) -> Path:
        if name not in by_name:
            raise RicepoError(f"report html: {name} is not among the inputs (the report rule declares every table and figure)")
        return by_name[name]

    claims = json.loads(handed("claims.json").read_text())
    tables = [json.loads(handed(f"{n}.json").read_text()) for n in TABLES]
    figures = []
    for name in FIGURES:
        png = base64.b64encode(handed(f"{name}.png").read_bytes()).decode()
        figures.append({"id": name, "title": ARTEFACTS[name].title, "png": png, "data": json.loads(handed(f"{name}.json").read_text())})
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ricepo.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = fmt
    env.filters["cell_text"] = cell_text
    env.filters["provenance_text"] = provenance_text
    html = env.get_template("report.html.j2").render(
        claims=claims, tables=tables, figures=figures, prov=provenance(config, config_files), config=config
    )
    write_text(out, html)
