"""`ricepo VERB ...`: the commands the Snakemake rules (and people) call.

Expected failures (bad input, missing files, offline hub) print one line `ricepo: error: ...`
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path

from . import jobs
from .errors import RicepoError
from .summary_baselines import KINDS as SUMMARY_BASELINES


def _read_json_input(source: str):
    if source == "-":
        if sys.stdin.isatty():  # nothing piped in: say so rather than wait on the terminal
            raise RicepoError("credit: give a JSON file of one group or a list of groups (or pipe one in)")
        text = sys.stdin.read()
    elif Path(source).is_dir():
        raise RicepoError(f"{source}: a folder, not a JSON file")
    elif not Path(source).is_file():
        raise RicepoError(f"{source}: no such file")
    else:
        text = Path(source).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RicepoError(f"{source}: line {e.lineno}: malformed JSON ({e.msg})") from None


def _print(summary) -> None:
    print(json.dumps(summary))


def _groups(data) -> tuple[list, bool]:
    return (data, True) if isinstance(data, list) else ([data], False)


def cmd_credit(args) -> None:
    from .credit.registry import parse_value

    groups, many = _groups(_read_json_input(args.file))
    if args.select is not None:
        out = jobs.select_anchors(groups, args.select, args.trigger, args.seed)
    elif not args.method:
        raise RicepoError("credit: give --method NAME (or --select K)")
    else:
        params = {}
        for item in args.set or []:
            if "=" not in item:
                raise RicepoError(f"--set {item!r}: expected key=value")
            key, value = item.split("=", 1)
            params[key] = parse_value(value)
        out = jobs.credit(groups, args.method, params)
    _print(out if many else out[0])


def cmd_evaluate(args) -> None:
    _print(jobs.evaluate(args.qrels, args.run, args.excluded, args.out))


def _retriever_args(args):
    """The retriever the flags describe, resolved as a benchmark's `retriever` entry would be
    (flags not given take the config schema's defaults)."""
    from .environments import RetrieverSettings

    given = {"name": args.retriever, "k1": args.k1, "b": args.b, "stemmer": args.stemmer}
    dense_models = {}
    if args.dense_model:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.dense_model)
        dense_models[name] = {"model": args.dense_model, **json.loads(args.dense_settings or "{}")}
        given["dense_model"] = name
    elif args.retriever in ("dense", "hybrid"):
        raise RicepoError(f"--retriever {args.retriever} needs --dense-model (a Hub id, a folder or pkg:PACKAGE/dir)")
    if getattr(args, "dense_weight", None) is not None:
        given["dense_weight"] = {"default": args.dense_weight}
    return RetrieverSettings.resolve({k: v for k, v in given.items() if v is not None}, dense_models)


def cmd_retrieve(args) -> None:
    _print(jobs.retrieve(args.dataset, args.split, args.out, args.k, _retriever_args(args), args.index_root, args.summary, args.shown))


def cmd_index(args) -> None:
    _print(jobs.index(args.dataset, args.out, "dense" if args.retriever == "dense" else "bm25", _retriever_args(args)))


def cmd_data(args) -> None:
    if args.data_cmd == "prepare":
        _print(jobs.prepare(args.benchmark, args.task, json.loads(args.spec), args.out, args.reasonir))
    elif args.data_cmd == "reasonir":
        _print(jobs.reasonir(json.loads(args.spec), args.out))
    elif args.data_cmd == "split":
        _print(jobs.split(args.dataset, args.out, args.benchmark, args.task, args.train, args.test, args.seed, args.train_from))
    elif args.data_cmd == "inspect":
        from .data.inspect import inspect_source

        _print(inspect_source(args.source, args.benchmark, args.task))


def cmd_model(args) -> None:
    if args.model_cmd == "build-gguf":
        _print(jobs.build_gguf(args.source, args.out))
    else:
        _print(jobs.build_tiny(args.corpus, args.out, args.vocab_size, args.hidden_size, args.layers, args.seed))


