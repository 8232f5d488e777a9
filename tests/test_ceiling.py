"""Where the ceiling is: the fixed summaries a retrieval is measured with (up to the oracle's), and
how summaries that merely restate the query are counted."""

import pytest

from ricepo.agent.rollout import Step


def test_the_fixed_summaries_are_the_shown_and_the_judged_titles():
    from ricepo.errors import RicepoError
    from ricepo.summary_baselines import KINDS, candidate_summaries, oracle_summary

    corpus = {
        "d1": {"title": "Low", "text": "x"},
        "d2": {"title": "High B", "text": "y"},
        "d3": {"title": "High A", "text": "z"},
        "d4": {"title": "", "text": " ".join(f"w{i}" for i in range(40))},
    }
    assert oracle_summary({"d1": 1, "d2": 2, "d3": 2, "d0": 0}, corpus) == "High B"  # grade 2, then smallest id
    assert oracle_summary({"d4": 1}, corpus) == " ".join(f"w{i}" for i in range(30))  # no title: first 30 words
    with pytest.raises(RicepoError, match="no judged relevant document"):
        oracle_summary({"d1": 0}, corpus)
    shown = ["d3", "d4", "d1"]
    assert candidate_summaries("shown_title", {}, shown, corpus) == ["High A"]
    assert candidate_summaries("best_shown_title", {}, shown, corpus) == ["High A", " ".join(f"w{i}" for i in range(30)), "Low"]
    assert candidate_summaries("oracle_title", {"d2": 1}, shown, corpus) == ["High B"]
    assert candidate_summaries("shown_title", {}, [], corpus) == []  # nothing shown: the query alone
    with pytest.raises(RicepoError, match="'nope': not one of"):
        candidate_summaries("nope", {}, shown, corpus)
    assert list(KINDS)[-1] == "oracle_title"  # the ceiling is drawn last


def test_the_schema_offers_exactly_the_fixed_summaries():
    import yaml

    from conftest import ROOT
    from ricepo.summary_baselines import KINDS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["evaluate"]["properties"]["summary_baselines"]["items"]["enum"] == list(KINDS)


def test_adding_a_fixed_summary_row_reruns_no_training_or_evaluation():
    """The train and eval jobs' spec (their Snakemake params) leaves summary_baselines out."""
    from conftest import ROOT
    from ricepo.config import load_config
    from ricepo.layout import job_spec_json, runs

    config = load_config(ROOT / "config" / "smoke.yaml")
    before = [job_spec_json(config, r) for r in runs(config)]
    config["evaluate"]["summary_baselines"] = ["oracle_title"]
    assert [job_spec_json(config, r) for r in runs(config)] == before
    config["evaluate"]["restate_overlap"] = 0.5  # a setting the jobs read still changes their spec
    assert [job_spec_json(config, r) for r in runs(config)] != before


@pytest.mark.realdata
def test_fixed_summary_retrieval_on_scifact(tmp_path):
    """On the real SciFact split: copying the first shown title does not beat the query alone, the
    best shown title (judged with the qrels) does and is at least the first title's on every query,
    and the oracle's title is far above both."""
    from conftest import shared
    from ricepo.data.canonical import read_qrels
    from ricepo.data.splits import build_split
    from ricepo.data.trec import read_run
    from ricepo.environments import RetrieverSettings
    from ricepo.jobs import evaluate, retrieve
    from ricepo.metrics import ndcg10_per_query

    build_split(shared("beir", "scifact"), tmp_path / "split", benchmark="beir", task="scifact", counts={"train": 0, "test": 300}, seed=42)
    settings = RetrieverSettings.resolve({"name": "bm25"}, {})
    qrels = read_qrels(tmp_path / "split" / "qrels" / "test.tsv")
    scores, per_query = {}, {}
    for summary in (None, "shown_title", "best_shown_title", "oracle_title"):
        run = tmp_path / f"run{summary}.trec"
        retrieve(tmp_path / "split", "test", run, 100, settings, tmp_path / "index", summary=summary, shown=3)
        scores[summary] = evaluate(tmp_path / "split" / "qrels" / "test.tsv", run, None, tmp_path / f"m{summary}.json")["ndcg_cut_10"]
        per_query[summary] = ndcg10_per_query(qrels, read_run(run))
    assert scores["shown_title"] < scores[None] < scores["best_shown_title"] - 0.05, scores
    assert scores["oracle_title"] > scores["best_shown_title"] + 0.1, scores
    assert all(per_query["best_shown_title"][q] >= per_query["shown_title"][q] - 1e-9 for q in qrels)


