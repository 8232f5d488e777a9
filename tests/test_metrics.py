import json
import math
import subprocess

import pytest

from conftest import shared
from ricepo.data.trec import read_run, write_run
from ricepo.errors import RicepoError
from ricepo.metrics import evaluate_run, ndcg10_single


def test_ndcg_by_hand():
    # relevant d1, d2; ranking d3, d1, d2:
    # DCG = 0 + 1/log2(3) + 1/log2(4) = 0.630930 + 0.5 ; IDCG = 1 + 1/log2(3) = 1.630930
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg10_single({"d1": 1, "d2": 1}, [("d3", 3.0), ("d1", 2.0), ("d2", 1.0)]) == pytest.approx(expected, abs=1e-4)
    assert ndcg10_single({"d1": 1}, []) == 0.0


def test_excluded_and_own_id_are_removed_and_missing_queries_score_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"x": 3.0, "q1": 2.5, "d1": 2.0}}
    plain = evaluate_run(qrels, run)
    # q1 ranks its own id second: removed, so d1 is second behind x: 1/log2(3); q2 missing: 0
    assert plain["per_query"]["q1"] == pytest.approx(1 / math.log2(3), abs=1e-4)
    assert plain["per_query"]["q2"] == 0.0 and plain["n_queries"] == 2
    excl = evaluate_run(qrels, run, {"q1": {"x"}})
    assert excl["per_query"]["q1"] == pytest.approx(1.0)
    assert excl["ndcg_cut_10"] == pytest.approx(0.5)


def test_run_file_round_trip_and_errors(tmp_path):
    write_run(tmp_path / "r.trec", {"q1": [("d1", 2.0), ("d2", 1.0)]}, "tag")
    assert read_run(tmp_path / "r.trec") == {"q1": {"d1": 2.0, "d2": 1.0}}
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 2.0 tag\nq1 Q0 d2 x\n")
    with pytest.raises(RicepoError, match=r"bad.trec:2: a TREC run line has 6 columns, got 4"):
        read_run(tmp_path / "bad.trec")


def test_evaluate_cli_with_excluded_file(tmp_path):
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "run.trec").write_text("q1 Q0 x 1 3.0 t\nq1 Q0 d1 2 2.0 t\n")
    (tmp_path / "excl.tsv").write_text("q1\tx\n")
    out = subprocess.run(
        ["ricepo", "evaluate", "--qrels", str(tmp_path / "qrels.tsv"), "--run", str(tmp_path / "run.trec"), "--excluded", str(tmp_path / "excl.tsv")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["ndcg_cut_10"] == pytest.approx(1.0) and result["n_queries"] == 1


def test_cli_error_is_one_line(tmp_path):
    out = subprocess.run(["ricepo", "evaluate", "--qrels", str(tmp_path / "none.tsv"), "--run", "x"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "none.tsv: file not found" in out.stderr


@pytest.mark.parametrize(
    "k1, b, published",
    [
        (0.9, 0.4, 0.676),  # bm25s' BEIR benchmark, Lucene BM25, k1=0.9 b=0.4 (bm25_published.md): 67.6
        (1.2, 0.75, 0.680),  # the same benchmark at bm25s' defaults: 68.0
    ],
)
@pytest.mark.realdata
def test_bm25_scifact_matches_the_published_bm25s_figure(tmp_path, k1, b, published):
    """Our BM25 (bm25s, its English stopwords and Snowball stemmer) on real SciFact test."""
    root = shared("beir", "scifact")
    run = tmp_path / "run.trec"
    subprocess.run(
        ["ricepo", "retrieve", "--dataset", str(root), "--split", "test", "--retriever", "bm25", "--k1", str(k1), "--b", str(b), "--out", str(run)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["ricepo", "evaluate", "--qrels", str(root / "qrels" / "test.tsv"), "--run", str(run)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["n_queries"] == 300
    assert result["ndcg_cut_10"] == pytest.approx(published, abs=0.0015)


def test_a_process_that_searches_keeps_jax_off_the_gpu():
    """bm25s runs a JAX top-k at import where JAX is installed: on a GPU node each searching
    process would take 75% of the GPU (seen on an H200: the second such process failed)."""
    import os
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cuda"}
    out = subprocess.run(
        [sys.executable, "-c", "import os, ricepo.retrieval.bm25, bm25s; print(os.environ['JAX_PLATFORMS'])"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == "cpu"
