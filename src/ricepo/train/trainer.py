"""The training loop shared by every method; only the credit function differs.

Read top to bottom: sample a batch of queries, let the method's collector (collect.py) roll out
its rows (G trajectories, trees, or trajectories plus branches) and turn each query's group into
span advantages with the method's credit function, broadcast them to tokens, and take PPO-clip
steps against the frozen initial policy. One JSON line per step
goes to the log; `state.pt` (model, optimizer, RNG, log so far) makes an interrupted run resume
where it stopped, and a resume with a different config is refused.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..agent.rollout import Agent, Trajectory
from ..errors import RicepoError
from ..retrieval.retriever import TaskEnvironment
from .collect import StepContext, collect
from .loss import aggregate, token_losses


@dataclass
class TrainConfig:
    method: str                       # credit method name in the registry (grpo, gigpo, hgpo, ...)
    steps: int = 125                  # optimizer steps, one rollout batch each
    queries_per_step: int = 32        # queries per batch; each gets `group_size` trajectories
    group_size: int = 8               # G trajectories per query
    learning_rate: float = 1e-6       # AdamW learning rate
    kl_coef: float = 0.001            # β of the k3 KL penalty against the initial policy
    clip_eps: float = 0.2             # PPO clip ε
    dual_clip: float = 3.0            # dual-clip cap c for negative advantages
    loss_agg: str = "token-mean"      # token-mean | seq-mean-token-mean | seq-mean-token-sum
    ppo_epochs: int = 1               # optimizer steps per rollout batch
    micro_batch_size: int = 4         # sequences per forward/backward pass
    grad_clip: float = 1.0            # max gradient norm
    weight_decay: float = 0.0         # AdamW weight decay
    seed: int = 0                     # seeds query order, sampling and torch
    save_every: int = 10              # steps between resumable checkpoints (state.pt)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory)
    credit_params: dict = field(default_factory=dict)   # keyword arguments of the credit function
    rollout_params: dict = field(default_factory=dict)  # the method's collector options (trees, branches, ...)

    def fingerprint(self, extra: dict) -> str:
        """What a resumed run must share with the saved one: all but `steps` (so a finished run can
        be extended), `save_every` and `gradient_checkpointing`, which do not change the numbers."""
        mine = {k: v for k, v in asdict(self).items() if k not in ("steps", "save_every", "gradient_checkpointing")}
        blob = json.dumps({"train": mine, **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def token_advantages(t: Trajectory, spans: list[dict]) -> list[float]:
    adv = [0.0] * len(t.tokens)
    for seg in t.segments:
        if seg.kind in ("reasoning", "summary"):
            adv[seg.start:seg.end] = [float(spans[seg.step][seg.kind])] * (seg.end - seg.start)
    return adv


def _pad(rows: list[list], value, device, dtype):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], device=device, dtype=dtype)


def sequence_logprobs(model, ids: torch.Tensor, attn: torch.Tensor, temperature: float,
                      start: int = 1) -> torch.Tensor:
    """log π(token_t | tokens_<t) for t ≥ `start` at the rollout temperature; shape (B, L-start).
    Only those positions go through the vocabulary projection: with a long prompt and a large
    vocabulary, the (B, L, V) float logits were most of the update's time and memory."""
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=ids.shape[1] - start + 1).logits[:, :-1].float()
    if temperature > 0:
        logits = logits / temperature
    return torch.log_softmax(logits, -1).gather(-1, ids[:, start:, None]).squeeze(-1)


