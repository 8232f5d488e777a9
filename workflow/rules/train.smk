# Training: one policy per (benchmark, backbone, method, seed) on all of the benchmark's tasks.


rule job_spec:
    # What one training or evaluation reads from the config (SPEC in common.smk).
    localrule: True
    output:
        SPEC,
    wildcard_constraints:
        kind="train|eval",
    params:
        sha=spec_sha,
    log:
        f"{R}/logs/specs/{{kind}}/{layout.RUN_DIR}.log",
    run:
        write_text(Path(output[0]), f"{layout.job_spec_json(config, run_of(wildcards), wildcards.kind)}\n")


rule train:
    input:
        _train_inputs,
        spec=expand(SPEC, kind="train", allow_missing=True),
    output:
        model=directory(out(f"{layout.TRAIN_DIR}/model")),
        log=out(f"{layout.TRAIN_DIR}/log.jsonl"),
        validation=out(f"{layout.TRAIN_DIR}/{layout.VALIDATION_FILE}"),
    params:
        tasks=lambda wc: _task_args(wc.benchmark),
        out=lambda wc, output: str(Path(output.log).parent),
        launcher=lambda wc: train_launcher(wc),
        kernel_env=kernel_env,
        code=CODE,
    priority: train_priority
    threads: train_processes
    resources:
        gpu=train_processes,
        mem_mb=train_host_mb,
    log:
        out(f"logs/{layout.TRAIN_DIR}.log"),
    benchmark:
        out(f"benchmarks/{layout.TRAIN_DIR}.tsv")
    shell:
        "OMP_NUM_THREADS=1 {params.kernel_env} ricepo gpu-run --gpus {resources.gpu} -- {params.launcher} train --spec-file {input.spec} {params.tasks} --out {params.out} > {log} 2>&1"
