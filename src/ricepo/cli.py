"""`ricepo VERB ...`: the commands the Snakemake rules (and people) call.

Expected failures (bad input, missing files, offline hub) print one line `ricepo: error: ...`
and exit 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import RicepoError


def _read_json_input(source: str):
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RicepoError(f"{source}: line {e.lineno}: malformed JSON ({e.msg})") from None


def cmd_credit(args) -> None:
    from .credit import compute_credit
    from .credit.registry import parse_value

    data = _read_json_input(args.file)
    if args.select is not None:
        from .credit.ricepo import select_anchors
        groups = data if isinstance(data, list) else [data]
        out = [select_anchors(g, args.select, args.trigger, args.seed) for g in groups]
        print(json.dumps(out if isinstance(data, list) else out[0]))
        return
    if not args.method:
        raise RicepoError("credit: give --method NAME (or --select K)")
    params = {}
    for item in args.set or []:
        if "=" not in item:
            raise RicepoError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        params[key] = parse_value(value)
    groups = data if isinstance(data, list) else [data]
    out = [compute_credit(args.method, g, **params) for g in groups]
    print(json.dumps(out if isinstance(data, list) else out[0]))


def cmd_evaluate(args) -> None:
    from .data.canonical import read_qrels
    from .data.trec import read_excluded, read_run
    from .evaluate.metrics import evaluate_run

    excluded = read_excluded(args.excluded) if args.excluded else {}
    result = json.dumps(evaluate_run(read_qrels(args.qrels), read_run(args.run), excluded))
    if args.out:
        from .atomic import write_text
        write_text(args.out, result + "\n")
    print(result)


def _dense_index(args, corpus):
    from .retrieval.dense import DenseIndex, settings_for

    if not args.dense_model:
        raise RicepoError(f"--retriever {args.retriever} needs --dense-model (a Hub id, a folder or pkg:PACKAGE/dir)")
    settings = settings_for(args.dense_model, **json.loads(getattr(args, "dense_settings", None) or "{}"))
    if args.dense_index and Path(args.dense_index, "encoder.json").exists():
        return DenseIndex.load(args.dense_index, expect=settings)
    index = DenseIndex.build(corpus, settings)
    if args.dense_index:
        index.save(args.dense_index)
    return index


def cmd_retrieve(args) -> None:
    from .data.canonical import Dataset
    from .data.trec import removed_for, write_run
    from .retrieval.bm25 import BM25Index
    from .retrieval.dense import HybridRetriever

    t0 = time.time()
    ds = Dataset(args.dataset)
    queries = ds.split_queries(args.split)
    if args.retriever in ("bm25", "hybrid"):
        bm25 = BM25Index.load(args.index) if args.index else BM25Index.build(ds.corpus, args.k1, args.b, args.stemmer)
    if args.retriever == "bm25":
        # the index's own parameters: a saved index was built with the config's, not argparse's
        retriever, tag = bm25, f"bm25-k1={bm25.model.k1}-b={bm25.model.b}-{bm25.stemmer}"
    elif args.retriever == "dense":
        retriever, tag = _dense_index(args, ds.corpus), f"dense-{Path(args.dense_model).name}"
    else:
        retriever = HybridRetriever(bm25, _dense_index(args, ds.corpus), args.dense_weight)
        tag = f"hybrid-w={args.dense_weight}-{Path(args.dense_model).name}"
    drops = {qid: removed_for(qid, ds.excluded) for qid in queries}
    widest = max((len(d) for d in drops.values()), default=0)
    if hasattr(retriever, "search_many"):
        rankings = retriever.search_many([q["text"] for q in queries.values()], args.k + widest)
    else:
        rankings = [retriever.search(q["text"], args.k + widest) for q in queries.values()]
    run = {qid: [(d, s) for d, s in ranking if d not in drops[qid]][: args.k]
           for qid, ranking in zip(queries, rankings)}
    write_run(args.out, run, tag)
    print(json.dumps({"queries": len(run), "retriever": tag, "out": args.out, "seconds": round(time.time() - t0, 2)}))


def cmd_index(args) -> None:
    from .data.canonical import read_corpus
    from .retrieval.bm25 import BM25Index

    t0 = time.time()
    corpus = read_corpus(Path(args.dataset) / "corpus.jsonl")
    if args.retriever == "dense":
        args.dense_index = args.out
        _dense_index(args, corpus)
        print(json.dumps({"docs": len(corpus), "dense_model": args.dense_model, "seconds": round(time.time() - t0, 2)}))
        return
    BM25Index.build(corpus, args.k1, args.b, args.stemmer).save(args.out)
    print(json.dumps({"docs": len(corpus), "k1": args.k1, "b": args.b, "stemmer": args.stemmer,
                      "seconds": round(time.time() - t0, 2)}))


def cmd_data(args) -> None:
    if args.data_cmd == "prepare":
        from .data.prepare import prepare
        print(json.dumps(prepare(args.benchmark, args.task, json.loads(args.spec), args.out, args.reasonir)))
    elif args.data_cmd == "reasonir":
        from .data.prepare import prepare_reasonir
        print(json.dumps(prepare_reasonir(json.loads(args.spec), args.out)))
    elif args.data_cmd == "split":
        from .data.splits import build_split
        manifest = build_split(args.dataset, args.out, benchmark=args.benchmark, task=args.task,
                               counts={"train": args.train, "test": args.test}, seed=args.seed,
                               train_from=args.train_from)
        print(json.dumps({k: manifest[k] for k in ("benchmark", "task", "counts", "judgments")}))
    elif args.data_cmd == "inspect":
        from .data.inspect import inspect_source
        print(json.dumps(inspect_source(args.source, args.benchmark, args.task)))


def cmd_model(args) -> None:
    from .agent.models import build_from_gguf, build_tiny_backbone
    from .data.canonical import read_corpus
    from .retrieval.bm25 import doc_text

    if args.model_cmd == "build-gguf":
        print(json.dumps(build_from_gguf(args.source, args.out)))
        return

    texts = []
    for path in args.corpus:
        texts += [doc_text(d) for d in read_corpus(path).values()]
    info = build_tiny_backbone(args.out, texts, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                               layers=args.layers, seed=args.seed)
    print(json.dumps(info))


def cmd_train(args) -> None:
    from .environments import parse_task_args
    from .train.run import run_training

    log = run_training(json.loads(args.spec), parse_task_args(args.task), args.out)
    print(json.dumps({"steps": len(log), "first_reward": log[0]["reward_mean"], "last_reward": log[-1]["reward_mean"]}))


def cmd_agent_eval(args) -> None:
    from .environments import parse_task_args
    from .evaluate.agent_eval import run_agent_eval

    (task, (split_dir, index_dir)), = parse_task_args([args.task]).items()
    result = run_agent_eval(json.loads(args.spec), args.model, task, split_dir, index_dir, args.out,
                            batch_size=args.batch_size)
    print(json.dumps({k: result[k] for k in ("ndcg_cut_10", "n_queries", "parseable_rate")}))


def cmd_report(args) -> None:
    from .report import build

    config = json.loads(Path(args.config_json).read_text()) if args.config_json else None
    results = Path(args.results) if args.results else Path(args.config_json or ".").parent
    build.run(args.what, config=config, results=results, out=Path(args.out))


def cmd_config(args) -> None:
    from .config import load_config
    from .layout import runs

    if args.config_cmd == "methods":
        from .credit.registry import describe_methods
        print(describe_methods())
        return
    config = load_config(*args.files)
    print(json.dumps({"run_name": config["run_name"], "benchmarks": sorted(config["benchmarks"]),
                      "runs": len(runs(config))}))


def cmd_gpu_run(args) -> None:
    from .gpu_slots import exec_on_gpus

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    exec_on_gpus(args.gpus, command)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ricepo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("credit", help="span advantages of one group (or a list of groups), as JSON")
    c.add_argument("file", nargs="?", default="-", help="JSON group(s); - for stdin")
    c.add_argument("--method", help="grpo | gigpo | hgpo | tree_grpo | ricepo")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method parameter (repeatable)")
    c.add_argument("--select", type=int, metavar="K", help="print the K anchors RICE-PO would choose")
    c.add_argument("--trigger", choices=["entropy", "random"], default="entropy")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_credit)

    e = sub.add_parser("evaluate", help="NDCG@10 of a TREC run (pytrec_eval)")
    e.add_argument("--qrels", required=True, help="BEIR qrels tsv (with header) or TREC qrels")
    e.add_argument("--run", required=True, help="TREC run file")
    e.add_argument("--excluded", help="tsv of `query-id<TAB>corpus-id` pairs removed before scoring")
    e.add_argument("--out", help="also write the JSON to this file (atomically)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("retrieve", help="run a retriever over a canonical dataset, write a TREC run")
    r.add_argument("--dataset", required=True, help="canonical (BEIR layout) dataset folder")
    r.add_argument("--split", default="test")
    r.add_argument("--retriever", default="bm25", choices=["bm25", "dense", "hybrid"])
    r.add_argument("--out", required=True)
    r.add_argument("--k", type=int, default=1000)
    r.add_argument("--index", help="a saved BM25 index (built on the fly if absent)")
    r.add_argument("--k1", type=float, default=0.9)
    r.add_argument("--b", type=float, default=0.4)
    r.add_argument("--stemmer", default="english", choices=["english", "none"])
    r.add_argument("--dense-model", help="dense encoder: Hub id, folder, or pkg:PACKAGE/dir")
    r.add_argument("--dense-index", help="folder caching the corpus embeddings (written if absent)")
    r.add_argument("--dense-weight", type=float, default=0.5, help="weight of the dense score in hybrid fusion")
    r.set_defaults(func=cmd_retrieve)

    i = sub.add_parser("index", help="build and save a BM25 index of a canonical corpus")
    i.add_argument("--dataset", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--k1", type=float, default=0.9)
    i.add_argument("--b", type=float, default=0.4)
    i.add_argument("--stemmer", default="english", choices=["english", "none"])
    i.add_argument("--retriever", default="bm25", choices=["bm25", "dense"])
    i.add_argument("--dense-model", help="dense encoder: Hub id, folder, or pkg:PACKAGE/dir")
    i.add_argument("--dense-settings", help="encoder settings (pooling, query_prefix, ...) as JSON")
    i.set_defaults(func=cmd_index)

    d = sub.add_parser("data", help="prepare, split and inspect datasets")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dp = dsub.add_parser("prepare", help="write one task in the canonical layout")
    dp.add_argument("--benchmark", required=True)
    dp.add_argument("--task", required=True)
    dp.add_argument("--spec", required=True, help="the benchmark's config entry, as JSON")
    dp.add_argument("--out", required=True)
    dp.add_argument("--reasonir", help="folder written by `ricepo data reasonir` (BRIGHT train queries)")
    dr = dsub.add_parser("reasonir", help="resolve ReasonIR hq against the BRIGHT corpora, per domain")
    dr.add_argument("--spec", required=True, help="the bright config entry, as JSON")
    dr.add_argument("--out", required=True)
    ds = dsub.add_parser("split", help="build the train/test split of one task, with a manifest")
    ds.add_argument("--dataset", required=True)
    ds.add_argument("--benchmark", required=True)
    ds.add_argument("--task", required=True)
    ds.add_argument("--train", type=int, required=True)
    ds.add_argument("--test", type=int, required=True)
    ds.add_argument("--seed", type=int, default=42)
    ds.add_argument("--train-from", default="train", help="source split the train queries are sampled from")
    ds.add_argument("--out", required=True)
    di = dsub.add_parser("inspect", help="print counts of a source (a local folder, or hub)")
    di.add_argument("source")
    di.add_argument("--benchmark", required=True, choices=["bright", "beir", "reasonir"])
    di.add_argument("--task")
    d.set_defaults(func=cmd_data)

    m = sub.add_parser("model", help="build the tiny random backbone used by the offline configs")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    mb = msub.add_parser("build-tiny")
    mb.add_argument("--corpus", nargs="+", required=True, help="corpus.jsonl files to train the tokenizer on")
    mb.add_argument("--out", required=True)
    mb.add_argument("--vocab-size", type=int, default=1024)
    mb.add_argument("--hidden-size", type=int, default=64)
    mb.add_argument("--layers", type=int, default=2)
    mb.add_argument("--seed", type=int, default=0)
    mg = msub.add_parser("build-gguf", help="dequantise a GGUF chat model to a transformers checkpoint")
    mg.add_argument("--source", required=True, help="a .gguf file, or pkg:PACKAGE/file.gguf")
    mg.add_argument("--out", required=True)
    m.set_defaults(func=cmd_model)

    t = sub.add_parser("train", help="train one policy (one benchmark, backbone, method, seed)")
    t.add_argument("--spec", required=True, help="job spec JSON (see workflow/rules/common.smk)")
    t.add_argument("--task", action="append", required=True, metavar="TASK=SPLIT_DIR:INDEX_ROOT")
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("agent-eval", help="run a policy on a task's test queries; TREC run + NDCG@10")
    a.add_argument("--spec", required=True)
    a.add_argument("--model", required=True, help="Hub id or folder of the policy")
    a.add_argument("--task", required=True, metavar="TASK=SPLIT_DIR:INDEX_ROOT")
    a.add_argument("--out", required=True)
    a.add_argument("--batch-size", type=int, default=16)
    a.set_defaults(func=cmd_agent_eval)

    cf = sub.add_parser("config", help="check a configuration as the workflow reads it")
    cfsub = cf.add_subparsers(dest="config_cmd", required=True)
    cc = cfsub.add_parser("check", help="config/config.yaml with FILE(s) merged over it, validated")
    cc.add_argument("files", nargs="*", metavar="FILE", help="overlay configs, as given to --configfile")
    cfsub.add_parser("methods", help="every registered method: its settings (default, role) and variants")
    cf.set_defaults(func=cmd_config)

    g = sub.add_parser("gpu-run", help="run a command on GPUs of its own (CUDA_VISIBLE_DEVICES from a slot lock)")
    g.add_argument("--gpus", type=int, required=True, help="GPUs the job needs (the rule's resources.gpus)")
    g.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    g.set_defaults(func=cmd_gpu_run)

    rp = sub.add_parser("report", help="tables, figures and the HTML report")
    rp.add_argument("what", help="a table or figure target name, or `html`")
    rp.add_argument("--config-json", help="the validated config as a JSON file")
    rp.add_argument("--results", help="the results folder (default: the one holding --config-json)")
    rp.add_argument("--out", required=True)
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RicepoError as e:
        print(f"ricepo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
