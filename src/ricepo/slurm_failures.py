"""Jobs that Slurm killed for going over their memory, found in a failed Snakemake run's log, one
line each. The Slurm executor reports such a job as `FAILED` ("Reason: Unknown") or
`OUT_OF_MEMORY` and buries the cause in the job's own Slurm log; the workflow's `onerror` handler
(workflow/rules/cluster.smk) prints these lines last, where the user looks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

# what slurmstepd writes when it kills a job: the accounting sampler's kill (JobAcctGatherParams=
# OverMemoryKill) and the kernel's cgroup OOM killer
KILLED_FOR_MEMORY = re.compile(r"exceeded memory limit|oom[-_]kill", re.I)


def _megabytes(value: str) -> float | None:
    """sacct's memory figure ('300M', '333136K', '341131264': bytes when no unit) in MB (2**20 bytes)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)[nc]?", value)
    return None if found is None else float(found[1]) * 1024 ** " KMGT".index(found[2] or " ") / 2**20


def _accounting(slurm_id: str) -> dict:
    """sacct's state, requested memory (MB) and peak resident memory (MB, the job's largest step) of a job."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-j", slurm_id, "-o", "JobID,State,ReqMem,MaxRSS", "--noconvert"], capture_output=True, text=True
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3]
    job = next((r for r in rows if r[0] == slurm_id), ["", "", "", ""])
    peaks = [mb for r in rows if (mb := _megabytes(r[3])) is not None]
    return {"state": job[1], "mem_mb": _megabytes(job[2]), "peak_mb": max(peaks, default=None)}


def memory_kills(log_text: str, accounting: Callable[[str], dict] = _accounting) -> list[str]:
    """One line per failed Slurm job of the run that went over its memory: the rule, its output, the
    `mem_mb` it had, its peak, and how to give it more."""
    lines = []
    for block in re.split(r"\n(?=Error in rule )", log_text)[1:]:
        rule = re.match(r"Error in rule (\w+):", block)
        slurm_id = re.search(r"^\s+external_jobid: (\d+)$", block, re.M)
        if not (rule and slurm_id):
            continue
        output = re.search(r"^\s+output: ([^,\n]+)", block, re.M)
        slurm_log = re.search(r"(\S+/slurm_logs/\S+\.log)", block)
        acct = accounting(slurm_id[1])
        text = Path(slurm_log[1]).read_text(errors="replace") if slurm_log and Path(slurm_log[1]).is_file() else ""
        if acct["state"] != "OUT_OF_MEMORY" and not KILLED_FOR_MEMORY.search(text):
            continue
        had = "?" if acct["mem_mb"] is None else f"{acct['mem_mb']:.0f}"
        peak = "" if acct["peak_mb"] is None else f", peak {acct['peak_mb']:.0f} MB"
        where = output[1] if output else "no output"
        lines.append(
            f"rule {rule[1]} ({where}): Slurm job {slurm_id[1]} was killed for going over its memory "
            f"(mem_mb={had}{peak}); give it more with --set-resources {rule[1]}:mem_mb=N"
        )
    return lines
