# Tables, figures and the HTML report. Each artefact is its own target and reads only the result
# files its rule declares (handed over with --inputs), so it rebuilds without retraining and never
# picks up a file the configuration did not plan. It declares them gathered into a few collections
# (layout.RUN_RESULTS and the two below it), which the collect_* jobs write on the machine that
# runs Snakemake: copying text takes less than submitting a job.


rule collect_run:
    localrule: True
    input:
        lambda wc: [str(p) for p in layout.run_result_files(config, R, run_of(wc))],
    output:
        out(layout.RUN_RESULTS),
    params:
        code=REPORT_CODE,
    log:
        out(f"logs/{layout.RUN_RESULTS}.log"),
    run:
        log_collected(input, output[0], log[0])


rule collect_group:
    # Every run of one (benchmark, backbone), ablation variants included.
    localrule: True
    input:
        lambda wc: [str(layout.run_results_file(R, r)) for r in RUNS if (r.benchmark, r.backbone) == (wc.benchmark, wc.backbone)],
    output:
        out(layout.GROUP_RESULTS),
    params:
        code=REPORT_CODE,
    log:
        out(f"logs/{layout.GROUP_RESULTS}.log"),
    run:
        log_collected(input, output[0], log[0])


rule collect_baseline:
    # One retrieval without an agent (BM25, or BM25 with a fixed summary) on each task of a benchmark.
    localrule: True
    input:
        lambda wc: [str(p) for p in layout.baseline_result_files(config, R, wc.benchmark, wc.baseline)],
    output:
        out(layout.BASELINE_RESULTS),
    wildcard_constraints:
        baseline=_alternatives(["bm25", *SUMMARY_BASELINES]),
    params:
        code=REPORT_CODE,
    log:
        out(f"logs/{layout.BASELINE_RESULTS}.log"),
    run:
        log_collected(input, output[0], log[0])


rule resolved_config:
    # The validated config with defaults filled: what every table and the report cite, and what
    # training and evaluation jobs rebuild their spec from.
    localrule: True
    output:
        RESOLVED,
    params:
        # its hash: a dry run after a change prints two hashes, not the config twice
        sha=lambda wc: hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
    log:
        f"{R}/logs/report/resolved_config.log",
    run:
        write_text(Path(output[0]), json.dumps(config, sort_keys=True) + "\n")


rule claims:
    # The paper's claims (config/paper_claims.yaml) graded against every result of the configuration.
    input:
        config=RESOLVED,
        claims=str(PAPER_CLAIMS),
        results=lambda wc: report_inputs("claims"),
    output:
        json=f"{R}/tables/claims.json",
        csv=f"{R}/tables/claims.csv",
        md=f"{R}/tables/claims.md",
    params:
        out=lambda wc, output: str(Path(output.json).parent),
        code=REPORT_CODE,
    log:
        f"{R}/logs/report/claims.log",
    shell:
        "ricepo report claims --configfile {input.config} --all-results --out {params.out} > {log} 2>&1"


rule table:
    input:
        config=RESOLVED,
        results=lambda wc: report_inputs(wc.name),
        expected=lambda wc: [p for p in [expected_file(RUN)] if p.exists()],
    output:
        csv=f"{R}/tables/{{name}}.csv",
        md=f"{R}/tables/{{name}}.md",
        json=f"{R}/tables/{{name}}.json",
    wildcard_constraints:
        name="|".join(TABLES),
    params:
        out=lambda wc, output: str(Path(output.csv).parent),
        code=REPORT_CODE,
    log:
        f"{R}/logs/report/{{name}}.log",
    shell:
        "ricepo report {wildcards.name} --configfile {input.config} --all-results --inputs {input.expected} "
        "--out {params.out} > {log} 2>&1"


rule figure:
    input:
        config=RESOLVED,
        results=lambda wc: report_inputs(wc.name),
    output:
        svg=f"{R}/figures/{{name}}.svg",
        png=f"{R}/figures/{{name}}.png",
        json=f"{R}/figures/{{name}}.json",
    wildcard_constraints:
        name="|".join(FIGURES),
    params:
        out=lambda wc, output: str(Path(output.svg).parent),
        code=REPORT_CODE,
    log:
        f"{R}/logs/report/{{name}}.log",
    shell:
        "ricepo report {wildcards.name} --configfile {input.config} --all-results --out {params.out} > {log} 2>&1"


rule report:
    input:
        config=RESOLVED,
        claims=f"{R}/tables/claims.json",
        tables=expand(f"{R}/tables/{{name}}.json", name=TABLES),
        figures=expand(f"{R}/figures/{{name}}.{{ext}}", name=FIGURES, ext=["json", "png"]),
    output:
        REPORT,
    params:
        code=REPORT_CODE,
    log:
        f"{R}/logs/report/report.log",
    shell:
        "ricepo report html --configfile {input.config} --inputs {input.claims} {input.tables} {input.figures} "
        "--out {output} > {log} 2>&1"


rule table_bright_main:
    input:
        f"{R}/tables/table_bright_main.csv",


rule table_beir_main:
    input:
        f"{R}/tables/table_beir_main.csv",


rule table_ablation_credit:
    input:
        f"{R}/tables/table_ablation_credit.csv",


rule table_ablation_trigger:
    input:
        f"{R}/tables/table_ablation_trigger.csv",


rule table_ablation_gates:
    input:
        f"{R}/tables/table_ablation_gates.csv",


rule figure_entropy_cdf:
    input:
        f"{R}/figures/figure_entropy_cdf.svg",


rule figure_reward_curves:
    input:
        f"{R}/figures/figure_reward_curves.svg",


rule figure_branching_cost:
    input:
        f"{R}/figures/figure_branching_cost.svg",


rule figure_ceiling:
    input:
        f"{R}/figures/figure_ceiling.svg",


rule figure_ablation_bars:
    input:
        f"{R}/figures/figure_ablation_bars.svg",


rule check:
    # Every reported cell graded against config/expected/{run_name}.yaml: OK / OKish / FAIL, one
    # line per cell on the terminal and in the output; any FAIL fails the job (and the target).
    input:
        config=RESOLVED,
        tables=expand(f"{R}/tables/{{name}}.json", name=TABLES),
        expected=lambda wc: [p for p in [expected_file(RUN)] if p.exists()],
    output:
        f"{R}/check.txt",
    params:
        expected=expected_file(RUN),
        code=REPORT_CODE,
    log:
        f"{R}/logs/report/check.log",
    shell:
        "ricepo check --configfile {input.config} --inputs {input.tables} --expected {params.expected} "
        "--out {output} 2>&1 | tee {log}"
