"""BEIR datasets, through `ir_datasets` or from a local copy in BEIR's zip layout.

`ir_datasets` downloads BEIR's published zip once into its cache ($IR_DATASETS_HOME, default
~/.ir_datasets: beir/{name}/source.zip) and reads corpus, queries and qrels from it; a local
folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv. Both give the same canonical
dataset (tests/test_data_sources.py compares them on real SciFact). Title and text stay separate;
a query keeps its text only: BEIR's query metadata (SciFact's gold evidence sentences, TREC-COVID's
narratives) is read by no method, and ir_datasets' query types drop part of it.

Where the paper's BEIR train queries come from (appendix A.1: DBPedia-Entity 23, FiQA-2018 3,183,
SciFact 802): BEIR publishes qrels/train.tsv for FiQA-2018 (5,500 queries) and SciFact (809), but
DBPedia-Entity has only dev (67 queries) and test, so its train queries are sampled from dev
(`benchmarks.beir.train_from`). TREC-COVID and Touché-2020 have no train data (0 in the paper).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RicepoError
from .canonical import read_qrels
from .hub import probe

# Corpus sizes of the BEIR paper (Thakur et al. 2021, Table 1), checked as a warning.
KNOWN_DOCS = {"scifact": 5183, "fiqa": 57638, "trec-covid": 171332, "webis-touche2020": 382545, "dbpedia-entity": 4635922, "nfcorpus": 3633}
SPLITS = ("train", "dev", "test")
# Our task name -> the ir_datasets id and the splits it publishes qrels for. Touché-2020 is v2,
# the corrected release BEIR's leaderboard (and the paper's 49 test queries) use.
IR_DATASETS = {
    "scifact": ("beir/scifact", ("train", "test")),
    "fiqa": ("beir/fiqa", ("train", "dev", "test")),
    "dbpedia-entity": ("beir/dbpedia-entity", ("dev", "test")),
    "trec-covid": ("beir/trec-covid", ("test",)),
    "webis-touche2020": ("beir/webis-touche2020/v2", ("test",)),
    "nfcorpus": ("beir/nfcorpus", ("train", "dev", "test")),
}


def _ir_datasets_id(task: str) -> tuple[str, tuple[str, ...]]:
    if task not in IR_DATASETS:
        raise RicepoError(
            f"beir/{task}: not a BEIR dataset this harness maps to ir_datasets "
            f"(known: {', '.join(sorted(IR_DATASETS))}); use benchmarks.beir.source: local"
        )
    return IR_DATASETS[task]


def _source_zip(dataset_id: str):
    """ir_datasets' download of the dataset's zip: (cache path, the URL it downloads from)."""
    from ir_datasets.util import DownloadConfig, home_path

    download = DownloadConfig.context("beir", home_path() / "beir")[dataset_id.removeprefix("beir/")]
    urls = [m.url for m in download.mirrors if hasattr(m, "url")]
    return Path(download.path(force=False)), urls[0]


def load_ir_datasets(task: str) -> tuple[dict, dict, dict, str, dict]:
    """(corpus, queries, {split: qrels}, revision, {file: sha256}) of one BEIR dataset, read
    through ir_datasets. Offline with no cached zip, fails in one line within seconds."""
    import ir_datasets

    from .splits import sha256

    dataset_id, splits = _ir_datasets_id(task)
    cached, url = _source_zip(dataset_id)
    if not cached.exists():
        probe(
            url,
            f"BEIR {task} (ir_datasets {dataset_id})",
            f"place BEIR's {task}.zip at {cached} (IR_DATASETS_HOME), or set benchmarks.beir.source: local "
            f"with benchmarks.beir.path: a folder holding {task}/ unzipped",
        )
    try:
        base = ir_datasets.load(dataset_id)
        corpus = {}
        for doc in base.docs_iter():
            corpus[doc.doc_id] = {"title": getattr(doc, "title", "") or "", "text": doc.text or ""}
        queries = without_metadata({q.query_id: {"text": q.text} for q in base.queries_iter()})
        qrels = {}
        for split in splits:
            subset = base if len(splits) == 1 else ir_datasets.load(f"{dataset_id}/{split}")
            split_qrels: dict = {}
            for r in subset.qrels_iter():
                split_qrels.setdefault(r.query_id, {})[r.doc_id] = r.relevance
            qrels[split] = split_qrels
    except Exception as e:  # ir_datasets raises many types (network, zip, md5); all mean the same here
        raise RicepoError(
            f"beir/{task}: ir_datasets {dataset_id} failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    revision = f"ir_datasets {ir_datasets.__version__}:{dataset_id}"
    return corpus, queries, qrels, revision, {"source.zip": sha256(cached)}


def without_metadata(queries: dict) -> dict:
    """A BEIR query in the canonical layout: its text, no metadata (see the module docstring)."""
    return {qid: {"text": q["text"], "metadata": {}} for qid, q in queries.items()}


def topic_counts(folder: Path) -> dict:
    """Counts of a topics-and-qrels folder (topics.{split}.tsv[.gz] + qrels.{split}.trec), as shipped in
    ../shared/data for the BEIR datasets whose corpora are not there."""
    import gzip

    out: dict = {"queries": {}, "qrels": {}}
    for split in SPLITS:
        qrels_path = folder / f"qrels.{split}.trec"
        if not qrels_path.exists():
            continue
        qrels = read_qrels(qrels_path)
        topics = set()
        for name in (f"topics.{split}.tsv.gz", f"topics.{split}.tsv"):
            path = folder / name
            if path.exists():
                opener = gzip.open if name.endswith(".gz") else open
                with opener(path, "rt", encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        if "\t" not in line:
                            raise RicepoError(f"{path}:{lineno}: expected 'id<TAB>text'")
                        topics.add(line.split("\t", 1)[0])
                break
        judged = [q for q in qrels if not topics or q in topics]
        out["queries"][split] = len(judged)
        out["qrels"][split] = sum(len(qrels[q]) for q in judged)
    return out
