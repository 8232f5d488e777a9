"""`ricepo train`: one (benchmark, backbone, method, seed) training run from a job spec."""

from __future__ import annotations

import json
from pathlib import Path

from ..agent.models import load_backbone
from ..agent.rollout import Agent, RolloutSettings
from ..agent.sampling import TransformersSampler
from ..atomic import atomic_dir, write_text
from ..credit import get_method
from ..environments import RetrieverSettings, load_environment
from ..errors import RicepoError
from ..identity import training_identity
from ..layout import VALIDATION_FILE
from ..memory_meter import limit_heap_growth
from ..plan import check_training_fits
from ..precision import NUMERICS_FILE, numerics, resolve_precision
from .distributed import Parallel
from .trainer import TrainConfig, Trainer
from .validation import Validator, hold_out

# Keys of `train:` that the workflow's launcher reads (train.smk), not the trainer.
LAUNCH_KEYS = ("processes",)


# the job spec's sections a training job reads, whatever its device
JOB_SPEC_KEYS = ("benchmark", "method", "seed", "backbone", "template", "rollout", "train")


def train_config(spec: dict) -> TrainConfig:
    """The trainer's settings from a job spec: its `train:` section and the method's settings
    (defaults, the config's `credit.<method>`, the variant's overlay) split into the credit
    function's and the collector's. A key the trainer does not know, or one it lacks, is an error."""
    credit, rollout = get_method(spec["method"]).settings(spec.get("credit", {}), spec.get("variant"))
    train = {k: v for k, v in spec["train"].items() if k not in LAUNCH_KEYS}
    given = {
        "method": spec["method"],
        "seed": spec["seed"],
        "group_size": spec["rollout"]["group_size"],
        "credit_params": credit,
        "rollout_params": rollout,
        **train,
    }
    fields = set(TrainConfig.__dataclass_fields__)
    if set(given) - fields:
        raise RicepoError(f"job spec: unknown train key(s) {', '.join(sorted(set(given) - fields))}")
    if fields - set(given):
        raise RicepoError(f"job spec: train lacks {', '.join(sorted(fields - set(given)))}")
    return TrainConfig(**given)


def run_training(spec: dict, tasks: dict[str, tuple[Path, Path]], out_dir: str | Path) -> list[dict]:
    # checked on every device: the GPU's memory check reads them too, and no CPU run would notice
    missing = [k for k in JOB_SPEC_KEYS if k not in spec]
    if missing:
        raise RicepoError(f"job spec lacks {', '.join(missing)} (layout.job_spec writes each)")
    if get_method(spec["method"]).rollout is None:
        raise RicepoError(f"method {spec['method']!r} has nothing to train: evaluate the backbone directly")
    limit_heap_growth()
    envs, queries = {}, []
    retriever = RetrieverSettings.resolve(spec.get("retriever"), spec.get("dense_models"))
    for task, (split_dir, index_dir) in tasks.items():
        env, split_queries = load_environment(task, split_dir, index_dir, "train", retriever)
        if not split_queries:
            raise RicepoError(f"{Path(split_dir) / 'qrels' / 'train.tsv'}: no train queries for task {task!r} (check split_counts)")
        envs[task] = env
        queries += [(task, qid, q["text"]) for qid, q in split_queries.items()]
    cfg = train_config(spec)
    queries, held_out = hold_out(queries, cfg.validation_queries)
    par = Parallel.start(cfg.distributed)  # one process, or one of those `accelerate launch` started
    acc = par.acc
    if acc.device.type == "cuda":  # refused here, before the model is loaded, if the plan says it cannot fit
        import torch

        free, _ = torch.cuda.mem_get_info(acc.device)
        job = check_training_fits(spec, envs, [text for _, _, text in queries], free / 2**30, torch.cuda.get_device_name(acc.device))
        if acc.is_main_process:
            print(f"plan: {job.peak_gib:.1f} GiB predicted at the {job.phase} peak, {job.capacity_gib:.1f} GiB free", flush=True)
    precision = resolve_precision(cfg.precision, acc.device)
    if acc.is_main_process:
        print(f"training processes: {acc.num_processes}" + (f" ({cfg.distributed})" if acc.num_processes > 1 else ""), flush=True)
        print(precision.describe(), flush=True)
    model, tokenizer = load_backbone(spec["backbone"]["model"], device=acc.device)  # float32 master weights
    # under FSDP the policy is sharded: the sampler keeps a whole copy, whatever the precision
    settings = RolloutSettings.from_config(spec["rollout"])
    sampler = TransformersSampler(model, tokenizer, precision.sampler_dtype, separate=par.fsdp, compile=settings.compile)
    agent = Agent(sampler, tokenizer, spec["template"], settings)
    validator = None
    if held_out:  # the same sampler, with the test-time settings
        test_settings = RolloutSettings.for_evaluation(spec["rollout"], spec["evaluate"]["decoding"], spec["backbone"].get("generation", {}))
        validator = Validator(
            Agent(sampler, tokenizer, spec["template"], test_settings), envs, held_out, spec["evaluate"]["slots"], spec["evaluate"]["restate_overlap"]
        )
    if acc.is_main_process:
        print(sampler.describe(), flush=True)
    out_dir = Path(out_dir)
    trainer = Trainer(
        model,
        tokenizer,
        agent,
        envs,
        queries,
        cfg,
        out_dir,
        identity=training_identity(spec, tasks, retriever.parts),
        precision=precision,
        parallel=par,
        validator=validator,
        run_name=str(out_dir),
    )
    log = trainer.fit()
    weights = par.full_state_dict(trainer.model)
    if acc.is_main_process:
        with atomic_dir(out_dir / "model") as tmp:
            par.unwrap(trainer.model).save_pretrained(tmp, state_dict=weights)
            tokenizer.save_pretrained(tmp)
            (Path(tmp) / NUMERICS_FILE).write_text(json.dumps(numerics(precision), indent=2))
        write_text(out_dir / "log.jsonl", "".join(json.dumps(record) + "\n" for record in log))
        write_text(out_dir / VALIDATION_FILE, "".join(json.dumps(v) + "\n" for v in trainer.validation))
    acc.wait_for_everyone()
    return log
