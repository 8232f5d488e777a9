"""One PPO update on a fixed batch, for tests/test_distributed.py: run as plain python (one
process) or under `accelerate launch --num_processes 2` (each process takes its shard of the
rows). Writes, from the main process, the logged losses and the updated parameters."""
from __future__ import annotations

import argparse
import copy

import torch

from ricepo.agent.models import load_backbone
from ricepo.train.distributed import make_accelerator, shard
from ricepo.train.trainer import TrainConfig, UpdateBatch, policy_update

ROWS, PAD = 5, 0


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
        mask[i, 8 + i:n] = True
    adv = torch.randn((ROWS, width), generator=g) * mask
    return ids.to(device), attn.to(device), mask.to(device), adv.to(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    acc = make_accelerator()
    results = {"processes": acc.num_processes}
    for agg in ("token-mean", "seq-mean-token-mean"):
        model, _ = load_backbone(args.backbone, "float32", acc.device)
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        cfg = TrainConfig(method="grpo", learning_rate=1e-3, kl_coef=0.1, ppo_epochs=2, micro_batch_size=2, loss_agg=agg)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        model, opt = acc.prepare(model, opt)
        ids, attn, mask, adv = fixed_batch(acc.unwrap_model(model).config.vocab_size, acc.device)
        mine = torch.tensor(shard(list(range(ROWS)), acc.process_index, acc.num_processes), device=acc.device)
        start = 1
        batch = UpdateBatch(ids=ids[mine], attn=attn[mine], mask=mask[mine][:, start:], adv=adv[mine][:, start:],
                            start=start)
        stats = policy_update(model, ref, opt, batch, cfg, temperature=1.0, acc=acc)
        params = torch.cat([p.detach().flatten().cpu() for p in acc.unwrap_model(model).parameters()])
        results[agg] = {"stats": stats, "params": params}
    if acc.is_main_process:
        torch.save(results, args.out)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
