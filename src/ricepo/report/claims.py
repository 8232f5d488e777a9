"""The paper's claims as verdicts: config/paper_claims.yaml graded against a configuration's results.

Each claim is split into comparisons (one per backbone group and competitor); a comparison holds
when our difference is positive and the paired bootstrap gives p < ALPHA, is "not run" when either
side has no result here, and does not hold otherwise. A claim holds when all of its comparisons
hold, does not hold when any does not, and is "not run" otherwise (or when it has none). The
paper's side is read from config/paper_results.yaml (tables) or quoted from the claim (figures).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from ..atomic import atomic_file, write_text
from ..credit import get_method
from ..errors import RicepoError
from ..layout import runs
from .figures import branching_cost, reward_curves
from .results import PAPER_CLAIMS, ResultFiles
from .significance import ALPHA, paired_bootstrap
from .tables import build_table

KINDS = {
    "beats": {"table", "column", "target", "against"},
    "curve_above": {"target", "against", "paper_evidence"},
    "cost_bound": {"target", "measure", "paper_evidence"},
    "validation_improves": {"targets", "paper_evidence"},
}
VERDICTS = ("holds", "does not hold", "not run")


def load_claims(path: Path = PAPER_CLAIMS) -> list[dict]:
    claims = (yaml.safe_load(path.read_text()) or {}).get("claims") or []
    for i, claim in enumerate(claims):
        where = f"{path}: claims[{i}]"
        kind = claim.get("kind")
        if kind not in KINDS:
            raise RicepoError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        missing = ({"id", "statement", "source"} | KINDS[kind]) - set(claim)
        if missing:
            raise RicepoError(f"{where}: missing {', '.join(sorted(missing))}")
    return claims


def condition_key(row: dict) -> str:
    """A table row as a claim names it: method, or method/variant."""
    return row["method"] + (f"/{row['variant']}" if row.get("variant") else "")


def _label(key: str) -> str:
    method, _, variant = key.partition("/")
    return get_method(method).label_of(variant or None)


def _compare(a: list[float], b: list[float], diff: float) -> tuple[str, float]:
    p = paired_bootstrap(a, b)
    return ("holds" if diff > 0 and p < ALPHA else "does not hold"), p


def _nothing_run(target: str, why: str) -> list[dict]:
    """The one comparison of a claim whose target did not run at all."""
    return [{"group": "-", "verdict": "not run", "detail": f"{_label(target)} {why}"}]


def _overall(parts: list[dict]) -> str:
    verdicts = {p["verdict"] for p in parts}
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if verdicts == {"holds"} else "not run"


def _pooled(per_query: dict, tasks: list[str]) -> dict[tuple[str, str], float]:
    return {(t, q): v for t in tasks for q, v in per_query.get(t, {}).items()}


def _beats(claim: dict, results: ResultFiles, tables: dict) -> tuple[str, list[dict]]:
    if claim["table"] not in tables:
        tables[claim["table"]] = build_table(claim["table"], results)
    table = tables[claim["table"]]
    column, target = claim["column"], claim["target"]
    rows = {(r["group"], condition_key(r)): r for r in table["rows"]}
    paper_groups = [g for g in dict.fromkeys(r["group"] for r in table["rows"]) if g != "cited"]
    method, _, variant = target.partition("/")
    planned = [
        g
        for g in dict.fromkeys(
            r.backbone for r in runs(results.config) if r.benchmark == table["benchmark"] and (r.method, r.variant) == (method, variant or None)
        )
        if (g, target) in rows
    ]

    paper = []
    for group in paper_groups:
        mine = rows.get((group, target))
        others = [(k, rows[(group, k)]["cells"][column]["paper"]) for k in claim["against"] if (group, k) in rows]
        others = [(k, v) for k, v in others if v is not None]
        if mine and mine["cells"][column]["paper"] is not None and others:
            best_key, best = max(others, key=lambda kv: kv[1])
            value = mine["cells"][column]["paper"]
            paper.append(
                f"{group}: {_label(target)} {value:.2f} vs {'best other ' if len(others) > 1 else ''}"
                f"{best:.2f} ({_label(best_key)})" + ("" if value > best else ", not above it")
            )
    parts = []
    for group in planned:
        mine = rows[(group, target)]
        ours_q = results.per_query(table["benchmark"], group, method, variant or None)
        for key in claim["against"]:
            other = rows.get((group, key))
            a, b = mine["cells"][column]["ours"], other["cells"][column]["ours"] if other else None
            part = {"group": group, "against": _label(key), "ours": a, "theirs": b}
            if a is None or b is None:
                parts.append({**part, "verdict": "not run", "detail": f"{_label(key)} not run"})
                continue
            o_method, _, o_variant = key.partition("/")
            if "equal_cost" in claim:
                apart = _cost_apart(claim, results, table["benchmark"], group, target, key)
                if apart:
                    parts.append({**part, "verdict": "not run", "detail": apart})
                    continue
            theirs_q = results.per_query(table["benchmark"], group, o_method, o_variant or None)
            tasks = [t for t in table["columns"] if t != "avg"] if column == "avg" else [column]
            x, y = _pooled(ours_q, tasks), _pooled(theirs_q, tasks)
            shared = sorted(set(x) & set(y))
            verdict, p = _compare([x[k] for k in shared], [y[k] for k in shared], a - b)
            parts.append(
                {
                    **part,
                    "verdict": verdict,
                    "p": p,
                    "detail": f"{_label(target)} {a:.2f} vs {_label(key)} {b:.2f} ({a - b:+.2f}, p = {p:.3f}, {len(shared)} queries)",
                }
            )
    return "; ".join(paper) or "no paper values for these rows", parts or _nothing_run(target, f"not run in {claim['table']}")


def _curve_above(claim: dict, results: ResultFiles) -> tuple[str, list[dict]]:
    curves = reward_curves(results)["curves"]
    by = {(c["benchmark"], c["backbone"], c["method"]): c for c in curves if c["variant"] is None}
    parts = []
    for (bench, backbone, method), mine in by.items():
        if method != claim["target"]:
            continue
        for other_method in claim["against"]:
            other = by.get((bench, backbone, other_method))
            part = {"group": f"{bench}/{backbone}", "against": _label(other_method)}
            if other is None:
                parts.append({**part, "verdict": "not run", "detail": f"{_label(other_method)} not trained"})
                continue
            n = min(len(mine["raw"]), len(other["raw"]))
            a, b = mine["raw"][:n], other["raw"][:n]
            diff = (sum(a) - sum(b)) / n
            verdict, p = _compare(a, b, diff)
            parts.append(
                {
                    **part,
                    "verdict": verdict,
                    "p": p,
                    "detail": f"mean training reward {_label(claim['target'])} {sum(a) / n:.3f} vs "
                    f"{_label(other_method)} {sum(b) / n:.3f} ({diff:+.3f}, p = {p:.3f}, {n} steps)",
                }
            )
    return claim["paper_evidence"], parts or _nothing_run(claim["target"], "not trained")


def _cost_apart(claim: dict, results: ResultFiles, benchmark: str, backbone: str, target: str, other: str) -> str:
    """Why two runs are not at equal cost (their measured `equal_cost.measure` per step differs by
    more than `equal_cost.tolerance`), or "" when they are."""
    spec = claim["equal_cost"]
    rows = {condition_key(r): r for r in branching_cost(results)["rows"] if (r["benchmark"], r["backbone"]) == (benchmark, backbone)}
    if target not in rows or other not in rows:
        return f"no training logs to compare {spec['measure']} per step"
    ratio = rows[target][spec["measure"]] / rows[other][spec["measure"]]
    if abs(ratio - 1) > spec["tolerance"]:
        return (
            f"not at equal cost: {_label(target)} {spec['measure']} per step {ratio:.2f}x {_label(other)}'s "
            f"(tolerance {spec['tolerance']:.0%}); set its budget to match"
        )
    return ""


def _validation_improves(claim: dict, results: ResultFiles) -> tuple[str, list[dict]]:
    """Each target's held-out reward after its last step against before its first, paired over
    the validation queries."""
    curves = {(c["benchmark"], c["backbone"], c["method"]): c for c in reward_curves(results)["validation"] if c["variant"] is None}
    parts = []
    for (bench, backbone, method), c in curves.items():
        if method not in claim["targets"]:
            continue
        shared = sorted(set(c["first"]) & set(c["last"]))
        a, b = [c["last"][q] for q in shared], [c["first"][q] for q in shared]
        diff = (sum(a) - sum(b)) / len(shared)
        verdict, p = _compare(a, b, diff)
        # the reward moves with the format penalty as well as the retrieval, and a policy that stops
        # writing summaries searches with the question alone: both beside its gain
        ends = [c[k][0] for k in ("ndcg", "parseable")] + [c[k][-1] for k in ("ndcg", "parseable")]
        written = "" if None in ends else f"; NDCG@10 {ends[0]:.4f} → {ends[2]:.4f}, steps with a summary {ends[1]:.0%} → {ends[3]:.0%}"
        # a policy that restates the query, or writes what the retriever ignores, searches as the query alone
        if written and None not in (c["restate"][0], c["restate"][-1]):
            written += f", summaries restating the query {c['restate'][0]:.0%} → {c['restate'][-1]:.0%}"
        if written and None not in (c["unchanged"][0], c["unchanged"][-1]):
            written += f", final top 10 the query alone's {c['unchanged'][0]:.0%} → {c['unchanged'][-1]:.0%}"
        if written and None not in (c["better"][0], c["better"][-1]):
            written += (
                f", searches better / worse than the query alone {c['better'][0]:.0%} / {c['worse'][0]:.0%} → "
                f"{c['better'][-1]:.0%} / {c['worse'][-1]:.0%}"
            )
        parts.append(
            {
                "group": f"{bench}/{backbone}",
                "against": f"{_label(method)} at step 0",
                "verdict": verdict,
                "p": p,
                "detail": f"{_label(method)}: validation reward {sum(b) / len(b):.4f} at step 0, "
                f"{sum(a) / len(a):.4f} at step {c['steps'][-1]} ({diff:+.4f}, p = {p:.3f}, "
                f"{len(shared)} held-out queries{written})",
            }
        )
    trained = {r.method for r in runs(results.config) if r.trained}
    parts += [
        {"group": "-", "verdict": "not run", "detail": f"{_label(m)} held no validation queries out"}
        for m in claim["targets"]
        if m in trained and not any(k[2] == m for k in curves)
    ]
    return claim["paper_evidence"], parts or _nothing_run(claim["targets"][0], "not trained")


def _cost_bound(claim: dict, results: ResultFiles) -> tuple[str, list[dict]]:
    config = results.config
    settings = config["credit"].get(claim["target"], {})
    k, m, g = settings.get("anchors"), settings.get("branches"), config["rollout"]["group_size"]
    if k is None or m is None:
        raise RicepoError(f"claim {claim['id']}: method {claim['target']!r} has no anchors/branches settings")
    bound = 1 + k * (m - 1) / g
    parts = []
    for row in branching_cost(results)["rows"]:
        if (row["method"], row["variant"]) != (claim["target"], None):
            continue
        part = {"group": f"{row['benchmark']}/{row['backbone']}", "against": "GRPO"}
        if row["relative_to_grpo"] is None:
            parts.append({**part, "verdict": "not run", "detail": "GRPO not trained"})
            continue
        ratio = row["relative_to_grpo"][claim["measure"]]
        parts.append(
            {
                **part,
                "verdict": "holds" if ratio <= bound else "does not hold",
                "ratio": ratio,
                "detail": f"{claim['measure']} per step {ratio:.2f}x GRPO's; budget 1 + {k}({m}-1)/{g} = {bound:.2f}x",
            }
        )
    return claim["paper_evidence"], parts or _nothing_run(claim["target"], "not trained")


def grade_claims(results: ResultFiles, claims: list[dict] | None = None) -> dict:
    claims = load_claims() if claims is None else claims
    tables: dict = {}
    out = []
    for claim in claims:
        if claim["kind"] == "beats":
            paper, parts = _beats(claim, results, tables)
        elif claim["kind"] == "curve_above":
            paper, parts = _curve_above(claim, results)
        elif claim["kind"] == "validation_improves":
            paper, parts = _validation_improves(claim, results)
        else:
            paper, parts = _cost_bound(claim, results)
        out.append(
            {
                "id": claim["id"],
                "statement": claim["statement"],
                "source": claim["source"],
                "paper": paper,
                "parts": parts,
                "verdict": _overall(parts),
            }
        )
    sources = {spec.get("source") for spec in results.config["benchmarks"].values() if spec}
    return {
        "id": "claims",
        "claims": out,
        "counts": {v: sum(c["verdict"] == v for c in out) for v in VERDICTS},
        "data_note": (
            "These verdicts are about the synthetic offline fixture data: they test the harness, not the paper." if "fixture" in sources else ""
        ),
    }


def write_claims(graded: dict, out_dir: Path) -> None:
    write_text(out_dir / "claims.json", json.dumps(graded, indent=1))
    with atomic_file(out_dir / "claims.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(["claim", "verdict", "group", "against", "part_verdict", "detail", "statement", "paper"])
        for c in graded["claims"]:
            for p in c["parts"]:
                w.writerow([c["id"], c["verdict"], p["group"], p.get("against", ""), p["verdict"], p["detail"], c["statement"], c["paper"]])
    lines = ["# The paper's claims, checked", "", graded["data_note"], "", "| claim | paper | ours | verdict |", "|---|---|---|---|"]
    for c in graded["claims"]:
        ours = "<br>".join(("" if p["group"] == "-" else f"{p['group']}: ") + f"{p['detail']} ({p['verdict']})" for p in c["parts"])
        lines.append(f"| {c['statement']} ({c['source']}) | {c['paper']} | {ours} | **{c['verdict']}** |")
    write_text(out_dir / "claims.md", "\n".join(lines) + "\n")
