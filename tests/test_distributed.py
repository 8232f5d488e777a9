"""Training across two processes on the CPU (gloo) takes the same update as one process on the
same batch: same logged loss, same parameters afterwards, whether the policy is whole in each
process (DDP) or sharded per decoder layer (FSDP2); an FSDP run resumes from its sharded
checkpoint where an uninterrupted run would be."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).with_name("distributed_update.py")
# `accelerate launch`, through this interpreter (its console script need not be on PATH)
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def _run(cmd: list[str], tmp_path: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    got = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-3000:]
    return got.stdout


@pytest.mark.parametrize("mode, port", [("ddp", 29517), ("fsdp", 29519)])
def test_two_processes_take_the_one_process_update(tiny_backbone, tmp_path, mode, port):
    _run([sys.executable, str(HELPER), "--backbone", str(tiny_backbone), "--out", "one.pt"], tmp_path)
    _run(
        [*LAUNCH, "--main_process_port", str(port), str(HELPER), "--backbone", str(tiny_backbone), "--out", "two.pt", "--distributed", mode], tmp_path
    )
    one, two = (torch.load(tmp_path / f, weights_only=False) for f in ("one.pt", "two.pt"))
    assert (one["processes"], two["processes"]) == (1, 2) and torch.equal(one["initial"], two["initial"])
    assert two["sharded"] == (mode == "fsdp")
    # the fraction of the parameters the main process holds: all (DDP), about half (FSDP)
    assert two["held"] == 1.0 if mode == "ddp" else 0.45 < two["held"] < 0.55, two["held"]
    for name in ("token-mean", "seq-mean-token-mean", "token-mean/2 mini-batches"):
        a, b = one[name], two[name]
        assert a["stats"]["kl"] > 0 and a["stats"]["clip_frac"] > 0, "the second epoch must move off-policy"
        assert a["stats"]["ppo_updates"] == b["stats"]["ppo_updates"] == 2 * (2 if "mini" in name else 1)
        for key in ("loss", "pg_loss", "kl", "clip_frac", "grad_norm"):
            assert b["stats"][key] == pytest.approx(a["stats"][key], rel=1e-4, abs=1e-6), (name, key)
        # Both runs updated the weights: AdamW moves nearly every weight by about lr (1e-3) per step,
        # far more than the 1e-5 within which the two runs must agree.
        for run in (a, b):
            assert (run["params"] - one["initial"]).abs().mean() > 1e-4, (name, "two" if run is b else "one")
        # Adam divides by sqrt(v): a gradient near zero turns float noise into up to ~1% of a step (lr 1e-3)
        assert torch.allclose(a["params"], b["params"], atol=1e-5), (name, (a["params"] - b["params"]).abs().max())


# `ricepo train` that also writes, from each process, per step: the query ids of the whole step's
# batch and those this process rolled out (every rollout, fresh or branched, goes through
# Agent.advance). The log merges the processes' counts, so it cannot tell who rolled out what.
RECORDING_TRAIN = """
import json
import sys

from ricepo.agent.rollout import Agent
from ricepo.cli import main
from ricepo.train.trainer import Trainer

advance, train_step, rolled = Agent.advance, Trainer.train_step, []


def recording_advance(self, trajs, *args, **kwargs):
    rolled.extend(t.query_id for t in trajs)
    return advance(self, trajs, *args, **kwargs)


def recording_train_step(self):
    rolled.clear()
    batch = [qid for _, qid, _ in self._batch(self.step)]
    record = train_step(self)
    with open(f"rolled_out.rank{self.rank}.jsonl", "a") as f:
        f.write(json.dumps({"step": record["step"], "batch": batch, "rolled": sorted(set(rolled))}) + "\\n")
    return record