def _job_spec(args) -> dict:
    """The job's spec (ricepo.layout.job_spec): as JSON, or the file the workflow wrote it to."""
    if args.spec:
        return json.loads(args.spec)
    path = Path(args.spec_file)
    if not path.is_file():
        raise RicepoError(f"--spec-file {path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RicepoError(f"--spec-file {path}: line {e.lineno}: malformed JSON") from None


def cmd_train(args) -> None:
    from .environments import parse_task_args
    from .train.trainer import Restart, Stopped

    try:
        _print(jobs.train(_job_spec(args), parse_task_args(args.task), args.out))
    except Stopped as stopped:
        print(stopped, file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGTERM)
    except Restart as restart:
        print(restart, flush=True)
        sys.stderr.flush()
        # the same command in a new process image: the same pid (Snakemake keeps waiting on it) and environment
        os.execv(sys.executable, [sys.executable, "-m", "ricepo", *sys.argv[1:]])


def cmd_agent_eval(args) -> None:
    from .environments import parse_task_args

    _print(jobs.agent_eval(_job_spec(args), args.model, parse_task_args([args.task]), args.out))


def _config_arguments(p: argparse.ArgumentParser, results: str | bool) -> None:
    """The one way every command takes a configuration: Snakemake's `--configfile` (overlays merged
    over config/config.yaml; a run's config.resolved.json is a complete one), and where the command
    reads a run's results, their folder."""
    p.add_argument(
        "--configfile",
        nargs="+",
        default=[],
        metavar="FILE",
        help="config files (YAML or JSON) merged over config/config.yaml, as given to snakemake; a run's "
        "results/RUN/config.resolved.json is complete and replaces it; none: config/config.yaml alone",
    )
    if results:
        p.add_argument("--results", metavar="DIR", help=f"the run's results folder, {results} (default results/{{run_name}})")


def _configuration(args) -> tuple[dict, Path]:
    """The validated configuration of `--configfile` and its results folder."""
    from .config import load_config

    config = load_config(*args.configfile)
    return config, Path(getattr(args, "results", None) or f"results/{config['run_name']}")


def cmd_report(args) -> None:
    config, results = _configuration(args)
    inputs = [Path(p) for p in args.inputs]
    if args.all_results:
        from .layout import ARTEFACTS

        if args.what not in ARTEFACTS:
            raise RicepoError(f"report {args.what}: --all-results names a table's or figure's result files; give {args.what}'s with --inputs")
        inputs = ARTEFACTS[args.what].inputs(config, results) + inputs
    _print(jobs.report(args.what, config, args.configfile, results, inputs, Path(args.out)))


def cmd_plan(args) -> None:
    from .atomic import write_text
    from .plan import format_plan, plan_config

    config, results = _configuration(args)
    query_files = Path(args.query_files) if args.query_files else None
    if query_files is not None:
        from .plan.lengths import query_file

        tasks = [(b, t) for b, spec in config["benchmarks"].items() if spec for t in spec["tasks"]]
        if not any(query_file(query_files, b, t).exists() for b, t in tasks):
            raise RicepoError(
                f"--query-files {query_files}: no query file of any planned task there "
                "(expected bright/examples/TASK.jsonl or beir/TASK/queries.jsonl)"
            )
    plans = plan_config(config, results, query_files)
    text = format_plan(plans, f"plan {config['run_name']}")
    print(text)
    refused = [p for p in plans if not p.fits]
    if refused:
        raise RicepoError(f"{len(refused)} of {len(plans)} jobs do not fit their GPU; the first: {refused[0].refusal()}")
    if args.out:
        write_text(Path(args.out), text + "\n")


def cmd_check(args) -> None:
    config, _ = _configuration(args)
    summary = jobs.check(config, [Path(p) for p in args.inputs], args.expected, args.out, args.write)
    if summary.get("failed"):
        raise CheckFailed(f"check: {summary['failed']} of {summary['cells']} cells FAIL against {summary['expected']}")
    if args.write:
        _print(summary)


class CheckFailed(Exception):
    """Some cell is outside its tolerance: exit 1 (not bad input)."""


def cmd_config(args) -> None:
    from .layout import runs

    if args.config_cmd == "methods":
        from .credit.registry import describe_methods

        print(describe_methods())
        return
    if args.config_cmd == "defaults":
        from .config import describe_defaults

        print(describe_defaults())
        return
    config, _ = _configuration(args)
    print(json.dumps({"run_name": config["run_name"], "benchmarks": sorted(config["benchmarks"]), "runs": len(runs(config))}))


def cmd_gpu_run(args) -> None:
    from .gpu_slots import exec_on_gpus

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    exec_on_gpus(args.gpus, command)


def _retriever_flags(p: argparse.ArgumentParser, with_weight: bool) -> None:
    """A benchmark's `retriever` settings as flags; one not given takes the config schema's default."""
    p.add_argument("--retriever", choices=["bm25", "dense", "hybrid"], help="default: bm25")
    p.add_argument("--k1", type=float, help="BM25 k1 (default: the config schema's)")
    p.add_argument("--b", type=float, help="BM25 b (default: the config schema's)")
    p.add_argument("--stemmer", choices=["english", "none"], help="BM25 analyzer (default: english)")
    p.add_argument("--dense-model", help="dense encoder: Hub id, folder, or pkg:PACKAGE/dir")
    p.add_argument("--dense-settings", help="encoder settings (pooling, query_prefix, ...) as JSON")
    if with_weight:
        p.add_argument("--dense-weight", type=float, help="weight of the dense score in hybrid fusion (default 0.5)")


class _Version(argparse.Action):
    """`--version`: the source is hashed only when asked, not on every command."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .identity import code_version

        print(f"ricepo {code_version(with_report=True)}")
        parser.exit()


def _spec_arguments(parser: argparse.ArgumentParser, job: str) -> None:
    """What a training or evaluation job reads from the config (ricepo.layout.job_spec)."""
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--spec-file", help=f"the {job}'s spec, a JSON file (the workflow writes results/{{run_name}}/specs/{{train,eval}}/RUN.json)")
    given.add_argument("--spec", help=f"the {job}'s spec as JSON text")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ricepo", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_Version, nargs=0, help="the package version and a hash of its source (what job identities record)")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("credit", help="span advantages of one group (or a list of groups), as JSON")
    c.add_argument("file", nargs="?", default="-", help="JSON group(s); - for stdin")
    c.add_argument("--method", help="a registered method (`ricepo config methods` lists them)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method parameter (repeatable)")
    c.add_argument("--select", type=int, metavar="K", help="print the K anchors RICE-PO would choose")
    c.add_argument(
        "--trigger",
        choices=["entropy", "random"],
        default="entropy",
        help="with --select: anchors by step entropy, or at random (the random-trigger ablation)",
    )
    c.add_argument("--seed", type=int, default=0, help="with --select --trigger random: the draw's seed")
    c.set_defaults(func=cmd_credit)

    e = sub.add_parser("evaluate", help="NDCG@10 of a TREC run (pytrec_eval)")
    e.add_argument("--qrels", required=True, help="BEIR qrels tsv (with header) or TREC qrels")
    e.add_argument("--run", required=True, help="TREC run file")
    e.add_argument("--excluded", help="tsv of `query-id<TAB>corpus-id` pairs removed before scoring")
    e.add_argument("--out", help="also write the JSON to this file (atomically)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("retrieve", help="run a retriever over a canonical dataset, write a TREC run")
    r.add_argument("--dataset", required=True, help="canonical (BEIR layout) dataset folder")
    r.add_argument("--split", default="test", help="the queries of this split (qrels/SPLIT.tsv)")
    r.add_argument("--out", required=True, help="the TREC run file to write")
    r.add_argument("--k", type=int, default=1000, help="documents per query in the run")
    r.add_argument(
        "--index-root",
        help="the dataset's index root (bm25/, dense/<model>/): read where present, "
        "built and kept there where not (default: built in a temporary folder)",
    )
    r.add_argument(
        "--summary",
        choices=list(SUMMARY_BASELINES),
        help="search with the query and a fixed summary: " + "; ".join(f"{k}: {v}" for k, v in SUMMARY_BASELINES.items()),
    )
    r.add_argument(
        "--shown",
        type=int,
        default=3,
        help="with --summary: how many of the query alone's top documents the agent is shown first (rollout.docs_in_observation)",
    )
    _retriever_flags(r, with_weight=True)
    r.set_defaults(func=cmd_retrieve)

    i = sub.add_parser("index", help="build and save one index of a canonical corpus: BM25 or corpus embeddings")
    i.add_argument("--dataset", required=True, help="canonical (BEIR layout) dataset folder")
    i.add_argument("--out", required=True, help="the index folder (index root/bm25 or index root/dense/<model>)")
    _retriever_flags(i, with_weight=False)
    i.set_defaults(func=cmd_index)

    d = sub.add_parser("data", help="prepare, split and inspect datasets")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dp = dsub.add_parser("prepare", help="write one task in the canonical layout")
    dp.add_argument("--benchmark", required=True, help="bright or beir")
    dp.add_argument("--task", required=True, help="a BRIGHT task or a BEIR dataset name")
    dp.add_argument("--spec", required=True, help="the benchmark's config entry, as JSON")
    dp.add_argument("--out", required=True, help="the canonical dataset folder to write")
    dp.add_argument("--reasonir", help="folder written by `ricepo data reasonir` (BRIGHT train queries)")
    dr = dsub.add_parser("reasonir", help="resolve ReasonIR hq against the BRIGHT corpora, per domain")
    dr.add_argument("--spec", required=True, help="the bright config entry, as JSON")
    dr.add_argument("--out", required=True, help="the folder of resolved train queries, one file per domain")
    ds = dsub.add_parser("split", help="build the train/test split of one task, with a manifest")
    ds.add_argument("--dataset", required=True, help="the canonical dataset folder of the task")
    ds.add_argument("--benchmark", required=True, help="bright or beir")
    ds.add_argument("--task", required=True, help="the task (recorded in the manifest)")
    ds.add_argument("--train", type=int, required=True, help="train queries to sample")
    ds.add_argument("--test", type=int, required=True, help="test queries to sample")
    ds.add_argument("--seed", type=int, default=42, help="the sampling seed")
    ds.add_argument("--train-from", default="train", help="source split the train queries are sampled from")
    ds.add_argument("--out", required=True, help="the split folder to write (queries, qrels, manifest)")
    di = dsub.add_parser("inspect", help="print counts of a source (a local folder, hub, or ir_datasets for BEIR)")
    di.add_argument("source", help="a local folder, `hub`, or `ir_datasets` (BEIR)")
    di.add_argument("--benchmark", required=True, choices=["bright", "beir", "reasonir"], help="the source's layout")
    di.add_argument("--task", help="one task or dataset of the source (default: all)")
    d.set_defaults(func=cmd_data)

    m = sub.add_parser("model", help="build the tiny random backbone used by the offline configs")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    mb = msub.add_parser("build-tiny", help="a tiny random Qwen2 with a byte-level tokenizer trained on corpora")
    mb.add_argument("--corpus", nargs="+", required=True, help="corpus.jsonl files to train the tokenizer on")
    mb.add_argument("--out", required=True, help="the model folder to write")
    mb.add_argument("--vocab-size", type=int, default=1024, help="the tokenizer's vocabulary")
    mb.add_argument("--hidden-size", type=int, default=64, help="the model's hidden size")
    mb.add_argument("--layers", type=int, default=2, help="decoder layers")
    mb.add_argument("--seed", type=int, default=0, help="the weights' seed")
    mg = msub.add_parser("build-gguf", help="dequantise a GGUF chat model to a transformers checkpoint")
    mg.add_argument("--source", required=True, help="a .gguf file, or pkg:PACKAGE/file.gguf")
    mg.add_argument("--out", required=True, help="the model folder to write")
    m.set_defaults(func=cmd_model)

    t = sub.add_parser("train", help="train one policy (one benchmark, backbone, method, seed)")
    _spec_arguments(t, "training")
    t.add_argument(
        "--task",
        action="append",
        required=True,
        metavar="TASK=SPLIT_DIR:INDEX_ROOT",
        help="a task to train on: its split folder and index root (repeatable)",
    )
    t.add_argument("--out", required=True, help="the run folder: model/, log.jsonl, validation, state.pt")
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("agent-eval", help="run a policy on a task's test queries; TREC run + NDCG@10")
    _spec_arguments(a, "evaluation")
    a.add_argument("--model", required=True, help="Hub id or folder of the policy")
    a.add_argument("--task", required=True, metavar="TASK=SPLIT_DIR:INDEX_ROOT", help="the task: its split folder and index root")
    a.add_argument("--out", required=True, help="the evaluation folder: run.trec, metrics.json, transcripts")
    a.set_defaults(func=cmd_agent_eval)

    cf = sub.add_parser("config", help="check a configuration as the workflow reads it")
    cfsub = cf.add_subparsers(dest="config_cmd", required=True)
    cc = cfsub.add_parser("check", help="config/config.yaml with FILE(s) merged over it, validated")
    _config_arguments(cc, results=False)
    cfsub.add_parser("methods", help="every registered method: its settings (default, role) and variants")
    cfsub.add_parser("defaults", help="the rollout, train and evaluate settings: default and meaning of each")
    cf.set_defaults(func=cmd_config)

    g = sub.add_parser("gpu-run", help="run a command on GPUs of its own (CUDA_VISIBLE_DEVICES from a slot lock)")
    g.add_argument("--gpus", type=int, required=True, help="GPUs the job needs (the rule's resources.gpu)")
    g.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    g.set_defaults(func=cmd_gpu_run)

    ck = sub.add_parser("check", help="grade every reported cell against config/expected/{run_name}.yaml: OK / OKish / FAIL")
    _config_arguments(ck, results=False)
    ck.add_argument("--inputs", nargs="*", default=[], metavar="FILE", help="the tables' JSON files")
    ck.add_argument("--expected", help="default: config/expected/{run_name}.yaml")
    ck.add_argument("--out", help="also write the verdicts to this file")
    ck.add_argument("--write", action="store_true", help="(re)write the expected file from these tables")
    ck.set_defaults(func=cmd_check)

    pl = sub.add_parser("plan", help="every GPU job's predicted peak memory and GPU-hours; fails if one does not fit")
    _config_arguments(pl, results="for its prepared splits")
    pl.add_argument(
        "--query-files",
        help="where splits are not prepared: a folder with bright/examples/{task}.jsonl and beir/{task}/queries.jsonl (e.g. ../shared/data)",
    )
    pl.add_argument("--out", help="also write the plan to this file")
    pl.set_defaults(func=cmd_plan)

    rp = sub.add_parser("report", help="tables, figures and the HTML report")
    rp.add_argument("what", help="a table or figure target name, or `html`")
    _config_arguments(rp, results="the result files that --inputs and --all-results name")
    rp.add_argument(
        "--inputs",
        nargs="*",
        default=[],
        metavar="FILE",
        help="the files the rule declares: the only files read (a planned run not among them is 'not run')",
    )
    rp.add_argument(
        "--all-results",
        action="store_true",
        help="also read every result file the table or figure reads for this configuration, from the collections its rule "
        "declares below --results (results/RUN/collected/, written by the workflow's collect_* jobs)",
    )
    rp.add_argument("--out", required=True, help="the file to write")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`ricepo config methods | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except RicepoError as e:
        print(f"ricepo: error: {e}", file=sys.stderr)
        return 2
    except CheckFailed as e:
        print(f"ricepo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
