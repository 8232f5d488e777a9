"""The GPU path, for a GPU node: `scripts/gpu_check.sh` runs these (`pytest -m gpu`); CI has no
GPU and deselects them. Each check is a function of the device, so the same code is what the CPU
tests exercise elsewhere (test_trainer.py, test_sampling.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_trainer import spec, tasks

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (scripts/gpu_check.sh)")]


def test_sampling_runs_on_the_gpu_with_a_device_generator(tiny_backbone):
    from ricepo.agent.models import load_backbone
    from ricepo.agent.sampling import TransformersSampler
    from ricepo.train.trainer import sequence_logprobs

    model, tok = load_backbone(str(tiny_backbone), device=torch.device("cuda"))
    sampler = TransformersSampler(model, tok, torch.bfloat16)
    assert "CUDA graphs" in sampler.describe(), "rollout.compile's default compiles on a GPU"
    generator = torch.Generator(device="cuda").manual_seed(0)
    contexts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("two sum", "shortest path in a graph")]
    out = sampler.sample(contexts, max_new_tokens=12, stop="</think>", temperature=1.0, generator=generator)
    assert all(r.ids for r in out)
    ids = torch.tensor([contexts[0] + out[0].ids], device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logp = sequence_logprobs(model, ids, torch.ones_like(ids), 1.0, len(tok), len(contexts[0]))[0]
    assert torch.allclose(logp.cpu(), torch.tensor(out[0].logprobs), atol=0.1), "bf16 sampler vs float32 trainer"
    assert sampler.step is not None, "the compiled step ran (no fallback)"


def test_the_compiled_step_samples_as_the_eager_loop_on_the_gpu(tiny_backbone):
    """fp32, greedy and sampled with a CUDA generator: the compiled step (CUDA graphs) gives the
    eager loop's tokens, log-probs within 1e-4 (other kernels) and leaves the generator alike."""
    from ricepo.agent.models import load_backbone
    from ricepo.agent.sampling import TransformersSampler

    model, tok = load_backbone(str(tiny_backbone), device=torch.device("cuda"))
    contexts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("two sum", "shortest path in a graph", "heap")]
    for temperature in (0.0, 1.0):
        outs, states = [], []
        for setting in ("on", "off"):
            sampler, g = TransformersSampler(model, tok, compile=setting), torch.Generator(device="cuda").manual_seed(0)
            outs.append(sampler.sample(contexts, max_new_tokens=16, stop="</think>", temperature=temperature, generator=g))
            states.append(g.get_state())
        for a, b in zip(*outs):
            assert a.ids == b.ids and a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert torch.equal(*states)


def test_a_bf16_mixed_step_at_lr_1e_6_moves_every_parameter_tensor_on_the_gpu(tiny_backbone):
    import copy

    from conftest import train_cfg
    from ricepo.agent.models import load_backbone
    from ricepo.precision import resolve_precision
    from ricepo.train.distributed import Parallel
    from ricepo.train.trainer import policy_update
    from test_trainer import _random_update_batch

    par = Parallel.start("ddp")
    model, tok = load_backbone(str(tiny_backbone), device=par.device)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    cfg = train_cfg(learning_rate=1e-6, ppo_mini_batches=1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    b = _random_update_batch(len(tok))
    b = type(b)(**{k: (v.to(par.device) if torch.is_tensor(v) else v) for k, v in vars(b).items()})
    precision = resolve_precision("auto", par.device)
    assert precision.name == "bf16-mixed"
    policy_update(model, ref, opt, b, cfg, 1.0, len(tok), precision, par)
    assert [n for n, p in model.named_parameters() if torch.equal(p, before[n])] == []


def run_ok(cmd: list[str], env: dict) -> str:
    """The command's stdout, once it has exited 0."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"exit {done.returncode}; the end of its stderr:\n{done.stderr[-3000:]}"
    return done.stdout


def test_train_kill_resume_equals_an_uninterrupted_run_on_the_gpu(fixture_task, tiny_backbone, tmp_path):
    """`ricepo train` killed (SIGKILL) once its step-2 checkpoint is written, then run again,
    resumes at step 2 and ends with the log and the weights of a run that was never interrupted."""
    from safetensors.torch import load_file

    s = json.dumps(spec(tiny_backbone, steps=4, save_every=2))
    ((split, index),) = tasks(fixture_task).values()
    cmd = [sys.executable, "-m", "ricepo", "train", "--spec", s, "--task", f"leetcode={split}:{index}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run_ok([*cmd, "--out", str(tmp_path / "straight")], env)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while not (out / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "log.jsonl").exists(), "killed before the end"
    assert f"resuming {out} at step 2/4" in run_ok([*cmd, "--out", str(out)], env)
    straight = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        for key in ("reward_mean", "loss", "kl", "tokens_generated", "clip_frac"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    initial, a, b = (load_file(d / "model.safetensors") for d in (tiny_backbone, tmp_path / "straight" / "model", out / "model"))
    assert a.keys() == b.keys() == initial.keys()
    unmoved = [k for k in a if torch.equal(a[k], initial[k])]
    assert unmoved == [], unmoved
    # Not bit for bit as on the CPU (test_trainer.py): CUDA's attention backward may sum in another
    # order from run to run, and AdamW's first steps (lr times the gradient's sign) make the sign
    # of a near-zero gradient element a whole lr-sized move. Those few elements aside the two runs
    # took one path: they lie under 1% of the distance training moved the weights apart.
    moved = sum(float((a[k] - initial[k]).double().square().sum()) for k in a) ** 0.5
    apart = sum(float((b[k] - a[k]).double().square().sum()) for k in a) ** 0.5
    assert apart < 0.01 * moved, (apart, moved)
