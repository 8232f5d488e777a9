"""Every reported number against what it should be: `config/expected/{run_name}.yaml`.

As Anserini's regressions and Pyserini's two-click reproductions do, each cell a configuration
reports (table, row, column) has an expected value to four decimals, a tolerance and a source, and
a rerun is graded per cell:

    OK      equal to the expected value at four decimals
    OKish   within the cell's tolerance
    FAIL    outside it, not run, or reported with no expected value

Values are NDCG@10 x 100, as the tables show them. The expected file is written from a run's
tables by `ricepo check --write` (which records the commit, machine, date and the numerics it was
measured under) and committed with the change that moved a number, the reason in the commit message.

Its `grading.kind` says what a pass means. `exact`: a float32 configuration on MKL's portable
branch (`cpu_kernels: portable`), whose numbers are the same on every x86-64 CPU, so a cell must
equal its value (the tolerance only absorbs float noise).
`tolerance`: a bf16 configuration, whose numbers move with the CPU's kernels; each cell's tolerance
is derived from a measured spread, the derivation written in the file (`grading.derivation`).
The numerics the run recorded (precision/numerics()) are printed beside the expected file's, with
the keys that differ.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from ..atomic import write_text
from ..errors import RicepoError
from ..layout import TABLES
from .provenance import git_commit, machine

EXPECTED_DIR = Path(__file__).resolve().parents[3] / "config" / "expected"
DEFAULT_TOLERANCE = 0.1  # NDCG@10 points (our choice): a cell of a deterministic run moves by float noise
# only (far less); one metrics file moved by 0.01 moves its cell by 1/seeds points


def expected_file(run_name: str) -> Path:
    return EXPECTED_DIR / f"{run_name}.yaml"


def row_key(row: dict) -> str:
    """A row as the expected file names it: group/method, then /variant for an ablation variant."""
    return "/".join([row["group"], row["method"]] + ([row["variant"]] if row.get("variant") else []))


def reported_cells(tables: list[dict]) -> dict[tuple[str, str, str], float | None]:
    """{(table, row, column): our value (None: not run)} of every row we measure (cited rows apart)."""
    out = {}
    for table in tables:
        for row in table["rows"]:
            if row["group"] == "cited" and row["method"] != "bm25_measured":
                continue
            for column in table["columns"]:
                out[(table["id"], row_key(row), column)] = row["cells"][column]["ours"]
    return out


def read_tables(inputs: list[Path]) -> list[dict]:
    by_name = {Path(p).stem: Path(p) for p in inputs if Path(p).suffix == ".json"}
    missing = [t for t in TABLES if t not in by_name]
    if missing:
        raise RicepoError(f"check: the tables {', '.join(missing)} are not among the inputs")
    return [json.loads(by_name[t].read_text()) for t in TABLES]


GRADINGS = {
    "exact": "float32 on portable kernels: the same numbers on every x86-64 CPU; OK means equal at four decimals",
    "tolerance": "bf16: numbers move with the CPU's kernels; a cell passes within a tolerance derived from a measured spread",
}


def load_expected(path: Path) -> dict:
    if not path.exists():
        raise RicepoError(
            f"{path}: no expected scores for this configuration; run it, then write them with "
            f"`ricepo check --write` (see docs/numerics.md, 'Expected scores')"
        )
    data = yaml.safe_load(path.read_text()) or {}
    sources = data.get("sources") or {}
    grading = data.get("grading") or {}
    if grading.get("kind") not in GRADINGS:
        raise RicepoError(f"{path}: grading.kind must be one of {', '.join(GRADINGS)}, not {grading.get('kind')!r}")
    cells = {}
    for table, rows in (data.get("cells") or {}).items():
        for i, cell in enumerate(rows):
            where = f"{path}: cells.{table}[{i}]"
            missing = {"row", "column", "expected", "tolerance", "source"} - set(cell)
            if missing:
                raise RicepoError(f"{where}: missing {', '.join(sorted(missing))}")
            if cell["source"] not in sources:
                raise RicepoError(f"{where}: source {cell['source']!r} is not under `sources:`")
            cells[(table, cell["row"], cell["column"])] = cell
    return {"run_name": data.get("run_name"), "grading": grading, "sources": sources, "cells": cells}


def run_numerics(tables: list[dict]) -> list[dict]:
    """The distinct numerics (precision.numerics) the run's torch jobs recorded in the metrics
    files behind its cells: each evaluation's own and its policy's training's."""
    seen: dict[str, dict] = {}
    files = {
        f
        for table in tables
        for row in table["rows"]
        for cell in row["cells"].values()
        for f in (cell.get("provenance") or {}).get("metrics_files", [])
    }
    for f in sorted(files):
        path = Path(f)
        if not path.exists():
            continue
        metrics = json.loads(path.read_text())
        for key in ("numerics", "training_numerics"):
            if key in metrics:
                seen.setdefault(json.dumps(metrics[key], sort_keys=True), metrics[key])
    return list(seen.values())


