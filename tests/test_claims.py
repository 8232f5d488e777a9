"""The paper's claims as verdicts (report/claims.py), on hand-made result files of the smoke
configuration: a clear win holds, a tie does not hold, a competitor with no result is "not run",
and the paper's side is read from config/paper_results.yaml."""

import json

import pytest

from conftest import ROOT
from ricepo.config import load_config
from ricepo.layout import ARTEFACTS, Run, metrics_file, train_log_file, validation_file
from ricepo.report.claims import grade_claims, load_claims
from ricepo.report.results import ResultFiles
from ricepo.report.significance import ALPHA

BEATS_GRPO = {
    "id": "c",
    "statement": "s",
    "source": "x",
    "kind": "beats",
    "table": "table_bright_main",
    "column": "avg",
    "target": "ricepo",
    "against": ["grpo"],
}


@pytest.fixture
def smoke():
    return load_config(ROOT / "config" / "smoke.yaml")


def write_metrics(root, config, method, base, variant=None, noise=(0.0,)):
    """NDCG@10 of 20 queries per task, `base` plus a fixed spread plus `noise` (cycled over the
    queries), for both seeds."""
    for seed in config["seeds"]:
        for task in config["benchmarks"]["bright"]["tasks"]:
            per_query = {f"{task}-q{i}": base + 0.01 * (i % 5) + noise[i % len(noise)] for i in range(20)}
            f = metrics_file(root, Run("bright", "tiny_qwen2", method, variant, seed), task)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps({"ndcg_cut_10": sum(per_query.values()) / 20, "per_query": per_query}))


def write_log(root, method, seed, rewards, tokens):
    f = train_log_file(root, Run("bright", "tiny_qwen2", method, None, seed))
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(
        "".join(
            json.dumps({"step": i + 1, "reward_mean": r, "tokens_generated": tokens, "retriever_calls": 10, "retriever_cache_hits": 0, "wall_s": 1.0})
            + "\n"
            for i, r in enumerate(rewards)
        )
    )


def graded(config, root, claims):
    files = [p for p in ARTEFACTS["claims"].result_files(config, root) if p.exists()]
    return {c["id"]: c for c in grade_claims(ResultFiles(config, root, files), claims)["claims"]}


def test_a_clear_win_holds_a_tie_does_not_and_a_missing_competitor_is_not_run(smoke, tmp_path):
    write_metrics(tmp_path, smoke, "ricepo", 0.60)
    write_metrics(tmp_path, smoke, "grpo", 0.30)
    write_metrics(tmp_path, smoke, "prompting", 0.60)
    claims = [BEATS_GRPO, {**BEATS_GRPO, "id": "tie", "against": ["prompting"]}, {**BEATS_GRPO, "id": "missing", "against": ["grpo", "gigpo"]}]
    out = graded(smoke, tmp_path, claims)
    win = out["c"]
    assert win["verdict"] == "holds"
    (part,) = win["parts"]
    # ricepo 60 + mean spread 2 = 62.00, grpo 32.00, over 2 tasks x 20 queries
    assert part["detail"].startswith("RICE-PO 62.00 vs GRPO 32.00 (+30.00, p = 0.000, 40 queries)")
    assert win["paper"].startswith("r1_distill_qwen_1p5b: RICE-PO 27.49 vs 24.98 (GRPO)")
    assert out["tie"]["verdict"] == "does not hold" and "(+0.00, p = 1.000" in out["tie"]["parts"][0]["detail"]
    assert [p["verdict"] for p in out["missing"]["parts"]] == ["holds", "not run"]
    assert out["missing"]["verdict"] == "not run"


def test_a_win_that_is_not_significant_does_not_hold(smoke, tmp_path):
    # per query RICE-PO - GRPO = +0.30, -0.25, +0.20, -0.20, +0.00, +0.05 in turn over each task's 20
    # queries: (3 x 0.10 + 0.05) / 20 = +0.0175 on average, against a spread near 0.2; p far above ALPHA
    write_metrics(tmp_path, smoke, "ricepo", 0.40, noise=(0.30, -0.25, 0.20, -0.20, 0.0, 0.05))
    write_metrics(tmp_path, smoke, "grpo", 0.40)
    (part,) = graded(smoke, tmp_path, [BEATS_GRPO])["c"]["parts"]
    assert part["ours"] > part["theirs"] and part["p"] >= ALPHA
    assert part["verdict"] == "does not hold"
    assert f"(+1.75, p = {part['p']:.3f}, 40 queries)" in part["detail"]


