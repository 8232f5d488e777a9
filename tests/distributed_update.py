"""One PPO update on a fixed batch, for tests/test_distributed.py: run as plain python (one
process) or under `accelerate launch --num_processes 2` (each process takes its shard of the
rows), the policy wrapped as `--distributed` says (ddp, or fsdp: sharded per decoder layer).
Writes, from the main process, the logged losses, the parameters before the update and after it."""

from __future__ import annotations

import argparse
import copy

import torch

from conftest import train_cfg  # noqa: E402  (this script runs from tests/)
from ricepo.agent.models import load_backbone
from ricepo.precision import resolve_precision
from ricepo.train.distributed import Parallel, shard
from ricepo.train.trainer import UpdateBatch, policy_update

ROWS, PAD = 5, 0
# (name, loss aggregation, PPO mini-batches)
CASES = [("token-mean", "token-mean", 1), ("seq-mean-token-mean", "seq-mean-token-mean", 1), ("token-mean/2 mini-batches", "token-mean", 2)]


def fixed_batch(vocab: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ROWS rows of 20-40 random tokens, trained from position 8 on, random token advantages."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 41, (ROWS,), generator=g).tolist()
    width = max(lengths)
    ids = torch.full((ROWS, width), PAD, dtype=torch.long)
    attn = torch.zeros((ROWS, width), dtype=torch.long)
    mask = torch.zeros((ROWS, width), dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        attn[i, :n] = 1
        mask[i, 8 + i : n] = True
    adv = torch.randn((ROWS, width), generator=g) * mask
    return ids.to(device), attn.to(device), mask.to(device), adv.to(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--distributed", default="ddp")
    args = ap.parse_args()
    par = Parallel.start(args.distributed)
    acc = par.acc
    # the backbone as saved, read without any wrapping: what every case starts from
    initial = torch.cat([p.detach().flatten() for p in load_backbone(args.backbone)[0].parameters()])
    results = {"processes": acc.num_processes, "sharded": par.fsdp, "initial": initial}
    for name, agg, mini_batches in CASES:
        model, _ = load_backbone(args.backbone, device=acc.device)
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        cfg = train_cfg(learning_rate=1e-3, kl_coef=0.1, ppo_epochs=2, micro_batch_size=2, loss_agg=agg, ppo_mini_batches=mini_batches)
        model, ref, opt = par.prepare(model, ref, lambda params: torch.optim.AdamW(params, lr=cfg.learning_rate), None)
        vocab = par.unwrap(model).config.vocab_size
        local = [getattr(p, "_local_tensor", p) for p in model.parameters()]  # FSDP: this process's shard
        results["held"] = sum(t.numel() for t in local) / sum(p.numel() for p in model.parameters())
        ids, attn, mask, adv = fixed_batch(vocab, acc.device)
        rows = shard(list(range(ROWS)), acc.process_index, acc.num_processes)
        mine = torch.tensor(rows, device=acc.device)
        start = 1
        # mini-batches by the row's place in the whole batch, as the trainer assigns them
        batch = UpdateBatch(
            ids=ids[mine],
            attn=attn[mine],
            mask=mask[mine][:, start:],
            adv=adv[mine][:, start:],
            sampled=torch.zeros_like(adv[mine][:, start:]),
            minibatch=torch.tensor([r % mini_batches for r in rows], device=acc.device),
            query=torch.zeros(len(rows), dtype=torch.long, device=acc.device),
            start=start,
        )
        stats = policy_update(model, ref, opt, batch, cfg, temperature=1.0, vocab=vocab, precision=resolve_precision("fp32", acc.device), par=par)
        weights = par.full_state_dict(model)
        params = torch.cat([weights[n].detach().flatten().cpu() for n, _ in par.unwrap(model).named_parameters()]) if acc.is_main_process else None
        results[name] = {"stats": stats, "params": params}
    if acc.is_main_process:
        torch.save(results, args.out)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
