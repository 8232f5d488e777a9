"""A report job reads the files its rule declares and nothing else."""

import json

import pytest

from conftest import ROOT
from ricepo.config import load_config
from ricepo.errors import RicepoError
from ricepo.layout import (
    ARTEFACTS,
    baseline_result_files,
    group_results_file,
    metrics_file,
    run_result_files,
    run_results_file,
    runs,
)
from ricepo.report.results import ResultFiles, collect
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
    assert path in ARTEFACTS["table_bright_main"].result_files(config, tmp_path)  # the rule declares it
    declared = build_table("table_bright_main", ResultFiles(config, tmp_path, [path]))
    assert cell(declared, run, task)["ours"] == pytest.approx(43.21)
    # the same file on disk, not handed over (as if left by another configuration): not read
    undeclared = build_table("table_bright_main", ResultFiles(config, tmp_path, []))
    assert cell(undeclared, run, task)["status"] == "not run"


def test_a_table_reads_its_results_through_the_collections_its_rule_declares(smoke, tmp_path):
    """A run's files gathered into one, the runs of a (benchmark, backbone) into another: the table
    reads the same numbers through them, cites the evaluation's own file, and keeps them when that
    file is deleted afterwards."""
    config, run, task, path = smoke
    assert collect(tmp_path, [path], run_results_file(tmp_path, run)) == 1
    group = group_results_file(tmp_path, run.benchmark, run.backbone)
    assert collect(tmp_path, [run_results_file(tmp_path, run)], group) == 1
    assert group in ARTEFACTS["table_bright_main"].inputs(config, tmp_path)
    path.unlink()
    table = build_table("table_bright_main", ResultFiles(config, tmp_path, [group]))
    assert cell(table, run, task)["ours"] == pytest.approx(43.21)
    assert cell(table, run, task)["provenance"]["metrics_files"] == [str(path)]
    other = next(r for r in runs(config) if r.benchmark == "bright" and r.method == "prompting")
    assert cell(table, other, task)["status"] == "not run"


@pytest.mark.parametrize("name", list(ARTEFACTS))
def test_every_result_file_an_artefact_reads_is_in_a_collection_it_declares(name):
    config = load_config(ROOT / "config" / "config.yaml")
    held = set()
    for f in ARTEFACTS[name].inputs(config, "R"):
        kind, *key = f.relative_to("R/collected").with_suffix("").parts
        if kind == "baselines":
            held |= set(baseline_result_files(config, "R", *key))
        else:
            held |= {g for r in runs(config) if (r.benchmark, r.backbone) == (kind, *key) for g in run_result_files(config, "R", r)}
    files = ARTEFACTS[name].result_files(config, "R")
    assert files and set(files) <= held
    assert len(ARTEFACTS[name].inputs(config, "R")) <= 8  # a dry run's line, not hundreds of paths


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