def test_a_loss_anywhere_is_does_not_hold_even_beside_not_run(smoke, tmp_path):
    write_metrics(tmp_path, smoke, "ricepo", 0.30)
    write_metrics(tmp_path, smoke, "grpo", 0.60)
    out = graded(smoke, tmp_path, [{**BEATS_GRPO, "against": ["grpo", "gigpo"]}])
    assert out["c"]["verdict"] == "does not hold"


def test_ablation_claim_compares_variants_on_the_ablation_backbone(smoke, tmp_path):
    write_metrics(tmp_path, smoke, "ricepo", 0.50)
    write_metrics(tmp_path, smoke, "ricepo", 0.40, variant="random_trigger")
    claim = {**BEATS_GRPO, "table": "table_ablation_trigger", "against": ["ricepo/random_trigger"]}
    out = graded(smoke, tmp_path, [claim])["c"]
    assert out["verdict"] == "holds" and out["parts"][0]["against"] == "Random Trigger"
    assert "RICE-PO 27.49 vs 25.82 (Random Trigger)" in out["paper"]


def test_reward_curve_and_branching_budget(smoke, tmp_path):
    for seed in smoke["seeds"]:
        write_log(tmp_path, "ricepo", seed, [0.5, 0.6, 0.7, 0.8, 0.9], tokens=150)
        write_log(tmp_path, "grpo", seed, [0.2, 0.3, 0.3, 0.4, 0.4], tokens=100)
    claims = {c["id"]: c for c in load_claims()}
    curve = {**claims["reward_curve_above"], "against": ["grpo", "gigpo"]}
    out = graded(smoke, tmp_path, [curve, claims["branching_cost_bounded"]])
    assert [p["verdict"] for p in out["reward_curve_above"]["parts"]] == ["holds", "not run"]
    assert "RICE-PO 0.700 vs GRPO 0.320 (+0.380" in out["reward_curve_above"]["parts"][0]["detail"]
    # smoke: k = 2 anchors, M = 4 branches, G = 4 -> budget 1 + 2*3/4 = 2.5; measured 150/100 = 1.5
    cost = out["branching_cost_bounded"]
    assert cost["verdict"] == "holds" and "1.50x GRPO's; budget 1 + 2(4-1)/4 = 2.50x" in cost["parts"][0]["detail"]


def test_every_claim_of_the_data_file_is_graded_and_a_bad_one_names_its_place(smoke, tmp_path):
    out = graded(smoke, tmp_path, None)
    assert len(out) == len(load_claims()) >= 9 and {c["verdict"] for c in out.values()} == {"not run"}
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n- {id: x, statement: s, source: y, kind: beats, table: t, column: avg}\n")
    with pytest.raises(Exception, match=r"claims\.yaml: claims\[0\]: missing against, target"):
        load_claims(bad)


def test_a_win_at_equal_cost_counts_only_when_the_tokens_match(smoke, tmp_path):
    smoke["benchmarks"]["bright"]["methods"].append("grpo_equal_cost")
    write_metrics(tmp_path, smoke, "ricepo", 0.60)
    write_metrics(tmp_path, smoke, "grpo_equal_cost", 0.30)
    claim = {c["id"]: c for c in load_claims()}["bright_beats_grpo_at_equal_tokens"]
    for seed in smoke["seeds"]:
        write_log(tmp_path, "ricepo", seed, [0.5, 0.6], tokens=150)
        write_log(tmp_path, "grpo_equal_cost", seed, [0.5, 0.6], tokens=140)
    (part,) = graded(smoke, tmp_path, [claim])[claim["id"]]["parts"]
    assert part["verdict"] == "holds" and part["detail"].startswith("RICE-PO 62.00 vs GRPO at RICE-PO's tokens 32.00")
    for seed in smoke["seeds"]:
        write_log(tmp_path, "grpo_equal_cost", seed, [0.5, 0.6], tokens=100)
    (part,) = graded(smoke, tmp_path, [claim])[claim["id"]]["parts"]
    assert part["verdict"] == "not run"
    assert part["detail"].startswith("not at equal cost: RICE-PO tokens_generated per step 1.50x")


