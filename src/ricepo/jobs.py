"""One function per workflow job: what `ricepo VERB` does once its arguments are parsed.

The Snakemake rules call these through `cli.py`, which only parses arguments; each function
returns the summary the command prints (a dict, written as one JSON line).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_text
from .config import snakemake_command
from .errors import RicepoError

if TYPE_CHECKING:
    from .environments import RetrieverSettings


def credit(groups: list[dict], method: str, params: dict) -> list[dict]:
    """Span advantages of each group (`ricepo credit`)."""
    from .credit import compute_credit

    return [compute_credit(method, g, **params) for g in groups]


def select_anchors(groups: list[dict], k: int, trigger: str, seed: int) -> list:
    """The anchors RICE-PO would choose in each group (`ricepo credit --select K`)."""
    from .credit.ricepo import select_anchors as select

    return [select(g, k, trigger, seed) for g in groups]


def evaluate(qrels: Path, run: Path, excluded: Path | None = None, out: Path | None = None) -> dict:
    """NDCG@10 of a TREC run (rule bm25_baseline, second half)."""
    from .data.canonical import read_qrels
    from .data.trec import read_excluded, read_run
    from .metrics import evaluate_run

    result = evaluate_run(read_qrels(qrels), read_run(run), read_excluded(excluded) if excluded else {})
    if out:
        write_text(out, json.dumps(result) + "\n")
    return result


def index(dataset: Path, out: Path, part: str, settings: RetrieverSettings) -> dict:
    """One index of a canonical corpus: BM25 or corpus embeddings (rules bm25_index, dense_index)."""
    from .data.canonical import read_corpus
    from .environments import build_index

    t0 = time.time()
    corpus = read_corpus(Path(dataset) / "corpus.jsonl")
    info = build_index(corpus, part, settings, Path(out))
    return {**info, "seconds": round(time.time() - t0, 2)}


def retrieve(
    dataset: Path,
    split: str,
    out: Path,
    k: int,
    settings: RetrieverSettings,
    index_root: Path | None = None,
    summary: str | None = None,
    shown: int = 3,
) -> dict:
    """A retriever alone over a split's queries, as a TREC run (rules bm25_baseline and
    summary_baseline, first half): with the query text, or with `summary` (summary_baselines.KINDS)
    the query and a fixed summary, as the agent retrieves with query and summary; `shown`: how many
    of the query alone's top documents the agent sees first. Where a kind offers several summaries
    the best-scoring search is kept (ties: the first). Indexes missing under `index_root` are built
    and kept there; with no root they are built in a temporary folder."""
    from .data.canonical import Dataset
    from .data.trec import without_excluded, write_run
    from .environments import make_retriever
    from .metrics import ndcg10_single
    from .summary_baselines import candidate_summaries

    t0 = time.time()
    ds = Dataset(dataset)
    queries = ds.split_queries(split)
    judged = ds.qrels.get(split, {})
    with tempfile.TemporaryDirectory() as scratch:
        searcher = make_retriever(Path(index_root or scratch), "", settings, corpus=ds.corpus)
        # the widest exclusion list is fetched on top of k, so every query keeps k documents once filtered
        widest = max((len(ds.excluded.get(q, ())) + 1 for q in queries), default=0)

        def search(texts: dict[str, str]) -> dict[str, list]:
            found = searcher.search_many(list(texts.values()), k + widest)
            return {qid: without_excluded(qid, ranking, ds.excluded)[:k] for qid, ranking in zip(texts, found)}

        run = search({qid: q["text"] for qid, q in queries.items()})
        if summary:
            options = {qid: candidate_summaries(summary, judged.get(qid, {}), [d for d, _ in run[qid][:shown]], ds.corpus) for qid in queries}
            best: dict[str, tuple[float, list]] = {}
            for j in range(max(map(len, options.values()), default=0)):
                for qid, ranking in search({q: f"{queries[q]['text']} {o[j]}" for q, o in options.items() if len(o) > j}).items():
                    score = ndcg10_single(judged.get(qid, {}), ranking[:10])
                    if qid not in best or score > best[qid][0]:
                        best[qid] = (score, ranking)
            run.update({qid: ranking for qid, (_, ranking) in best.items()})  # a query with nothing shown keeps its own
    tag = settings.tag
    write_run(out, run, tag)
    return {"queries": len(run), "retriever": tag, "summary": summary, "out": str(out), "seconds": round(time.time() - t0, 2)}


def prepare(benchmark: str, task: str, spec: dict, out: Path, reasonir: Path | None = None) -> dict:
    """One task of a benchmark in the canonical layout (rule prepare_data)."""
    from .data.prepare import prepare as prepare_task

    return prepare_task(benchmark, task, spec, out, reasonir)


def reasonir(spec: dict, out: Path) -> dict:
    """ReasonIR hq resolved against the BRIGHT corpora, per domain (rule prepare_reasonir)."""
    from .data.prepare import prepare_reasonir

    return prepare_reasonir(spec, out)


def split(dataset: Path, out: Path, benchmark: str, task: str, train: int, test: int, seed: int, train_from: str) -> dict:
    """A task's train/test split with its manifest (rule split)."""
    from .data.splits import build_split

    manifest = build_split(dataset, out, benchmark=benchmark, task=task, counts={"train": train, "test": test}, seed=seed, train_from=train_from)
    return {k: manifest[k] for k in ("benchmark", "task", "counts", "judgments")}


