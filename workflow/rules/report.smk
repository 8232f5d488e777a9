# Tables, figures and the HTML report. Each artefact is its own target and reads only the result
# files its rule declares (handed over with --inputs), so it rebuilds without retraining and never
# picks up a file the configuration did not plan.


rule resolved_config:
    # The validated config with defaults filled: what every table and the report cite, and what
    # training and evaluation jobs rebuild their spec from.
    localrule: True
    output:
        f"{R}/config.resolved.json",
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
        config=f"{R}/config.resolved.json",
        claims=str(PAPER_CLAIMS),
        results=lambda wc: report_inputs("claims"),
    output:
        json=f"{R}/tables/claims.json",
        csv=f"{R}/tables/claims.csv",
        md=f"{R}/tables/claims.md",
    params:
        out=lambda wc, output: str(Path(output.json).parent),
        code=code_version(with_report=True),
    log:
        f"{R}/logs/report/claims.log",
    shell:
        "ricepo report claims --configfile {input.config} --all-results --out {params.out} > {log} 2>&1"


rule table:
    input:
        config=f"{R}/config.resolved.json",
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
        code=code_version(with_report=True),
    log:
        f"{R}/logs/report/{{name}}.log",
    shell:
        "ricepo report {wildcards.name} --configfile {input.config} --all-results --inputs {input.expected} "
        "--out {params.out} > {log} 2>&1"


rule figure:
    input:
        config=f"{R}/config.resolved.json",
        results=lambda wc: report_inputs(wc.name),
    output:
        svg=f"{R}/figures/{{name}}.svg",
        png=f"{R}/figures/{{name}}.png",
        json=f"{R}/figures/{{name}}.json",
    wildcard_constraints:
        name="|".join(FIGURES),
    params:
        out=lambda wc, output: str(Path(output.svg).parent),
        code=code_version(with_report=True),
    log:
        f"{R}/logs/report/{{name}}.log",
    shell:
        "ricepo report {wildcards.name} --configfile {input.config} --all-results --out {params.out} > {log} 2>&1"


rule report:
    input:
        config=f"{R}/config.resolved.json",
        claims=f"{R}/tables/claims.json",
        tables=expand(f"{R}/tables/{{name}}.json", name=TABLES),
        figures=expand(f"{R}/figures/{{name}}.{{ext}}", name=FIGURES, ext=["json", "png"]),
    output:
        REPORT,
    params:
        code=code_version(with_report=True),
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
        config=f"{R}/config.resolved.json",
        tables=expand(f"{R}/tables/{{name}}.json", name=TABLES),
        expected=lambda wc: [p for p in [expected_file(RUN)] if p.exists()],
    output:
        f"{R}/check.txt",
    params:
        expected=expected_file(RUN),
        code=code_version(with_report=True),
    log:
        f"{R}/logs/report/check.log",
    shell:
        "ricepo check --configfile {input.config} --inputs {input.tables} --expected {params.expected} "
        "--out {output} 2>&1 | tee {log}"
