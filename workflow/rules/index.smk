# Retrieval indexes, built once per corpus and reused by training and evaluation.


rule bm25_index:
    input:
        "results/splits/{benchmark}/{task}",
    output:
        directory("results/index/{benchmark}/{task}/bm25"),
    params:
        k1=lambda wc: bench(wc)["retriever"]["k1"],
        b=lambda wc: bench(wc)["retriever"]["b"],
        stemmer=lambda wc: bench(wc)["retriever"]["stemmer"],
    log:
        "results/logs/index/{benchmark}/{task}.log",
    benchmark:
        "results/benchmarks/index/{benchmark}/{task}.tsv"
    shell:
        "ricepo index --dataset {input} --k1 {params.k1} --b {params.b} --stemmer {params.stemmer} --out {output} > {log} 2>&1"


rule dense_index:
    # Corpus embeddings, once per (task, dense model); the encoder settings are saved beside them.
    input:
        "results/splits/{benchmark}/{task}",
    output:
        directory("results/index/{benchmark}/{task}/dense/{dense_model}"),
    params:
        model=lambda wc: config["dense_models"][wc.dense_model]["model"],
        settings=lambda wc: json.dumps({k: v for k, v in config["dense_models"][wc.dense_model].items() if k != "model"}),
    threads: 4
    resources:
        gpus=1,
    log:
        "results/logs/index/{benchmark}/{task}/dense-{dense_model}.log",
    benchmark:
        "results/benchmarks/index/{benchmark}/{task}/dense-{dense_model}.tsv"
    shell:
        "ricepo index --dataset {input} --retriever dense --dense-model {params.model} "
        "--dense-settings {params.settings:q} --out {output} > {log} 2>&1"