Agent.advance, Trainer.train_step = recording_advance, recording_train_step
sys.exit(main())
"""


def test_ricepo_train_under_accelerate_launch_shares_the_step(fixture_task, tiny_backbone, tmp_path):
    """`ricepo train` under `accelerate launch --num_processes 2`: each process rolls out half the
    step's queries, the log counts the whole step once, one model is saved."""
    import json

    from test_trainer import spec, tasks

    s = spec(tiny_backbone, steps=2, queries_per_step=2)
    ((split, index),) = tasks(fixture_task).values()
    (tmp_path / "recording_train.py").write_text(RECORDING_TRAIN)
    _run(
        [
            *LAUNCH,
            "--main_process_port",
            "29518",
            "recording_train.py",
            "train",
            "--spec",
            json.dumps(s),
            "--task",
            f"leetcode={split}:{index}",
            "--out",
            "run",
        ],
        tmp_path,
    )
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    group = s["rollout"]["group_size"]
    assert all(r["trajectories"] == 2 * group and r["rollouts"] == 2 * group for r in log)
    assert all(0.0 <= r["reward_mean"] <= 1.0 and r["grad_norm"] > 0 for r in log)
    # the processes agree on each step's two queries and roll out one each: none twice, none left out
    first, second = ([json.loads(x) for x in (tmp_path / f"rolled_out.rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1))
    assert [r["step"] for r in first] == [r["step"] for r in second] == [1, 2]
    for a, b in zip(first, second):
        assert a["batch"] == b["batch"] and len(set(a["batch"])) == 2, (a, b)
        assert set(a["rolled"]).isdisjoint(b["rolled"]) and {*a["rolled"], *b["rolled"]} == set(a["batch"]), (a, b)
        assert len(a["rolled"]) == len(b["rolled"]) == 1, (a, b)
    assert (tmp_path / "run" / "model" / "config.json").exists()
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert len(state["generators"]) == 2 and state["step"] == 2


def test_step_log_merges_processes_by_hand():
    from ricepo.train.distributed import merge_records

    a = {"step": 3, "loss": 0.5, "trajectories": 8, "rollouts": 8, "rollout_s": 2.0, "gate_open_rate": 0.5}
    b = {"step": 3, "loss": 0.5, "trajectories": 4, "rollouts": 24, "rollout_s": 3.0, "gate_open_rate": 0.25}
    m = merge_records([a, b])
    assert m == {"step": 3, "loss": 0.5, "trajectories": 12, "rollouts": 32, "rollout_s": 3.0, "gate_open_rate": (0.5 * 8 + 0.25 * 24) / 32}
    assert merge_records([a]) == a


def test_fsdp_run_resumes_from_its_sharded_checkpoint_as_if_never_stopped(fixture_task, tiny_backbone, tmp_path):
    """`ricepo train` with train.distributed fsdp over two processes: 3 steps straight, and 2 steps
    then the same run extended to 3 (it resumes from the sharded checkpoint of step 2), log the
    same third step and save the same weights."""
    import json

    from safetensors.torch import load_file

    from test_trainer import spec, tasks

    ((split, index),) = tasks(fixture_task).values()

    said = {}

    def train(out: str, steps: int) -> list[dict]:
        s = spec(tiny_backbone, steps=steps, queries_per_step=2, distributed="fsdp", precision="fp32", save_every=1)
        said[out, steps] = _run(
            [
                *LAUNCH,
                "--main_process_port",
                "29521",
                "-m",
                "ricepo",
                "train",
                "--spec",
                json.dumps(s),
                "--task",
                f"leetcode={split}:{index}",
                "--out",
                out,
            ],
            tmp_path,
        )
        return [json.loads(x) for x in (tmp_path / out / "log.jsonl").read_text().splitlines()]

    straight = train("straight", 3)
    train("resumed", 2)
    state = torch.load(tmp_path / "resumed" / "state.pt", weights_only=False)
    assert state["step"] == 2 and state["model"] is None and state["shards"] == "state.shards.step2"
    assert sorted(p.name for p in (tmp_path / "resumed").glob("state.shards.*")) == ["state.shards.step2"]
    resumed = train("resumed", 3)
    assert "at step 2/3 (same identity)" in said["resumed", 3] and "resuming" not in said["straight", 3]
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for key in ("reward_mean", "loss", "kl", "grad_norm", "tokens_generated"):
        assert resumed[2][key] == pytest.approx(straight[2][key], rel=1e-5, abs=1e-7), key
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight[2]["grad_norm"] > 0


def test_fsdp_trains_in_bf16_mixed_with_the_sampler_close_to_the_trainer(fixture_task, tiny_backbone, tmp_path):
    """bf16-mixed under FSDP: layers gathered in bf16, gradients reduced in float32, the sampler's
    bf16 copy refreshed tensor by tensor; its log-probs stay within bf16 rounding of the trainer's."""
    import json

    from test_trainer import spec, tasks

    ((split, index),) = tasks(fixture_task).values()
    s = spec(tiny_backbone, steps=2, queries_per_step=2, distributed="fsdp", precision="bf16-mixed")
    out = _run(
        [
            *LAUNCH,
            "--main_process_port",
            "29523",
            "-m",
            "ricepo",
            "train",
            "--spec",
            json.dumps(s),
            "--task",
            f"leetcode={split}:{index}",
            "--out",
            "run",
        ],
        tmp_path,
    )
    assert "precision bf16-mixed on cpu" in out
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(r["grad_norm"] > 0 and r["logprob_gap_max"] < 0.05 for r in log), log
