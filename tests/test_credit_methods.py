"""Every credit method on small groups whose advantages were worked out by hand (shown inline)."""

import json
import math
import subprocess

import pytest

from ricepo.credit import compute_credit
from ricepo.errors import RicepoError

EPS = 1e-6


def traj(tid, reward, states, tree=0, entropies=None):
    entropies = entropies or [1.0] * len(states)
    return {
        "id": tid,
        "final_reward": reward,
        "tree": tree,
        "steps": [{"state": s, "local_reward": 0.0, "summary_entropy": h} for s, h in zip(states, entropies)],
    }


def test_gigpo_by_hand():
    # γ = 0.5, final_only. Returns G: T0 [0.5, 1], T1 [0, 0], T2 [0.25, 0.5].
    g = {"query_id": "q", "trajectories": [traj("T0", 1.0, ["q", "A"]), traj("T1", 0.0, ["q", "A"]), traj("T2", 0.5, ["q", "B"])]}
    out = compute_credit("gigpo", g, gamma=0.5)
    # A^E over 6 step rows [1,1,0,0,.5,.5]: mean .5, Σdev² = 1, n-1 = 5 -> std sqrt(0.2)
    ae = 0.5 / (math.sqrt(0.2) + EPS)
    # anchor "q": G [.5, 0, .25]: mean .25, var (2 x .0625)/2 -> std .25 -> A^S [1, -1, 0]
    # anchor "A": G [1, 0] -> std sqrt(.5) -> A^S ±.5/sqrt(.5); anchor "B" alone -> 0
    assert out["T0"][0]["summary"] == pytest.approx(ae + 0.25 / (0.25 + EPS))
    assert out["T0"][1]["reasoning"] == pytest.approx(ae + 0.5 / (math.sqrt(0.5) + EPS))
    assert out["T1"][0]["reasoning"] == pytest.approx(-ae - 0.25 / (0.25 + EPS))
    assert out["T2"][0]["summary"] == pytest.approx(0.0, abs=1e-9)
    assert out["T2"][1]["summary"] == pytest.approx(0.0, abs=1e-9)


def test_gigpo_identical_state_at_different_steps_is_one_anchor_group():
    # T0 visits "X" at step 1, T1 at step 0 (γ = 1, final_only): G(T0,1) = 1, G(T1,0) = 0
    g = {"trajectories": [traj("T0", 1.0, ["q", "X"]), traj("T1", 0.0, ["X", "z"])]}
    out = compute_credit("gigpo", g, gamma=1.0, omega=1.0, mode="mean_norm")
    # mean_norm: A^E = R - mean over rows [1,1,0,0] = ±.5 ; anchor "X": G [1, 0] -> ±.5
    assert out["T0"][1]["summary"] == pytest.approx(0.5 + 0.5)
    assert out["T1"][0]["summary"] == pytest.approx(-0.5 - 0.5)
    assert out["T0"][0]["summary"] == pytest.approx(0.5)  # "q" alone -> 0


def test_hgpo_by_hand():
    # γ = 0.5, K = 1, α = 1. States: T0 [q,A,C] R=1; T1 [q,B,C] R=0; T2 [q,A,C] R=.5
    # G: T0 [.25,.5,1]; T1 [0,0,0]; T2 [.125,.25,.5]
    g = {"trajectories": [traj("T0", 1.0, ["q", "A", "C"]), traj("T1", 0.0, ["q", "B", "C"]), traj("T2", 0.5, ["q", "A", "C"])]}
    out = compute_credit("hgpo", g, gamma=0.5, history=1, alpha=1.0)
    # step 2, k=1 key (C): G [1, 0, .5] mean .5, population std sqrt(.5/3)
    a1 = 0.5 / (math.sqrt(0.5 / 3) + EPS)
    # step 2, k=2 key (A,C): T0, T2 G [1, .5] mean .75, population std .25
    a2 = 0.25 / (0.25 + EPS)
    # weights (k+1)^α: 2 and 3 -> 2/5, 3/5
    assert out["T0"][2]["reasoning"] == pytest.approx(0.4 * a1 + 0.6 * a2)
    assert out["T1"][2]["reasoning"] == pytest.approx(-a1)  # (B,C) is a group of one
    assert out["T2"][2]["reasoning"] == pytest.approx(-a2)  # its k=1 value is exactly 0: dropped
    assert out["T1"][1]["summary"] == 0.0  # (B) and (q,B) alone: nothing kept
    # step 0, k=1 key (q): G [.25, 0, .125] mean .125, population std sqrt(.03125/3)
    assert out["T0"][0]["summary"] == pytest.approx(0.125 / (math.sqrt(0.03125 / 3) + EPS))


