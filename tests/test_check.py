"""Grading reported cells against an expected-scores file (report/check.py)."""

import json

import pytest
import yaml

from conftest import ROOT
from ricepo.errors import RicepoError
from ricepo.report.check import check, check_kind, load_expected, numerics_lines, render_lines, run_numerics, write_expected


def table(values):
    """A table_bright_main with one measured row (tiny/grpo) and the cited BM25 row we measure."""

    def cell(v):
        return {"ours": v, "status": "measured" if v is not None else "not run"}

    return {
        "id": "table_bright_main",
        "columns": list(values) + ["avg"],
        "rows": [
            {"group": "cited", "method": "bm25_measured", "cells": {c: cell(10.0) for c in [*values, "avg"]}},
            {"group": "cited", "method": "ReasonIR", "cells": {c: cell(None) for c in [*values, "avg"]}},
            {"group": "tiny", "method": "grpo", "variant": None, "cells": {**{c: cell(v) for c, v in values.items()}, "avg": cell(20.0)}},
        ],
    }


def expected(tmp_path, cells):
    path = tmp_path / "e.yaml"
    path.write_text(
        yaml.safe_dump(
            {"run_name": "t", "grading": {"kind": "exact"}, "sources": {"measured": {"commit": "x"}}, "cells": {"table_bright_main": cells}}
        )
    )
    return load_expected(path)


def test_each_cell_is_graded_ok_okish_or_fail(tmp_path):
    ours = table({"biology": 12.34564, "pony": 30.05, "aops": 40.0, "leetcode": None})
    exp = expected(
        tmp_path,
        [
            {"row": "tiny/grpo", "column": "biology", "expected": 12.3456, "tolerance": 0.1, "source": "measured"},
            {"row": "tiny/grpo", "column": "pony", "expected": 30.0, "tolerance": 0.1, "source": "measured"},
            {"row": "tiny/grpo", "column": "aops", "expected": 41.0, "tolerance": 0.1, "source": "measured"},
            {"row": "tiny/grpo", "column": "leetcode", "expected": 5.0, "tolerance": 0.1, "source": "measured"},
            {"row": "cited/bm25_measured", "column": "biology", "expected": 10.0, "tolerance": 0.1, "source": "measured"},
        ],
    )
    got = {(v["row"], v["column"]): (v["status"], v["why"]) for v in check([ours], exp)}
    assert got[("tiny/grpo", "biology")] == ("OK", "")  # equal at four decimals
    assert got[("tiny/grpo", "pony")] == ("OKish", "")  # 0.05 off, within 0.1
    assert got[("tiny/grpo", "aops")] == ("FAIL", "")  # 1.0 off
    assert got[("tiny/grpo", "leetcode")] == ("FAIL", "not run")
    assert got[("tiny/grpo", "avg")] == ("FAIL", "no expected value")
    assert got[("cited/bm25_measured", "biology")] == ("OK", "")
    assert not any(row == "cited/ReasonIR" for row, _ in got)  # the paper's cited rows are not ours to grade
    assert render_lines(check([ours], exp), "t")[-1] == "check t: 2 OK, 1 OKish, 7 FAIL of 10 cells"


def test_written_expectations_grade_their_own_tables_ok(tmp_path):
    ours = table({"biology": 12.345678, "pony": 0.0})
    n = write_expected([ours], tmp_path / "e.yaml", "t", {"kind": "measured", "commit": "abc"})
    verdicts = check([ours], load_expected(tmp_path / "e.yaml"))
    assert n == len(verdicts) == 6 and {v["status"] for v in verdicts} == {"OK"}


def test_a_malformed_expected_file_names_the_cell(tmp_path):
    with pytest.raises(RicepoError, match=r"cells.table_bright_main\[0\]: missing tolerance"):
        expected(tmp_path, [{"row": "tiny/grpo", "column": "pony", "expected": 1.0, "source": "measured"}])
    with pytest.raises(RicepoError, match="no expected scores for this configuration"):
        load_expected(tmp_path / "none.yaml")


FP32 = {"precision": "fp32", "cpu_capability": "AVX512", "ONEDNN_MAX_CPU_ISA": "unset", "cpu_flags": ["avx512f", "avx2"], "threads": 1}


def with_metrics(tbl, tmp_path, numerics, training=None):
    """Points every measured cell of the tiny/grpo row at one metrics file recording `numerics`."""
    f = tmp_path / "metrics.json"
    f.write_text(json.dumps({"ndcg_cut_10": 0.2, "numerics": numerics, **({"training_numerics": training} if training else {})}))
    for cell in tbl["rows"][2]["cells"].values():
        cell["provenance"] = {"metrics_files": [str(f)]}
    return tbl


