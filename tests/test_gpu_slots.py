"""One GPU per job (`ricepo gpu-run`), on the CPU with a faked GPU count (RICEPO_GPU_IDS)."""

import os
import signal
import subprocess
import sys
import time

import pytest

SHOW = "import os, sys, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>'), flush=True); time.sleep(float(sys.argv[1]))"


def gpu_run(tmp_path, n, hold, gpus="0,1"):
    env = {**os.environ, "RICEPO_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if gpus is not None:
        env["RICEPO_GPU_IDS"] = gpus
    return subprocess.Popen(
        [sys.executable, "-m", "ricepo", "gpu-run", "--gpus", str(n), "--", sys.executable, "-c", SHOW, str(hold)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(proc):
    return proc.stdout.readline().strip()


def test_concurrent_jobs_get_different_gpus_and_a_third_waits(tmp_path):
    a, b = gpu_run(tmp_path, 1, 3), gpu_run(tmp_path, 1, 3)
    got = {first_line(a), first_line(b)}
    assert got == {"gpu-run: CUDA_VISIBLE_DEVICES=0", "gpu-run: CUDA_VISIBLE_DEVICES=1"}
    assert {first_line(a), first_line(b)} == {"0", "1"}  # what the job itself sees
    t0 = time.time()
    c = gpu_run(tmp_path, 1, 0)
    out, _ = c.communicate(timeout=60)
    assert time.time() - t0 > 1.0, "the third job must wait for a free GPU"
    assert out.splitlines()[-1] in ("0", "1")
    a.wait(), b.wait()


def test_a_two_gpu_job_holds_both(tmp_path):
    a = gpu_run(tmp_path, 2, 0)
    out, _ = a.communicate(timeout=60)
    assert out.splitlines() == ["gpu-run: CUDA_VISIBLE_DEVICES=0,1", "0,1"]


def test_a_killed_job_releases_its_gpu(tmp_path):
    a = gpu_run(tmp_path, 2, 60)
    assert first_line(a) == "gpu-run: CUDA_VISIBLE_DEVICES=0,1"
    a.send_signal(signal.SIGKILL)
    a.wait()
    b = gpu_run(tmp_path, 1, 0)
    out, _ = b.communicate(timeout=20)
    assert out.splitlines()[-1] == "0"


def test_without_gpus_the_command_runs_as_is(tmp_path):
    out, _ = gpu_run(tmp_path, 1, 0, gpus="").communicate(timeout=60)
    assert out.splitlines() == ["<unset>"]


def test_asking_for_more_gpus_than_offered_is_a_one_line_error(tmp_path):
    p = gpu_run(tmp_path, 3, 0)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and err.strip().splitlines() == [
        "ricepo: error: gpu-run: the job asks for 3 GPU(s), this machine offers 2 (0,1); lower train.processes or run on a bigger node"
    ]


@pytest.mark.parametrize("command", [[], ["--"], ["--", "no-such-command-xyz"]])
def test_a_missing_command_is_a_one_line_error(tmp_path, command):
    env = {**os.environ, "RICEPO_GPU_IDS": ""}
    p = subprocess.run([sys.executable, "-m", "ricepo", "gpu-run", "--gpus", "1", *command], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith("ricepo: error: gpu-run:")
