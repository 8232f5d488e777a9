"""The training loop shared by every method; only the credit function differs.

Read top to bottom: sample a batch of queries, let the method's collector (collect.py) roll out
its rows (G trajectories, trees, or trajectories plus branches) with the sampler and turn each
query's group into span advantages with the method's credit function, broadcast them to tokens,
recompute the rows' log-probs with the trainer's own numerics (the PPO "old" policy), and take
`ppo_mini_batches` PPO-clip optimizer steps per epoch against the frozen initial policy; then the
sampler loads the new weights. A held-out validation set is scored greedily before the first
step, every `validation_every` steps and after the last (validation.py). One JSON line per step
goes to the log, and each step's numbers to TensorBoard (watch.py); `state.pt` (model,
optimizer, RNG, log so far, and the run's identity: ricepo/identity.py) makes an interrupted run
resume where it stopped (a SIGTERM, as Slurm sends before it cancels, requeues or preempts a job,
ends the run after the step in progress, with its checkpoint); a checkpoint of another identity (config, data, index, backbone, code,
device or precision) is never resumed: the run starts from step 0 and says why. Under
`accelerate launch` each process rolls out its share of the step's queries and the update is the
one-process update on all rows, the policy whole in each process (DDP) or sharded per decoder
layer (FSDP): distributed.py. Precision: ricepo/precision.py.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import random
import re
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from ..agent.distribution import policy_logprobs
from ..agent.kv_cache import passing, returned
from ..agent.rollout import Agent, Trajectory
from ..agent.sampling import cast_parameters
from ..atomic import atomic_file
from ..errors import RicepoError
from ..identity import differences
from ..memory_meter import process_rss_gib, return_freed_memory
from ..precision import Precision, reference_dtype
from ..retrieval.retriever import TaskEnvironment
from ..summaries import versus_alone
from .collect import Collected, StepContext, batch_position, collect, group_of, sampled_step_sums
from .distributed import Parallel, all_reduce, gather_objects, merge_records, shard
from .loss import aggregate, token_losses, trained_rows
from .validation import Validator, due
from .watch import Watch


class Restart(Exception):
    """Raised by `Trainer.fit` after the checkpoint of a `restart_every` step is written: the caller
    starts the process again (cli.py), which resumes from it. The host memory that a CPU training
    holds grows step by step outside the tensors (native libraries' caches; memory_meter.py), and a
    new process is the one way found to hand it all back."""


class Stopped(Exception):
    """Raised by `Trainer.fit` after a SIGTERM, once the step in progress and its checkpoint are
    done: the caller exits 143 (128 + SIGTERM) and the same command resumes from the checkpoint.
    Slurm sends SIGTERM `KillWait` seconds (30 by default) before SIGKILL on `scancel`, a requeue,
    a preemption or a node set DOWN, so a step must end within that grace (see docs/cluster.md's
    cluster section for `--signal` on long steps)."""


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's settings. No defaults here: they come from the config schema
    (workflow/schemas/config.schema.yaml, `train:`) through the job spec (train/run.py)."""

    method: str  # a registered method (credit/): its collector and credit function
    seed: int  # seeds query order, sampling and torch
    group_size: int  # G trajectories per query (rollout.group_size)
    steps: int  # optimizer steps, one rollout batch each
    queries_per_step: int  # queries per batch; each gets `group_size` trajectories
    learning_rate: float  # AdamW learning rate
    kl_coef: float  # β of the k3 KL penalty against the initial policy
    clip_eps: float  # PPO clip ε
    dual_clip: float  # dual-clip cap c for negative advantages
    loss_agg: str  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    ppo_epochs: int  # passes over each rollout batch
    ppo_mini_batches: int  # optimizer steps per pass: the batch's queries split this many ways
    micro_batch_size: int  # at most this many sequences per forward/backward pass
    micro_batch_tokens: int  # and at most this many tokens (rows x their longest row); 0: no token bound
    logprob_chunk_tokens: int  # trained positions per vocabulary projection (bounds the logits' memory)
    reference_precision: str  # auto | fp32 | bf16: the frozen reference's weights (auto: bf16 under bf16-mixed)
    grad_clip: float  # max gradient norm
    weight_decay: float  # AdamW weight decay
    save_every: int  # steps between resumable checkpoints (state.pt); 0: none
    restart_every: int  # steps after which the process saves and starts again (Restart); 0: never
    validation_queries: int  # train queries held out and scored greedily (validation.py); 0: none
    validation_every: int  # steps between validation scorings (also before and after); 0: those two only
    tensorboard: bool  # also write each step's numbers as TensorBoard events (watch.py)
    wandb_project: str | None  # and to this Weights & Biases project
    gradient_checkpointing: bool  # recompute activations in the backward pass (less memory)
    shared_prefix: bool  # a query's rows run their common prefix once per pass (last_hidden)
    distributed: str  # ddp | fsdp: how several processes hold the policy (distributed.py)
    precision: str  # auto | fp32 | bf16-mixed (ricepo/precision.py); the resolved one is in the identity
    credit_params: dict  # keyword arguments of the credit function (Method.settings)
    rollout_params: dict  # the method's collector options (trees, branches, ...)


def token_advantages(t: Trajectory, spans: list[dict]) -> list[float]:
    adv = [0.0] * len(t.tokens)
    for seg in t.segments:
        if seg.kind in ("reasoning", "summary"):
            adv[seg.start : seg.end] = [float(spans[seg.step][seg.kind])] * (seg.end - seg.start)
    return adv


def _pad(rows: list[list], value, device, dtype):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], device=device, dtype=dtype)


