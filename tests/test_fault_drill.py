"""The short fault drill: the workflow SIGKILLed once in every rule kind still ends with the numbers
of an undisturbed run (scripts/fault_drill.py; the full drill runs the whole smoke config)."""

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


@pytest.mark.slow
def test_the_short_fault_drill_passes(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["run_name"] = "drill"
    cfg["seeds"] = [0]
    cfg["benchmarks"]["beir"] = None
    bright = cfg["benchmarks"]["bright"]
    bright["tasks"] = ["biology"]
    bright["split_counts"] = {"biology": bright["split_counts"]["biology"]}
    bright["methods"] = ["prompting", "grpo", "ricepo"]
    cfg["ablations"]["variants"] = []
    cfg["train"]["steps"] = 3
    cfg["train"]["save_every"] = 1
    (tmp_path / "drill.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "fault_drill.py"),
            "--configfile",
            str(tmp_path / "drill.yaml"),
            "--kills",
            "8",
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    landed = [x for x in lines if x.startswith("kill ")]
    assert len(landed) >= 8
    # every kind the DAG has; a job too short to be caught (data preparation, a split) may slip by
    killed = {
        kind
        for kind in (
            "prepare_data",
            "build_tiny_backbone",
            "split",
            "bm25_baseline",
            "train",
            "agent_eval",
            "table",
            "figure",
            "report",
        )
        if any(f" {kind} (" in x for x in landed)
    }
    assert {"train", "agent_eval", "table", "figure", "report"} <= killed and len(killed) >= 7, lines
    assert "files compared: " in out.stdout and "fault drill: OK: every file identical" in out.stdout
