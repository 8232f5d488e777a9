"""`ricepo agent-eval`: run a policy (trained, or the untrained backbone for prompting) on test
queries with the training rollout code, write the TREC run of the final retrieval and NDCG@10."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from ..agent.models import load_backbone, pick_device
from ..agent.rollout import Agent, RolloutSettings
from ..agent.sampling import TransformersSampler, cast_parameters
from ..atomic import write_text
from ..data.trec import write_run
from ..environments import RetrieverSettings, load_environment
from ..errors import RicepoError
from ..metrics import evaluate_run
from ..precision import NUMERICS_FILE, numerics, resolve_precision
from ..summaries import shares_versus_alone, summary_figures, unchanged_rate


def run_agent_eval(spec: dict, model_path: str, task: str, split_dir: Path, index_dir: Path, out_dir: str | Path, keep_transcripts: int = 5) -> dict:
    out_dir = Path(out_dir)
    retriever = RetrieverSettings.resolve(spec.get("retriever"), spec.get("dense_models"))
    env, queries = load_environment(task, split_dir, index_dir, "test", retriever)
    if not queries:
        raise RicepoError(f"{Path(split_dir) / 'qrels' / 'test.tsv'}: no test queries to evaluate (check split_counts)")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    precision = resolve_precision(spec["train"]["precision"], device)
    print(precision.describe(), flush=True)
    # the weights sampling runs in training are what evaluation runs (bf16 under bf16-mixed)
    model, tokenizer = load_backbone(model_path, device=device)
    settings = RolloutSettings.for_evaluation(spec["rollout"], spec["evaluate"]["decoding"], spec["backbone"].get("generation", {}))
    sampler = TransformersSampler(cast_parameters(model, precision.sampler_dtype).eval(), tokenizer, compile=settings.compile)
    agent = Agent(sampler, tokenizer, spec["template"], settings)
    generator = torch.Generator(device=device).manual_seed(spec["seed"])
    run, transcripts, steps, by_query = {}, [], [], {}
    jobs = [(qid, task, qid, q["text"]) for qid, q in queries.items()]
    slots = spec["evaluate"]["slots"]
    print(f"{sampler.describe()}; {slots} slots, continuous batching", flush=True)
    for t in tqdm(agent.stream(jobs, {task: env}, generator, slots), total=len(jobs), desc=f"eval {task}", mininterval=5):
        run[t.query_id] = t.final_ranking
        steps += t.steps
        by_query[t.query_id] = (t.query, t.steps)
        if len(transcripts) < keep_transcripts:
            transcripts.append(
                {
                    "query_id": t.query_id,
                    "query": t.query,
                    "transcript": tokenizer.decode(t.tokens[t.segments[0].end :]),
                    "final_reward": t.final_reward,
                }
            )
    tag = f"{spec['method']}-{spec['seed']}"
    write_run(out_dir / "run.trec", run, tag)
    result = evaluate_run(env.qrels, {q: dict(r) for q, r in run.items()}, env.excluded)
    result["parseable_rate"] = sum(s.parseable for s in steps) / max(1, len(steps))
    result.update(summary_figures(by_query, spec["evaluate"]["restate_overlap"]))
    alone = dict(zip(run, env.rankings_for([(qid, by_query[qid][0]) for qid in run])))  # cached: the first prompts'
    result["unchanged_rate"] = unchanged_rate(run, alone)
    result.update(shares_versus_alone(result["per_query"], {q: env.score(q, alone[q]) for q in result["per_query"]}))
    result["model"] = model_path
    result["precision"] = precision.name
    result["numerics"] = numerics(precision)
    trained_under = Path(model_path) / NUMERICS_FILE
    if trained_under.exists():
        result["training_numerics"] = json.loads(trained_under.read_text())
    write_text(out_dir / "transcripts.jsonl", "".join(json.dumps(row) + "\n" for row in transcripts))
    write_text(out_dir / "metrics.json", json.dumps(result, indent=2))
    return result