def shared_length(ids: torch.Tensor, lengths: torch.Tensor) -> int:
    """How many leading tokens all rows of `ids` (B, L) have in common, at most the shortest row
    (`lengths`) less one, so that every row still runs a token of its own."""
    same = (ids == ids[:1]).all(0).long().cumprod(0)
    return max(0, min(int(same.sum()), int(lengths.min()) - 1))


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing under the name the installed transformers gives it
    (`activation_checkpointing_enable` from 5.2x; the old name warns until v6 removes it)."""
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()


def last_hidden(model, ids: torch.Tensor, attn: torch.Tensor, shared: int = 0) -> torch.Tensor:
    """The last layer's hidden states (B, L, H), its final norm applied. With `shared` > 0 the
    first `shared` tokens, the same in every row (the prompt of a query's G rows), run once, in
    one row, and every row's own tokens attend to their keys and values, as an inference engine's
    prefix cache serves them: the same numbers (up to rounding) for a fraction of the FLOPs, and the
    prefix's gradient is the sum of the rows' (the cache is repeated, not copied, in the graph).
    Gradient checkpointing drops caches, so the caller shares only where no layer is recomputed."""
    if shared < 1 or ids.shape[0] == 1:
        return model(input_ids=ids, attention_mask=attn, logits_to_keep=1, output_hidden_states=True).hidden_states[-1]
    # DDP prepares its gradient reduction once per forward call: the prefix runs on the wrapped module
    inner = getattr(model, "module", model)
    prefix = inner(input_ids=ids[:1, :shared], attention_mask=attn[:1, :shared], use_cache=True, logits_to_keep=1, output_hidden_states=True)
    cache = returned(prefix)
    cache.batch_repeat_interleave(ids.shape[0])
    rest = model(input_ids=ids[:, shared:], attention_mask=attn, use_cache=True, **passing(model, cache), logits_to_keep=1, output_hidden_states=True)
    return torch.cat([prefix.hidden_states[-1].expand(ids.shape[0], -1, -1), rest.hidden_states[-1]], dim=1)


def sequence_logprobs(
    model,
    ids: torch.Tensor,
    attn: torch.Tensor,
    temperature: float,
    vocab: int,
    start: int = 1,
    mask: torch.Tensor | None = None,
    chunk_tokens: int = 1024,
    shared: int = 0,
) -> torch.Tensor:
    """log π(token_t | tokens_<t) for t ≥ `start` at the rollout temperature, over the tokenizer's
    `vocab` ids (as the sampler scores them); shape (B, L-start), 0 where `mask` (B, L-start) is
    False. `shared`: leading tokens all rows have in common, run once (`last_hidden`). Only the
    masked positions go through the vocabulary projection, `chunk_tokens` at a time, each chunk's
    logits recomputed in the backward pass instead of kept: no (rows x positions x vocabulary)
    float tensor ever exists (for 4 rows of 4.5k positions and Qwen's 152k ids that tensor alone
    was 10 GiB, and its log-softmax and gradient as much again)."""
    hidden = last_hidden(model, ids, attn, shared)[:, start - 1 : -1]  # position t-1 predicts token t
    targets = ids[:, start:]
    if mask is None:
        mask = torch.ones_like(targets, dtype=torch.bool)
    head = getattr(model, "module", model).get_output_embeddings()  # DDP wraps the model

    def score(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return policy_logprobs(head(h), temperature, vocab).gather(-1, t[:, None]).squeeze(-1)

    where, weight = mask.nonzero(as_tuple=True), 1.0
    if not where[0].numel():
        # nothing trained in these rows: one position scored at weight 0, so that every parameter
        # still gets a (zero) gradient, as DDP's synchronisation needs
        where, weight = (torch.zeros(1, dtype=torch.long, device=ids.device),) * 2, 0.0
    h, t = hidden[where], targets[where]
    parts = []
    for i in range(0, len(t), chunk_tokens):
        args = (h[i : i + chunk_tokens], t[i : i + chunk_tokens])
        parts.append(checkpoint(score, *args, use_reentrant=False) if torch.is_grad_enabled() else score(*args))
    logp = torch.zeros(targets.shape, dtype=torch.float32, device=ids.device)
    return logp.index_put(where, torch.cat(parts) * weight)


@dataclass
class UpdateBatch:
    """A process's rows as padded tensors, from the first trained token on (`start`)."""

    ids: torch.Tensor  # (B, L) token ids, right-padded
    attn: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L-start) True where the token is trained on
    adv: torch.Tensor  # (B, L-start) token advantages
    sampled: torch.Tensor  # (B, L-start) log-probs the sampler recorded (NaN where it sampled nothing)
    minibatch: torch.Tensor  # (B,) which PPO mini-batch each row belongs to
    query: torch.Tensor  # (B,) which of the batch's queries each row answers (its rows share the prompt)
    start: int

    @classmethod
    def from_rows(cls, trajs: list[Trajectory], spans: dict, minibatch: list[int], query: list[int], pad_id: int, device) -> UpdateBatch:
        ids = _pad([t.tokens for t in trajs], pad_id, device, torch.long)
        attn = _pad([[1] * len(t.tokens) for t in trajs], 0, device, torch.long)
        mask = _pad([t.loss_mask() for t in trajs], False, device, torch.bool)
        # log-probs are needed from the first trained token of any row on (never the prompt)
        start = max(1, int(mask.any(0).nonzero()[0])) if mask.any() else 1
        adv = _pad([token_advantages(t, spans[t.id]) for t in trajs], 0.0, device, torch.float32)
        # t.logprobs[i] scores token i; sequence_logprobs' column j scores token start + j
        sampled = _pad([t.logprobs for t in trajs], math.nan, device, torch.float32)
        return cls(
            ids=ids,
            attn=attn,
            mask=mask[:, start:],
            adv=adv[:, start:],
            sampled=sampled[:, start:],
            minibatch=torch.tensor(minibatch, device=device),
            query=torch.tensor(query, device=device),
            start=start,
        )


