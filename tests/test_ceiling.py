"""Where the ceiling is: the oracle summary a retrieval is measured with, and how summaries that
merely restate the query are counted."""
import pytest

from ricepo.agent.rollout import Step


def test_the_oracle_summary_is_the_best_judged_documents_title():
    from ricepo.jobs import oracle_summary

    corpus = {"d1": {"title": "Low", "text": "x"}, "d2": {"title": "High B", "text": "y"},
              "d3": {"title": "High A", "text": "z"}, "d4": {"title": "", "text": " ".join(f"w{i}" for i in range(40))}}
    assert oracle_summary({"d1": 1, "d2": 2, "d3": 2, "d0": 0}, corpus) == "High B"   # grade 2, then smallest id
    assert oracle_summary({"d4": 1}, corpus) == " ".join(f"w{i}" for i in range(30))   # no title: first 30 words


@pytest.mark.realdata
def test_oracle_retrieval_searches_with_the_query_and_the_title(tmp_path):
    """On the real SciFact split: the oracle's NDCG@10 is far above the raw query's."""
    from conftest import shared
    from ricepo.data.splits import build_split
    from ricepo.environments import RetrieverSettings
    from ricepo.jobs import evaluate, retrieve

    build_split(shared("beir", "scifact"), tmp_path / "split", benchmark="beir", task="scifact",
                counts={"train": 0, "test": 300}, seed=42)
    settings = RetrieverSettings.resolve({"name": "bm25"}, {})
    scores = {}
    for oracle in (False, True):
        run = tmp_path / f"run{oracle}.trec"
        retrieve(tmp_path / "split", "test", run, 100, settings, tmp_path / "index", oracle=oracle)
        scores[oracle] = evaluate(tmp_path / "split" / "qrels" / "test.tsv", run, None, tmp_path / f"m{oracle}.json")
    assert scores[True]["ndcg_cut_10"] > scores[False]["ndcg_cut_10"] + 0.1, scores


def test_summaries_that_restate_the_query_are_counted():
    from ricepo.evaluate.agent_eval import query_overlap, summary_figures

    def step(summary):
        return Step(reasoning="", summary=summary, closed_think=True, closed_summary=True, parseable=bool(summary),
                    state=[])

    query = "Vitamin D deficiency raises the risk of fractures."
    assert query_overlap("vitamin d deficiency, fractures", query) == 1.0
    assert query_overlap("bone density trials in elderly women", query) == 0.0
    assert query_overlap("vitamin D bone density", query) == pytest.approx(2 / 4)
    got = summary_figures({"q1": (query, [step("vitamin D fractures"), step("")]),
                           "q2": (query, [step("bone density vitamin")])}, restate_share=0.8)
    assert got == {"summary_query_overlap": pytest.approx((1.0 + 1 / 3) / 2), "summary_restate_rate": 0.5,
                   "summaries": 2}