def build_tiny(corpora: list[Path], out: Path, vocab_size: int, hidden_size: int, layers: int, seed: int) -> dict:
    """The tiny random backbone of the offline configs, its tokenizer trained on the corpora
    (rule build_tiny_backbone)."""
    from .agent.models import build_tiny_backbone
    from .data.canonical import read_corpus
    from .retrieval.bm25 import doc_text

    texts = [doc_text(d) for path in corpora for d in read_corpus(path).values()]
    return build_tiny_backbone(out, texts, vocab_size=vocab_size, hidden_size=hidden_size, layers=layers, seed=seed)


def build_gguf(source: str, out: Path) -> dict:
    """A GGUF chat model dequantised to a transformers checkpoint (rule build_gguf_backbone)."""
    from .agent.models import build_from_gguf

    return build_from_gguf(source, out)


def train(spec: dict, tasks: dict[str, tuple[Path, Path]], out: Path) -> dict:
    """One policy: one benchmark, backbone, method, variant and seed (rule train)."""
    from .train.run import run_training

    log = run_training(spec, tasks, out)
    return {"steps": len(log), "first_reward": log[0]["reward_mean"], "last_reward": log[-1]["reward_mean"]}


def agent_eval(spec: dict, model: str, tasks: dict[str, tuple[Path, Path]], out: Path) -> dict:
    """A policy on one task's test queries: TREC run, transcripts and NDCG@10 (rule agent_eval)."""
    from .evaluate.agent_eval import run_agent_eval

    if len(tasks) != 1:
        raise RicepoError(f"agent-eval evaluates one task at a time, got {len(tasks)}")
    ((task, (split_dir, index_dir)),) = tasks.items()
    result = run_agent_eval(spec, model, task, split_dir, index_dir, out)
    return {k: result[k] for k in ("ndcg_cut_10", "n_queries", "parseable_rate")}


def report(what: str, config: dict, config_files: list[str], results: Path, inputs: list[Path], out: Path) -> dict:
    """One table, one figure or the HTML page from the files the rule declares (rules table,
    figure, report)."""
    from .report import build

    build.run(what, config=config, config_files=config_files, results=results, inputs=inputs, out=out)
    return {"built": what, "out": str(out), "inputs": len(inputs)}


def check(config: dict, inputs: list[Path], expected: Path | None = None, out: Path | None = None, write: bool = False) -> dict:
    """Grade every reported cell against config/expected/{run_name}.yaml (rule check); with
    `write`, (re)write that file from these tables instead."""
    from .report import check as grading

    run_name = config["run_name"]
    path = Path(expected) if expected else grading.expected_file(run_name)
    tables = grading.read_tables(inputs)
    if write:
        command = snakemake_command(run_name, "reproduce_all")
        n = grading.write_expected(tables, path, run_name, grading.measured_source(command))
        return {"written": str(path), "cells": n}
    expected = grading.load_expected(path)
    verdicts = grading.check(tables, expected)
    lines = grading.render_lines(verdicts, run_name)
    lines[-1:-1] = grading.numerics_lines(expected, grading.run_numerics(tables))  # before the count
    print("\n".join(lines), flush=True)
    if out:
        write_text(out, "\n".join(lines) + "\n")
    failed = sum(v["status"] == "FAIL" for v in verdicts)
    return {"cells": len(verdicts), "failed": failed, "expected": str(path)}
