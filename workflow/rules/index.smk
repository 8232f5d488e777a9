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
