"""The cluster path through a real Slurm: the GPU smoke subset submitted by `--workflow-profile slurm`
to scripts/slurm_local.sh's one-node cluster, and what each job asked for read back from Slurm's
accounting. Needs that cluster (`sudo scripts/slurm_local.sh start`, then `pytest -m slurm`);
`.ci/run` does both; the README's test command deselects them, as it does the GPU tests."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

CONFIGS = [ROOT / "config" / name for name in ("smoke.yaml", "gpu_smoke.yaml", "slurm_local.yaml")]


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and any(state in out.stdout for state in ("idle", "mix", "alloc"))


pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(not _cluster_up(), reason="needs a Slurm cluster (sudo scripts/slurm_local.sh start)")]


def _snakemake(workdir, *args, check=True):
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--workflow-profile", "slurm",
           "--slurm-init-seconds-before-status-checks", "2", *args, "--configfile", *map(str, CONFIGS)]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=3000)
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _jobs(log: str) -> dict[str, dict]:
    """Slurm job id -> the rule, threads and resources Snakemake gave the job (from its log)."""
    given = {}
    for block in re.split(r"\n(?=rule \w+:\n)", log):
        head = re.match(r"rule (\w+):\n", block)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and jobid and resources:
            threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
            given[jobid[1]] = {"rule": head[1], "threads": threads[1] if threads else "1",
                               **dict(kv.split("=", 1) for kv in resources[1].split(", ") if "=" in kv)}
    return {slurm: given[job] for job, slurm in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)}


def test_the_gpu_smoke_subset_runs_through_slurm_asking_for_what_the_rules_mean(tmp_path):
    """Every job of the subset runs as a Slurm job; each one's ReqTRES in `sacct` holds the GPUs
    (`gres/gpu`), memory and CPUs that its rule gave it, in the partition `slurm:` names."""
    out = _snakemake(tmp_path, "reproduce_all", "--default-resources", "mem_mb=2000", "runtime=30")
    log = out.stdout + out.stderr
    jobs = _jobs(log)
    assert len(jobs) >= 20 and {"train", "agent_eval"} <= {j["rule"] for j in jobs.values()}, log[-2000:]
    acct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(jobs), "-o", "JobID,Partition,ReqTRES,State"],
                          capture_output=True, text=True, check=True).stdout
    rows = {r.split("|")[0]: r.split("|")[1:] for r in acct.splitlines()}
    assert set(rows) == set(jobs)
    for job, given in jobs.items():
        partition, tres, state = rows[job]
        asked = dict(kv.split("=", 1) for kv in tres.split(","))
        assert state == "COMPLETED", (job, given["rule"], state)
        assert partition == given["slurm_partition"] == ("gpu" if "gpu" in given else "cpu"), (given, partition)
        assert asked.get("gres/gpu") == given.get("gpu"), (given, tres)
        assert asked["mem"] == f"{given['mem_mb']}M", (given, tres)
        assert asked["cpu"] == given["threads"], (given, tres)
