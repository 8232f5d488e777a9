import pytest
import yaml

from conftest import ROOT, SHARED
from ricepo.config import check_config, load_config
from ricepo.errors import RicepoError
from ricepo.layout import runs

SHARED_BEIR = SHARED / "beir"


def full():
    """config/config.yaml, with the sections it leaves to the schema's defaults present and empty."""
    return {"rollout": {}, "train": {}, "evaluate": {}, **yaml.safe_load(open(ROOT / "config" / "config.yaml"))}


def test_paper_config_validates_and_plans_the_full_matrix():
    config = check_config(full())
    plan = runs(config)
    bright = {(r.backbone, r.method, r.variant) for r in plan if r.benchmark == "bright"}
    beir = {(r.backbone, r.method) for r in plan if r.benchmark == "beir"}
    methods = {(m, None) for m in config["benchmarks"]["bright"]["methods"]}
    assert {"prompting", "grpo", "gigpo", "hgpo", "tree_grpo", "ricepo"} <= {m for m, _ in methods}
    assert {(m, v) for b, m, v in bright if b == "qwen3_4b_thinking"} == methods
    assert {(m, v) for b, m, v in bright if b == "r1_distill_qwen_1p5b"} == methods | {
        ("ricepo", v) for v in ["case1", "case2", "random_case", "random_trigger", "effect_only", "influence_only"]
    }
    assert {b for b, _ in beir} == {"r1_distill_qwen_1p5b", "qwen2p5_3b_instruct"}
    assert len(config["benchmarks"]["bright"]["tasks"]) == 12
    assert sum(c["train"] for c in config["benchmarks"]["bright"]["split_counts"].values()) == 4011
    assert sum(c["test"] for c in config["benchmarks"]["bright"]["split_counts"].values()) == 1384
    assert sum(c["train"] for c in config["benchmarks"]["beir"]["split_counts"].values()) == 4008


def test_defaults_are_filled():
    cfg = full()
    del cfg["credit"]
    config = check_config(cfg)
    assert config["rollout"]["group_size"] == 8
    assert config["credit"]["ricepo"]["tau_I"] == 0.05
    assert (config["train"]["processes"], config["train"]["distributed"], config["evaluate"]["decoding"]) == (1, "ddp", "greedy")
    # every backbone carries its model card's test-time sampling
    assert config["backbones"]["qwen2p5_3b_instruct"]["generation"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    assert all(b["generation"]["temperature"] > 0 for b in config["backbones"].values())


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["train"].__setitem__("learnin_rate", 1e-6), "config error at train: unknown key(s) 'learnin_rate'"),
        (lambda c: c["train"].__setitem__("steps", "many"), "config error at train.steps: 'many' is not of type 'integer'"),
        (lambda c: c["benchmarks"]["beir"]["methods"].append("gipo"), "config error at benchmarks.beir.methods[6]: 'gipo' is not one of"),
        (
            lambda c: c["benchmarks"]["bright"]["backbones"].append("llama"),
            "config error at benchmarks.bright.backbones[2]: unknown backbone 'llama'",
        ),
        (lambda c: c["ablations"].__setitem__("variants", ["case3"]), "config error at ablations.variants[0]: 'case3' is not one of"),
        (
            lambda c: c["backbones"]["qwen3_4b_thinking"]["generation"].__setitem__("top_p", 1.5),
            "config error at backbones.qwen3_4b_thinking.generation.top_p: 1.5 is greater than the maximum of 1",
        ),
        (lambda c: c["evaluate"].__setitem__("decoding", "beam"), "config error at evaluate.decoding: 'beam' is not one of"),
        (lambda c: c["train"].__setitem__("distributed", "deepspeed"), "config error at train.distributed: 'deepspeed' is not one of"),
        (
            lambda c: c["benchmarks"]["beir"].update(source="local", path="/nonexistent"),
            "config error at benchmarks.beir.path: /nonexistent does not exist",
        ),
        pytest.param(
            lambda c: c["benchmarks"]["beir"].update(
                source="local", path=str(SHARED_BEIR), tasks=["scifact", "nq"], split_counts={t: {"train": 1, "test": 1} for t in ("scifact", "nq")}
            ),
            f"config error at benchmarks.beir.path: {SHARED_BEIR} has no folder for nq",
            marks=[
                pytest.mark.realdata,
                pytest.mark.skipif(not SHARED_BEIR.exists(), reason=f"real data not available: {SHARED_BEIR} (../shared/data beside the project)"),
            ],
        ),
    ],
)
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
        ("ricepo", v) for v in ("case1", "case2", "random_case", "random_trigger", "effect_only", "influence_only")
    }


def test_every_schema_default_reaches_the_code_unchanged(tmp_path):
    """The schema is the one home of the defaults: config.yaml restates none of the rollout, train
    and evaluate settings, and each default arrives in the trainer's, the agent's, the method's and
    the retriever's settings with its value and type unchanged."""
    from ricepo.agent.rollout import RolloutSettings
    from ricepo.config import DOCUMENTED_SECTIONS, retriever_settings, section_defaults
    from ricepo.credit import METHODS
    from ricepo.environments import RetrieverSettings, make_retriever
    from ricepo.layout import job_spec
    from ricepo.train.run import LAUNCH_KEYS, train_config

    assert not set(DOCUMENTED_SECTIONS) & set(yaml.safe_load(open(ROOT / "config" / "config.yaml")))
    config = load_config()
    run = next(r for r in runs(config) if r.method == "ricepo" and r.variant is None)
    spec = job_spec(config, run)
    reached = []
    trainer = train_config(spec)
    for key, value in section_defaults("train").items():
        if key not in LAUNCH_KEYS:
            reached.append((f"train.{key}", value, getattr(trainer, key)))
    rollout = section_defaults("rollout")
    agent = RolloutSettings.from_config(spec["rollout"])
    reached += [(f"rollout.{k}", v, getattr(agent, k)) for k, v in rollout.items() if k != "group_size"]
    reached.append(("rollout.group_size", rollout["group_size"], trainer.group_size))
    assert RolloutSettings.for_evaluation(spec["rollout"], spec["evaluate"]["decoding"], {}).temperature == 0.0
    for name, method in METHODS.items():
        credit, collector = method.settings({}, None)
        for key, param in method.params.items():
            reached.append((f"credit.{name}.{key}", param.schema["default"], {**credit, **collector}[key]))
    assert {**trainer.credit_params, **trainer.rollout_params} == {k: p.schema["default"] for k, p in METHODS["ricepo"].params.items()}
    # the retriever: `ricepo retrieve` with no flags builds BM25 with the schema's k1, b and stemmer
    corpus = {"d1": {"title": "", "text": "cells divide"}, "d2": {"title": "", "text": "markets fall"}}
    bm25 = make_retriever(tmp_path, "", RetrieverSettings.resolve({}), corpus=corpus)
    defaults = retriever_settings()
    reached += [
        ("retriever.k1", defaults["k1"], bm25.model.k1),
        ("retriever.b", defaults["b"], bm25.model.b),
        ("retriever.stemmer", defaults["stemmer"], bm25.stemmer),
    ]
    wrong = [(key, want, got) for key, want, got in reached if want != got or type(want) is not type(got)]
    assert len(reached) > 40 and not wrong, wrong
