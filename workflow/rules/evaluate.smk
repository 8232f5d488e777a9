# Evaluation: the final retrieval of each policy on each task's test queries, NDCG@10.


rule agent_eval:
    input:
        _eval_inputs,
        spec=expand(SPEC, kind="eval", allow_missing=True),
    output:
        metrics=out(f"{layout.EVAL_DIR}/metrics.json"),
        run=out(f"{layout.EVAL_DIR}/run.trec"),
    params:
        model=_policy,
        split=lambda wc: split_dir(wc.benchmark, wc.task),
        index=lambda wc: index_dir(wc.benchmark, wc.task),
        out=lambda wc, output: str(Path(output.metrics).parent),
        kernel_env=kernel_env,
        code=CODE,
    threads: 1
    resources:
        gpu=1,
        mem_mb=eval_host_mb,
    log:
        out(f"logs/{layout.EVAL_DIR}.log"),
    shell:
        "OMP_NUM_THREADS={threads} {params.kernel_env} ricepo gpu-run --gpus {resources.gpu} -- ricepo agent-eval --spec-file {input.spec} --model {params.model} "
        "--task {wildcards.task}={params.split}:{params.index} --out {params.out} > {log} 2>&1"


rule bm25_baseline:
    # The retriever alone (query text, no agent): the BM25 row of the main tables.
    input:
        split=out(layout.SPLIT_DIR),
        index=out(f"{layout.INDEX_DIR}/bm25"),
    output:
        run=out(f"{layout.BM25_DIR}/run.trec"),
        metrics=out(f"{layout.BM25_DIR}/metrics.json"),
    params:
        bm25=bm25_flags,
        index_root=lambda wc, input: str(Path(input.index).parent),
        query="",
        code=CODE,
    log:
        out(f"logs/{layout.BM25_DIR}.log"),
    shell:
        "(ricepo retrieve {params.query} --dataset {input.split} --split test --index-root {params.index_root} {params.bm25} --out {output.run} && "
        "ricepo evaluate --qrels {input.split}/qrels/test.tsv --run {output.run} --out {output.metrics}) > {log} 2>&1"


use rule bm25_baseline as summary_baseline with:
    # The same BM25 with the query and a fixed summary (evaluate.summary_baselines): what copying
    # a shown title, judging the shown titles perfectly, or an oracle's title would add.
    output:
        run=out(f"{layout.SUMMARY_BASELINE_DIR}/run.trec"),
        metrics=out(f"{layout.SUMMARY_BASELINE_DIR}/metrics.json"),
    params:
        bm25=bm25_flags,
        index_root=lambda wc, input: str(Path(input.index).parent),
        query=lambda wc: f"--summary {wc.summary} --shown {config['rollout']['docs_in_observation']}",
        code=CODE,
    log:
        out(f"logs/{layout.SUMMARY_BASELINE_DIR}.log"),