class Trainer:
    def __init__(self, model, tokenizer, agent: Agent, envs: dict[str, TaskEnvironment],
                 queries: list[tuple[str, str, str]], cfg: TrainConfig, out_dir: str | Path, run_info: dict):
        if not queries:
            raise RicepoError("training: the train split is empty (check split_counts)")
        self.model, self.tok, self.agent, self.envs, self.queries, self.cfg = model, tokenizer, agent, envs, queries, cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = next(model.parameters()).device
        self.temperature = agent.s.temperature
        # The reference policy is a frozen copy: no gradients, so the optimizer holds only the policy.
        self.ref = copy.deepcopy(model).eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.run_info = run_info
        self.fingerprint = cfg.fingerprint({"rollout": asdict(agent.s), **run_info})
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step, self.log = 0, []

    # --- resume -------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.out / "state.pt"

    def try_resume(self) -> None:
        path = self._state_path()
        if not path.exists():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            raise RicepoError(f"{path}: a run with a different config is here (fingerprint {state['fingerprint']} "
                              f"!= {self.fingerprint}); delete {self.out} to start over")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.log = state["step"], state["log"]
        print(f"resuming {self.out} at step {self.step}/{self.cfg.steps}", flush=True)

    def _save_state(self) -> None:
        tmp = self._state_path().with_suffix(".tmp")
        torch.save({"fingerprint": self.fingerprint, "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(), "generator": self.generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "step": self.step, "log": self.log}, tmp)
        tmp.replace(self._state_path())

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
        calls0 = {k: (e.stats.calls, e.stats.hits) for k, e in self.envs.items()}
        t0 = time.time()
        self.model.eval()
        ctx = StepContext(agent=self.agent, envs=self.envs, generator=self.generator, method=cfg.method,
                          credit_params=cfg.credit_params, group_size=cfg.group_size, seed=cfg.seed, step=self.step)
        got = collect(ctx, self._batch(self.step), cfg.rollout_params)
        trajs, spans = got.rows, got.spans
        t_rollout = time.time() - t0

        ids = _pad([t.tokens for t in trajs], self.tok.pad_token_id, self.device, torch.long)
        attn = _pad([[1] * len(t.tokens) for t in trajs], 0, self.device, torch.long)
        mask = _pad([t.loss_mask() for t in trajs], False, self.device, torch.bool)
        # log-probs are needed from the first trained token of any row on (never the prompt)
        start = max(1, int(mask.any(0).nonzero()[0])) if mask.any() else 1
        mask = mask[:, start:]
        adv = _pad([token_advantages(t, spans[t.id]) for t in trajs], 0.0, self.device, torch.float32)[:, start:]
        total_tokens, total_seqs = float(mask.sum().clamp(min=1)), float(len(trajs))
        chunks = [slice(i, i + cfg.micro_batch_size) for i in range(0, len(trajs), cfg.micro_batch_size)]
        with torch.no_grad():
            old = torch.cat([sequence_logprobs(self.model, ids[c], attn[c], self.temperature, start) for c in chunks])
            ref = torch.cat([sequence_logprobs(self.ref, ids[c], attn[c], self.temperature, start) for c in chunks])

        t1 = time.time()
        self.model.train()
        stats = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "clip_frac": 0.0}
        for _ in range(cfg.ppo_epochs):
            self.opt.zero_grad(set_to_none=True)
            for c in chunks:
                logp = sequence_logprobs(self.model, ids[c], attn[c], self.temperature, start)
                loss_tok, pg, kl, clipped = token_losses(logp, old[c], ref[c], adv[c], clip_eps=cfg.clip_eps,
                                                         dual_clip=cfg.dual_clip, kl_coef=cfg.kl_coef)
                loss = aggregate(loss_tok, mask[c], cfg.loss_agg, total_tokens=total_tokens, total_seqs=total_seqs)
                loss.backward()
                with torch.no_grad():
                    m = mask[c].float()
                    stats["loss"] += float(loss) / cfg.ppo_epochs
                    stats["pg_loss"] += float((pg * m).sum()) / total_tokens / cfg.ppo_epochs
                    stats["kl"] += float((kl * m).sum()) / total_tokens / cfg.ppo_epochs
                    stats["clip_frac"] += float((clipped * m).sum()) / total_tokens / cfg.ppo_epochs
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
        t_update = time.time() - t1

        rewards = torch.tensor([t.final_reward for t in trajs])
        n_steps = sum(len(t.steps) for t in got.rollouts)
        calls = sum(e.stats.calls - calls0[k][0] for k, e in self.envs.items())
        hits = sum(e.stats.hits - calls0[k][1] for k, e in self.envs.items())
        return {
            "step": self.step + 1, "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
            "local_reward_mean": sum(s.local_reward for t in got.rollouts for s in t.steps) / n_steps,
            **stats, "grad_norm": float(grad_norm),
            "parseable_rate": sum(s.parseable for t in got.rollouts for s in t.steps) / n_steps,
            "closed_by_policy_rate": sum(s.closed_think and s.closed_summary
                                         for t in got.rollouts for s in t.steps) / n_steps,
            "trajectories": len(trajs), "rollouts": len(got.rollouts), "trained_tokens": int(mask.sum()),
            "tokens_generated": sum(t.generated_tokens for t in got.rollouts),
            "retriever_calls": calls, "retriever_cache_hits": hits, **got.extra,
            "rollout_s": round(t_rollout, 3), "update_s": round(t_update, 3), "wall_s": round(time.time() - t0, 3),
        }

    # --- the loop -----------------------------------------------------------------------
    def fit(self) -> list[dict]:
        self.try_resume()
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=f"train {self.cfg.method}", mininterval=5)
        while self.step < self.cfg.steps:
            record = self.train_step()
            self.step += 1
            self.log.append(record)
            print(json.dumps(record), flush=True)
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward_mean']:.3f}", kl=f"{record['kl']:.4f}")
            if self.cfg.save_every and self.step % self.cfg.save_every == 0 and self.step < self.cfg.steps:
                self._save_state()
        bar.close()
        self._save_state()
        return self.log