def test_the_run_numerics_are_printed_beside_the_expected_files_and_differences_named(tmp_path):
    ours = with_metrics(table({"biology": 12.0}), tmp_path, FP32)
    write_expected([ours], tmp_path / "e.yaml", "t", {"kind": "measured", "commit": "abc"})
    written = yaml.safe_load((tmp_path / "e.yaml").read_text())
    assert written["grading"]["kind"] == "exact"  # every job ran in float32
    assert written["sources"]["measured"]["numerics"] == [FP32]
    exp = load_expected(tmp_path / "e.yaml")
    assert numerics_lines(exp, run_numerics([ours]))[-1] == "numerics: the same as the expected file's"
    # the same run on a machine whose kernels were forced to AVX2, its policy trained on another
    forced = {**FP32, "cpu_capability": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    again = with_metrics(table({"biology": 12.0}), tmp_path, forced, training=FP32)
    lines = numerics_lines(exp, run_numerics([again]))
    assert "numerics this run:      precision fp32 · cpu_capability AVX2 | AVX512 · ONEDNN_MAX_CPU_ISA AVX2 | unset" in lines[2]
    assert lines[-1].startswith(
        "numerics differ in: cpu_capability (AVX512 → AVX2 | AVX512), ONEDNN_MAX_CPU_ISA (unset → AVX2 | unset); a float32 run"
    )


def test_rewriting_keeps_a_bf16_files_grading_and_derived_tolerances(tmp_path):
    bf16 = {**FP32, "precision": "bf16-mixed"}
    ours = with_metrics(table({"biology": 12.0}), tmp_path, bf16)
    write_expected([ours], tmp_path / "e.yaml", "t", {"kind": "measured", "commit": "abc"})
    data = yaml.safe_load((tmp_path / "e.yaml").read_text())
    assert data["grading"]["kind"] == "tolerance" and "not derived yet" in data["grading"]["derivation"]
    data["grading"]["derivation"] = "measured spread x 2"
    data["cells"]["table_bright_main"][2]["tolerance"] = 1.5  # tiny/grpo biology, derived by hand
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(data))
    moved = with_metrics(table({"biology": 13.0}), tmp_path, bf16)
    write_expected([moved], tmp_path / "e.yaml", "t", {"kind": "measured", "commit": "def"})
    exp = load_expected(tmp_path / "e.yaml")
    assert exp["grading"]["derivation"] == "measured spread x 2"
    cell = exp["cells"][("table_bright_main", "tiny/grpo", "biology")]
    assert (cell["expected"], cell["tolerance"]) == (13.0, 1.5)
    assert check_kind(exp, cell) == "±1.5"
    assert check_kind(load_expected(tmp_path / "e.yaml") | {"grading": {"kind": "exact"}}, cell) == "exact"


def test_an_unknown_grading_kind_is_refused(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"run_name": "t", "grading": {"kind": "roughly"}, "sources": {}, "cells": {}}))
    with pytest.raises(RicepoError, match=r"e.yaml: grading.kind must be one of exact, tolerance, not 'roughly'"):
        load_expected(path)


def test_tolerances_are_derived_from_measured_runs_by_kind(tmp_path):
    """scripts/derive_tolerance.py: per kind (retriever alone, untrained, trained), FACTOR x the largest
    deviation of any run from the expected value, at least 0.1, rounded up to 0.1."""
    import subprocess
    import sys

    from conftest import ROOT
    from ricepo.layout import TABLES

    def tables_dir(name, prompting, grpo):
        folder = tmp_path / name / "tables"
        folder.mkdir(parents=True)
        for t in TABLES:
            tbl = table({"biology": grpo})
            tbl["id"] = t
            tbl["rows"].insert(
                2, {"group": "tiny", "method": "prompting", "variant": None, "cells": {c: {"ours": prompting} for c in ("biology", "avg")}}
            )
            (folder / f"{t}.json").write_text(json.dumps(tbl))
        return folder.parent

    base = tables_dir("base", 50.0, 12.0)
    write_expected(
        [json.loads((base / "tables" / f"{t}.json").read_text()) for t in TABLES], tmp_path / "e.yaml", "t", {"kind": "measured", "commit": "abc"}
    )
    # another kernel path: prompting -0.03, grpo +0.9; another seed: prompting equal, grpo -1.23
    kernels, seed = tables_dir("kernels", 49.97, 12.9), tables_dir("seed", 50.0, 10.77)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "derive_tolerance.py"),
            "--expected",
            str(tmp_path / "e.yaml"),
            "--run",
            f"avx2={kernels}",
            "--run",
            f"seed 1={seed}",
            "--write",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    exp = load_expected(tmp_path / "e.yaml")
    tol = {(row, col): c["tolerance"] for (_, row, col), c in exp["cells"].items()}
    assert tol[("cited/bm25_measured", "biology")] == 0.1  # never moved: the float-noise floor
    assert tol[("tiny/prompting", "biology")] == 0.1  # 2 x 0.03 = 0.06 -> at least 0.1
    assert tol[("tiny/grpo", "biology")] == tol[("tiny/grpo", "avg")] == 2.5  # 2 x 1.23 = 2.46 -> 2.5
    assert exp["grading"]["kind"] == "tolerance" and "trained 1.2300" in exp["grading"]["derivation"]
    assert [exp["sources"][k]["run"] for k in ("spread_1", "spread_2")] == ["avx2", "seed 1"]


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "expected").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_expected_file_loads_and_names_its_configuration(path):
    """Each file grades the configuration it is named for; one that does not parse would fail that
    configuration's tables, found only when a run reaches them."""
    assert load_expected(path)["run_name"] == path.stem
