import hashlib
import json

import pytest

from conftest import shared
from ricepo.data.canonical import Dataset, read_corpus, read_qrels, read_queries
from ricepo.data.fixture import make_fixture
from ricepo.data.splits import build_split, stable_sample
from ricepo.errors import RicepoError


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fixture_is_deterministic_and_canonical(tmp_path):
    for name in ("a", "b"):
        make_fixture(tmp_path / name, "bright", "leetcode", n_docs=120, n_topics=6, n_train=12, n_test=8, excluded=True, seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ds = Dataset(tmp_path / "a")
    assert len(ds.corpus) == 120 and len(ds.qrels["train"]) == 12 and len(ds.qrels["test"]) == 8
    assert all(len(ids) == 1 for ids in ds.excluded.values()) and len(ds.excluded) == 20


def test_fixture_rewards_a_better_query(fixture_task):
    """Query alone < query + the answer terms; random corpus words do not help."""
    import random
    import statistics

    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "test")
    words = sorted({w for d in env.corpus.values() for w in d["text"].lower().strip(".").split()})
    rng = random.Random(0)
    alone = [env.reward(q, v["text"]) for q, v in queries.items()]
    better = [env.reward(q, v["text"] + " " + " ".join(v["metadata"]["answer_terms"])) for q, v in queries.items()]
    noisy = [env.reward(q, v["text"] + " " + " ".join(rng.sample(words, 4))) for q, v in queries.items()]
    assert statistics.mean(better) > statistics.mean(alone) + 0.15
    assert statistics.mean(alone) > statistics.mean(noisy)
    assert 0.2 < statistics.mean(alone) < 0.95


def test_excluded_documents_would_rank_first_and_are_removed(fixture_task):
    from ricepo.environments import load_environment

    env, queries = load_environment("leetcode", fixture_task / "split", fixture_task / "index", "test")
    qid, q = next(iter(queries.items()))
    text = q["text"] + " " + " ".join(q["metadata"]["answer_terms"])
    raw = [d for d, _ in env.search(text)[:3]]
    assert set(raw) & env.excluded[qid], "the fixture's excluded doc should rank near the top before removal"
    assert not {d for d, _ in env.ranking_for(qid, text)} & env.excluded[qid]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"_id": "d1", "title": "", "text": "x"}\n{"_id": "d1", "title": "", "text": "y"}\n', "corpus.jsonl:2: duplicate id 'd1'"),
        ('{"_id": "d1", "title": "", "text": "x"}\n{"_id": "d2", "text": \n', "corpus.jsonl:2: malformed JSON"),
        ('{"_id": "d1", "title": " ", "text": ""}\n', "corpus.jsonl:1: document 'd1' has empty title and text"),
        ('{"title": "t", "text": "x"}\n', "corpus.jsonl:1: missing key '_id'"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "corpus.jsonl").write_text(content)
    with pytest.raises(RicepoError, match=message):
        read_corpus(tmp_path / "corpus.jsonl")


def test_qrels_errors_and_formats(tmp_path):
    beir = tmp_path / "beir.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    trec = tmp_path / "trec.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    assert read_qrels(beir) == read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(RicepoError, match=r"bad.tsv:2: expected 3 \(BEIR\) or 4 \(TREC\) columns, got 2"):
        read_qrels(bad)


def test_qrels_pointing_to_unknown_document_is_an_error(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "y", "metadata": {}}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td9\t1\n")
    with pytest.raises(RicepoError, match="query 'q1' judges unknown document 'd9'"):
        Dataset(tmp_path)


def test_split_counts_manifest_and_refusal(fixture_task, tmp_path):
    manifest = json.loads((fixture_task / "split" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 16, "test": 12}
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((fixture_task / "split" / name).read_bytes()).hexdigest() == digest
    with pytest.raises(
        RicepoError,
        match="split train of bright/leetcode: config wants 30 queries, the source's train split has 24 "
        r"\(short by 6\)",
    ):
        build_split(fixture_task / "data", tmp_path / "s", benchmark="bright", task="leetcode", counts={"train": 30, "test": 12}, seed=42)
    with pytest.raises(RicepoError, match="split test of bright/leetcode: config wants 13 queries, the source has 12"):
        build_split(fixture_task / "data", tmp_path / "s", benchmark="bright", task="leetcode", counts={"train": 16, "test": 13}, seed=42)
    assert not (tmp_path / "s").exists()
    excluded = (fixture_task / "split" / "excluded.tsv").read_text().splitlines()
    assert len(excluded) == 1 + 16 + 12 and excluded[0] == "query-id\tcorpus-id"


def test_stable_sample_is_a_pure_function_of_seed_and_ids():
    ids = [f"q{i}" for i in range(100)]
    a = stable_sample(ids, 10, 42, "beir/scifact")
    assert sorted(a) == sorted(stable_sample(list(reversed(ids)), 10, 42, "beir/scifact"))
    assert a != stable_sample(ids, 10, 43, "beir/scifact")
    assert len(set(a)) == 10


@pytest.mark.realdata
def test_real_scifact_loads_and_splits_802_300(tmp_path):
    root = shared("beir", "scifact")
    ds = Dataset(root)
    assert len(ds.corpus) == 5183
    assert (len(ds.qrels["train"]), len(ds.qrels["test"])) == (809, 300)
    assert sum(len(v) for v in ds.qrels["train"].values()) == 919
    assert sum(len(v) for v in ds.qrels["test"].values()) == 339
    manifest = build_split(root, tmp_path / "split", benchmark="beir", task="scifact", counts={"train": 802, "test": 300}, seed=42)
    assert manifest["counts"] == {"train": 802, "test": 300}
    assert manifest["sha256"]["corpus.jsonl"] == "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"
    assert len(read_queries(tmp_path / "split" / "queries.jsonl")) == 1102