def test_summaries_that_restate_the_query_are_counted():
    from ricepo.summaries import query_overlap, summary_figures

    def step(summary):
        return Step(reasoning="", summary=summary, closed_think=True, closed_summary=True, parseable=bool(summary), state=[])

    query = "Vitamin D deficiency raises the risk of fractures."
    assert query_overlap("vitamin d deficiency, fractures", query) == 1.0
    assert query_overlap("bone density trials in elderly women", query) == 0.0
    assert query_overlap("vitamin D bone density", query) == pytest.approx(2 / 4)
    got = summary_figures({"q1": (query, [step("vitamin D fractures"), step("")]), "q2": (query, [step("bone density vitamin")])}, restate_share=0.8)
    assert got == {"summary_query_overlap": pytest.approx((1.0 + 1 / 3) / 2), "summary_restate_rate": 0.5, "summaries": 2}


def test_queries_whose_summaries_changed_nothing_are_counted():
    """A summary the retriever ignores leaves the query alone's ranking: counted as unchanged,
    whatever its words; a change below the top 10 does not count, a swap within it does."""
    from ricepo.summaries import unchanged_rate

    alone = {f"q{i}": [(f"d{j}", 10.0 - j) for j in range(12)] for i in range(4)}
    finals = {
        "q0": alone["q0"],  # the same ranking
        "q1": alone["q1"][:10] + [("d99", 0.5)],  # differs at rank 11 only
        "q2": [alone["q2"][1], alone["q2"][0]] + alone["q2"][2:],  # ranks 1 and 2 swapped
        "q3": [("d99", 11.0)] + alone["q3"],
    }  # a new first document
    assert unchanged_rate(finals, alone) == 0.5
    assert unchanged_rate({}, alone) is None


def test_a_steps_searches_are_counted_against_the_query_alone():
    """Query a: samples 0.6, 0.4, 0.5 + 1e-12 against the query alone's 0.5 (better, worse, the same);
    query b: 0.3, 0.3 against 0.3 (the same twice). Better 1, worse 1; a has a better sample, b not.
    Trained rewards: a's differ, b's are equal (the format penalty is in the reward, not the NDCG:
    b's second row wrote no summary), c's single row has no spread."""
    from ricepo.summaries import versus_alone

    sampled = [("a", 0.6, 0.5), ("a", 0.4, 0.5), ("a", 0.5 + 1e-12, 0.5), ("b", 0.3, 0.3), ("b", 0.3, 0.3)]
    trained = [("a", 0.6), ("a", 0.4), ("a", 0.5), ("b", 0.3), ("b", 0.3 + 1e-12), ("c", 0.9)]
    assert versus_alone(sampled, trained) == {
        "searches_better": 1,
        "searches_worse": 1,
        "groups": 2,
        "groups_with_better": 1,
        "groups_with_signal": 1,
    }
    trained[4] = ("b", 0.3 - 0.5)
    assert versus_alone(sampled, trained)["groups_with_signal"] == 2