def micro_batches(rows: torch.Tensor, lengths: torch.Tensor, size: int, tokens: int, query: torch.Tensor | None = None) -> list[torch.Tensor]:
    """`rows` in order, cut into micro-batches of at most `size` rows and, when `tokens` > 0, at
    most `tokens` tokens once padded to their own longest row (a longer row goes alone). With
    `query` (each row's query), rows of one query are taken together and never share a
    micro-batch with another query's, so that each micro-batch's rows share their prompt."""
    if query is not None:
        rows = rows[torch.sort(query[rows], stable=True).indices]
    out, current, width = [], [], 0
    for r in rows.tolist():
        wider = max(width, int(lengths[r]))
        if current and (
            len(current) == size or (tokens and (len(current) + 1) * wider > tokens) or (query is not None and query[r] != query[current[0]])
        ):
            out.append(current)
            current, wider = [], int(lengths[r])
        current.append(r)
        width = wider
    if current:
        out.append(current)
    return [torch.tensor(c, device=rows.device) for c in out]


def recomputes_layers(model) -> bool:
    """Whether gradient checkpointing is on: some decoder layer recomputes in the backward pass."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def policy_update(model, ref, opt, batch: UpdateBatch, cfg: TrainConfig, temperature: float, vocab: int, precision: Precision, par: Parallel) -> dict:
    """PPO-clip on this process's rows: `ppo_epochs` passes of `ppo_mini_batches` optimizer steps,
    all against the log-probs the trainer recomputed before the first step (so the ratio moves
    off 1 from the second mini-batch on and clipping can act). With one optimizer step per
    rollout batch (one epoch of one mini-batch) the ratio is 1 whatever "old" is, so the old
    log-probs are the update pass's own, detached, and no pass runs for them; `ref` is None when
    the KL term is off (`kl_coef` 0) and then no reference pass runs either. Each mini-batch's
    loss is normalised by its token and sequence counts summed over processes and scaled by the
    process count, because DDP and FSDP average gradients: N processes on N shards take the step
    one process takes on all rows. Every process runs as many forward and backward passes as the
    busiest one (idle ones dropped or at weight 0), since each pass synchronises (FSDP gathers
    weights). A micro-batch is cut to its own longest row (`micro_batches`), and the gradients
    are freed after each optimizer step, so they do not live on into the rollout. With
    `shared_prefix` a micro-batch holds one query's rows and their common prefix runs once
    (`last_hidden`), in the passes without gradients and, unless gradient checkpointing
    recomputes layers, in the update; not under FSDP, whose processes must run alike passes.
    Returns the step log's update figures, averaged over optimizer steps."""
    device, world = batch.ids.device, par.world
    ids, attn, start = batch.ids, batch.attn, batch.start
    lengths = attn.sum(-1)
    everything = torch.arange(ids.shape[0], device=device)
    on_policy = cfg.ppo_epochs * cfg.ppo_mini_batches == 1
    share = cfg.shared_prefix and not par.fsdp
    share_in_update = share and not recomputes_layers(par.unwrap(model))

    def cut(c: torch.Tensor) -> int:
        """Columns of the micro-batch `c` from `start` on: up to its longest row."""
        return max(int(lengths[c].max()), start + 1) - start

    def logprobs(policy, c: torch.Tensor, shared: bool) -> torch.Tensor:
        w = cut(c)
        common = shared_length(ids[c, : start + w], lengths[c]) if shared else 0
        return sequence_logprobs(
            policy, ids[c, : start + w], attn[c, : start + w], temperature, vocab, start, batch.mask[c, :w], cfg.logprob_chunk_tokens, common
        )

    def split(rows: torch.Tensor) -> list[torch.Tensor]:
        return micro_batches(rows, lengths, cfg.micro_batch_size, cfg.micro_batch_tokens, batch.query if share else None)

    def busiest(chunks: list) -> int:
        return int(all_reduce(torch.tensor([len(chunks)], device=device), "max")[0])

    t0 = time.time()
    old, ref_logp = torch.zeros_like(batch.adv), torch.zeros_like(batch.adv)
    before = [p for p, needed in ((model, not on_policy), (ref, ref is not None)) if needed]
    if before:
        with torch.no_grad(), precision.autocast():
            model.eval()
            chunks = split(everything)
            for i in range(busiest(chunks)):
                if i >= len(chunks):  # an idle pass: a row scored and dropped, so that FSDP's gathers pair up
                    for policy in before:
                        logprobs(policy, everything[:1], False)
                    continue
                c, w = chunks[i], cut(chunks[i])
                if not on_policy:
                    old[c, :w] = logprobs(model, c, share)
                if ref is not None:
                    ref_logp[c, :w] = logprobs(ref, c, share)
    old_ref_s = time.time() - t0
    model.train()
    sums = torch.zeros(5, device=device)  # loss, pg, kl, clip fraction, grad norm; summed over optimizer steps
    updates = 0
    for _ in range(cfg.ppo_epochs):
        for m in range(cfg.ppo_mini_batches):
            rows = everything[batch.minibatch == m]
            totals = all_reduce(torch.tensor([float(batch.mask[rows].sum()), float(trained_rows(batch.mask[rows])), float(len(rows))], device=device))
            if totals[2] == 0:  # no process has a row in this mini-batch
                continue
            total_tokens, total_seqs = max(float(totals[0]), 1.0), max(float(totals[1]), 1.0)
            chunks = split(rows)
            n_passes = busiest(chunks)
            step = torch.zeros(4, device=device)
            for i in range(n_passes):
                with par.grad_sync(model, last=i == n_passes - 1), precision.autocast():
                    if i >= len(chunks):  # an idle pass: zero loss, so gradients still sync
                        (logprobs(model, everything[:1], False).sum() * 0.0).backward()
                        continue
                    c, w = chunks[i], cut(chunks[i])
                    mask = batch.mask[c, :w]
                    current = logprobs(model, c, share_in_update)
                    if on_policy:
                        old[c, :w] = current.detach()
                    # without a reference the KL term is 0 (k3 of d = 0), and kl_coef is 0 anyway
                    reference = ref_logp[c, :w] if ref is not None else current.detach()
                    loss_tok, pg, kl, clipped = token_losses(
                        current, old[c, :w], reference, batch.adv[c, :w], clip_eps=cfg.clip_eps, dual_clip=cfg.dual_clip, kl_coef=cfg.kl_coef
                    )
                    loss = aggregate(loss_tok, mask, cfg.loss_agg, total_tokens=total_tokens, total_seqs=total_seqs)
                    (loss * world).backward()
                with torch.no_grad():
                    trained = mask.float()
                    step += torch.stack(
                        [
                            loss.detach(),
                            (pg * trained).sum() / total_tokens,
                            (kl * trained).sum() / total_tokens,
                            (clipped * trained).sum() / total_tokens,
                        ]
                    )
            grad_norm = par.clip_grad_norm(model, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sums += torch.cat([all_reduce(step), torch.as_tensor(grad_norm, device=device, dtype=torch.float32)[None]])
            updates += 1
    sums = sums / max(updates, 1)
    # how far the trainer's log-probs of the sampled tokens are from the sampler's own
    gap = (old - batch.sampled).abs()[batch.mask]
    gap_stats = all_reduce(torch.tensor([float(gap.sum()), float(gap.numel())], device=device))
    gap_max = all_reduce(torch.tensor([float(gap.max()) if gap.numel() else 0.0], device=device), "max")
    return {
        "loss": float(sums[0]),
        "pg_loss": float(sums[1]),
        "kl": float(sums[2]) if ref is not None else None,
        "clip_frac": float(sums[3]),
        "grad_norm": float(sums[4]),
        "ppo_updates": updates,
        "old_ref_s": round(old_ref_s, 3),
        "logprob_gap_mean": float(gap_stats[0] / max(float(gap_stats[1]), 1.0)),
        "logprob_gap_max": float(gap_max[0]),
    }


class Trainer:
    def __init__(
        self,
        model,
        tokenizer,
        agent: Agent,
        envs: dict[str, TaskEnvironment],
        queries: list[tuple[str, str, str]],
        cfg: TrainConfig,
        out_dir: str | Path,
        identity: dict,
        precision: Precision,
        parallel: Parallel | None = None,
        validator: Validator | None = None,
        run_name: str = "",
    ):
        if not queries:
            raise RicepoError("training: the train split is empty (check split_counts)")
        self.par = parallel or Parallel.start(cfg.distributed)
        self.acc = self.par.acc
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        if cfg.restart_every and self.world > 1:
            raise RicepoError(f"training: train.restart_every={cfg.restart_every} restarts one process; this run has {self.world} (set it to 0)")
        if cfg.queries_per_step < self.world:
            raise RicepoError(
                f"training: queries_per_step={cfg.queries_per_step} is fewer than the {self.world} "
                "processes: each process needs at least one query per step"
            )
        self.tok, self.agent, self.envs, self.queries, self.cfg = tokenizer, agent, envs, queries, cfg
        self.validator, self.run_name = validator, run_name
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.temperature, self.vocab = agent.s.temperature, len(tokenizer)
        self.precision = precision
        if next(model.parameters()).dtype != torch.float32:
            raise RicepoError(
                "training: the policy's master weights must be float32 (bf16 weights would not move at "
                "lr 1e-6); load the backbone in float32 and set train.precision for the arithmetic"
            )
        # The reference policy is a frozen copy: no gradients, so the optimizer holds only the policy;
        # in bf16 under bf16-mixed (precision.reference_dtype says why that is safe for the KL).
        # Without a KL term (kl_coef 0) there is none.
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = cast_parameters(copy.deepcopy(model), reference_dtype(cfg.reference_precision, precision))
            self.ref = self.ref.eval().requires_grad_(False).to(self.acc.device)
        if cfg.gradient_checkpointing:
            enable_checkpointing(model)
        # fused: one kernel over all parameters (CPU and CUDA), several times faster than the loop
        self.model, self.ref, self.opt = self.par.prepare(
            model,
            self.ref,
            lambda params: torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True),
            torch.bfloat16 if precision.mixed else None,
        )  # FSDP gathers weights in the autocast dtype
        self.device = self.acc.device
        # Random streams and numerics continue exactly only on the same device, precision and
        # process count, so they are part of what a checkpoint must share with this run.
        self.identity = {**identity, "processes": self.world, "precision": precision.name, "device": self.device.type}
        # Every generator lives on the device it draws for: the sampler's.
        self.generator = torch.Generator(device=agent.sampler.device)
        # rank 0 samples as a one-process run does; the others draw their own streams
        self.generator.manual_seed(cfg.seed + 1_000_003 * self.rank)
        torch.manual_seed(cfg.seed)
        self.step, self.log, self.validation = 0, [], []

    # --- resume -------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.out / "state.pt"

    def try_resume(self) -> None:
        path = self._state_path()
        if not path.exists():
            return
        # RNG states are CPU byte tensors whatever the device; load_state_dict moves the rest.
        # Tensors and plain values only: unpickling anything else would run code from the file.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
            raise RicepoError(
                f"{path}: refused: it holds a pickled object ({found[1] if found else 'not plain data'}), "
                "and a checkpoint loads only tensors and plain values; delete it to start from "
                "step 0"
            ) from None
        except Exception as e:  # truncated or not a checkpoint: torch raises several types
            detail = (str(e).splitlines() or ["no detail"])[0].split(". ")[0][:120]
            raise RicepoError(f"{path}: not a readable checkpoint ({type(e).__name__}: {detail}); delete it to start from step 0") from None
        differ = differences(state.get("identity", {}) if isinstance(state, dict) else {}, self.identity)
        if differ:
            if self.acc.is_main_process:
                print(
                    f"{path} holds another run (differs in: {', '.join(differ)}); not resumed: training starts from step 0 and overwrites it",
                    flush=True,
                )
            return
        if state.get("shards"):  # FSDP: every process reads its part
            self.par.load_sharded(self.model, self.opt, self.out / state["shards"])
        else:
            self.par.unwrap(self.model).load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generators"][self.rank])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.agent.sampler.sync_weights(self.par.unwrap(self.model))
        self.step, self.log, self.validation = state["step"], state["log"], state["validation"]
        if self.acc.is_main_process:
            print(f"resuming {self.out} at step {self.step}/{self.cfg.steps} (same identity)", flush=True)

    def _save_state(self) -> None:
        """state.pt, written last and atomically; under FSDP the weights and optimizer state go
        to a folder of shards it names (one per saved step; older ones are removed after it)."""
        generators = gather_objects(self.generator.get_state())
        shards, model_state, optimizer_state = None, None, None
        if self.par.fsdp:
            shards = f"{self._state_path().stem}.shards.step{self.step}"
            self.par.save_sharded(self.model, self.opt, self.out / shards)
        else:
            model_state = self.acc.get_state_dict(self.model)
            optimizer_state = self.opt.state_dict()
        if self.acc.is_main_process:
            cuda_rng = [t.cpu() for t in torch.cuda.get_rng_state_all()] if self.device.type == "cuda" else []
            with atomic_file(self._state_path(), "wb") as f:
                torch.save(
                    {
                        "identity": self.identity,
                        "model": model_state,
                        "optimizer": optimizer_state,
                        "shards": shards,
                        "generators": [g.cpu() for g in generators],
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": cuda_rng,
                        "step": self.step,
                        "log": self.log,
                        "validation": self.validation,
                    },
                    f,
                )
            for old in self.out.glob(f"{self._state_path().stem}.shards.step*"):
                if old.name != shards:
                    shutil.rmtree(old)
        self.acc.wait_for_everyone()

    # --- one step -----------------------------------------------------------------------
    def _batch(self, step: int) -> list[tuple[str, str, str]]:
        """Queries of a step: epochs are seeded permutations of the train split, walked in order."""
        n, per = len(self.queries), self.cfg.queries_per_step
        orders: dict[int, list[int]] = {}
        out = []
        for i in range(step * per, (step + 1) * per):
            epoch, pos = divmod(i, n)
            if epoch not in orders:
                orders[epoch] = list(range(n))
                random.Random(f"{self.cfg.seed}:{epoch}").shuffle(orders[epoch])
            out.append(self.queries[orders[epoch][pos]])
        return out

    def train_step(self) -> dict:
        cfg = self.cfg
        calls0 = {k: (e.stats.searches, e.stats.hits) for k, e in self.envs.items()}
        t0 = time.time()
        ctx = StepContext(
            agent=self.agent,
            envs=self.envs,
            generator=self.generator,
            method=cfg.method,
            credit_params=cfg.credit_params,
            group_size=cfg.group_size,
            seed=cfg.seed,
            step=self.step,
        )
        self.model.eval()
        got = collect(ctx, shard(self._batch(self.step), self.rank, self.world), cfg.rollout_params)
        t_rollout = time.time() - t0

        t1 = time.time()
        # Mini-batches split the step's queries by their position in the whole batch (not this
        # process's shard), so N processes form the mini-batches one process would.
        minibatch = [(self.rank + self.world * batch_position(t)) % cfg.ppo_mini_batches for t in got.rows]
        batch = UpdateBatch.from_rows(got.rows, got.spans, minibatch, [batch_position(t) for t in got.rows], self.tok.pad_token_id, self.device)
        stats = policy_update(self.model, self.ref, self.opt, batch, cfg, self.temperature, self.vocab, self.precision, self.par)
        self.agent.sampler.sync_weights(self.par.unwrap(self.model))
        trained_tokens = int(batch.mask.sum())
        del batch
        return_freed_memory()
        t_update = time.time() - t1 - stats["old_ref_s"]  # optimizer steps, the sampler's refresh, the trim

        rss, peak_rss = process_rss_gib()
        rewards = [t.final_reward for t in got.rows]
        local = {
            "step": self.step + 1,
            **stats,
            "n_rows": len(rewards),
            "reward_sum": sum(rewards),
            "reward_sq_sum": sum(r * r for r in rewards),
            **sampled_step_sums(got.rollouts),
            "trajectories": len(got.rows),
            "rollouts": len(got.rollouts),
            "trained_tokens": trained_tokens,
            "tokens_generated": sum(t.generated_tokens for t in got.rollouts),
            "retriever_calls": sum(e.stats.searches - calls0[k][0] for k, e in self.envs.items()),
            "retriever_cache_hits": sum(e.stats.hits - calls0[k][1] for k, e in self.envs.items()),
            **got.extra,
            "rollout_s": round(t_rollout, 3),
            "update_s": round(t_update, 3),
            "wall_s": round(time.time() - t0, 3),
            "rss_gib": None if rss is None else round(rss, 3),
            "peak_rss_gib": round(peak_rss, 3),
        }
        local |= self._versus_alone(got)
        r = merge_records(gather_objects(local))
        n_rows, n_steps = r.pop("n_rows"), r.pop("n_steps")
        mean = r.pop("reward_sum") / n_rows
        record = {
            "step": r.pop("step"),
            "reward_mean": mean,
            "reward_std": max(r.pop("reward_sq_sum") / n_rows - mean * mean, 0.0) ** 0.5,
            "local_reward_mean": r.pop("local_reward_sum") / n_steps,
            "parseable_rate": r.pop("parseable_sum") / n_steps,
            "closed_by_policy_rate": r.pop("closed_sum") / n_steps,
            "eos_rate": r.pop("eos_sum") / n_steps,
            "better_than_alone_rate": r.pop("searches_better") / r["rollouts"],
            "worse_than_alone_rate": r.pop("searches_worse") / r["rollouts"],
            "groups_with_better_rate": r.pop("groups_with_better") / r["groups"],
            "groups_with_signal_rate": r.pop("groups_with_signal") / r.pop("groups"),
        }
        return {**record, **r}

    def _versus_alone(self, got: Collected) -> dict:
        """`versus_alone`'s counts for this process's share of the step."""
        queries = {(t.task, t.query_id): t.query for t in got.rollouts}
        alone = {}
        for task, env in self.envs.items():
            items = [(qid, text) for (tk, qid), text in queries.items() if tk == task]
            alone |= {(task, qid): s for (qid, _), s in zip(items, env.scores_uncounted(items) if items else [])}
        return versus_alone(
            [(group_of(t), t.steps[-1].local_reward, alone[t.task, t.query_id]) for t in got.rollouts],
            [(group_of(t), t.final_reward) for t in got.rows],
        )

    # --- validation -------------------------------------------------------------------
    def _validate(self, watch: Watch) -> None:
        """Score the held-out set at this step, unless this step's scoring is already on record
        (a run resumed from a checkpoint saved after it)."""
        cfg = self.cfg
        if not self.validator or not due(self.step, cfg.steps, cfg.validation_every) or any(v["step"] == self.step for v in self.validation):
            return
        t0 = time.time()
        self.model.eval()
        result = self.validator.score(self.step, self.rank, self.world)
        self.validation.append(result)
        # (a scoring without summaries has no restating share: None, which Watch leaves out)
        watch.write(
            self.step,
            {
                k: result[k]
                for k in (
                    "reward_mean",
                    "ndcg_mean",
                    "parseable_rate",
                    "unchanged_rate",
                    "better_than_alone_rate",
                    "worse_than_alone_rate",
                    "summary_restate_rate",
                )
            }
            | {"wall_s": time.time() - t0},
            "validation",
        )
        if self.acc.is_main_process:
            restated = "no summaries" if result["summary_restate_rate"] is None else f"{result['summary_restate_rate']:.0%} of summaries"
            print(
                f"validation at step {self.step}: mean reward {result['reward_mean']:.4f} (NDCG@10 "
                f"{result['ndcg_mean']:.4f}, {result['parseable_rate']:.0%} of steps with a summary, "
                f"{restated} restating the query, {result['unchanged_rate']:.0%} of final top 10s the query "
                f"alone's, {result['better_than_alone_rate']:.0%} of searches better than it and "
                f"{result['worse_than_alone_rate']:.0%} worse) over {len(result['rewards'])} held-out queries "
                f"({time.time() - t0:.1f} s)",
                flush=True,
            )

    # --- the loop -----------------------------------------------------------------------
    def _on_sigterm(self, signum, frame) -> None:
        if not self.terminate:
            print(f"SIGTERM: stopping after step {self.step + 1}/{self.cfg.steps} with a checkpoint", flush=True)
        self.terminate = True

    def _stop_requested(self) -> bool:
        """Whether any process got SIGTERM: every process stops after the same step."""
        return bool(all_reduce(torch.tensor([float(self.terminate)], device=self.device), "max").item())

    def fit(self) -> list[dict]:
        self.terminate = False
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            try:
                return self._fit()
            finally:
                signal.signal(signal.SIGTERM, previous)
        return self._fit()

    def _fit(self) -> list[dict]:
        self.try_resume()
        main = self.acc.is_main_process
        cfg = self.cfg
        watch = Watch(self.out, cfg.tensorboard, cfg.wandb_project, self.run_name, asdict(cfg), self.step, enabled=main)
        self._validate(watch)
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {cfg.method}", mininterval=5, disable=not main)
        while self.step < cfg.steps:
            record = self.train_step()
            self.step += 1
            self.log.append(record)
            watch.write(self.step, record)
            if main:
                print(json.dumps(record), flush=True)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward_mean']:.3f}", **({} if record["kl"] is None else {"kl": f"{record['kl']:.4f}"}))
            if self._stop_requested():  # before this step's validation: the resumed run scores it
                self._save_state()
                bar.close()
                watch.close()
                raise Stopped(
                    f"{self.out}: stopped by SIGTERM after step {self.step}/{cfg.steps}; checkpoint saved; the same command resumes from it"
                )
            self._validate(watch)
            due_now = lambda every: every > 0 and self.step % every == 0 and self.step < cfg.steps  # noqa: E731
            if due_now(cfg.save_every) or due_now(cfg.restart_every):
                self._save_state()
            if due_now(cfg.restart_every):
                bar.close()
                watch.close()
                raise Restart(
                    f"{self.out}: restarting the process after step {self.step}/{cfg.steps} "
                    f"(train.restart_every={cfg.restart_every}); it resumes from the checkpoint"
                )
        bar.close()
        watch.close()
        self._save_state()
        return self.log