def test_hgpo_level_of_tied_returns_is_exactly_zero_and_takes_no_weight():
    # T0..T2 go (q, A, C) with R = .7, T3 goes (q, B, C) with R = 1 (K = 2, α = 1, final_only).
    # At step 2 the levels of T0..T2 are k=1 (C): G [.7, .7, .7, 1]; k=2 (A,C) and k=3 (q,A,C):
    # G [.7, .7, .7], all tied, so exactly 0 and dropped. Only k=1 remains, with weight 1:
    # mean .775, population std sqrt((3 x .075² + .225²)/4) = sqrt(.016875) -> -.075/.1299 = -.577.
    # In floats the mean of three .7s is .6999999999999998: the tied levels kept ~1e-10 and took
    # a share of the weights, giving -.128 (found by a comparison with verl-agent's code).
    g = {"trajectories": [traj(f"T{i}", 0.7, ["q", "A", "C"]) for i in range(3)] + [traj("T3", 1.0, ["q", "B", "C"])]}
    expected = -0.075 / (math.sqrt(0.016875) + EPS)
    assert expected == pytest.approx(-0.57735, abs=1e-4)
    out = subprocess.run(["ricepo", "credit", "--method", "hgpo", "-"], input=json.dumps(g), capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    for tid in ("T0", "T1", "T2"):
        assert result[tid][2]["reasoning"] == pytest.approx(expected, rel=1e-9)
    assert result["T3"][2]["summary"] == pytest.approx(0.225 / (math.sqrt(0.016875) + EPS), rel=1e-9)


def test_hgpo_item_equal_to_its_level_mean_is_dropped_exactly():
    # k=1 level (C) at step 1 holds G [0, .05, .1] (γ = 1): the float mean is .05000000000000001, but
    # T1's value equals the exact mean of the three doubles, so it is 0 and dropped (its (b,C) level
    # is a group of one). T0: -.05 / population std sqrt(.005/3).
    g = {"trajectories": [traj("T0", 0.0, ["a", "C"]), traj("T1", 0.05, ["b", "C"]), traj("T2", 0.1, ["c", "C"])]}
    out = compute_credit("hgpo", g, gamma=1.0)
    assert out["T1"][1]["summary"] == 0.0
    assert out["T0"][1]["summary"] == pytest.approx(-0.05 / (math.sqrt(0.005 / 3) + EPS))


def test_hgpo_base_group_adds_the_grpo_level():
    g = {"trajectories": [traj("T0", 1.0, ["a"]), traj("T1", 0.0, ["b"])]}
    # no step group has two members, so only level 0 (GRPO: ±.5/(sqrt(.5)+eps), weight 1) remains
    assert compute_credit("hgpo", g)["T0"][0]["summary"] == 0.0
    out = compute_credit("hgpo", g, base_group=True)
    assert out["T0"][0]["summary"] == pytest.approx(0.5 / (math.sqrt(0.5) + EPS))


def test_tree_grpo_by_hand_with_shared_prefix_leaves():
    # tree 0 leaves A (R=1), B (R=0) share their first step; tree 1 leaves C, D (R=.5 each)
    g = {
        "trajectories": [
            traj("A", 1.0, ["q", "x"], tree=0),
            traj("B", 0.0, ["q", "x"], tree=0),
            traj("C", 0.5, ["q", "y"], tree=1),
            traj("D", 0.5, ["q", "z"], tree=1),
        ]
    }
    out = compute_credit("tree_grpo", g)
    # all leaves: [1,0,.5,.5] mean .5, n-1 variance .5/3 ; tree 0: [1,0] std sqrt(.5); tree 1: tie -> 0
    inter = 0.5 / (math.sqrt(0.5 / 3) + EPS)
    intra = 0.5 / (math.sqrt(0.5) + EPS)
    assert out["A"][0]["reasoning"] == pytest.approx(inter + intra)
    assert out["B"][1]["summary"] == pytest.approx(-inter - intra)
    assert out["C"][0]["summary"] == pytest.approx(0.0, abs=1e-9)


def test_tree_grpo_single_leaf_tree_adds_nothing_within_its_tree():
    g = {"trajectories": [traj("A", 1.0, ["q"], tree=0), traj("B", 0.0, ["q"], tree=1)]}
    assert compute_credit("tree_grpo", g)["A"][0]["summary"] == pytest.approx(0.5 / (math.sqrt(0.5) + EPS))


def ricepo_group(local, final):
    return {
        "query_id": "q",
        "trajectories": [traj("T0", 1.0, ["q", "a"]), traj("T1", 0.0, ["q", "b"])],
        "anchors": [{"trajectory": "T0", "step": 0, "branches": [{"local_reward": l, "final_reward": f} for l, f in zip(local, final)]}],
    }


LOCAL, FINAL = [0.6, 0.2, 0.4, 0.4], [0.7, 0.3, 0.4, 0.5]
A_TRAJ = 0.5 / (math.sqrt(0.5) + EPS)  # GRPO on R = [1, 0]
I = math.sqrt(0.02)  # pstd of ℓ: mean .4, Σdev² = .08, /4
A_SUM = 0.2 / (I + EPS)  # ℓ_0 - mean ℓ = .2
U = math.sqrt(0.0075 / 4)  # δ = F - ℓ = [.1,.1,0,.1]: mean .075, Σdev² = .0075
FINAL_Z = 0.225 / (math.sqrt(0.0875 / 4) + EPS)  # F: mean .475, Σdev² = .0875


@pytest.mark.parametrize(
    "params, summary, reasoning",
    [
        ({}, A_SUM, A_SUM),  # I = .141 ≥ .05, U = .043 ≤ .10: open
        ({"tau_I": 0.2}, A_SUM, A_TRAJ),  # influence gate closed
        ({"tau_R": 0.04}, A_SUM, A_TRAJ),  # effect gate closed
        ({"rule": "case1", "tau_I": 0.2, "tau_R": 0.0}, A_SUM, A_SUM),  # g ≡ 1
        ({"rule": "case2"}, A_SUM, FINAL_Z),  # final-summary credit
        ({"rule": "effect_only", "tau_I": 0.2}, A_SUM, A_SUM),  # only U counts
        ({"rule": "effect_only", "tau_R": 0.04}, A_SUM, A_TRAJ),
        ({"rule": "influence_only", "tau_R": 0.0}, A_SUM, A_SUM),  # only I counts
        ({"rule": "influence_only", "tau_I": 0.2}, A_SUM, A_TRAJ),
        ({"combine": "add"}, A_TRAJ + A_SUM, A_TRAJ + A_SUM),
        ({"combine": "add", "tau_I": 0.2}, A_TRAJ + A_SUM, A_TRAJ),
    ],
)
def test_ricepo_by_hand(params, summary, reasoning):
    assert I == pytest.approx(0.141421, abs=1e-6) and U == pytest.approx(0.043301, abs=1e-6)
    out = compute_credit("ricepo", ricepo_group(LOCAL, FINAL), **params)
    assert out["T0"][0]["summary"] == pytest.approx(summary)
    assert out["T0"][0]["reasoning"] == pytest.approx(reasoning)
    # every other span keeps the trajectory advantage
    assert out["T0"][1] == {"reasoning": pytest.approx(A_TRAJ), "summary": pytest.approx(A_TRAJ)}
    assert out["T1"][0]["summary"] == pytest.approx(-A_TRAJ)


def ricepo_group_with_branch_ids(step, steps=(2, 2, 2)):
    """The group above with its branches trained: each with its id and its own step count."""
    g = ricepo_group(LOCAL, FINAL)
    g["anchors"][0]["step"] = step
    for m, (b, n) in enumerate(zip(g["anchors"][0]["branches"][1:], steps), start=1):
        b["id"], b["steps"] = f"T0@{step}.b{m}", n
    return g


@pytest.mark.parametrize(
    "params, reasoning_of",
    [
        ({}, lambda a_sum, a_traj, z: a_sum),  # gate open: the branch's own summary credit
        ({"tau_I": 0.2}, lambda a_sum, a_traj, z: a_traj),  # gate closed: the branch's trajectory advantage
        ({"rule": "case2"}, lambda a_sum, a_traj, z: z),
    ],
)
def test_ricepo_branch_rows_by_hand(params, reasoning_of):
    """train_branches: branch m gets a_sum_m = (ℓ_m - .4)/I at the anchor step and, after it,
    A_traj_m = (F_m - mean R)/(std R) with the group's R = [1, 0]: mean .5, std √.5."""
    a_sum = {1: -0.2 / (I + EPS), 2: 0.0, 3: 0.0}  # ℓ = .2, .4, .4
    a_traj = {m: (f - 0.5) / (math.sqrt(0.5) + EPS) for m, f in zip((1, 2, 3), FINAL[1:])}  # F = .3, .4, .5
    z = {m: (f - 0.475) / (math.sqrt(0.0875 / 4) + EPS) for m, f in zip((1, 2, 3), FINAL[1:])}
    out = compute_credit("ricepo", ricepo_group_with_branch_ids(0), **params)
    for m in (1, 2, 3):
        row = out[f"T0@0.b{m}"]
        assert row[0]["summary"] == pytest.approx(a_sum[m])
        assert row[0]["reasoning"] == pytest.approx(reasoning_of(a_sum[m], a_traj[m], z[m]))
        assert row[1] == {"reasoning": pytest.approx(a_traj[m]), "summary": pytest.approx(a_traj[m])}
    # an anchor at step 1: the copied step 0 gets nothing
    late = compute_credit("ricepo", ricepo_group_with_branch_ids(1), **params)
    assert late["T0@1.b1"][0] == {"reasoning": 0.0, "summary": 0.0}
    assert late["T0@1.b1"][1]["summary"] == pytest.approx(a_sum[1])
    # rows without ids (the CLI's documented input) stay unscored
    assert set(compute_credit("ricepo", ricepo_group(LOCAL, FINAL))) == {"T0", "T1"}


@pytest.mark.parametrize("tau_I, gated", [(0.05, 1), (0.2, 0)])
def test_ricepo_branch_rows_with_combine_add(tau_I, gated):
    """`combine: add` on a trained branch: its own A_traj_m plus its summary credit on the summary,
    plus the gated credit on the reasoning (as the original's row, with the branch's numbers)."""
    a_sum = {1: -0.2 / (I + EPS), 2: 0.0, 3: 0.0}
    out = compute_credit("ricepo", ricepo_group_with_branch_ids(0), combine="add", tau_I=tau_I)
    for m, f in zip((1, 2, 3), FINAL[1:]):
        a_traj = (f - 0.5) / (math.sqrt(0.5) + EPS)
        assert out[f"T0@0.b{m}"][0] == {"summary": pytest.approx(a_traj + a_sum[m]), "reasoning": pytest.approx(a_traj + gated * a_sum[m])}
        assert out[f"T0@0.b{m}"][1] == {"reasoning": pytest.approx(a_traj), "summary": pytest.approx(a_traj)}


def test_ricepo_branch_rows_are_as_long_as_their_own_continuation():
    """T0 has 2 steps (its policy ended it there); from the anchor at step 1 branch 1 runs on to
    a third step, branches 2 and 3 end at the anchor step: each row's credit has one entry a step."""
    out = compute_credit("ricepo", ricepo_group_with_branch_ids(1, steps=(3, 2, 2)))
    assert [len(out[f"T0@1.b{m}"]) for m in (1, 2, 3)] == [3, 2, 2] and len(out["T0"]) == 2
    a_traj_1 = (FINAL[1] - 0.5) / (math.sqrt(0.5) + EPS)
    assert out["T0@1.b1"][2] == {"reasoning": pytest.approx(a_traj_1), "summary": pytest.approx(a_traj_1)}
    for steps in ((1, 2, 2), (None, 2, 2)):  # ends before its anchor step, or no count at all
        group = ricepo_group_with_branch_ids(1, steps=steps)
        if steps[0] is None:
            del group["anchors"][0]["branches"][1]["steps"]
        with pytest.raises(RicepoError, match=r"branch 'T0@1.b1' of anchor \('T0', 1\) needs its step count 'steps' > 1"):
            compute_credit("ricepo", group)


def test_ricepo_anchor_naming_no_step_is_an_error():
    with pytest.raises(RicepoError, match="names no step"):
        compute_credit("ricepo", ricepo_group_with_branch_ids(2))


def test_ricepo_zero_influence_gives_zero_summary_advantage_and_keeps_reasoning():
    out = compute_credit("ricepo", ricepo_group([0.3] * 4, [0.3, 0.5, 0.1, 0.3]))
    assert out["T0"][0] == {"summary": 0.0, "reasoning": pytest.approx(A_TRAJ)}


def test_ricepo_random_case_is_seeded_and_picks_one_of_the_two_cases():
    values = set()
    for seed in range(8):
        a = compute_credit("ricepo", ricepo_group(LOCAL, FINAL), rule="random_case", seed=seed)
        b = compute_credit("ricepo", ricepo_group(LOCAL, FINAL), rule="random_case", seed=seed)
        assert a == b
        values.add(round(a["T0"][0]["reasoning"], 6))
    assert values == {round(A_SUM, 6), round(FINAL_Z, 6)}


def cli_anchors(group, *args):
    return json.loads(subprocess.run(["ricepo", "credit", *args, "-"], input=json.dumps(group), capture_output=True, text=True, check=True).stdout)


def test_anchor_selection_cli():
    g = {"query_id": "q", "trajectories": [traj("T0", 1.0, ["q", "a"], entropies=[0.9, 0.5]), traj("T1", 0.0, ["q", "b"], entropies=[0.9, 0.7])]}
    # ties at 0.9: same step, earlier trajectory first
    assert cli_anchors(g, "--select", "3") == [["T0", 0], ["T1", 0], ["T1", 1]]
    # The random trigger on 8 trajectories x 4 steps with distinct entropies: 32 candidates, so a
    # uniform draw of 4 is one of C(32, 4) = 35,960 sets. Five seeds and the entropy top 4 make 15
    # pairs: some pair is the same set with probability under 15/35,960 (0.04%) for a trigger that
    # draws, and with certainty for one that ignores its seed or returns the entropy top 4.
    many = {
        "query_id": "q",
        "trajectories": [traj(f"T{i}", i / 8, [f"s{i}{j}" for j in range(4)], entropies=[(4 * i + j) / 32 for j in range(4)]) for i in range(8)],
    }
    by_entropy = cli_anchors(many, "--select", "4")
    assert by_entropy == [["T7", 3], ["T7", 2], ["T7", 1], ["T7", 0]]
    drawn = {seed: cli_anchors(many, "--select", "4", "--trigger", "random", "--seed", str(seed)) for seed in range(5)}
    assert drawn[1] == cli_anchors(many, "--select", "4", "--trigger", "random", "--seed", "1")
    candidates = {(f"T{i}", j) for i in range(8) for j in range(4)}
    chosen = [frozenset(map(tuple, d)) for d in [by_entropy, *drawn.values()]]
    assert all(len(c) == 4 and c <= candidates for c in chosen)
    assert len(set(chosen)) == 6, drawn


@pytest.mark.parametrize(
    "method, params",
    [("gigpo", ["gamma=0.5"]), ("hgpo", ["history=1"]), ("tree_grpo", []), ("ricepo", ["rule=case1"]), ("ricepo", ["rule=random_case", "seed=3"])],
)
def test_credit_cli_answers_for_every_method(method, params):
    sets = [x for p in params for x in ("--set", p)]
    out = subprocess.run(
        ["ricepo", "credit", "--method", method, *sets, "-"], input=json.dumps(ricepo_group(LOCAL, FINAL)), capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert set(result) == {"T0", "T1"} and all(set(s) == {"reasoning", "summary"} for s in result["T0"])
