# Evaluation: the final retrieval of each policy on each task's test queries, NDCG@10.


rule agent_eval:
    input:
        _eval_inputs,
    output:
        metrics=f"{R}/eval/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}/metrics.json",
        run=f"{R}/eval/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}/run.trec",
    params:
        spec=lambda wc: job_spec(wc.benchmark, wc.backbone, wc.method, wc.seed),
        model=_policy,
        split=lambda wc: split_dir(wc.benchmark, wc.task),
        index=lambda wc: index_dir(wc.benchmark, wc.task),
        out=lambda wc, output: str(Path(output.metrics).parent),
        code=CODE,
    threads: 1
    resources:
        gpus=1,
    log:
        f"{R}/logs/eval/{{benchmark}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}.log",
    shell:
        "OMP_NUM_THREADS={threads} ricepo gpu-run --gpus {resources.gpus} -- ricepo agent-eval --spec {params.spec:q} --model {params.model} "
        "--task {wildcards.task}={params.split}:{params.index} --out {params.out} > {log} 2>&1"


rule bm25_baseline:
    # The retriever alone (query text, no agent): the BM25 row of the main tables.
    input:
        split=f"{R}/splits/{{benchmark}}/{{task}}",
        index=f"{R}/index/{{benchmark}}/{{task}}/bm25",
    output:
        run=f"{R}/baselines/{{benchmark}}/bm25/{{task}}/run.trec",
        metrics=f"{R}/baselines/{{benchmark}}/bm25/{{task}}/metrics.json",
    params:
        code=CODE,
    log:
        f"{R}/logs/baselines/{{benchmark}}/bm25/{{task}}.log",
    shell:
        "(ricepo retrieve --dataset {input.split} --split test --index {input.index} --out {output.run} && "
        "ricepo evaluate --qrels {input.split}/qrels/test.tsv --run {output.run} --out {output.metrics}) > {log} 2>&1"
