"""BEIR datasets in the published zip layout (corpus.jsonl, queries.jsonl, qrels/{split}.tsv).

Downloads come from BEIR's public mirror (the URLs `beir.util.download_and_unzip` uses); a local
copy in the same layout works offline. Title and text stay separate in the canonical corpus.

Where the paper's BEIR train queries come from (appendix A.1: DBPedia-Entity 23, FiQA-2018 3,183,
SciFact 802): BEIR publishes qrels/train.tsv for FiQA-2018 (5,500 queries) and SciFact (809), but
DBPedia-Entity has only dev (67 queries) and test, so its train queries are sampled from dev
(`benchmarks.beir.train_from`). TREC-COVID and Touché-2020 have no train data (0 in the paper).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import RicepoError
from .canonical import read_qrels
from .hub import download_url

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# Corpus sizes of the BEIR paper (Thakur et al. 2021, Table 1), checked as a warning.
KNOWN_DOCS = {"scifact": 5183, "fiqa": 57638, "trec-covid": 171332, "webis-touche2020": 382545,
              "dbpedia-entity": 4635922, "nfcorpus": 3633}
SPLITS = ("train", "dev", "test")


def fetch(name: str, downloads: Path) -> Path:
    """The extracted folder of one BEIR dataset, downloaded once into `downloads`."""
    folder = downloads / name
    if (folder / "corpus.jsonl").exists():
        return folder
    return download_url(BEIR_URL.format(name=name), downloads / f"{name}.zip", f"BEIR {name}",
                        f"download {name}.zip where the network exists, unzip it and set benchmarks.beir.source: "
                        f"local with benchmarks.beir.path: the folder holding {name}/")


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
