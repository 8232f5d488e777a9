# Tables, figures and the HTML report. Each artefact is its own target and reads only result
# files, so it rebuilds without retraining.


rule resolved_config:
    # The validated config with defaults filled: what every table and the report cite.
    output:
        "results/config.resolved.json",
    params:
        config=lambda wc: json.dumps(config, sort_keys=True),
    log:
        "results/logs/report/resolved_config.log",
    shell:
        "printf '%s\\n' {params.config:q} > {output} 2> {log}"


rule table:
    input:
        config="results/config.resolved.json",
        results=lambda wc: REPORT_INPUTS[wc.name](),
    output:
        csv="results/tables/{name}.csv",
        md="results/tables/{name}.md",
        json="results/tables/{name}.json",
    wildcard_constraints:
        name="|".join(TABLES),
    log:
        "results/logs/report/{name}.log",
    shell:
        "ricepo report {wildcards.name} --config-json {input.config} --out results/tables > {log} 2>&1"


rule figure:
    input:
        config="results/config.resolved.json",
        results=lambda wc: REPORT_INPUTS[wc.name](),
    output:
        svg="results/figures/{name}.svg",
        png="results/figures/{name}.png",
        json="results/figures/{name}.json",
    wildcard_constraints:
        name="|".join(FIGURES),
    log:
        "results/logs/report/{name}.log",
    shell:
        "ricepo report {wildcards.name} --config-json {input.config} --out results/figures > {log} 2>&1"


rule report:
    input:
        config="results/config.resolved.json",
        tables=expand("results/tables/{name}.json", name=TABLES),
        figures=expand("results/figures/{name}.json", name=FIGURES),
    output:
        "reports/report.html",
    log:
        "results/logs/report/report.log",
    shell:
        "ricepo report html --config-json {input.config} --out {output} > {log} 2>&1"


rule table_bright_main:
    input:
        "results/tables/table_bright_main.csv",


rule table_beir_main:
    input:
        "results/tables/table_beir_main.csv",


rule table_ablation_credit:
    input:
        "results/tables/table_ablation_credit.csv",


rule table_ablation_trigger:
    input:
        "results/tables/table_ablation_trigger.csv",


rule table_ablation_gates:
    input:
        "results/tables/table_ablation_gates.csv",


rule figure_entropy_cdf:
    input:
        "results/figures/figure_entropy_cdf.svg",


rule figure_reward_curves:
    input:
        "results/figures/figure_reward_curves.svg",


rule figure_branching_cost:
    input:
        "results/figures/figure_branching_cost.svg",


rule figure_ablation_bars:
    input:
        "results/figures/figure_ablation_bars.svg",
