# Retrieval indexes, built once per corpus and reused by training and evaluation.


rule bm25_index:
    input:
        out(layout.SPLIT_DIR),
    output:
        directory(out(f"{layout.INDEX_DIR}/bm25")),
    params:
        bm25=bm25_flags,
        code=CODE,
    log:
        f"{R}/logs/index/{{benchmark}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/index/{{benchmark}}/{{task}}.tsv"
    shell:
        "ricepo index --dataset {input} {params.bm25} --out {output} > {log} 2>&1"


rule dense_index:
    # Corpus embeddings, once per (task, dense model); the encoder settings are saved beside them.
    input:
        out(layout.SPLIT_DIR),
    output:
        directory(out(f"{layout.INDEX_DIR}/dense/{{dense_model}}")),
    params:
        model=lambda wc: config["dense_models"][wc.dense_model]["model"],
        settings=lambda wc: json.dumps({k: v for k, v in config["dense_models"][wc.dense_model].items() if k != "model"}),
        kernel_env=kernel_env,
        code=CODE,
    threads: 4
    resources:
        gpu=1,
        mem_mb=index_host_mb,
    log:
        f"{R}/logs/index/{{benchmark}}/{{task}}/dense-{{dense_model}}.log",
    benchmark:
        f"{R}/benchmarks/index/{{benchmark}}/{{task}}/dense-{{dense_model}}.tsv"
    shell:
        "{params.kernel_env} ricepo gpu-run --gpus {resources.gpu} -- ricepo index --dataset {input} --retriever dense --dense-model {params.model} "
        "--dense-settings {params.settings:q} --out {output} > {log} 2>&1"
