# The memory and GPU-hour plan of every GPU job (ricepo plan): after the data are prepared (their
# token lengths and corpus sizes go into it), it fails, naming each job that would not fit its
# GPU and the cheapest change that makes it fit. Each training job checks its own plan again
# against the memory free on its GPU before it loads the model.


rule plan:
    input:
        config=RESOLVED,
        splits=[split_dir(b, t) for b, spec in config["benchmarks"].items() for t in spec["tasks"]],
        backbones=[p for name in ALL_BACKBONES for p in backbone_inputs(name)],
    output:
        f"{R}/plan.txt",
    params:
        results=lambda wc, input: str(Path(input.config).parent),
        code=CODE,
    log:
        f"{R}/logs/plan.log",
    shell:
        "ricepo plan --configfile {input.config} --results {params.results} --out {output} > {log} 2>&1"
