
import pytest
import yaml

from ricepo.config import check_config, load_config
from ricepo.layout import runs
from ricepo.errors import RicepoError
from conftest import ROOT


def full():
    return yaml.safe_load(open(ROOT / "config" / "config.yaml"))


def test_paper_config_validates_and_plans_the_full_matrix():
    config = check_config(full())
    plan = runs(config)
    bright = {(r.backbone, r.method, r.variant) for r in plan if r.benchmark == "bright"}
    beir = {(r.backbone, r.method) for r in plan if r.benchmark == "beir"}
    methods = {(m, None) for m in config["benchmarks"]["bright"]["methods"]}
    assert {"prompting", "grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"} <= {m for m, _ in methods}
    assert {(m, v) for b, m, v in bright if b == "qwen3_4b_thinking"} == methods
    assert {(m, v) for b, m, v in bright if b == "r1_distill_qwen_1p5b"} == methods | {
        ("ricepo", v) for v in ["case1", "case2", "random_case", "random_trigger", "effect_only", "influence_only"]}
    assert {b for b, _ in beir} == {"r1_distill_qwen_1p5b", "qwen2p5_3b_instruct"}
    assert len(config["benchmarks"]["bright"]["tasks"]) == 12
    assert sum(c["train"] for c in config["benchmarks"]["bright"]["split_counts"].values()) == 4011
    assert sum(c["test"] for c in config["benchmarks"]["bright"]["split_counts"].values()) == 1384
    assert sum(c["train"] for c in config["benchmarks"]["beir"]["split_counts"].values()) == 4008


def test_defaults_are_filled():
    cfg = full()
    del cfg["rollout"]["group_size"]
    del cfg["credit"]
    config = check_config(cfg)
    assert config["rollout"]["group_size"] == 8
    assert config["credit"]["ricepo"]["tau_I"] == 0.05
    assert (config["train"]["processes"], config["train"]["distributed"], config["evaluate"]["decoding"]) == (1, "ddp", "greedy")
    # every backbone carries its model card's test-time sampling
    assert config["backbones"]["qwen2p5_3b_instruct"]["generation"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    assert all(b["generation"]["temperature"] > 0 for b in config["backbones"].values())


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["train"].__setitem__("learnin_rate", 1e-6), "config error at train: unknown key(s) 'learnin_rate'"),
    (lambda c: c["train"].__setitem__("steps", "many"), "config error at train.steps: 'many' is not of type 'integer'"),
    (lambda c: c["benchmarks"]["beir"]["methods"].append("gipo"), "config error at benchmarks.beir.methods[6]: 'gipo' is not one of"),
    (lambda c: c["benchmarks"]["bright"]["backbones"].append("llama"), "config error at benchmarks.bright.backbones[2]: unknown backbone 'llama'"),
    (lambda c: c["ablations"].__setitem__("variants", ["case3"]), "config error at ablations.variants[0]: 'case3' is not one of"),
    (lambda c: c["backbones"]["qwen3_4b_thinking"]["generation"].__setitem__("top_p", 1.5),
     "config error at backbones.qwen3_4b_thinking.generation.top_p: 1.5 is greater than the maximum of 1"),
    (lambda c: c["evaluate"].__setitem__("decoding", "beam"), "config error at evaluate.decoding: 'beam' is not one of"),
    (lambda c: c["train"].__setitem__("distributed", "deepspeed"), "config error at train.distributed: 'deepspeed' is not one of"),
])
def test_bad_config_gives_one_line_naming_the_key(mutate, expected):
    cfg = full()
    mutate(cfg)
    with pytest.raises(RicepoError) as err:
        check_config(cfg)
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0\nrun_name: x\n")
    with pytest.raises(RicepoError, match=r"bad.yaml line \d+: invalid YAML"):
        load_config(bad)


def test_smoke_config_trains_every_method_and_ablation_variant():
    config = load_config(ROOT / "config" / "smoke.yaml")
    conditions = {(r.method, r.variant) for r in runs(config)}
    assert {"prompting", "grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"} <= set(config["benchmarks"]["bright"]["methods"])
    assert conditions == {(m, None) for m in config["benchmarks"]["bright"]["methods"]} | {
        ("ricepo", v) for v in ("case1", "case2", "random_case", "random_trigger", "effect_only", "influence_only")}
