"""The settings of a training job that decide its memory and time, from the config or a job spec."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .arch import Arch
from .lengths import Lengths


@dataclass(frozen=True)
class TrainShape:
    """The settings of a training job that decide its memory and time."""

    arch: Arch
    lengths: Lengths
    rows_per_step: int  # rows the step trains on (and rolls out at least)
    rows_per_call: int  # rows per sampler call (0: all)
    micro_batch_size: int
    micro_batch_tokens: int
    logprob_chunk_tokens: int
    gradient_checkpointing: bool
    mixed: bool  # bf16-mixed (else fp32)
    reference_bytes: int  # 2 or 4 per parameter; 0 without a KL term (no reference held)
    retriever: dict  # name -> bytes on the device (encoder, embeddings)
    processes: int = 1  # train.processes: each rolls out and trains on its share of the rows
    sharded: bool = False  # FSDP (train.distributed fsdp, processes > 1): 1/N of the model state each
    queries_per_step: int = 0  # the step's queries (rows_per_step of them share each prompt); 0: rows alone
    old_pass: bool = True  # a pass recomputes the old log-probs (not with one update per batch)
    shared_prefix: bool = False  # train.shared_prefix: a query's rows run their prompt once per pass

    @property
    def rows_here(self) -> int:
        """The rows one process rolls out and trains on."""
        return math.ceil(self.rows_per_step / self.processes)

    @property
    def call_rows(self) -> int:
        return min(self.rows_per_call or self.rows_here, self.rows_here)

    @property
    def micro_tokens(self) -> int:
        rows_tokens = self.micro_batch_size * self.lengths.context
        return min(rows_tokens, self.micro_batch_tokens) if self.micro_batch_tokens else rows_tokens


def rows_per_query(method: str, credit: dict, variant: str | None, group_size: int) -> int:
    """Rows a method samples per query in one step (what its collector rolls out: credit/)."""
    from ..credit import get_method

    m = get_method(method)
    _, r = m.settings(credit, variant)
    if m.rollout == "trees":
        return r["trees"] * (1 + r["expansions"] * r["rounds"])
    if m.rollout == "branches":
        return group_size + r["anchors"] * (r["branches"] - 1)
    return r.get("group_size", group_size)


def train_shape(train: dict, rollout: dict, credit: dict, method: str, variant: str | None, arch: Arch, lens: Lengths, retriever: dict) -> TrainShape:
    """A training job's shape from the config's (or a job spec's) `train` and `rollout` and the
    method's `credit` settings."""
    mixed = train["precision"] in ("auto", "bf16-mixed")  # auto is bf16-mixed on a bf16 GPU
    ref = train["reference_precision"]
    ref_bytes = (2 if ref == "bf16" or (ref == "auto" and mixed) else 4) if train["kl_coef"] > 0 else 0
    per_query = rows_per_query(method, credit, variant, rollout["group_size"])
    return TrainShape(
        arch=arch,
        lengths=lens,
        rows_per_step=train["queries_per_step"] * per_query,
        rows_per_call=rollout["rows_per_call"],
        micro_batch_size=train["micro_batch_size"],
        micro_batch_tokens=train["micro_batch_tokens"],
        logprob_chunk_tokens=train["logprob_chunk_tokens"],
        gradient_checkpointing=train["gradient_checkpointing"],
        mixed=mixed,
        reference_bytes=ref_bytes,
        retriever=retriever,
        processes=train["processes"],
        sharded=train["distributed"] == "fsdp" and train["processes"] > 1,
        queries_per_step=train["queries_per_step"],
        shared_prefix=train["shared_prefix"],
        old_pass=train["ppo_epochs"] * train["ppo_mini_batches"] > 1,
    )
