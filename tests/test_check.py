"""Grading reported cells against an expected-scores file (report/check.py)."""
import pytest
import yaml

from ricepo.errors import RicepoError
from ricepo.report.check import check, load_expected, render_lines, write_expected


def table(values):
    """A table_bright_main with one measured row (tiny/grpo) and the cited BM25 row we measure."""
    def cell(v):
        return {"ours": v, "status": "measured" if v is not None else "not run"}
    return {"id": "table_bright_main", "columns": list(values) + ["avg"], "rows": [
        {"group": "cited", "method": "bm25_measured", "cells": {c: cell(10.0) for c in [*values, "avg"]}},
        {"group": "cited", "method": "ReasonIR", "cells": {c: cell(None) for c in [*values, "avg"]}},
        {"group": "tiny", "method": "grpo", "variant": None,
         "cells": {**{c: cell(v) for c, v in values.items()}, "avg": cell(20.0)}}]}


def expected(tmp_path, cells):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"run_name": "t", "sources": {"measured": {"commit": "x"}},
                                    "cells": {"table_bright_main": cells}}))
    return load_expected(path)


def test_each_cell_is_graded_ok_okish_or_fail(tmp_path):
    ours = table({"biology": 12.34564, "pony": 30.05, "aops": 40.0, "leetcode": None})
    exp = expected(tmp_path, [
        {"row": "tiny/grpo", "column": "biology", "expected": 12.3456, "tolerance": 0.1, "source": "measured"},
        {"row": "tiny/grpo", "column": "pony", "expected": 30.0, "tolerance": 0.1, "source": "measured"},
        {"row": "tiny/grpo", "column": "aops", "expected": 41.0, "tolerance": 0.1, "source": "measured"},
        {"row": "tiny/grpo", "column": "leetcode", "expected": 5.0, "tolerance": 0.1, "source": "measured"},
        {"row": "cited/bm25_measured", "column": "biology", "expected": 10.0, "tolerance": 0.1, "source": "measured"},
    ])
    got = {(v["row"], v["column"]): (v["status"], v["why"]) for v in check([ours], exp)}
    assert got[("tiny/grpo", "biology")] == ("OK", "")            # equal at four decimals
    assert got[("tiny/grpo", "pony")] == ("OKish", "")            # 0.05 off, within 0.1
    assert got[("tiny/grpo", "aops")] == ("FAIL", "")             # 1.0 off
    assert got[("tiny/grpo", "leetcode")] == ("FAIL", "not run")
    assert got[("tiny/grpo", "avg")] == ("FAIL", "no expected value")
    assert got[("cited/bm25_measured", "biology")] == ("OK", "")
    assert not any(row == "cited/ReasonIR" for row, _ in got)     # the paper's cited rows are not ours to grade
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
