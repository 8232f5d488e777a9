# Corpus embeddings for dense retrieval, built once per corpus and reused by training and
# evaluation (the BM25 index is built with the split, in data.smk).


rule dense_index:
    # Once per (task, dense model), from the prepared corpus, which the split links to: a new split
    # does not embed the corpus again. The encoder settings are saved beside the embeddings.
    input:
        f"{DATA}/{{benchmark}}/{{task}}",
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
