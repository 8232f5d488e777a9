"""Memory and GPU-hour plan of every GPU job, before launch (`ricepo plan`, the `plan` target).

A job's peak accelerator memory per process is predicted from the backbone's architecture (its
config.json: config/architectures/<backbone>.json for the paper's backbones, which cannot be
downloaded offline, else the backbone's own folder), the configured budgets and the token
lengths of the prepared data, component by component:

    train   rollout = weights + optimizer + reference + sampler copy + retriever + KV cache + sampling
            update  = weights + gradients + optimizer + reference + sampler copy + retriever
                      + activations of one micro-batch + one log-prob chunk's logits
            peak    = max(rollout, update)   (gradients are freed after each optimizer step)
    agent_eval      = sampler weights + retriever + KV cache + sampling
    dense_index     = encoder weights + one batch's activations

Bytes per parameter: float32 master weights 4, gradients 4, AdamW's two moments 8, the reference
2 (bf16) or 4, the bf16 sampler copy 2 under bf16-mixed. A training job of N processes
(`train.processes`, a backbone's own `train:` included) is planned per process: each rolls out and
trains on 1/N of the step's rows; under FSDP (`train.distributed: fsdp`) each also holds 1/N of the
weights, gradients, AdamW state and reference, a whole sampler copy, and, during the update, what
FSDP gathers while a layer runs. Each training job's line names the fewest GPUs that fit. The KV
cache holds `rollout.rows_per_call` rows at the longest context (prompt, every round at full
budgets, the observations between); an evaluation's holds `evaluate.slots` rows at twice that,
as its layout keeps the columns of rows that left until they are half of it (agent/kv_cache.py);
both rounded up to the static decode step's bucket sizes (rows to a power of two, columns to
four sizes per doubling: decode_shapes.py), which the eager loop's storage never exceeds.
Activations: with gradient checkpointing one float32 hidden state per layer and token plus one
layer's activations recomputed; without, every layer's (`ACTIVATIONS`, measured on small Qwen2
layers); a log-prob chunk's logits (`LOGIT_BYTES`). The rollout's sampling tensors and prefill
(`sampling_bytes`, `prefill_bytes`) come from reading what each op keeps.
`scripts/plan_vs_measured.py` checks the whole prediction against a measured training step.

A job that does not fit its GPU (the config's `plan.gpu`, or `plan.backbone_gpu` per backbone,
less `plan.reserve_gib`, divided by 1 + `PLAN_ERROR`: the GPU check accepts a measured peak up to
10 % above the plan's, and a job the plan admits must fit even then) is refused before it starts, in one line naming the job, what it needs
and the cheapest change that makes it fit. GPU-hours are estimates (labelled so everywhere), per
phase with its basis: a rate measured on the job's GPU kind (config/calibration/), else prefill and
update FLOPs at `plan.mfu` of the GPU's bf16 peak and decode steps at `plan.decode_efficiency` of
its memory bandwidth (timing.py).

The parts: arch.py (a backbone's architecture), lengths.py (its rows' token lengths), shape.py (a
training job's settings), memory.py (GPU and host memory), timing.py (GPU-seconds and their
basis), jobs.py (every job of a configuration, printed, and refused when it does not fit).
"""

from .arch import Arch, load_arch, read_arch
from .jobs import PLAN_ERROR, JobPlan, check_training_fits, format_plan, plan_config, usable_gib
from .lengths import Lengths, measure_lengths, split_texts
from .memory import GIB, host_mb, smallest_processes, train_memory, train_peak_gib
from .shape import TrainShape, rows_per_query, train_shape

__all__ = [
    "GIB",
    "PLAN_ERROR",
    "Arch",
    "JobPlan",
    "Lengths",
    "TrainShape",
    "check_training_fits",
    "format_plan",
    "host_mb",
    "load_arch",
    "measure_lengths",
    "plan_config",
    "read_arch",
    "rows_per_query",
    "smallest_processes",
    "split_texts",
    "train_memory",
    "train_peak_gib",
    "train_shape",
    "usable_gib",
]
