"""Per-cell tolerances of a bf16 configuration's expected scores, derived from measured runs.

    python scripts/derive_tolerance.py --expected config/expected/mini.yaml \\
        --run "LABEL=RESULTS_DIR" [--run ...] [--factor 2] [--write]

Each --run is LABEL=RESULTS_DIR: results/{run_name} of the same configuration measured under other
kernels (scripts/kernel_paths.py) or with another seed, with what it was run with in LABEL. For
every cell of the expected file, each run's deviation from the expected value. Cells are pooled by
kind, since a kind's cells move for one reason: the retriever alone (no torch), an untrained
policy (evaluation only: bf16 rounding can flip a greedy token), a trained policy (a flipped
sampled token sends training down another trajectory, as another seed would). A kind's tolerance
is FACTOR times the largest deviation measured for it, at least check.DEFAULT_TOLERANCE, rounded up
to 0.1 points. Prints the deviations and tolerances; with --write, puts them in the file: each
cell's tolerance, `grading` (kind `tolerance`, the rule and the measured deviations as its
derivation) and one source per run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from ricepo.credit import get_method  # noqa: E402
from ricepo.layout import TABLES  # noqa: E402
from ricepo.report.check import DEFAULT_TOLERANCE, load_expected, reported_cells  # noqa: E402

KINDS = ("retriever", "untrained", "trained")


def kind_of(row: str) -> str:
    group, method = row.split("/")[:2]
    if group == "cited":
        return "retriever"
    return "untrained" if get_method(method).rollout is None else "trained"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expected", required=True)
    ap.add_argument("--run", action="append", required=True, help="LABEL=RESULTS_DIR")
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--note", default="", help="appended to the derivation: what was not measured, and why")
    args = ap.parse_args()
    path = Path(args.expected)
    expected = load_expected(path)
    runs = {}
    for spec in args.run:
        label, _, folder = spec.rpartition("=")  # a label may hold settings (KEY=VALUE)
        tables = [json.loads((Path(folder) / "tables" / f"{t}.json").read_text()) for t in TABLES]
        runs[label] = reported_cells(tables)
    worst = {k: 0.0 for k in KINDS}
    print(f"{'cell':<58} {'expected':>9} " + " ".join(f"{label[:16]:>16}" for label in runs))
    for key, cell in expected["cells"].items():
        devs = []
        for cells in runs.values():
            ours = cells.get(key)
            if ours is None:
                raise SystemExit(f"{key}: not in every run's tables")
            devs.append(ours - float(cell["expected"]))
        kind = kind_of(key[1])
        worst[kind] = max(worst[kind], *map(abs, devs))
        print(f"{'  '.join(key):<58} {cell['expected']:>9.4f} " + " ".join(f"{d:>+16.4f}" for d in devs))
    tolerance = {k: max(DEFAULT_TOLERANCE, math.ceil(args.factor * w * 10 - 1e-9) / 10) for k, w in worst.items()}
    for k in KINDS:
        print(f"{k:<10} largest deviation {worst[k]:.4f} -> tolerance {tolerance[k]:.1f}")
    if not args.write:
        return 0
    data = yaml.safe_load(path.read_text())
    header = "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("#"))
    data["grading"] = {
        "kind": "tolerance",
        "derivation": (
            f"bf16-mixed: numbers move with the CPU's kernels. Measured: the runs "
            f"{', '.join(runs)} against `measured`; cells pooled by kind (the retriever alone, an untrained "
            f"policy, a trained one); a kind's tolerance is {args.factor:g} x its largest deviation, at least "
            f"{DEFAULT_TOLERANCE}, rounded up to 0.1 (scripts/derive_tolerance.py). Largest deviations: "
            + ", ".join(f"{k} {worst[k]:.4f}" for k in KINDS)
            + "; tolerances: "
            + ", ".join(f"{k} {tolerance[k]:.1f}" for k in KINDS)
            + ". Few runs bound the spread only roughly: a cell outside its tolerance moved more than any measured run did."
            + (f" {args.note}" if args.note else "")
        ),
    }
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    for i, label in enumerate(runs, 1):
        data["sources"][f"spread_{i}"] = {"kind": "spread", "run": label, "date": today}
    for rows in data["cells"].values():
        for cell in rows:
            cell["tolerance"] = tolerance[kind_of(cell["row"])]
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120, default_flow_style=None))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
