"""The paper's tables rebuilt from result files: ours (mean ± std over seeds) beside the paper's.

A cell is `measured` (our number, from metrics.json files), `cited` (a baseline the paper quotes;
we show its number as the paper's), or `not run` (no result file: never a number).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..atomic import atomic_file, write_text
from ..config import snakemake_command
from ..credit import get_method
from ..layout import ARTEFACTS, bm25_metrics_file, runs
from .check import check_kind, grade, row_key
from .results import ResultFiles, config_sha256, load_paper, mean_std
from .significance import ALPHA, paired_bootstrap

BM25_LABEL = "BM25 (measured here)"


def conditions(name: str, config: dict, paper: dict) -> list[tuple[str, str | None]]:
    """The (method, variant) rows of a table: an ablation's, or the paper's methods then any other
    method the config runs on the benchmark."""
    artefact = ARTEFACTS[name]
    if artefact.conditions:
        return list(artefact.conditions)
    methods = [r["method"] for r in paper["rows"] if r["group"] != "cited"]
    methods += (config["benchmarks"].get(artefact.benchmark) or {}).get("methods", [])
    return [(m, None) for m in dict.fromkeys(methods)]


def _cell(paper, values_by_seed: list[float]) -> dict:
    ours, std = mean_std(values_by_seed)
    return {
        "paper": paper,
        "ours": ours,
        "ours_std": std,
        "n_seeds": len(values_by_seed),
        "diff": (ours - paper) if (ours is not None and paper is not None) else None,
        "status": "measured" if ours is not None else "not run",
    }


def _attach_provenance(table: dict, results: ResultFiles, files: dict, expected: dict | None) -> None:
    """Each measured row's cells get where they came from: the command that rebuilds them, the
    config hash, the metrics files and seeds behind them, and their grade against the expected file.
    `files`: {row key: {task: {seed: metrics.json}}}."""
    run_name, sha = results.config["run_name"], config_sha256(results.config)
    for row in table["rows"]:
        key = row_key(row)
        if key not in files:
            continue
        for column in table["columns"]:
            cell = row["cells"][column]
            chosen = list(files[key].values()) if column == "avg" else [files[key].get(column, {})]
            paths = [str(f) for by_seed in chosen for f in by_seed.values()]
            seeds = sorted({seed for by_seed in chosen for seed in by_seed if seed is not None})
            graded_by = expected["cells"].get((table["id"], key, column)) if expected else None
            if expected is None:
                status = "no expected file"
            elif cell["ours"] is None and graded_by is None:
                status = "not expected"
            else:
                status = grade(cell["ours"], graded_by)
            cell["provenance"] = {
                "command": snakemake_command(run_name, " ".join(paths) if column != "avg" and paths else table["id"]),
                "config_sha256": sha,
                "metrics_files": paths,
                "seeds": seeds,
                "check": status,
                "check_kind": check_kind(expected, graded_by),
            }


def build_table(name: str, results: ResultFiles, expected: dict | None = None) -> dict:
    """`expected`: the configuration's expected scores (report.check.load_expected), which grade
    each cell; None when the configuration has none."""
    config = results.config
    artefact = ARTEFACTS[name]
    ablation = not artefact.benchmark
    paper = load_paper()[name]
    abl = config.get("ablations") or {}
    benchmark = abl.get("benchmark", "bright") if ablation else artefact.benchmark
    configured = config["benchmarks"].get(benchmark)
    paper_tasks = list(paper["rows"][0]["values"])
    tasks = paper_tasks + [t for t in (configured or {}).get("tasks", []) if t not in paper_tasks]
    columns = tasks + ["avg"]

    paper_groups = list(dict.fromkeys(r["group"] for r in paper["rows"]))
    if ablation:
        ours_groups = [abl["backbone"]] if abl.get("backbone") and configured else []
    else:
        ours_groups = list(configured["backbones"]) if configured else []
    rows = []
    for r in paper["rows"]:
        if r["group"] == "cited":
            rows.append(
                {
                    "group": "cited",
                    "method": r["method"],
                    "label": r["method"],
                    "provenance": f"cited by the paper: {r.get('cited', '')}",
                    "cells": {
                        t: {"paper": r["values"].get(t), "ours": None, "ours_std": None, "n_seeds": 0, "diff": None, "status": "cited"} for t in tasks
                    }
                    | {"avg": {"paper": r["avg"], "ours": None, "ours_std": None, "n_seeds": 0, "diff": None, "status": "cited"}},
                }
            )
    files: dict = {}
    if configured and not ablation:
        rows.append(_bm25_row(benchmark, tasks, configured, results))
        files[row_key(rows[-1])] = {
            t: {None: f}
            for t in tasks  # BM25 has no seed
            if results.handed(f := bm25_metrics_file(results.root, benchmark, t))
        }
    planned = {(x.backbone, x.method, x.variant) for x in runs(config) if x.benchmark == benchmark}
    for group in paper_groups + [g for g in ours_groups if g not in paper_groups]:
        if group == "cited":
            continue
        for method, variant in conditions(name, config, paper):
            prow = next((r for r in paper["rows"] if (r["group"], r["method"], r.get("variant")) == (group, method, variant)), None)
            seeds = results.measured(benchmark, group, method, variant) if (group, method, variant) in planned else {}
            cells = {t: _cell(prow["values"].get(t) if prow else None, [v[t] for v in seeds.values() if t in v]) for t in tasks}
            ran = [t for t in tasks if cells[t]["status"] == "measured"]
            avg = _cell(prow["avg"] if prow else None, [sum(v[t] for t in ran) / len(ran) for v in seeds.values()] if ran else [])
            avg["tasks_in_avg"] = len(ran)
            if prow and prow.get("avg_note"):
                avg["note"] = prow["avg_note"]
            cells["avg"] = avg
            prov = f"measured here: config `{config.get('run_name')}`, seeds {sorted(seeds)}" if seeds else "not run in this configuration"
            if seeds and not ablation and method != "grpo" and get_method(method).rollout is not None:
                _mark_significance(cells, results, benchmark, group, method, ran)
            rows.append(
                {
                    "group": group,
                    "method": method,
                    "variant": variant,
                    "label": get_method(method).label_of(variant),
                    "provenance": prov + ("; paper value transcribed in config/paper_results.yaml" if prow else ""),
                    "cells": cells,
                }
            )
            files[row_key(rows[-1])] = results.metrics_files(benchmark, group, method, variant)
    source = (configured or {}).get("source", "none")
    table = {
        "id": name,
        "title": artefact.title,
        "paper_ref": paper["paper_ref"],
        "benchmark": benchmark,
        "columns": columns,
        "rows": rows,
        "data_source": source,
        "comparable": source != "fixture",
        "data_note": (
            "Our numbers come from the synthetic offline fixture; they test the harness and are not comparable with the paper's."
            if source == "fixture"
            else ""
        ),
    }
    for row in rows:
        row["measured"] = any(c["status"] == "measured" for c in row["cells"].values())
    _attach_provenance(table, results, files, expected)
    return table


def _mark_significance(cells: dict, results: ResultFiles, benchmark: str, backbone: str, method: str, tasks: list[str]) -> None:
    """p-value of the paired bootstrap against GRPO (same backbone) per task, and over all queries for avg."""
    ours, grpo = (results.per_query(benchmark, backbone, m) for m in (method, "grpo"))
    pooled_a, pooled_b = [], []
    for task in tasks:
        shared = sorted(set(ours.get(task, {})) & set(grpo.get(task, {})))
        if not shared:
            continue
        a, b = [ours[task][q] for q in shared], [grpo[task][q] for q in shared]
        cells[task]["p_vs_grpo"] = paired_bootstrap(a, b)
        pooled_a += a
        pooled_b += b
    if pooled_a:
        cells["avg"]["p_vs_grpo"] = paired_bootstrap(pooled_a, pooled_b)


def _bm25_row(benchmark: str, tasks: list[str], configured: dict, results: ResultFiles) -> dict:
    cells = {}
    for t in tasks:
        result = results.bm25(benchmark, t)
        value = 100 * result["ndcg_cut_10"] if result is not None else None
        cells[t] = _cell(None, [value] if value is not None else [])
    ran = [cells[t]["ours"] for t in tasks if cells[t]["ours"] is not None]
    cells["avg"] = _cell(None, [sum(ran) / len(ran)] if ran else [])
    cells["avg"]["tasks_in_avg"] = len(ran)
    r = configured["retriever"]
    return {
        "group": "cited",
        "method": "bm25_measured",
        "label": BM25_LABEL,
        "provenance": f"measured here: bm25s, k1={r['k1']}, b={r['b']}, stemmer {r.get('stemmer', 'english')}, query text only",
        "cells": cells,
    }


def fmt(value, digits=2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def cell_text(cell: dict) -> str:
    if cell["status"] == "cited":
        return f"paper {fmt(cell['paper'])}" if cell["paper"] is not None else ""
    ours = "not run" if cell["ours"] is None else fmt(cell["ours"]) + (f" ± {fmt(cell['ours_std'])}" if cell["ours_std"] is not None else "")
    paper = f" / paper {fmt(cell['paper'])}" if cell["paper"] is not None else ""
    diff = f" ({cell['diff']:+.2f})" if cell["diff"] is not None else ""
    marked = "†" if cell.get("p_vs_grpo", 1.0) < ALPHA else ""
    return ours + marked + paper + diff


def write_table(table: dict, out_dir: Path) -> None:
    name = table["id"]
    write_text(out_dir / f"{name}.json", json.dumps(table, indent=1))
    with atomic_file(out_dir / f"{name}.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "group",
                "method",
                "variant",
                "column",
                "ours",
                "ours_std",
                "n_seeds",
                "paper",
                "diff",
                "status",
                "p_vs_grpo",
                "check",
                "check_kind",
                "seeds",
                "config_sha256",
                "metrics_files",
                "command",
            ]
        )
        for r in table["rows"]:
            for col in table["columns"]:
                c = r["cells"][col]
                p = c.get("provenance") or {}
                w.writerow(
                    [
                        r["group"],
                        r["method"],
                        r.get("variant") or "",
                        col,
                        fmt(c["ours"], 4),
                        fmt(c["ours_std"], 4),
                        c["n_seeds"],
                        fmt(c["paper"]),
                        fmt(c["diff"], 4),
                        c["status"],
                        fmt(c.get("p_vs_grpo"), 4),
                        p.get("check", ""),
                        p.get("check_kind", ""),
                        " ".join(map(str, p.get("seeds", []))),
                        p.get("config_sha256", ""),
                        " ".join(p.get("metrics_files", [])),
                        p.get("command", ""),
                    ]
                )
    lines = [
        f"# {table['title']}",
        "",
        f"Paper: {table['paper_ref']}. Cells: ours (mean ± std over seeds) / paper "
        f"(difference); † = differs from GRPO (same backbone) at p < {ALPHA}, paired bootstrap over queries.",
        table["data_note"],
        "",
        "| group | method | " + " | ".join(table["columns"]) + " |",
        "|" + "---|" * (len(table["columns"]) + 2),
    ]
    for r in table["rows"]:
        lines.append(f"| {r['group']} | {r['label']} | " + " | ".join(cell_text(r["cells"][c]) for c in table["columns"]) + " |")
    write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
