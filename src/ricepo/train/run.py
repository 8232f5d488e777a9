"""`ricepo train`: one (benchmark, backbone, method, seed) training run from a job spec."""
from __future__ import annotations

import json
from pathlib import Path

from ..agent.models import load_backbone
from ..agent.rollout import Agent, RolloutSettings
from ..agent.sampling import TransformersSampler
from ..atomic import atomic_dir, write_text
from ..environments import BM25_ONLY, index_parts, load_environment
from ..errors import RicepoError
from ..identity import training_identity
from ..precision import resolve_precision
from .collect import ROLLOUT_KEYS
from .distributed import make_accelerator
from .trainer import TrainConfig, Trainer


def train_config(spec: dict) -> TrainConfig:
    """The trainer's settings from a job spec: the method's `credit` options split into the credit
    function's and the collector's, the ablation variant added to the former."""
    method, variant = spec["method"], spec.get("variant")
    keys = TrainConfig.__dataclass_fields__
    options = dict(spec.get("credit", {}))
    rollout_params = {k: options.pop(k) for k in ROLLOUT_KEYS.get(method, ()) if k in options}
    if variant:
        options["variant"] = variant
    return TrainConfig(method=method, group_size=spec["rollout"]["group_size"], seed=spec["seed"],
                       credit_params=options, rollout_params=rollout_params,
                       **{k: v for k, v in spec["train"].items() if k in keys})


def run_training(spec: dict, tasks: dict[str, tuple[Path, Path]], out_dir: str | Path) -> list[dict]:
    if spec["method"] == "prompting":
        raise RicepoError("method 'prompting' has nothing to train: evaluate the backbone directly")
    envs, queries = {}, []
    for task, (split_dir, index_dir) in tasks.items():
        env, split_queries = load_environment(task, split_dir, index_dir, "train", spec.get("retriever"),
                                                    spec.get("dense_models"))
        if not split_queries:
            raise RicepoError(f"{Path(split_dir) / 'qrels' / 'train.tsv'}: no train queries for task {task!r} "
                              "(check split_counts)")
        envs[task] = env
        queries += [(task, qid, q["text"]) for qid, q in split_queries.items()]
    cfg = train_config(spec)
    acc = make_accelerator()   # one process, or one of those `accelerate launch` started
    precision = resolve_precision(cfg.precision, acc.device)
    if acc.is_main_process:
        print(precision.describe(), flush=True)
    model, tokenizer = load_backbone(spec["backbone"]["model"], device=acc.device)   # float32 master weights
    sampler = TransformersSampler(model, tokenizer, precision.sampler_dtype)
    agent = Agent(sampler, tokenizer, spec["template"], RolloutSettings.from_config(spec["rollout"]))
    out_dir = Path(out_dir)
    trainer = Trainer(model, tokenizer, agent, envs, queries, cfg, out_dir,
                      identity=training_identity(spec, tasks, index_parts(spec.get("retriever") or BM25_ONLY)),
                      precision=precision, accelerator=acc)
    log = trainer.fit()
    weights = acc.get_state_dict(trainer.model)
    if acc.is_main_process:
        with atomic_dir(out_dir / "model") as tmp:
            acc.unwrap_model(trainer.model).save_pretrained(tmp, state_dict=weights)
            tokenizer.save_pretrained(tmp)
        write_text(out_dir / "log.jsonl", "".join(json.dumps(record) + "\n" for record in log))
    acc.wait_for_everyone()
    return log
