"""Every GPU job of a configuration planned, printed, and refused before it starts when it does not fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RicepoError
from .arch import load_arch, read_arch
from .lengths import Lengths, measure_lengths, query_file, split_texts, tokenizer_of
from .memory import GIB, corpus_docs, eval_memory, gib, index_memory, most_rows, retriever_bytes, smallest_processes, train_memory, train_peak_gib
from .shape import TrainShape, train_shape
from .timing import Rates, eval_seconds, load_calibration, train_seconds

# The GPU check (scripts/paper_step.py --check) accepts a measured peak up to this fraction above
# the plan's. A job is planned to fit only with that headroom, so that a plan the check accepts
# cannot run out of memory.
PLAN_ERROR = 0.10


def usable_gib(free_gib: float) -> float:
    """What a job may be planned to take of `free_gib` GiB of GPU memory."""
    return free_gib / (1 + PLAN_ERROR)


@dataclass
class JobPlan:
    job: str  # e.g. train bright/r1_distill_qwen_1p5b/grpo seed 0
    kind: str  # train | agent_eval | dense_index
    gpu: str
    capacity_gib: float  # usable_gib of the GPU's memory less the reserve
    parts: dict[str, float]  # component -> GiB at the peak phase
    phase: str  # which phase peaks (rollout | update | forward)
    hours: dict[str, tuple[float, str]]  # phase -> (GPU-hours, basis): estimates, from a measured rate or assumed
    lengths_source: str
    advice: list[str] = field(default_factory=list)  # cheapest changes first
    spread: str = ""  # how a training job spreads over its GPUs and the fewest that fit;
    # an evaluation's most slots that fit

    @property
    def gpu_hours(self) -> float:
        return sum(h for h, _ in self.hours.values())

    @property
    def peak_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.peak_gib <= self.capacity_gib

    def refusal(self) -> str:
        fix = self.advice[0] if self.advice else "use a GPU with more memory"
        return (
            f"{self.job}: needs {self.peak_gib:.1f} GiB at its {self.phase} peak, {self.gpu} has "
            f"{self.capacity_gib:.1f} GiB usable; cheapest change: {fix}"
        )


def _gpu(config: dict, backbone: str) -> tuple[str, dict]:
    plan = config["plan"]
    key = plan["backbone_gpu"].get(backbone, plan["gpu"])
    if key not in config["gpus"]:
        raise RicepoError(f"plan: GPU {key!r} (for {backbone}) is not in gpus ({', '.join(sorted(config['gpus']))})")
    return key, config["gpus"][key]


def _capacity(config: dict, gpu: dict) -> float:
    return usable_gib(gpu["memory_gib"] - config["plan"]["reserve_gib"])


def _rates(config: dict, gpu_key: str) -> Rates:
    return Rates(config["gpus"][gpu_key], config["plan"], load_calibration(gpu_key))


def _train_advice(s: TrainShape, need: float, capacity: float) -> list[str]:
    """Changes that make a training job fit, cheapest first (each checked by recomputing): the
    settings that cost no GPU first, then sharding over more GPUs."""
    import dataclasses

    peak = train_peak_gib

    tries = []
    if not s.gradient_checkpointing:
        tries.append(("set train.gradient_checkpointing: true", dataclasses.replace(s, gradient_checkpointing=True)))
    for rows in (64, 32, 16, 8, 4, 2, 1):
        if rows < s.call_rows:
            tries.append((f"set rollout.rows_per_call: {rows}", dataclasses.replace(s, rows_per_call=rows)))
    for tokens in (16384, 8192, 4096, 2048):
        if not s.micro_batch_tokens or tokens < s.micro_batch_tokens:
            tries.append((f"set train.micro_batch_tokens: {tokens}", dataclasses.replace(s, micro_batch_tokens=tokens)))
    for chunk in (512, 256):
        if chunk < s.logprob_chunk_tokens:
            tries.append((f"set train.logprob_chunk_tokens: {chunk}", dataclasses.replace(s, logprob_chunk_tokens=chunk)))
    both = dataclasses.replace(s, micro_batch_tokens=min(s.micro_batch_tokens or 2048, 2048), logprob_chunk_tokens=min(s.logprob_chunk_tokens, 256))
    if both != s:
        tries.append((f"set train.micro_batch_tokens: {both.micro_batch_tokens} and train.logprob_chunk_tokens: {both.logprob_chunk_tokens}", both))
    if s.reference_bytes == 4:
        tries.append(("set train.reference_precision: bf16", dataclasses.replace(s, reference_bytes=2)))
    fitting = [what for what, shape in tries if peak(shape) <= capacity]
    n = smallest_processes(s, capacity)
    if n and n > s.processes:
        fitting.append(f"set train.processes: {n} and train.distributed: fsdp (this backbone's `train:`)")
    return fitting or [
        f"no setting tried fits: {need:.0f} GiB of which {(16 * s.arch.params) / GIB:.0f} GiB is "
        f"weights, gradients and optimizer state; use a larger GPU"
    ]


def plan_config(config: dict, results: Path, query_files: Path | None = None) -> list[JobPlan]:
    """Every GPU job of `config`: each training run, each (run, task) evaluation, each dense index."""
    from ..layout import backbone_settings, runs, template, train_tasks

    splits = results / "splits"
    plans, archs, lens_cache, evaluations = [], {}, {}, {}

    def _retriever(benchmark: str, tasks: list[str]) -> dict:
        return retriever_bytes(
            config["benchmarks"][benchmark]["retriever"],
            config["dense_models"],
            {t: corpus_docs(splits / benchmark / t, benchmark, t) for t in tasks},
        )

    def lens_for(benchmark: str, tasks: list[str], split: str, backbone: str) -> Lengths:
        key = (benchmark, tuple(tasks), split, backbone)
        if key not in lens_cache:
            queries, docs, sources = [], [], []
            for task in tasks:
                q, d, src = split_texts(splits / benchmark / task, split, query_file(query_files, benchmark, task))
                queries += q
                docs += d
                sources.append(src)
            model = config["backbones"][backbone]["model"]
            source = sources[0] if len(set(sources)) == 1 else f"{len(tasks)} tasks' splits or query files"
            lens_cache[key] = measure_lengths(
                queries, docs, source, backbone_settings(config, backbone, "rollout"), template(config, backbone), tokenizer_of(model)
            )
        return lens_cache[key]

    for run in runs(config):
        bench = config["benchmarks"][run.benchmark]
        if run.backbone not in archs:
            archs[run.backbone] = load_arch(run.backbone, config["backbones"][run.backbone]["model"])
        arch = archs[run.backbone]
        gpu_key, gpu = _gpu(config, run.backbone)
        capacity = _capacity(config, gpu)
        label = f"{run.benchmark}/{run.backbone}/{run.method}{'/' + run.variant if run.variant else ''} seed {run.seed}"
        if run.trained:
            tasks = train_tasks(config, run.benchmark)
            lens = lens_for(run.benchmark, tasks, "train", run.backbone)
            train = backbone_settings(config, run.backbone, "train")
            shape = train_shape(
                train,
                backbone_settings(config, run.backbone, "rollout"),
                config["credit"].get(run.method, {}),
                run.method,
                run.variant,
                arch,
                lens,
                _retriever(run.benchmark, tasks),
            )
            rollout, update = (sum(p.values()) / GIB for p in train_memory(shape))
            parts = train_memory(shape)[0 if rollout >= update else 1]
            per_step = train_seconds(shape, _rates(config, gpu_key))
            hours = {k: (train["steps"] * s * shape.processes / 3600, basis) for k, (s, basis) in per_step.items()}
            fewest = smallest_processes(shape, capacity)
            job = JobPlan(
                job=f"train {label}",
                kind="train",
                gpu=gpu_key,
                capacity_gib=capacity,
                parts=gib(parts),
                phase="rollout" if rollout >= update else "update",
                hours=hours,
                lengths_source=lens.source,
                spread=(f"{shape.processes} GPUs, {'fsdp' if shape.sharded else 'ddp'}; " if shape.processes > 1 else "")
                + f"fewest GPUs that fit: {fewest or 'none up to 8'}",
            )
            if not job.fits:
                job.advice = _train_advice(shape, job.peak_gib, capacity)
            plans.append(job)
        for task in bench["tasks"]:
            evaluations.setdefault((run.benchmark, run.backbone, task), []).append(run)
    mixed = config["train"]["precision"] in ("auto", "bf16-mixed")
    for (benchmark, backbone, task), evaluated in evaluations.items():
        arch, (gpu_key, gpu) = archs[backbone], _gpu(config, backbone)
        lens = lens_for(benchmark, [task], "test", backbone)
        slots = config["evaluate"]["slots"]
        parts = eval_memory(arch, lens, slots, mixed, _retriever(benchmark, [task]))
        queries = config["benchmarks"][benchmark]["split_counts"][task]["test"]
        seconds = eval_seconds(arch, lens, queries, slots, mixed, _rates(config, gpu_key))
        hours = {k: (s * len(evaluated) / 3600, basis) for k, (s, basis) in seconds.items()}
        capacity = _capacity(config, gpu)
        most = most_rows(lambda r: sum(gib(eval_memory(arch, lens, r, mixed, _retriever(benchmark, [task]))).values()), capacity)
        job = JobPlan(
            job=f"agent_eval {benchmark}/{backbone} {task} (x{len(evaluated)} runs)",
            kind="agent_eval",
            gpu=gpu_key,
            capacity_gib=capacity,
            parts=gib(parts),
            phase="rollout",
            hours=hours,
            lengths_source=lens.source,
            spread=f"{slots} slots; most that fit: {most or 'none'}",
        )
        if not job.fits:
            job.advice = [f"lower evaluate.slots (now {slots})"]
        plans.append(job)
    plans += _index_plans(config, splits)
    return plans


def _index_plans(config: dict, splits: Path) -> list[JobPlan]:
    from ..config import retriever_settings
    from ..retrieval.dense import settings_for

    out = []
    key, gpu = config["plan"]["gpu"], config["gpus"][config["plan"]["gpu"]]
    for benchmark, bench in config["benchmarks"].items():
        retriever = retriever_settings(bench["retriever"])
        if retriever["name"] == "bm25":
            continue
        entry = dict(config["dense_models"][retriever["dense_model"]])
        enc = load_arch(retriever["dense_model"], entry["model"], causal_lm=False)
        s = settings_for(entry.pop("model"), **entry)
        parts = index_memory(enc, s.batch_size, s.max_length)
        for task in bench["tasks"]:
            docs = corpus_docs(splits / benchmark / task, benchmark, task)
            # each document at up to 512 tokens (most BRIGHT and BEIR documents are shorter); an encoder's
            # forward is priced as a prefill, never from a backbone's calibration
            seconds, basis = Rates(gpu, config["plan"], None).prefill(enc, docs * min(s.max_length, 512))
            out.append(
                JobPlan(
                    job=f"dense_index {benchmark}/{task} {retriever['dense_model']}",
                    kind="dense_index",
                    gpu=key,
                    capacity_gib=_capacity(config, gpu),
                    parts=gib(parts),
                    phase="forward",
                    hours={"forward": (seconds / 3600, basis)},
                    lengths_source=f"{docs} documents",
                )
            )
    return out


def format_plan(plans: list[JobPlan], title: str) -> str:
    """One line per job: peak and its parts, GPU-hours per phase; then the basis of each phase's
    hours, the totals and the refusals."""
    lines = [
        f"{title}: {len(plans)} GPU jobs; peak accelerator memory per process (GiB) and GPU-hours per phase "
        f"(estimates: each phase priced from a rate measured on its GPU kind, or assumed; basis below)"
    ]
    for p in plans:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in p.parts.items())
        verdict = "fits" if p.fits else "DOES NOT FIT"
        spread = f"{p.spread}; " if p.spread else ""
        phases = ", ".join(f"{k} {h:.2f}" for k, (h, _) in p.hours.items())
        lines.append(
            f"  {p.job}: {p.peak_gib:.1f} of {p.capacity_gib:.1f} on {p.gpu} ({verdict}; {spread}{p.phase} "
            f"peak; {parts}) ~{p.gpu_hours:.2f} GPU-h ({phases})"
        )
    sources = sorted({p.lengths_source for p in plans if p.kind != "dense_index"})
    shown = "; ".join(sources) if len(sources) <= 3 else f"{len(sources)} sources, e.g. {sources[0]}"
    lines.append(f"token lengths from: {shown}")
    bases: dict[tuple[str, str], set[str]] = {}
    for p in plans:
        for phase, (_, basis) in p.hours.items():
            bases.setdefault((p.gpu, basis), set()).add(phase)
    lines.append("GPU-hours basis: " + "; ".join(f"{', '.join(sorted(phases))} on {gpu}: {basis}" for (gpu, basis), phases in sorted(bases.items())))
    total = {}
    for p in plans:
        for phase, (h, _) in p.hours.items():
            total[phase] = total.get(phase, 0.0) + h
    by_kind = {k: sum(p.gpu_hours for p in plans if p.kind == k) for k in ("train", "agent_eval", "dense_index")}
    lines.append(
        "estimated GPU-hours: "
        + ", ".join(f"{k} {v:.0f}" for k, v in by_kind.items())
        + "; by phase: "
        + ", ".join(f"{k} {v:.0f}" for k, v in total.items())
        + f"; total {sum(p.gpu_hours for p in plans):.0f}"
    )
    refused = [p for p in plans if not p.fits]
    lines.append(f"{len(plans) - len(refused)} of {len(plans)} jobs fit" + ("" if not refused else "; refused:"))
    lines += ["  " + p.refusal() for p in refused]
    return "\n".join(lines)


def check_training_fits(spec: dict, envs: dict, queries: list[str], free_gib: float, gpu: str) -> JobPlan:
    """The plan of one training job (its job spec, its loaded task environments and train query
    texts) against `free_gib` of GPU memory; a job that does not fit is refused, before its model
    is loaded."""
    from transformers import AutoConfig

    model = spec["backbone"]["model"]
    try:
        arch = read_arch(Path(model).name, AutoConfig.from_pretrained(model).to_dict())
    except OSError as e:
        raise RicepoError(f"plan: cannot read the architecture of {model!r}: {str(e).splitlines()[0]}") from None
    docs = [f"{d.get('title', '')}: {d['text']}" for env in envs.values() for d in list(env.corpus.values())[:200]]
    lens = measure_lengths(queries, docs, "the job's train splits", spec["rollout"], spec["template"], tokenizer_of(model))
    retriever = retriever_bytes(
        spec.get("retriever") or {"name": "bm25"}, spec.get("dense_models") or {}, {task: len(env.corpus) for task, env in envs.items()}
    )
    shape = train_shape(spec["train"], spec["rollout"], spec.get("credit", {}), spec["method"], spec.get("variant"), arch, lens, retriever)
    rollout, update = train_memory(shape)
    peak = max((rollout, update), key=lambda p: sum(p.values()))
    job = JobPlan(
        job=f"train {spec['benchmark']}/{Path(model).name}/{spec['method']} seed {spec['seed']}",
        kind="train",
        gpu=gpu,
        capacity_gib=usable_gib(free_gib),
        parts=gib(peak),
        phase="rollout" if peak is rollout else "update",
        hours={},
        lengths_source=lens.source,
    )
    if not job.fits:
        job.advice = _train_advice(shape, job.peak_gib, job.capacity_gib)
        raise RicepoError(job.refusal())
    return job
