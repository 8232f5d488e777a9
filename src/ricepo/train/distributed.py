"""Training across processes: one process, DDP, or FSDP that shards per decoder layer; the pieces
the trainer needs that do not depend on the method.

The workflow launches `accelerate launch --multi_gpu --num_processes N -m ricepo train ...` when
the job's `train.processes` is N > 1 (accelerate only starts the processes and the process group;
`train.distributed` picks what wraps the policy, below). Each process rolls out its share of the
step's queries (`shard`), so every query's group stays on one process and credit is computed as
in one process. The loss of each process is divided by the token (or sequence) count of the whole
step, summed over processes (`all_reduce`), and the gradients are averaged over processes, so the
update equals the one-process update on the same rows (tests/test_distributed.py, DDP and FSDP).

- ddp: accelerate's DistributedDataParallel; every process holds the whole float32 model and its
  AdamW state, and gradients are all-reduced once per optimizer step.
- fsdp: torch's FSDP2 (`fully_shard`), one unit per decoder layer (the model's
  `_no_split_modules`) plus the root (embeddings, final norm, head). Each process keeps 1/N of the
  float32 master weights, gradients and AdamW state; a layer's weights are gathered, in bf16 under
  bf16-mixed, just before it runs and freed after; gradients are reduce-scattered in float32
  after every micro-batch, so a full-size gradient never exists. The frozen reference is sharded
  the same way. The sampler keeps its own unsharded copy (bf16 under bf16-mixed), refreshed one
  tensor at a time (`full_tensor` per parameter), never the whole float32 model at once. The
  resumable checkpoint is sharded too (torch.distributed.checkpoint: every process writes its
  own part; `save_sharded` / `load_sharded`), so resuming needs the same process count, which is
  part of the run's identity. The trainer projects hidden states onto the vocabulary itself,
  after the model's forward (trainer.sequence_logprobs): that works because FSDP2 leaves the root
  unit (embedding and head) gathered from its forward until its backward is done.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..agent.sampling import full_tensor

# Per-step log fields that add up across processes; the rest are means or rates (see merge_records).
SUMMED = (
    "trajectories",
    "rollouts",
    "trained_tokens",
    "tokens_generated",
    "retriever_calls",
    "retriever_cache_hits",
    "anchors",
    "branch_rows",
    "n_rows",
    "n_steps",
    "reward_sum",
    "reward_sq_sum",
    "local_reward_sum",
    "parseable_sum",
    "closed_sum",
    "eos_sum",
    "searches_better",
    "searches_worse",
    "groups",
    "groups_with_better",
    "groups_with_signal",
)
SHARED = (
    "loss",
    "pg_loss",
    "kl",
    "clip_frac",
    "grad_norm",
    "ppo_updates",  # already whole-step numbers
    "logprob_gap_mean",
    "logprob_gap_max",
)
# Timings and memory, which differ from run to run: the largest process's.
MEASURED = ("rollout_s", "old_ref_s", "update_s", "wall_s", "rss_gib", "peak_rss_gib")
# A step's figures that a resumed run does not reproduce: what was measured, and the retrieval
# cache's counts (a resumed process starts with an empty cache: once the queries repeat, a search
# the uninterrupted run answered from its cache runs again)
NOT_REPRODUCED = MEASURED + ("retriever_calls", "retriever_cache_hits")
MODES = ("ddp", "fsdp")


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


def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's repeated blocks, by the class names transformers declares unsplittable."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"FSDP: {type(model).__name__} declares no decoder layer class (_no_split_modules)")
    return layers


def fully_shard_per_layer(model, device_type: str, compute_dtype: torch.dtype | None):
    """FSDP2 on `model`: one unit per decoder layer and one for the rest (the root); weights
    gathered in `compute_dtype` (None: as stored), gradients reduced in float32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


@dataclass
class Parallel:
    """How this run spreads the policy over its processes (the module docstring says how)."""

    acc: object  # accelerate.Accelerator: the process group, the device, which process is main
    fsdp: bool  # train.distributed is fsdp and there is more than one process

    @classmethod
    def start(cls, mode: str, acc=None) -> Parallel:
        if mode not in MODES:
            raise ValueError(f"train.distributed: {mode!r} is not one of {', '.join(MODES)}")
        acc = acc or make_accelerator()
        return cls(acc=acc, fsdp=mode == "fsdp" and acc.num_processes > 1)

    @property
    def world(self) -> int:
        return self.acc.num_processes

    @property
    def device(self) -> torch.device:
        return self.acc.device

    def prepare(self, model, ref, make_optimizer, compute_dtype: torch.dtype | None):
        """(policy, reference, optimizer) wrapped for this run; the optimizer is built on the
        parameters this process keeps (`make_optimizer(parameters)`)."""
        if not self.fsdp:
            model, opt = self.acc.prepare(model, make_optimizer(model.parameters()))
            return model, ref, opt
        device = self.acc.device.type
        model = fully_shard_per_layer(model, device, compute_dtype)
        if ref is not None:
            ref = fully_shard_per_layer(ref, device, None)  # already in its own dtype
        return model, ref, make_optimizer(model.parameters())

    def grad_sync(self, model, last: bool):
        """Context of one backward pass of an optimizer step. DDP all-reduces on the last one only;
        FSDP reduce-scatters on each, so that gradients accumulate sharded."""
        if self.fsdp or last:
            return contextlib.nullcontext()
        return self.acc.no_sync(model)

    def clip_grad_norm(self, model, max_norm: float) -> torch.Tensor:
        """Clips the whole model's gradient norm (over every shard); returns it before clipping."""
        if self.fsdp:
            return full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        return self.acc.clip_grad_norm_(model.parameters(), max_norm)

    def unwrap(self, model):
        """The transformers model (FSDP2 wraps in place; DDP puts it in `.module`)."""
        return model if self.fsdp else self.acc.unwrap_model(model)

    def full_state_dict(self, model) -> dict:
        """The whole model's weights on the CPU in the main process (every process must call)."""
        if not self.fsdp:
            return self.acc.get_state_dict(model)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save_sharded(self, model, opt, folder: Path) -> None:
        """Each process writes its part of the policy and optimizer state to `folder`."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        weights, optimizer = get_state_dict(model, opt)
        dcp.save({"model": weights, "optimizer": optimizer}, checkpoint_id=str(folder))

    def load_sharded(self, model, opt, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        weights, optimizer = get_state_dict(model, opt)
        state = {"model": weights, "optimizer": optimizer}
        dcp.load(state, checkpoint_id=str(folder))
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def merge_records(records: list[dict]) -> dict:
    """One step log line from each process's local figures: counts add up, whole-step numbers
    are taken from rank 0, timings and memory from the largest process, other means weighted by rollouts."""
    out = dict(records[0])
    for key in records[0]:
        having = [r for r in records if key in r]
        values = [r[key] for r in having]
        if key in SUMMED:
            out[key] = sum(values)
        elif key in MEASURED:
            out[key] = max((v for v in values if v is not None), default=None)
        elif key not in SHARED and key != "step" and isinstance(values[0], float):
            weights = [r.get("rollouts", 1) for r in having]
            out[key] = sum(v * w for v, w in zip(values, weights)) / max(sum(weights), 1)
    return out
