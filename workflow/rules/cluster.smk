# What only the cluster knows (config `slurm:`): partitions, account, QoS, added to every rule's
# resources, where only the Slurm executor reads them. Included last, after every rule.

_SLURM = config["slurm"]
for _rule in workflow.rules:
    _names = {
        "slurm_partition": _SLURM["gpu_partition"] if "gpu" in _rule.resources else _SLURM["cpu_partition"],
        "slurm_account": _SLURM["account"],
        "qos": _SLURM["qos"],
    }
    _rule.resources.update({k: v for k, v in _names.items() if v})


onstart:
    # the executor is known only now; through Slurm, GPU jobs need their partition
    if workflow.executor_plugin.name == "slurm" and not _SLURM["gpu_partition"]:
        raise WorkflowError(
            "config slurm.gpu_partition: not set; the slurm profile submits training, agent evaluation "
            "and dense indexing there (set it in a config overlay: slurm: {gpu_partition: NAME}; "
            "config/slurm_local.yaml names scripts/slurm_local.sh's cluster)"
        )


onerror:
    # the executor names a memory kill only in each job's own Slurm log: say it last, one line a job
    if workflow.executor_plugin.name == "slurm":
        from ricepo.slurm_failures import memory_kills

        for _line in memory_kills("".join(Path(f).read_text(errors="replace") for f in log if Path(f).is_file())):
            print(_line, file=sys.stderr)
