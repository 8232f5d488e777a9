"""The bad-input drill: every malformed input ends with exit code 2 and one line
`ricepo: error: ...` (the last; progress bars may precede it) naming the file and line, or the key, and leaves no output that a rerun
would take as done.

Each row: (name, files to write under the case folder, the command's arguments, what the message
must say). `{d}` is the case folder, `{ok}` a well-formed dataset split (corpus, queries, qrels,
excluded ids, BM25 index), `{model}` the tiny backbone, `{out}` the output the command would write.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROLLOUT, ROOT, TEMPLATE, train_settings
from ricepo.cli import main

GOOD_RUN = "q1 Q0 d1 1 2.5 bm25\n"


def spec(model, **train):
    return json.dumps(
        {
            "benchmark": "bright",
            "method": "grpo",
            "variant": None,
            "seed": 0,
            "backbone": {"model": model, "family": "tiny"},
            "template": TEMPLATE,
            "rollout": ROLLOUT,
            "train": train_settings(**{"steps": 2, "queries_per_step": 2, "learning_rate": 1e-3, "micro_batch_size": 4, "save_every": 1, **train}),
            "credit": {},
            "evaluate": {"decoding": "greedy"},
        }
    )


def config_rows():
    return [
        (
            "config: unknown top-level key",
            {"c.yaml": "seedz: [0]\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "c.yaml: config error at <top level>: unknown key(s) 'seedz'",
        ),
        (
            "config: unknown nested key",
            {"c.yaml": "train: {learnin_rate: 0.1}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at train: unknown key(s) 'learnin_rate'",
        ),
        (
            "config: wrong type",
            {"c.yaml": "train: {steps: ten}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at train.steps: 'ten' is not of type 'integer'",
        ),
        (
            "config: unknown backbone",
            {"c.yaml": "benchmarks: {beir: {backbones: [gpt5]}}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at benchmarks.beir.backbones[0]: unknown backbone 'gpt5'",
        ),
        (
            "config: unknown method",
            {"c.yaml": "benchmarks: {beir: {methods: [ppo]}}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at benchmarks.beir.methods[0]: 'ppo' is not one of",
        ),
        (
            "config: task without counts",
            {"c.yaml": "benchmarks: {beir: {tasks: [nfcorpus]}}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at benchmarks.beir.split_counts: no counts for task 'nfcorpus'",
        ),
        (
            "config: unknown precision",
            {"c.yaml": "train: {precision: fp8}\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at train.precision: 'fp8' is not one of",
        ),
        (
            "config: invalid YAML",
            {"c.yaml": "seeds: [0\nrun_name: x\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "c.yaml line 2: invalid YAML",
        ),
        ("config: missing file", {}, ["config", "check", "--configfile", "{d}/nope.yaml"], "config file {d}/nope.yaml not found"),
        (
            "config: not a mapping",
            {"c.yaml": "- a\n- b\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "c.yaml: expected a mapping of keys, got list",
        ),
        (
            "config: bad run name",
            {"c.yaml": "run_name: ../x\n"},
            ["config", "check", "--configfile", "{d}/c.yaml"],
            "config error at run_name: '../x' does not match",
        ),
    ]


def data_rows():
    index = ["index", "--dataset", "{d}/ds", "--out", "{out}"]
    return [
        (
            "corpus: malformed JSON line",
            {"ds/corpus.jsonl": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'},
            index,
            "ds/corpus.jsonl:2: malformed JSON",
        ),
        ("corpus: missing _id", {"ds/corpus.jsonl": '{"text": "a"}\n'}, index, "ds/corpus.jsonl:1: missing key '_id'"),
        (
            "corpus: duplicate id",
            {"ds/corpus.jsonl": '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'},
            index,
            "ds/corpus.jsonl:2: duplicate id 'd1'",
        ),
        (
            "corpus: empty document",
            {"ds/corpus.jsonl": '{"_id": "d1", "title": "", "text": " "}\n'},
            index,
            "ds/corpus.jsonl:1: document 'd1' has empty title and text",
        ),
        ("corpus: not an object", {"ds/corpus.jsonl": '["d1", "a"]\n'}, index, "ds/corpus.jsonl:1: expected a JSON object"),
        ("corpus: missing file", {}, index, "ds/corpus.jsonl: file not found"),
        (
            "queries: malformed JSON line",
            {"ds/": "{ok}/split", "ds/queries.jsonl": '{"_id": "q1", "text": "x"\n'},
            ["retrieve", "--dataset", "{d}/ds", "--out", "{out}", "--index-root", "{ok}/index"],
            "ds/queries.jsonl:1: malformed JSON",
        ),
        (
            "queries: empty text",
            {"ds/": "{ok}/split", "ds/queries.jsonl": '{"_id": "q1", "text": ""}\n'},
            ["retrieve", "--dataset", "{d}/ds", "--out", "{out}", "--index-root", "{ok}/index"],
            "ds/queries.jsonl:1: query 'q1' has empty text",
        ),
        (
            "qrels: two columns",
            {"q.tsv": "query-id\tcorpus-id\tscore\nq1\td1\n", "r.trec": GOOD_RUN},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"],
            "q.tsv:2: expected 3 (BEIR) or 4 (TREC) columns, got 2",
        ),
        (
            "qrels: relevance not a number",
            {"q.tsv": "q1\td1\thigh\n", "r.trec": GOOD_RUN},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"],
            "q.tsv:1: relevance 'high' is not a number",
        ),
        (
            "qrels: duplicate judgment",
            {"q.tsv": "q1\td1\t1\nq1\td1\t2\n", "r.trec": GOOD_RUN},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"],
            "q.tsv:2: duplicate judgment for (q1, d1)",
        ),
        ("qrels: missing file", {"r.trec": GOOD_RUN}, ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"], "q.tsv: file not found"),
        (
            "run: five columns",
            {"q.tsv": "q1\td1\t1\n", "r.trec": "q1 Q0 d1 1 2.5\n"},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"],
            "r.trec:1: a TREC run line has 6 columns, got 5",
        ),
        (
            "run: score not a number",
            {"q.tsv": "q1\td1\t1\n", "r.trec": GOOD_RUN + "q1 Q0 d2 2 high bm25\n"},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"],
            "r.trec:2: score 'high' is not a number",
        ),
        ("run: missing file", {"q.tsv": "q1\td1\t1\n"}, ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec"], "r.trec: run file not found"),
        (
            "excluded ids: one column",
            {"q.tsv": "q1\td1\t1\n", "r.trec": GOOD_RUN, "x.tsv": "q1\n"},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec", "--excluded", "{d}/x.tsv"],
            "x.tsv:1: expected `query-id<TAB>corpus-id`",
        ),
        (
            "excluded ids: missing file",
            {"q.tsv": "q1\td1\t1\n", "r.trec": GOOD_RUN},
            ["evaluate", "--qrels", "{d}/q.tsv", "--run", "{d}/r.trec", "--excluded", "{d}/x.tsv"],
            "x.tsv: excluded-ids file not found",
        ),
        (
            "credit: malformed JSON",
            {"g.json": '{"query_id": "q1",\n "trajectories": [}\n'},
            ["credit", "--method", "grpo", "{d}/g.json"],
            "g.json: line 2: malformed JSON",
        ),
        ("credit: missing file", {}, ["credit", "--method", "grpo", "{d}/nope.json"], "nope.json: no such file"),
        ("credit: a folder", {"g/g.json": "{}"}, ["credit", "--method", "grpo", "{d}/g"], "g: a folder, not a JSON file"),
        (
            "credit: unknown method",
            {"g.json": '{"query_id": "q1", "trajectories": []}'},
            ["credit", "--method", "ppo", "{d}/g.json"],
            "unknown method 'ppo'",
        ),
        (
            "task argument without index",
            {},
            ["train", "--spec", "{spec}", "--task", "biology={ok}/split", "--out", "{out}"],
            "--task 'biology={ok}/split': expected TASK=SPLIT_DIR:INDEX_ROOT",
        ),
        (
            "spec file: missing",
            {},
            ["train", "--spec-file", "{d}/nope.json", "--task", "leetcode={ok}/split:{ok}/index", "--out", "{out}"],
            "--spec-file {d}/nope.json: no such file",
        ),
        (
            "spec file: malformed",
            {"s.json": "{\n  nope"},
            ["agent-eval", "--spec-file", "{d}/s.json", "--task", "leetcode={ok}/split:{ok}/index", "--out", "{out}", "--model", "m"],
            "--spec-file {d}/s.json: line 2: malformed JSON",
        ),
    ]


def model_rows():
    train = ["train", "--spec", "{spec}", "--task", "leetcode={ok}/split:{ok}/index", "--out", "{out}"]
    evaluate = ["agent-eval", "--spec", "{spec}", "--task", "leetcode={ok}/split:{ok}/index", "--out", "{out}", "--model"]
    return [
        ("model: missing folder", {}, [*evaluate, "{d}/no-model"], "backbone '{d}/no-model': cannot load"),
        (
            "model: corrupt config.json",
            {"m/config.json": "{not json", "m/tokenizer.json": "{}"},
            [*evaluate, "{d}/m"],
            "backbone '{d}/m': cannot load from the local folder",
        ),
        (
            "model: no weights",
            {"m/": "{model}", "m/model.safetensors": "<delete>"},
            [*evaluate, "{d}/m"],
            "backbone '{d}/m': cannot load from the local folder",
        ),
        ("state.pt: truncated", {"out/state.pt": "<half of a checkpoint>"}, train, "out/state.pt: not a readable checkpoint"),
        ("state.pt: not a checkpoint", {"out/state.pt": "hello"}, train, "out/state.pt: not a readable checkpoint"),
        (
            "job spec: no benchmark",
            {},
            ["train", "--spec", "{spec_without_benchmark}", "--task", "leetcode={ok}/split:{ok}/index", "--out", "{out}"],
            "job spec lacks benchmark",
        ),
        (
            "split: no train queries",
            {"empty/": "{ok}/split", "empty/qrels/train.tsv": "query-id\tcorpus-id\tscore\n"},
            ["train", "--spec", "{spec}", "--task", "leetcode={d}/empty:{ok}/index", "--out", "{out}"],
            "empty/qrels/train.tsv: no train queries for task 'leetcode'",
        ),
        (
            "split: no test queries",
            {"empty/": "{ok}/split", "empty/qrels/test.tsv": "query-id\tcorpus-id\tscore\n"},
            ["agent-eval", "--spec", "{spec}", "--task", "leetcode={d}/empty:{ok}/index", "--out", "{out}", "--model", "{model}"],
            "empty/qrels/test.tsv: no test queries",
        ),
        (
            "hub offline: backbone",
            {},
            [*evaluate, "no-org/no-model-xyz"],
            "backbone 'no-org/no-model-xyz': cannot load from the Hugging Face Hub (HF_HUB_OFFLINE is set)",
        ),
        ("hub offline: dataset", {}, ["data", "inspect", "hub", "--benchmark", "bright", "--task", "biology"], "xlangai/BRIGHT"),
    ]


ROWS = config_rows() + data_rows() + model_rows()


def test_the_drill_has_at_least_30_rows():
    assert len(ROWS) >= 30 and len({r[0] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("name, files, argv, expected", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(name, files, argv, expected, fixture_task, tiny_backbone, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    subst = {
        "{d}": str(tmp_path),
        "{ok}": str(fixture_task),
        "{model}": str(tiny_backbone),
        "{out}": str(tmp_path / "out"),
        "{spec}": spec(str(tiny_backbone)),
        "{spec_without_benchmark}": json.dumps({k: v for k, v in json.loads(spec(str(tiny_backbone))).items() if k != "benchmark"}),
    }

    def fill(text):
        for k, v in subst.items():
            text = text.replace(k, v)
        return text

    for rel, content in files.items():
        path = tmp_path / rel
        if rel.endswith("/"):  # a copy of a folder
            shutil.copytree(fill(content), path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "<delete>":
            path.unlink()
        elif content == "<half of a checkpoint>":
            _checkpoint(fixture_task, tiny_backbone, tmp_path / "whole")
            whole = (tmp_path / "whole" / "state.pt").read_bytes()
            path.write_bytes(whole[: len(whole) // 2])
        else:
            if path.exists() or path.is_symlink():
                path.unlink()
            path.write_text(fill(content))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main([fill(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, (name, err)
    # progress bars may come first; the error is one line, the last, with no traceback
    errors = [x for x in err.splitlines() if x.startswith("ricepo: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    assert fill(expected) in errors[0], err
    # nothing new under a final name: at most `.partial` leftovers, which nothing takes as done
    written = {p for p in _snapshot(tmp_path) - before if not any(part.endswith(".partial") for part in p.parts)}
    assert not [
        p
        for p in written
        if p.name in ("model", "log.jsonl", "metrics.json", "run.trec", "doc_ids.json") or p == tmp_path / "out" and any(p.iterdir())
    ], written


def _snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _checkpoint(fixture_task, tiny_backbone, out):
    from ricepo.train.run import run_training

    if not (out / "state.pt").exists():
        run_training(json.loads(spec(str(tiny_backbone), steps=1)), {"leetcode": (fixture_task / "split", fixture_task / "index")}, out)
    os.sync()


def test_credit_does_not_wait_on_a_terminal(capsys, monkeypatch):
    import io

    from ricepo.cli import main

    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr("sys.stdin", terminal)
    assert main(["credit", "--method", "grpo"]) == 2
    assert capsys.readouterr().err.strip() == "ricepo: error: credit: give a JSON file of one group or a list of groups (or pipe one in)"


def test_version_and_a_closed_pipe():
    import subprocess
    import sys

    from ricepo.identity import code_version

    out = subprocess.run([sys.executable, "-m", "ricepo", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"ricepo {code_version(with_report=True)}"
    # the reader has gone before anything is written (`| head` that stopped reading): no traceback
    piped = subprocess.Popen([sys.executable, "-m", "ricepo", "config", "methods"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    piped.stdout.close()
    assert piped.wait(timeout=60) == 1 and piped.stderr.read() == ""


def test_every_option_of_every_command_says_what_it_is():
    import argparse

    from ricepo.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield f"{path} {'/'.join(action.option_strings) or action.dest}", action.help

    silent = [where for where, text in walk(build_parser(), "ricepo") if not text]
    assert silent == [], silent


def test_every_command_takes_a_configuration_one_way(tmp_path, capsys):
    """`--configfile FILE...`, as Snakemake takes it, is the only way into a command that reads a
    configuration; a run's config.resolved.json (JSON: `1e-05` stays a number) is one such file."""
    import argparse
    import json

    from ricepo.cli import build_parser, main
    from ricepo.config import load_config

    def takes_config(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from takes_config(sub, f"{path} {name}")
            elif any("config" in s for s in action.option_strings) or "config" in action.dest and action.dest != "config_cmd":
                yield path, tuple(action.option_strings)

    found = {}
    for path, options in takes_config(build_parser(), "ricepo"):
        found.setdefault(path, []).append(options)
    assert found == {f"ricepo {c}": [("--configfile",)] for c in ("config check", "check", "plan", "report")}, found

    # the GPU smoke subset leaves BEIR out: merged over config/config.yaml, its resolved config would bring it back
    resolved = load_config(ROOT / "config" / "smoke.yaml", ROOT / "config" / "gpu_smoke.yaml")
    resolved["train"]["learning_rate"] = 1e-05  # the paper's; JSON writes it `1e-05`, which YAML 1.1 reads as a string
    (tmp_path / "config.resolved.json").write_text(json.dumps(resolved))
    assert '"learning_rate": 1e-05' in (tmp_path / "config.resolved.json").read_text()
    assert load_config(tmp_path / "config.resolved.json") == resolved and list(resolved["benchmarks"]) == ["bright"]
    assert main(["config", "check", "--configfile", str(tmp_path / "config.resolved.json")]) == 0
    assert json.loads(capsys.readouterr().out)["run_name"] == "gpu_smoke"
    # any other JSON file is an overlay, merged as Snakemake merges it
    (tmp_path / "overlay.json").write_text(json.dumps({"run_name": "lr", "train": {"learning_rate": 2e-05}}))
    merged = load_config(ROOT / "config" / "smoke.yaml", tmp_path / "overlay.json")
    assert merged["train"]["learning_rate"] == 2e-05 and merged["train"]["steps"] == resolved["train"]["steps"]
    assert list(merged["benchmarks"]) == ["bright", "beir"]
    assert main(["config", "check", "--configfile", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"ricepo: error: config file {tmp_path} is a folder"
