"""The one line a failed Slurm run ends with for each job killed for its memory (slurm_failures.py),
on Snakemake's error blocks as the Slurm executor writes them (the real run: test_slurm.py)."""

from ricepo.slurm_failures import memory_kills


def _block(rule: str, slurm_id: str, status: str, slurm_log) -> str:
    return (
        f"Error in rule {rule}:\n"
        f"    message: SLURM-job '{slurm_id}' failed, SLURM status is: '{status}'. Reason: Unknown.\n"
        f"    jobid: 10\n    output: results/x/{rule}/model, results/x/{rule}/log.jsonl\n"
        f"    log: results/logs/{rule}.log, {slurm_log} (check log file(s) for error details)\n"
        f"    shell:\n        ricepo {rule} --spec '{{}}'\n        (command exited with non-zero exit code)\n"
        f"    external_jobid: {slurm_id}\n"
    )


def test_only_jobs_killed_for_memory_get_a_line_naming_the_rule_and_its_mem_mb(tmp_path):
    logs = tmp_path / ".snakemake" / "slurm_logs"
    logs.mkdir(parents=True)
    (logs / "62.log").write_text("slurmstepd-vm: error: StepId=62.batch exceeded memory limit (341131264 > 314572800), being killed\n")
    (logs / "63.log").write_text("Traceback (most recent call last):\nValueError: bad\n")
    accounting = {
        "62": {"state": "FAILED", "mem_mb": 300.0, "peak_mb": 325.3},
        "63": {"state": "FAILED", "mem_mb": 2000.0, "peak_mb": 80.0},
        "64": {"state": "OUT_OF_MEMORY", "mem_mb": 6148.0, "peak_mb": None},
    }
    log = (
        "Building DAG of jobs...\n"
        + _block("train", "62", "FAILED", logs / "62.log")
        + _block("agent_eval", "63", "FAILED", logs / "63.log")
        + _block("dense_index", "64", "OUT_OF_MEMORY", logs / "missing.log")
        + "Shutting down\n"
    )
    assert memory_kills(log, accounting.__getitem__) == [
        "rule train (results/x/train/model): Slurm job 62 was killed for going over its memory "
        "(mem_mb=300, peak 325 MB); give it more with --set-resources train:mem_mb=N",
        "rule dense_index (results/x/dense_index/model): Slurm job 64 was killed for going over its memory "
        "(mem_mb=6148); give it more with --set-resources dense_index:mem_mb=N",
    ]
