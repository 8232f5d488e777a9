# Evaluation: the final retrieval of each policy on each task's test queries, NDCG@10.


rule agent_eval:
    input:
        _eval_inputs,
    output:
        metrics="results/eval/{benchmark}/{backbone}/{method}/seed{seed}/{task}/metrics.json",
        run="results/eval/{benchmark}/{backbone}/{method}/seed{seed}/{task}/run.trec",
    params:
        spec=lambda wc: job_spec(wc.benchmark, wc.backbone, wc.method, wc.seed),
        model=_policy,
        split=lambda wc: split_dir(wc.benchmark, wc.task),
        index=lambda wc: index_dir(wc.benchmark, wc.task),
        out=lambda wc, output: str(Path(output.metrics).parent),
    threads: 1
    resources:
        gpus=1,
    log:
        "results/logs/eval/{benchmark}/{backbone}/{method}/seed{seed}/{task}.log",
    shell:
        "OMP_NUM_THREADS={threads} ricepo agent-eval --spec {params.spec:q} --model {params.model} "
        "--task {wildcards.task}={params.split}:{params.index} --out {params.out} > {log} 2>&1"


rule bm25_baseline:
    # The retriever alone (query text, no agent): the BM25 row of the main tables.
    input:
        split="results/splits/{benchmark}/{task}",
        index="results/index/{benchmark}/{task}/bm25",
    output:
        run="results/baselines/{benchmark}/bm25/{task}/run.trec",
        metrics="results/baselines/{benchmark}/bm25/{task}/metrics.json",
    log:
        "results/logs/baselines/{benchmark}/bm25/{task}.log",
    shell:
        "(ricepo retrieve --dataset {input.split} --split test --index {input.index} --out {output.run} && "
        "ricepo evaluate --qrels {input.split}/qrels/test.tsv --run {output.run} > {output.metrics}) > {log} 2>&1"
