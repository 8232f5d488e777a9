"""Training across processes with `accelerate` (DDP, or FSDP as an option): the pieces the
trainer needs that do not depend on the method.

Launch `accelerate launch --multi_gpu (or --use_fsdp) --num_processes N -m ricepo train ...`
(the workflow does this when `train.processes` > 1). Each process rolls out its share of the
step's queries (`shard`), so every query's group stays on one process and credit is computed
as in one process. The loss of each process is divided by the token (or sequence) count of the
whole step, summed over processes (`all_reduce`), and the gradients are averaged by DDP, so the
update equals the one-process update on the same rows (tests/test_distributed.py).

FSDP: accelerate's FSDP needs GPUs, so that path has not run on this project's CPU machines.
Resumable checkpoints (state.pt) are written for one process and DDP only; an FSDP run that is
interrupted restarts from step 0.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

# Per-step log fields that add up across processes; the rest are means or rates (see merge_records).
SUMMED = ("trajectories", "rollouts", "trained_tokens", "tokens_generated", "retriever_calls",
          "retriever_cache_hits", "anchors", "branch_rows", "n_rows", "n_steps", "reward_sum", "reward_sq_sum",
          "local_reward_sum", "parseable_sum", "closed_sum", "eos_sum")
SHARED = ("loss", "pg_loss", "kl", "clip_frac", "grad_norm", "ppo_updates",   # already whole-step numbers
          "logprob_gap_mean", "logprob_gap_max")
SLOWEST = ("rollout_s", "old_ref_s", "update_s", "wall_s")


def make_accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def shard(items: list, rank: int, world: int) -> list:
    """This process's share: every world-th item from its rank on."""
    return items[rank::world]


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum or max over processes (identity in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t


def gather_objects(obj) -> list:
    """Every process's `obj`, in rank order (a one-item list in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def is_fsdp(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def full_params_for_generation(acc, model):
    """Sampling runs the plain module; FSDP must gather its shards for that first."""
    if is_fsdp(acc):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.summon_full_params(model, writeback=False, recurse=True)
    return contextlib.nullcontext()


def merge_records(records: list[dict]) -> dict:
    """One step log line from each process's local figures: counts add up, whole-step numbers
    are taken from rank 0, timings from the slowest process, other means weighted by rollouts."""
    out = dict(records[0])
    for key in records[0]:
        having = [r for r in records if key in r]
        values = [r[key] for r in having]
        if key in SUMMED:
            out[key] = sum(values)
        elif key in SLOWEST:
            out[key] = max(values)
        elif key not in SHARED and key != "step" and isinstance(values[0], float):
            weights = [r.get("rollouts", 1) for r in having]
            out[key] = sum(v * w for v, w in zip(values, weights)) / max(sum(weights), 1)
    return out
