# Training: one policy per (benchmark, backbone, method, seed) on all of the benchmark's tasks.


rule train:
    input:
        _train_inputs,
    output:
        model=directory(f"{R}/train/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}/model"),
        log=f"{R}/train/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}/log.jsonl",
    params:
        spec=lambda wc: job_spec(wc.benchmark, wc.backbone, wc.method, wc.seed),
        tasks=lambda wc: _task_args(wc.benchmark),
        out=lambda wc: f"{R}/train/{wc.benchmark}/{wc.backbone}/{wc.method}/seed{wc.seed}",
        launcher=lambda wc: train_launcher(wc),
        code=CODE,
    threads: config["train"]["processes"]
    resources:
        gpus=config["train"]["processes"],
    log:
        f"{R}/logs/train/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "OMP_NUM_THREADS=1 ricepo gpu-run --gpus {resources.gpus} -- {params.launcher} train --spec {params.spec:q} {params.tasks} --out {params.out} > {log} 2>&1"
