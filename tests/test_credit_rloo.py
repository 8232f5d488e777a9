"""RLOO's credit, worked by hand, through the function and through `ricepo credit --method rloo`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ricepo.credit import compute_credit


def group(rewards, steps=2):
    return {
        "query_id": "q",
        "trajectories": [
            {"id": f"T{i}", "final_reward": r, "steps": [{"state": f"s{k}", "local_reward": 0.0} for k in range(steps)]}
            for i, r in enumerate(rewards)
        ],
    }


def test_each_trajectory_is_scored_against_the_mean_of_the_others():
    # R = [1.0, 0.0, 0.5]: A0 = 1 - (0 + 0.5)/2 = 0.75, A1 = 0 - (1 + 0.5)/2 = -0.75, A2 = 0.5 - (1 + 0)/2 = 0
    out = compute_credit("rloo", group([1.0, 0.0, 0.5]))
    for tid, a in (("T0", 0.75), ("T1", -0.75), ("T2", 0.0)):
        assert out[tid] == [{"reasoning": pytest.approx(a), "summary": pytest.approx(a)}] * 2
    # R = [0.2, 0.6]: A0 = 0.2 - 0.6 = -0.4, A1 = +0.4 (with G = 2, RLOO is the reward difference)
    out = compute_credit("rloo", group([0.2, 0.6], steps=1))
    assert (out["T0"][0]["reasoning"], out["T1"][0]["summary"]) == (pytest.approx(-0.4), pytest.approx(0.4))


def test_a_group_of_one_gets_zero():
    assert compute_credit("rloo", group([0.9]))["T0"] == [{"reasoning": 0.0, "summary": 0.0}] * 2


def test_the_credit_cli_answers_for_rloo(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(group([1.0, 0.0, 0.5], steps=1)))
    out = subprocess.run(
        [sys.executable, "-m", "ricepo", "credit", "--method", "rloo", str(tmp_path / "g.json")], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["T1"] == [{"reasoning": -0.75, "summary": -0.75}]