def _merged(records: list[dict]) -> dict[str, str]:
    """{key: value, or the values joined by ' | ' where the records differ}."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    out = {}
    for k in keys:
        values = list(dict.fromkeys(",".join(v) if isinstance(v, list) else str(v) for v in (r.get(k, "-") for r in records)))
        out[k] = " | ".join(values)
    return out


def numerics_lines(expected: dict, ours: list[dict]) -> list[str]:
    """The expected file's numerics beside this run's, and the keys that differ."""
    theirs = [n for src in expected["sources"].values() for n in (src.get("numerics") or [])]
    a, b = _merged(theirs), _merged(ours)
    kind = expected["grading"]["kind"]
    lines = [
        f"grading  {kind}: {GRADINGS[kind]}",
        "numerics expected file: " + (" · ".join(f"{k} {v}" for k, v in a.items()) or "not recorded"),
        "numerics this run:      " + (" · ".join(f"{k} {v}" for k, v in b.items()) or "not recorded"),
    ]
    differ = [f"{k} ({a.get(k, '-')} → {b.get(k, '-')})" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    if not theirs or not ours:
        return lines
    if differ:
        if a.get("precision") != b.get("precision"):
            why = "; another precision gives other numbers"
        elif kind == "exact" and a.get("MKL_CBWR") != b.get("MKL_CBWR"):
            why = "; MKL's kernel branch differs, and float32 numbers can move with it (cpu_kernels: portable)"
        elif kind == "exact":
            why = "; a float32 run on the same MKL branch gives the same numbers under these"
        else:
            why = "; bf16 numbers move with these, within the tolerance the file derives"
        lines.append("numerics differ in: " + ", ".join(differ) + why)
    else:
        lines.append("numerics: the same as the expected file's")
    return lines


def grade(ours: float | None, cell: dict | None) -> str:
    if cell is None or ours is None:
        return "FAIL"
    if round(ours, 4) == round(float(cell["expected"]), 4):
        return "OK"
    return "OKish" if abs(ours - float(cell["expected"])) <= float(cell["tolerance"]) else "FAIL"


def check_kind(expected: dict | None, cell: dict | None) -> str:
    """Which kind of check grades a cell, as the report's badge shows it: 'exact' or '±tolerance'."""
    if expected is None or cell is None:
        return ""
    return "exact" if expected["grading"]["kind"] == "exact" else f"±{cell['tolerance']}"


def check(tables: list[dict], expected: dict) -> list[dict]:
    """One verdict per cell that is reported or expected, in table order."""
    ours = reported_cells(tables)
    keys = list(ours) + [k for k in expected["cells"] if k not in ours]
    verdicts = []
    for key in keys:
        value, cell = ours.get(key), expected["cells"].get(key)
        if value is None and cell is None:
            continue  # not run, and not expected to run
        status = grade(value, cell)
        why = "no expected value" if cell is None else "not run" if value is None else ""
        verdicts.append(
            {
                "table": key[0],
                "row": key[1],
                "column": key[2],
                "ours": value,
                "expected": cell["expected"] if cell else None,
                "tolerance": cell["tolerance"] if cell else None,
                "source": cell["source"] if cell else None,
                "status": status,
                "why": why,
            }
        )
    return verdicts


def fmt4(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_lines(verdicts: list[dict], run_name: str) -> list[str]:
    lines = [
        f"{v['status']:<6} {v['table']}  {v['row']}  {v['column']}: ours {fmt4(v['ours'])}, expected "
        f"{fmt4(v['expected'])} ± {v['tolerance'] if v['tolerance'] is not None else '-'}" + (f" ({v['why']})" if v["why"] else "")
        for v in verdicts
    ]
    counts = {s: sum(v["status"] == s for v in verdicts) for s in ("OK", "OKish", "FAIL")}
    lines.append(f"check {run_name}: {counts['OK']} OK, {counts['OKish']} OKish, {counts['FAIL']} FAIL of {len(verdicts)} cells")
    return lines


def write_expected(tables: list[dict], path: Path, run_name: str, source: dict, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """The expected file from a run's tables: every measured cell, measured at `source` under the
    numerics the run recorded. A file already there keeps its grading and its cells' tolerances
    (a bf16 configuration's are derived by hand: docs/experiments.md, "The 8-step check"); a new one is graded `exact` when every
    job ran in float32, else `tolerance` with `tolerance` per cell and a derivation still to write."""
    numerics = run_numerics(tables)
    old = load_expected(path) if path.exists() else None
    if old:
        grading = old["grading"]
    elif all(n.get("precision") == "fp32" for n in numerics):
        grading = {"kind": "exact", "derivation": f"float32; {tolerance} points absorb float noise only"}
    else:
        grading = {
            "kind": "tolerance",
            "derivation": f"not derived yet: {tolerance} points per cell is a placeholder; "
            f"measure the spread across kernel paths and seeds (docs/numerics.md)",
        }
    cells: dict[str, list] = {}
    for (table, row, column), value in reported_cells(tables).items():
        if value is not None:
            tol = old["cells"][(table, row, column)]["tolerance"] if old and (table, row, column) in old["cells"] else tolerance
            cells.setdefault(table, []).append({"row": row, "column": column, "expected": round(value, 4), "tolerance": tol, "source": "measured"})
    header = (
        f"# Expected scores of the `{run_name}` configuration (NDCG@10 x 100, as the tables show them),\n"
        f"# graded by `snakemake check` and `ricepo check`: OK at four decimals, OKish within the\n"
        f"# tolerance, else FAIL. Written by `ricepo check --write`; update it in the commit that moves a\n"
        f"# number, with the reason in the commit message.\n"
    )
    # other sources (the runs a tolerance was derived from) stay
    others = {k: v for k, v in old["sources"].items() if k != "measured"} if old else {}
    body = {"run_name": run_name, "grading": grading, "sources": {"measured": {**source, "numerics": numerics}, **others}, "cells": cells}
    text = header + yaml.safe_dump(body, sort_keys=False, width=120, default_flow_style=None)
    write_text(path, text)
    return sum(len(v) for v in cells.values())


def measured_source(command: str) -> dict:
    return {
        "kind": "measured",
        "commit": git_commit(),
        "machine": machine(),
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
