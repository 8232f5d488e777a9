"""config/paper_results.yaml: every row's printed average against the mean of its printed cells.

The paper prints cells to 1 or 2 decimals: each printed cell is off by at most half a unit of its
last digit, so their mean is too, and the printed average adds its own half unit; the mean of the
printed cells may therefore differ from the printed average by up to one unit of the last digit.
A row whose average does not follow from its cells is flagged in the yaml with `avg_note` (and
shown in the report), not corrected.
"""

import yaml

from conftest import ROOT

TABLES = yaml.safe_load((ROOT / "config" / "paper_results.yaml").read_text())["tables"]


def decimals(x: float) -> int:
    text = repr(float(x))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def test_every_table_of_the_paper_is_transcribed():
    assert set(TABLES) == {"table_bright_main", "table_beir_main", "table_ablation_credit", "table_ablation_trigger", "table_ablation_gates"}
    rows = {t: {(r["method"], r.get("variant")) for r in v["rows"]} for t, v in TABLES.items()}
    assert rows["table_ablation_gates"] == {("ricepo", "effect_only"), ("ricepo", "influence_only"), ("ricepo", None)}
    assert rows["table_ablation_credit"] == {("ricepo", "case1"), ("ricepo", "case2"), ("ricepo", "random_case"), ("ricepo", None)}


def test_every_average_follows_from_its_cells_within_rounding():
    checked, flagged = 0, []
    for name, table in TABLES.items():
        for row in table["rows"]:
            values = list(row["values"].values())
            mean = sum(values) / len(values)
            digits = max(decimals(v) for v in values + [row["avg"]])  # YAML drops trailing zeros
            tolerance = 10**-digits + 1e-9
            if row.get("avg_note"):
                flagged.append((name, row["group"], row["method"]))
                assert abs(mean - row["avg"]) > tolerance, f"{name} {row['method']}: avg_note but the average fits"
                continue
            assert abs(mean - row["avg"]) <= tolerance, (name, row["group"], row["method"], round(mean, 3), row["avg"])
            checked += 1
    assert checked >= 40
    assert flagged == [("table_bright_main", "qwen3_4b_thinking", "ricepo")]