def write_validation(root, method, seed, before, after, parseable=(None, None), unchanged=(None, None), restate=(None, None), versus=(None, None)):
    """Scorings at steps 0 and 6; `parseable`: each one's parseable_rate, its NDCG the reward plus
    0.1 (None: a scoring written before validation counted either); `unchanged`, `restate` and
    `versus`: each one's unchanged_rate, summary_restate_rate and (better_than_alone_rate,
    worse_than_alone_rate) (None: written before validation counted it)."""
    f = validation_file(root, Run("bright", "tiny_qwen2", method, None, seed))
    f.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, base, rate, same, restating, vs in (
        (0, before, parseable[0], unchanged[0], restate[0], versus[0]),
        (6, after, parseable[1], unchanged[1], restate[1], versus[1]),
    ):
        rewards = {f"biology/q{i}": base + 0.01 * (i % 5) for i in range(20)}
        mean = sum(rewards.values()) / 20
        lines.append(
            json.dumps(
                {
                    "step": step,
                    "reward_mean": mean,
                    "rewards": rewards,
                    **({} if rate is None else {"parseable_rate": rate, "ndcg_mean": mean + 0.1}),
                    **({} if same is None else {"unchanged_rate": same}),
                    **({} if restating is None else {"summary_restate_rate": restating}),
                    **({} if vs is None else {"better_than_alone_rate": vs[0], "worse_than_alone_rate": vs[1]}),
                }
            )
        )
    f.write_text("\n".join(lines) + "\n")


def test_validation_improvement_is_paired_over_the_held_out_queries(smoke, tmp_path):
    for seed in smoke["seeds"]:
        write_validation(tmp_path, "grpo", seed, 0.30, 0.50)
        write_validation(tmp_path, "ricepo", seed, 0.40, 0.40)
    claim = {c["id"]: c for c in load_claims()}["training_improves_validation"]
    out = graded(smoke, tmp_path, [claim])[claim["id"]]
    assert [p["verdict"] for p in out["parts"]] == ["holds", "does not hold"]
    assert out["parts"][0]["detail"] == ("GRPO: validation reward 0.3200 at step 0, 0.5200 at step 6 (+0.2000, p = 0.000, 20 held-out queries)")
    assert out["verdict"] == "does not hold"


def test_a_validation_gain_shows_its_ndcg_and_how_many_steps_wrote_a_summary(smoke, tmp_path):
    """The reward moves with the format penalty, and a policy that stops writing summaries searches
    with the question alone; a gain is graded as any other, with the NDCG and the share of steps
    that wrote a summary beside it (averaged over seeds), and the share of queries whose final
    top 10 is the query alone's, of summaries restating the query and of searches better and worse
    than the query alone where the scorings counted them."""
    for seed, late in zip(smoke["seeds"], (0.0, 0.5)):
        write_validation(
            tmp_path, "grpo", seed, 0.30, 0.50, parseable=(0.9, late), unchanged=(0.1, 1.0), restate=(0.2, 0.6), versus=((0.1, 0.6), (0.0, 0.0))
        )
        write_validation(tmp_path, "ricepo", seed, 0.40, 0.40, parseable=(0.9, 0.9))
    claim = {c["id"]: c for c in load_claims()}["training_improves_validation"]
    parts = graded(smoke, tmp_path, [claim])[claim["id"]]["parts"]
    late = 0.0 if len(smoke["seeds"]) == 1 else 0.25
    assert parts[0]["detail"].endswith(
        f"20 held-out queries; NDCG@10 0.4200 → 0.6200, "
        f"steps with a summary 90% → {late:.0%}, "
        f"summaries restating the query 20% → 60%, final top 10 the query alone's 10% → 100%, "
        f"searches better / worse than the query alone 10% / 60% → 0% / 0%)"
    )
    assert parts[1]["detail"].endswith("20 held-out queries; NDCG@10 0.5200 → 0.5200, steps with a summary 90% → 90%)")