def test_the_query_alones_score_leaves_the_cache_and_its_counts_alone():
    """The step log's comparison with the query alone searches past the cache: the retriever calls
    a method is charged for stay what its own searches cost."""
    from ricepo.retrieval.retriever import TaskEnvironment

    class Index:
        def search_many(self, texts, k):
            return [[("d1", 2.0), ("q1", 1.5), ("d2", 1.0)] for _ in texts]

    env = TaskEnvironment("t", Index(), {}, {"q1": {"d2": 1}}, {})
    assert env.scores_uncounted([("q1", "text")]) == [env.score("q1", [("d1", 2.0), ("d2", 1.0)])]
    assert 0 < env.scores_uncounted([("q1", "text")])[0] < 1  # the query's own id is dropped: d2 ranks 2nd
    assert (env.stats.searches, env.stats.hits, len(env._cache)) == (0, 0, 0)


def test_the_ceiling_figure_orders_bm25_the_agents_and_the_fixed_summaries_up_to_the_oracle(tmp_path):
    import json

    from conftest import ROOT
    from ricepo.config import load_config
    from ricepo.layout import ARTEFACTS, Run, bm25_metrics_file, metrics_file, summary_baseline_metrics_file
    from ricepo.report.figures import build_figure
    from ricepo.report.results import ResultFiles

    config = load_config(ROOT / "config" / "smoke.yaml")
    config["evaluate"]["summary_baselines"] = ["oracle_title", "shown_title"]
    bench = config["benchmarks"]["beir"]

    def write(path, ndcg, **more):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"ndcg_cut_10": ndcg, "per_query": {"q": ndcg}, **more}))

    write(bm25_metrics_file(tmp_path, "beir", "scifact"), 0.5)
    write(summary_baseline_metrics_file(tmp_path, "beir", "oracle_title", "scifact"), 0.9)
    write(summary_baseline_metrics_file(tmp_path, "beir", "shown_title", "scifact"), 0.45)
    write(
        metrics_file(tmp_path, Run("beir", "tiny_qwen2", "prompting", None, 0), "scifact"), 0.4, summary_query_overlap=0.9, summary_restate_rate=0.75
    )
    for seed, ndcg in zip(config["seeds"], (0.6, 0.7)):
        write(
            metrics_file(tmp_path, Run("beir", "tiny_qwen2", "grpo", None, seed), "scifact"),
            ndcg,
            summary_query_overlap=0.5,
            summary_restate_rate=0.25 * (seed + 1),
            unchanged_rate=0.1 * (seed + 1),
            better_than_alone_rate=0.2 * seed,
            worse_than_alone_rate=0.5,
        )
    files = [p for p in ARTEFACTS["figure_ceiling"].result_files(config, tmp_path) if p.exists()]
    data = build_figure("figure_ceiling", ResultFiles(config, tmp_path, files), tmp_path / "fig")
    (group,) = [g for g in data["groups"] if g["benchmark"] == "beir"]
    rows = {r["row"]: r for r in group["rows"]}
    assert list(rows)[0] == "BM25, the query alone" and list(rows)[-1].startswith("Oracle")
    assert [r["ndcg"] for r in group["rows"]][:3] == pytest.approx([50.0, 40.0, 65.0])
    assert rows["GRPO"]["summary_restate_rate"] == pytest.approx(0.375)
    assert rows["GRPO"]["unchanged_rate"] == pytest.approx(0.15) and rows["Prompting agent"]["unchanged_rate"] is None
    assert rows["GRPO"]["better_than_alone_rate"] == pytest.approx(0.1) and rows["GRPO"]["worse_than_alone_rate"] == 0.5
    assert [r["summary"] for r in group["rows"] if "summary" in r] == ["shown_title", "oracle_title"]  # KINDS' order
    assert rows["Oracle: the query and a judged document's title"]["ndcg"] == pytest.approx(90.0)
    assert rows["Feedback: the query and the first shown document's title"]["ndcg"] == pytest.approx(45.0)
    assert rows["GiGPO"]["ndcg"] is None and len(group["rows"]) == 3 + len(bench["methods"])
    assert (tmp_path / "fig" / "figure_ceiling.png").stat().st_size > 0
