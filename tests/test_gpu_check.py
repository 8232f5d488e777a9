"""scripts/gpu_check.sh can fail: on this machine (no GPU) the CUDA gate refuses, and in its drill
(the gate skipped) each part runs on the CPU and fails for what it checks: skipped GPU tests, a
sampler benchmark that refuses the CPU, a smoke DAG whose training jobs ran on the CPU, a paper
step that did not run on CUDA."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="shows the check failing where there is no GPU")


def _check(*sections: str, drill: bool) -> subprocess.CompletedProcess:
    # each part's share of the time is an H200's; on a CPU shared with other work, the smoke DAG
    # alone may take longer, so every part gets room enough to fail for what it checks (the shares
    # themselves: test_a_part_over_its_share_of_the_budget_is_stopped_and_fails)
    room = {f"RICEPO_GPU_CHECK_LIMIT_{part}": "600" for part in ("TESTS", "SMOKE", "PAPER", "SAMPLER")}
    env = {**os.environ, **room, "RICEPO_GPU_CHECK_DRILL": "1" if drill else "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), *sections], env=env, capture_output=True, text=True, timeout=900)


def test_the_cuda_gate_refuses_a_machine_without_a_gpu():
    got = _check(drill=False)
    assert got.returncode == 1 and "== gpu_check: FAILED: no usable CUDA device" in got.stdout, got.stdout


@pytest.mark.slow
def test_every_part_fails_when_it_runs_on_the_cpu():
    got = _check(drill=True)
    out = got.stdout
    assert got.returncode == 1, out[-3000:]
    assert "-- tests: FAILED" in out and "skipped" in out
    # the smoke subset completes, on the CPU, and the device assertion catches it
    assert "smoke DAG: complete" in out and "training jobs that ran on CUDA: 0 of 2" in out and "-- smoke: FAILED" in out
    assert "--require-cuda, but the device is cpu" in out and "-- sampler: FAILED" in out
    assert "paper step: FAILED: the step did not run on CUDA" in out and "-- paper: FAILED" in out
    assert out.rstrip().splitlines()[-1].startswith("== gpu_check: FAILED: tests smoke paper sampler in ")


def test_a_part_over_its_share_of_the_budget_is_stopped_and_fails():
    env = {**os.environ, "RICEPO_GPU_CHECK_DRILL": "1", "RICEPO_GPU_CHECK_LIMIT_SMOKE": "2"}
    start = time.time()
    got = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "smoke"], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 1 and "-- smoke: FAILED (stopped at its limit, 2 s)" in got.stdout, got.stdout
    assert time.time() - start < 60


def test_train_devices_counts_the_logs_where_the_workflow_writes_them(fixture_task, tiny_backbone, tmp_path):
    """A real training job's log, at the path the workflow gives it, is counted (and says CPU);
    a log that says CUDA passes; no log at all fails."""
    import json
    import sys

    from ricepo import layout
    from test_trainer import spec, tasks

    run = layout.Run("bright", "tiny_qwen2", "grpo", None, 0)
    log = tmp_path / "logs" / f"{layout.path(layout.TRAIN_DIR, run)}.log"
    log.parent.mkdir(parents=True)
    ((split, index),) = tasks(fixture_task).values()
    with open(log, "w") as f:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ricepo",
                "train",
                "--spec",
                json.dumps(spec(tiny_backbone, steps=1)),
                "--task",
                f"leetcode={split}:{index}",
                "--out",
                str(tmp_path / "run"),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )

    def devices(results: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train_devices.py"), str(results)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )

    got = devices(tmp_path)
    assert got.returncode == 1 and got.stdout.startswith("training jobs that ran on CUDA: 0 of 1 (not on CUDA"), got.stdout
    log.write_text(log.read_text().replace(" on cpu (", " on cuda ("))
    got = devices(tmp_path)
    assert got.returncode == 0 and got.stdout.strip() == "training jobs that ran on CUDA: 1 of 1", got.stdout
    got = devices(tmp_path / "nothing")
    assert got.returncode == 1 and "0 of 0 (no training log" in got.stdout
