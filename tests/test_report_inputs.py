"""A report job reads the files its rule declares and nothing else."""

import json

import pytest

from conftest import ROOT
from ricepo.config import load_config
from ricepo.errors import RicepoError
from ricepo.layout import ARTEFACTS, metrics_file, runs
from ricepo.report.results import ResultFiles
from ricepo.report.tables import build_table


@pytest.fixture
def smoke(tmp_path):
    config = load_config(ROOT / "config" / "smoke.yaml")
    run = next(r for r in runs(config) if r.benchmark == "bright" and r.method == "grpo")
    task = config["benchmarks"]["bright"]["tasks"][0]
    path = metrics_file(tmp_path, run, task)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ndcg_cut_10": 0.4321, "per_query": {"q1": 0.4321}, "n_queries": 1}))
    return config, run, task, path


def cell(table, run, task):
    row = next(r for r in table["rows"] if (r["group"], r["method"]) == (run.backbone, run.method))
    return row["cells"][task]


def test_a_result_file_is_read_only_when_declared(smoke, tmp_path):
    config, run, task, path = smoke
    assert path in ARTEFACTS["table_bright_main"].inputs(config, tmp_path)  # the rule declares it
    declared = build_table("table_bright_main", ResultFiles(config, tmp_path, [path]))
    assert cell(declared, run, task)["ours"] == pytest.approx(43.21)
    # the same file on disk, not handed over (as if left by another configuration): not read
    undeclared = build_table("table_bright_main", ResultFiles(config, tmp_path, []))
    assert cell(undeclared, run, task)["status"] == "not run"


def test_a_declared_file_that_is_missing_is_an_error(smoke, tmp_path):
    config, run, task, path = smoke
    path.unlink()
    with pytest.raises(RicepoError, match="declared as an input of this report job but missing"):
        build_table("table_bright_main", ResultFiles(config, tmp_path, [path]))


def test_each_measured_cell_carries_its_provenance_and_grade(smoke, tmp_path):
    from ricepo.report.results import config_sha256

    config, run, task, path = smoke
    key = f"{run.backbone}/{run.method}"
    expected = {"grading": {"kind": "exact"}, "cells": {("table_bright_main", key, task): {"expected": 43.21, "tolerance": 0.1}}}
    table = build_table("table_bright_main", ResultFiles(config, tmp_path, [path]), expected)
    prov = cell(table, run, task)["provenance"]
    assert prov == {
        "command": f"snakemake --cores all {path} --configfile config/smoke.yaml",
        "config_sha256": config_sha256(config),
        "metrics_files": [str(path)],
        "seeds": [run.seed],
        "check": "OK",
        "check_kind": "exact",
    }
    assert cell(table, run, "avg")["provenance"]["command"] == "snakemake --cores all table_bright_main --configfile config/smoke.yaml"
    moved = {"grading": {"kind": "tolerance"}, "cells": {("table_bright_main", key, task): {"expected": 43.11, "tolerance": 0.05}}}
    table = build_table("table_bright_main", ResultFiles(config, tmp_path, [path]), moved)
    assert (cell(table, run, task)["provenance"]["check"], cell(table, run, task)["provenance"]["check_kind"]) == ("FAIL", "±0.05")
    assert cell(build_table("table_bright_main", ResultFiles(config, tmp_path, [path])), run, task)["provenance"]["check"] == "no expected file"


def test_the_report_states_the_reward_choices_per_backbone():
    """How a step without a summary is scored is our choice: the report says which, per backbone,
    from the settings the training jobs ran with (a backbone's own rollout: included)."""
    from ricepo.report.html import reward_choices

    config = load_config(ROOT / "config" / "config.yaml")
    config["backbones"]["qwen3_4b_thinking"]["rollout"] = {"empty_summary_search": "last_summary", "format_penalty": 0.25}
    first, second = reward_choices(config)
    assert first == (
        "r1_distill_qwen_1p5b, qwen2p5_3b_instruct: a step without a summary searches with the "
        "question alone (so does the final reward, when it is the last step), and the final "
        "reward loses 0.5 when any step has no summary"
    )
    assert second.startswith(
        "qwen3_4b_thinking: a step without a summary searches with the question with the trajectory's latest earlier summary"
    ) and second.endswith("loses 0.25 when any step has no summary")
