import json
import subprocess

import pytest

from ricepo.credit import compute_credit
from ricepo.errors import RicepoError


def group(rewards, steps=2):
    return {
        "query_id": "q",
        "trajectories": [
            {"id": f"T{i}", "final_reward": r, "steps": [{"state": "s0", "local_reward": 0.0, "summary_entropy": 1.0}] * steps}
            for i, r in enumerate(rewards)
        ],
    }


def test_grpo_by_hand():
    # R = [1, 0, 0.5]: mean 0.5; deviations 0.5, -0.5, 0; sample variance (0.25+0.25+0)/2 = 0.25 -> std 0.5
    # A = (R - 0.5) / (0.5 + 1e-6) = [0.999998, -0.999998, 0]
    out = compute_credit("grpo", group([1.0, 0.0, 0.5]))
    assert out["T0"][0]["reasoning"] == pytest.approx(0.5 / 0.500001)
    assert out["T1"][1]["summary"] == pytest.approx(-0.5 / 0.500001)
    assert out["T2"][0]["summary"] == 0.0
    assert len(out["T0"]) == 2 and out["T0"][0] == out["T0"][1]


def test_grpo_ties_singleton_and_dr_grpo():
    assert compute_credit("grpo", group([0.3, 0.3]))["T0"][0]["reasoning"] == 0.0  # tie: 0 / (0 + 1e-6)
    # a group of one: mean 0, std 1 (verl), so A = R / (1 + 1e-6)
    assert compute_credit("grpo", group([0.4]))["T0"][0]["summary"] == pytest.approx(0.4 / 1.000001)
    # Dr. GRPO: R - mean = [0.5, -0.5]
    out = compute_credit("grpo", group([1.0, 0.0]), norm_by_std=False)
    assert (out["T0"][0]["reasoning"], out["T1"][0]["reasoning"]) == (0.5, -0.5)


def test_unknown_and_unimplemented_methods_are_clear():
    with pytest.raises(RicepoError, match="credit method 'ricepo': rule must be one of"):
        compute_credit("ricepo", group([1.0, 0.0]), rule="case3")
    with pytest.raises(RicepoError, match="unknown method 'foo'"):
        compute_credit("foo", group([1.0]))
    with pytest.raises(RicepoError, match="takes no setting"):
        compute_credit("grpo", group([1.0]), gamma=0.9)
    with pytest.raises(RicepoError, match="'prompting' assigns no credit"):
        compute_credit("prompting", group([1.0]))


def test_a_method_is_registered_once_and_its_variants_are_overlays_of_its_settings():
    from ricepo.credit import METHODS, Method, Param, Variant, get_method, register

    with pytest.raises(RicepoError, match="'grpo' is registered twice"):
        register(Method("grpo", "GRPO again", rollout="independent"))
    with pytest.raises(RicepoError, match="variant 'x' sets unknown setting"):
        register(Method("demo", "Demo", rollout="independent", params={"a": Param({"default": 1})}, variants={"x": Variant("X", {"b": 2})}))
    with pytest.raises(RicepoError, match="may not be called 'default'"):
        register(Method("demo", "Demo", rollout="independent", variants={"default": Variant("D", {})}))
    assert "demo" not in METHODS
    ricepo = get_method("ricepo")
    credit, rollout = ricepo.settings({"anchors": 3}, "random_trigger")
    assert rollout == {"anchors": 3, "branches": 4, "trigger": "random", "train_branches": False}
    assert credit["rule"] == "full" and "anchors" not in credit
    assert ricepo.settings({}, "case1")[0]["rule"] == "case1"
    assert ricepo.label_of("random_case") == "Random"
    with pytest.raises(RicepoError, match="no variant 'case3'"):
        ricepo.settings({}, "case3")


def test_credit_cli_single_group_and_list():
    g = group([1.0, 0.0], steps=1)
    one = subprocess.run(["ricepo", "credit", "--method", "grpo", "-"], input=json.dumps(g), capture_output=True, text=True, check=True)
    # R = [1, 0]: mean 0.5, sample variance (0.25 + 0.25) / 1 = 0.5, A_0 = 0.5 / (sqrt(0.5) + 1e-6)
    assert json.loads(one.stdout)["T0"][0]["summary"] == pytest.approx(0.5 / (0.5**0.5 + 1e-6), rel=1e-9)
    many = subprocess.run(
        ["ricepo", "credit", "--method", "grpo", "--set", "norm_by_std=false", "-"],
        input=json.dumps([g, g]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(many.stdout) == [{"T0": [{"reasoning": 0.5, "summary": 0.5}], "T1": [{"reasoning": -0.5, "summary": -0.5}]}] * 2
