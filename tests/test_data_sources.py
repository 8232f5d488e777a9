"""Loaders of the real sources: BRIGHT, BEIR, ReasonIR, the Hub boundary and `ricepo data inspect`.

Real files come from ../shared/data (BRIGHT examples of all 12 tasks, BEIR SciFact, BEIR test topics
and qrels). What has no offline copy (BRIGHT documents, ReasonIR rows, other BEIR corpora) is built
here as fixtures with the published schema, field for field, in the published file layout.
"""

import json
import os
import subprocess
import time

import pytest
import yaml

from conftest import ROOT, shared
from ricepo.data import bright
from ricepo.data import prepare as prepare_mod
from ricepo.data.canonical import Dataset, iter_jsonl
from ricepo.data.prepare import prepare, prepare_reasonir
from ricepo.data.splits import build_split
from ricepo.errors import RicepoError

APPENDIX_TEST = yaml.safe_load(open(ROOT / "config" / "config.yaml"))["benchmarks"]["bright"]["split_counts"]


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def bright_copy(root, task, examples, docs, fmt="parquet"):
    """A BRIGHT folder in the Hub's layout: examples/{task}-00000-of-00001.parquet, documents/..."""
    for config, rows in (("examples", examples), ("documents", docs)):
        if fmt == "parquet":
            write_parquet(root / config / f"{task}-00000-of-00001.parquet", rows)
        else:
            (root / config).mkdir(parents=True, exist_ok=True)
            (root / config / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def example(i, gold, excluded=("N/A",)):
    return {
        "query": f"question {i} about topic",
        "reasoning": "why",
        "id": str(i),
        "excluded_ids": list(excluded),
        "gold_ids_long": [f"long-{g}" for g in gold],
        "gold_ids": list(gold),
        "gold_answer": "N/A",
    }


def docs(ids):
    return [{"id": d, "content": f"text of {d}"} for d in ids]


def spec(source="local", path=None, train=0, test=2, **extra):
    return {
        "source": source,
        "path": str(path) if path else None,
        "document_setting": "short",
        "split_counts": {"biology": {"train": train, "test": test}},
        **extra,
    }


# --- real files ---------------------------------------------------------------------------------


def ricepo(*args, env=None):
    return subprocess.run(["ricepo", *args], capture_output=True, text=True, env=env)


@pytest.mark.realdata
def test_inspect_real_scifact_and_every_bright_examples_file():
    out = ricepo("data", "inspect", str(shared("beir", "scifact")), "--benchmark", "beir")
    assert json.loads(out.stdout) == {"docs": 5183, "queries": {"train": 809, "test": 300}, "qrels": {"train": 919, "test": 339}}
    for task, counts in APPENDIX_TEST.items():
        out = ricepo("data", "inspect", str(shared("bright", "examples", f"{task}.jsonl")), "--benchmark", "bright")
        assert json.loads(out.stdout)["queries"] == {"test": counts["test"]}, task


@pytest.mark.realdata
def test_inspect_takes_the_beir_collection_folder_with_a_task():
    """The folder `benchmarks.beir.path` names (one folder per dataset) with --task, as BRIGHT's."""
    by_task = ricepo("data", "inspect", str(shared("beir")), "--benchmark", "beir", "--task", "scifact")
    direct = ricepo("data", "inspect", str(shared("beir", "scifact")), "--benchmark", "beir")
    assert by_task.returncode == 0 and json.loads(by_task.stdout) == json.loads(direct.stdout)
    for args, said in [
        ([], "holds the datasets dbpedia-entity, fiqa, nfcorpus, scifact, trec-covid, webis-touche2020; name one with --task"),
        (["--task", "nope"], "has no dataset 'nope'"),
    ]:
        out = ricepo("data", "inspect", str(shared("beir")), "--benchmark", "beir", *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and said in out.stderr, out.stderr


@pytest.mark.realdata
@pytest.mark.parametrize("name, n", [("dbpedia-entity", 400), ("fiqa", 648), ("trec-covid", 50), ("webis-touche2020", 49)])
def test_beir_test_counts_of_the_real_topics(name, n):
    out = ricepo("data", "inspect", str(shared("beir", name)), "--benchmark", "beir")
    assert json.loads(out.stdout)["queries"]["test"] == n


@pytest.mark.realdata
def test_bright_test_split_from_the_real_examples_has_the_appendix_counts(tmp_path):
    """Every task's real examples, with a documents file that holds their gold and excluded ids."""
    total = 0
    for task, counts in APPENDIX_TEST.items():
        rows = [row for _, row in iter_jsonl(shared("bright", "examples", f"{task}.jsonl"))]
        ids = sorted({d for r in rows for d in r["gold_ids"] + r["excluded_ids"] if d != "N/A"})
        root = bright_copy(tmp_path / "bright", task, rows, docs(ids), fmt="jsonl")
        s = {"source": "local", "path": str(root), "document_setting": "short", "split_counts": {task: {"train": 0, "test": counts["test"]}}}
        prepare("bright", task, s, tmp_path / "data" / task)
        manifest = build_split(
            tmp_path / "data" / task, tmp_path / "split" / task, benchmark="bright", task=task, counts={"train": 0, "test": counts["test"]}, seed=42
        )
        assert manifest["counts"]["test"] == counts["test"]
        assert manifest["source_revision"].startswith("xlangai/BRIGHT@local:")
        total += manifest["counts"]["test"]
    assert total == 1384


# --- BRIGHT: fixtures in the published schema ---------------------------------------------------


def test_bright_from_parquet_keeps_excluded_ids_and_drops_the_na_sentinel(tmp_path):
    root = bright_copy(tmp_path / "b", "biology", [example(0, ["d1"], ["d9", "N/A"]), example(1, ["d2", "d3"])], docs(["d1", "d2", "d3", "d9"]))
    info = prepare("bright", "biology", spec(path=root), tmp_path / "out")
    ds = Dataset(tmp_path / "out")
    assert ds.excluded == {"0": {"d9"}} and ds.qrels["test"] == {"0": {"d1": 1}, "1": {"d2": 1, "d3": 1}}
    assert info["docs"] == 4 and info["known_docs"] == 57359


def test_bright_document_count_differing_from_the_hub_card_warns(tmp_path, capsys):
    root = bright_copy(tmp_path / "b", "biology", [example(0, ["d1"])], docs(["d1"]))
    prepare("bright", "biology", spec(path=root, test=1), tmp_path / "out")
    assert "warning: bright/biology: 1 documents, the published corpus has 57359" in capsys.readouterr().err


@pytest.mark.parametrize(
    "rows, documents, message",
    [
        ([example(0, ["d1"], ["d1"])], ["d1"], r"examples/biology-00000-of-00001.parquet:1: example '0' excludes its own gold"),
        ([example(0, ["d1"]), example(0, ["d1"])], ["d1"], r":2: duplicate example id '0'"),
        ([example(0, ["d7"])], ["d1"], r"example '0' judges document\(s\) \['d7'\] missing"),
        ([{"query": "q", "id": "0"}], ["d1"], r":1: BRIGHT example lacks excluded_ids, gold_ids, gold_ids_long"),
    ],
)
def test_bright_integrity_errors_name_file_and_row(tmp_path, rows, documents, message):
    root = bright_copy(tmp_path / "b", "biology", rows, docs(documents))
    with pytest.raises(RicepoError, match=message):
        prepare("bright", "biology", spec(path=root, test=1), tmp_path / "out")
    assert not (tmp_path / "out").exists(), "a failed prepare leaves nothing that looks finished"


def test_bright_long_setting_uses_gold_ids_long_and_refuses_tasks_without_long_documents(tmp_path):
    root = tmp_path / "b"
    write_parquet(root / "examples" / "biology-00000-of-00001.parquet", [example(0, ["d1"])])
    write_parquet(root / "long_documents" / "biology-00000-of-00001.parquet", docs(["long-d1"]))
    prepare("bright", "biology", {**spec(path=root, test=1), "document_setting": "long"}, tmp_path / "out")
    assert Dataset(tmp_path / "out").qrels["test"] == {"0": {"long-d1": 1}}
    with pytest.raises(RicepoError, match="no long documents for this task"):
        bright.load_task(root, "leetcode", "long")


def test_bright_hub_path_with_the_network_replaced_at_its_boundary(tmp_path, monkeypatch):
    root = bright_copy(tmp_path / "snapshot", "biology", [example(0, ["d1"]), example(1, ["d2"])], docs(["d1", "d2"]))
    calls = []

    def fake_download(repo_id, patterns, hint, revision=None):
        calls.append((repo_id, patterns))
        return root, "0123abc"

    monkeypatch.setattr(prepare_mod, "download_hub", fake_download)
    info = prepare("bright", "biology", spec(source="hub"), tmp_path / "out")
    assert calls == [("xlangai/BRIGHT", ["examples/biology-*", "documents/biology-*"])]
    assert info["revision"] == "xlangai/BRIGHT@0123abc" and info["queries"] == {"test": 2}


def test_offline_hub_fails_fast_with_one_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    out = ricepo("data", "inspect", "hub", "--benchmark", "bright", "--task", "biology", env=env)
    assert time.time() - t0 < 5
    assert out.returncode != 0 and out.stderr.count("\n") == 1
    assert "xlangai/BRIGHT" in out.stderr and "benchmarks.bright.path" in out.stderr


def test_no_route_fails_fast_with_one_line():
    env = {**os.environ, "HF_ENDPOINT": "https://no-such-host.invalid"}
    env.pop("HF_HUB_OFFLINE", None)
    t0 = time.time()
    out = ricepo("data", "inspect", "hub", "--benchmark", "reasonir", env=env)
    assert time.time() - t0 < 5
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "reasonir/reasonir-data" in out.stderr


# --- ReasonIR -----------------------------------------------------------------------------------


def reasonir_copy(folder):
    """hq rows as published: query [instruction, query] (a plain string in a JSONL copy); pos
    [instruction, BRIGHT id]; neg [instruction, text]. Parquet columns hold one type, so the
    string-query rows sit in a second, JSONL file."""
    write_parquet(
        folder / "hq" / "train-00000-of-00002.parquet",
        [
            {
                "query": ["Given a biology post, retrieve documents", "why do cells divide"],
                "pos": [["Represent the document", "bio-1"]],
                "neg": [["Represent the document", "unrelated text"]],
            },
            {"query": ["", "how do plants breathe"], "pos": [["", "bio-2"], ["", "math-7"]], "neg": [["", "y"]]},
        ],
    )
    rows = [
        {"query": "integer sequences with a closed form", "pos": [["", "math-7"]], "neg": [["", "x"]]},
        {"query": "a query whose positive is a text, not an id", "pos": [["", "some passage text"]], "neg": []},
    ]
    (folder / "hq" / "train-00001-of-00002.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def bright_all_tasks(root, extra):
    """Documents for every BRIGHT task (aops and theoremqa_questions share one corpus, as on the Hub)."""
    for task in bright.TASKS:
        ids = extra.get(task, [f"{task}-filler"])
        write_parquet(root / "documents" / f"{task}-00000-of-00001.parquet", docs(ids))
    return root


def test_reasonir_resolves_positives_to_domains_and_counts_the_unresolved(tmp_path):
    root = bright_all_tasks(tmp_path / "b", {"biology": ["bio-1", "bio-2"], "aops": ["math-7"], "theoremqa_questions": ["math-7"]})
    reasonir_copy(tmp_path / "r")
    report = prepare_reasonir({"source": "local", "path": str(root), "reasonir_path": str(tmp_path / "r")}, tmp_path / "hq")
    assert report["rows"] == 4 and report["unresolved"] == 1
    # the shared aops/theoremqa_questions id goes to aops; a row with biology and aops positives goes to
    # biology (earlier in BRIGHT's order) and keeps only its biology positive
    assert report["per_domain"]["biology"] == 2 and report["per_domain"]["aops"] == 1
    assert report["per_domain"]["theoremqa_questions"] == 0
    rows = [r for _, r in iter_jsonl(tmp_path / "hq" / "biology.jsonl")]
    assert rows[0]["text"] == "why do cells divide"
    assert rows[0]["metadata"]["instruction"] == "Given a biology post, retrieve documents"
    assert rows[1]["positives"] == ["bio-2"]


def test_bright_task_with_reasonir_train_queries_splits_by_the_config(tmp_path):
    root = bright_all_tasks(tmp_path / "b", {"biology": ["bio-1", "bio-2", "d1", "d2"]})
    bright_copy(root, "biology", [example(0, ["d1"]), example(1, ["d2"])], docs(["bio-1", "bio-2", "d1", "d2"]))
    reasonir_copy(tmp_path / "r")
    s = spec(path=root, train=2, test=2, reasonir_path=str(tmp_path / "r"))
    prepare_reasonir(s, tmp_path / "hq")
    prepare("bright", "biology", s, tmp_path / "data", reasonir_dir=tmp_path / "hq")
    manifest = build_split(tmp_path / "data", tmp_path / "split", benchmark="bright", task="biology", counts={"train": 2, "test": 2}, seed=42)
    assert manifest["counts"] == {"train": 2, "test": 2}
    with pytest.raises(RicepoError, match=r"config wants 3 queries, the source's train split has 2 \(short by 1\)"):
        build_split(tmp_path / "data", tmp_path / "split3", benchmark="bright", task="biology", counts={"train": 3, "test": 2}, seed=42)


# --- BEIR ---------------------------------------------------------------------------------------


def beir_copy(root, name, splits):
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    n = sum(len(v) for v in splits.values())
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": f"Title {i}", "text": f"body {i}", "metadata": {}}) + "\n" for i in range(n))
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": f"query {q}", "metadata": {}}) + "\n" for v in splits.values() for q in v)
    )
    i = 0
    for split, qids in splits.items():
        lines = ["query-id\tcorpus-id\tscore"]
        for q in qids:
            lines.append(f"{q}\td{i}\t1")
            i += 1
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_beir_local_keeps_title_apart_and_samples_train_from_dev(tmp_path):
    root = beir_copy(tmp_path / "beir", "dbpedia-entity", {"dev": ["a", "b", "c"], "test": ["t1", "t2"]})
    s = {"source": "local", "path": str(root), "split_counts": {"dbpedia-entity": {"train": 2, "test": 2}}}
    prepare("beir", "dbpedia-entity", s, tmp_path / "data")
    first = next(iter_jsonl(tmp_path / "data" / "corpus.jsonl"))[1]
    assert first["title"] == "Title 0" and first["text"] == "body 0"
    manifest = build_split(
        tmp_path / "data", tmp_path / "split", benchmark="beir", task="dbpedia-entity", counts={"train": 2, "test": 2}, seed=42, train_from="dev"
    )
    assert manifest["counts"] == {"train": 2, "test": 2} and manifest["train_from"] == "dev"


def irds_home_with_real_scifact(home):
    """An IR_DATASETS_HOME as ir_datasets leaves it after downloading scifact.zip, the zip built from
    ../shared/data's byte-identical copy of BEIR's release (same member paths as the published zip)."""
    import zipfile

    src = shared("beir", "scifact")
    cached = home / "beir" / "scifact" / "source.zip"
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(cached, "w", zipfile.ZIP_STORED) as z:
        for f in ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"]:
            z.write(src / f, f"scifact/{f}")
    return home


@pytest.mark.realdata
def test_beir_through_ir_datasets_equals_the_local_copy(tmp_path):
    """The real ir_datasets code path (its zip cache, docstore and qrels parsers) reads real SciFact
    into the same canonical files, byte for byte, as the local folder."""
    from ricepo.data.splits import sha256

    counts = {"scifact": {"train": 802, "test": 300}}
    env = {**os.environ, "IR_DATASETS_HOME": str(irds_home_with_real_scifact(tmp_path / "irds"))}
    spec_irds = json.dumps({"source": "ir_datasets", "path": None, "split_counts": counts})
    out = ricepo(
        "data", "prepare", "--benchmark", "beir", "--task", "scifact", "--spec", spec_irds, "--out", str(tmp_path / "via_irds" / "scifact"), env=env
    )
    assert out.returncode == 0, out.stderr
    prepare("beir", "scifact", spec(path=shared("beir"), split_counts=counts), tmp_path / "local" / "scifact")
    files = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"]
    irds, local = tmp_path / "via_irds" / "scifact", tmp_path / "local" / "scifact"
    assert {f: sha256(irds / f) for f in files} == {f: sha256(local / f) for f in files}
    info_irds, info_local = (json.loads((d / "source.json").read_text()) for d in (irds, local))
    assert info_irds["docs"] == info_local["docs"] == 5183
    assert info_irds["queries"] == info_local["queries"] == {"train": 809, "test": 300}
    assert info_irds["revision"].startswith("ir_datasets ") and "beir/scifact" in info_irds["revision"]
    assert set(info_irds["source_sha256"]) == {"source.zip"}


def test_beir_ir_datasets_without_the_zip_or_a_route_fails_fast_with_one_line(tmp_path, monkeypatch):
    from ricepo.data import beir

    monkeypatch.setattr(
        beir, "_source_zip", lambda dataset_id: (tmp_path / "beir" / "scifact" / "source.zip", "https://no-such-host.invalid/scifact.zip")
    )
    t0 = time.time()
    with pytest.raises(RicepoError) as e:
        prepare("beir", "scifact", spec(source="ir_datasets", split_counts={"scifact": {"train": 1, "test": 1}}), tmp_path / "data" / "scifact")
    assert time.time() - t0 < 5 and "\n" not in str(e.value)
    assert "cannot reach https://no-such-host.invalid" in str(e.value) and "benchmarks.beir.path" in str(e.value)
    assert not (tmp_path / "data" / "scifact").exists()


@pytest.mark.parametrize("bench, source", [("beir", "hub"), ("bright", "ir_datasets")])
def test_a_benchmark_from_the_other_ones_download_is_a_config_error(bench, source):
    from ricepo.config import check_config, overlay, read_config_file

    config = overlay(read_config_file(ROOT / "config" / "config.yaml"), {"benchmarks": {bench: {"source": source}}})
    with pytest.raises(RicepoError, match=rf"benchmarks\.{bench}\.source: {bench} is not read from '{source}'"):
        check_config(config)
