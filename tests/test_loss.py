import math

import pytest
import torch

from ricepo.train.loss import aggregate, token_losses, trained_rows


def test_ppo_clip_dual_clip_and_k3_by_hand():
    # token 0: A=+1, ratio e^0.5=1.6487 -> clipped at 1.2: pg = max(-1.6487, -1.2) = -1.2
    # token 1: A=-1, ratio e^0.5 -> pg1 = 1.6487, pg2 = 1.2 -> 1.6487 (< dual cap 3)
    # token 2: A=-1, ratio e^2=7.389 -> max(7.389, 1.2) = 7.389 -> dual clip caps at 3.0
    # token 3: A=+2, ratio 1 -> -2
    logp = torch.tensor([0.5, 0.5, 2.0, 0.0])
    old = torch.zeros(4)
    adv = torch.tensor([1.0, -1.0, -1.0, 2.0])
    ref = torch.tensor([0.5, 0.0, 2.0, 0.0])  # d = ref - logp = [0, -0.5, 0, 0]
    loss, pg, kl, clipped = token_losses(logp, old, ref, adv, clip_eps=0.2, dual_clip=3.0, kl_coef=0.1)
    assert pg.tolist() == pytest.approx([-1.2, math.exp(0.5), 3.0, -2.0], rel=1e-6)
    # k3 at d=-0.5: e^-0.5 + 0.5 - 1 = 0.106531
    assert kl.tolist() == pytest.approx([0.0, math.exp(-0.5) + 0.5 - 1, 0.0, 0.0], abs=1e-6)
    assert loss[1].item() == pytest.approx(math.exp(0.5) + 0.1 * (math.exp(-0.5) + 0.5 - 1), rel=1e-6)
    assert clipped.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_k3_is_clamped_as_verl_clamps_it():
    # d = ref - logp: 3 -> e^3 - 3 - 1 = 16.09, capped at 10; 30 -> d clamped to 20 first, then 10;
    # -30 -> d = -20: e^-20 + 20 - 1 = 19.0, capped at 10; 1 -> e - 2 = 0.718 (untouched)
    logp = torch.zeros(4)
    ref = torch.tensor([3.0, 30.0, -30.0, 1.0])
    _, _, kl, _ = token_losses(logp, logp, ref, torch.zeros(4), clip_eps=0.2, dual_clip=3.0, kl_coef=0.1)
    assert kl.tolist() == pytest.approx([10.0, 10.0, 10.0, math.e - 2], rel=1e-6)
    d = torch.tensor([-30.0], requires_grad=True)  # no inf or NaN reaches the gradient
    token_losses(d, torch.zeros(1), torch.zeros(1), torch.zeros(1), clip_eps=0.2, dual_clip=3.0, kl_coef=1.0)[0].sum().backward()
    assert torch.isfinite(d.grad).all()


def test_policy_ratio_is_clamped_as_verl_clamps_it():
    # log-ratio 100: e^100 overflows float32 to inf and inf x 0 (a zero advantage) is NaN. Clamped to
    # 20, the ratio is e^20 and a zero advantage gives pg 0, a finite loss and a finite gradient.
    logp = torch.tensor([100.0, 100.0, -100.0], requires_grad=True)
    old = torch.zeros(3)
    adv = torch.tensor([0.0, -1.0, 1.0])
    loss, pg, _, _ = token_losses(logp, old, logp.detach(), adv, clip_eps=0.2, dual_clip=3.0, kl_coef=0.1)
    # token 0: A = 0 -> 0; token 1: A = -1, ratio e^20 -> capped by the dual clip at 3;
    # token 2: A = +1, ratio e^-20 -> max(-e^-20, -0.8) = -e^-20
    assert pg.tolist() == pytest.approx([0.0, 3.0, -math.exp(-20.0)], rel=1e-5, abs=1e-12)
    aggregate(loss, torch.ones(3, dtype=torch.bool), "token-mean", total_tokens=3, total_seqs=1).backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logp.grad).all()


def test_seq_mean_divides_by_rows_with_a_trained_token():
    # row 2 has no trained token: verl's seq-mean divides by the 2 rows that have one, not by 3
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    assert trained_rows(mask) == 2
    # seq-mean-token-mean: (6/3 + 4/1) / 2 = 3; seq-mean-token-sum: (6 + 4) / 2 = 5
    assert aggregate(values, mask, "seq-mean-token-mean", total_tokens=4, total_seqs=trained_rows(mask)).item() == pytest.approx(3.0)
    assert aggregate(values, mask, "seq-mean-token-sum", total_tokens=4, total_seqs=trained_rows(mask)).item() == pytest.approx(5.0)


def test_aggregation_modes_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    # token-mean: (1+2+3+4) / 4 = 2.5
    assert aggregate(values, mask, "token-mean", total_tokens=4, total_seqs=2).item() == pytest.approx(2.5)
    # seq-mean-token-mean: (2 + 4) / 2 = 3
    assert aggregate(values, mask, "seq-mean-token-mean", total_tokens=4, total_seqs=2).item() == pytest.approx(3.0)
    # seq-mean-token-sum: (6 + 4) / 2 = 5
    assert aggregate(values, mask, "seq-mean-token-sum", total_tokens=4, total_seqs=2).item() == pytest.approx(5.0)


def test_microbatch_shares_add_up_to_the_batch_loss():
    values = torch.rand(4, 5)
    mask = torch.rand(4, 5) > 0.3
    total = float(mask.sum())
    whole = aggregate(values, mask, "token-mean", total_tokens=total, total_seqs=4)
    parts = aggregate(values[:2], mask[:2], "token-mean", total_tokens=total, total_seqs=4) + aggregate(
        values[2:], mask[2:], "token-mean", total_tokens=total, total_seqs=4
    )
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)
