"""The result files a report job reads, and the paper's numbers.

A report job is handed its rule's declared inputs (`ricepo report NAME --inputs ...`) and reads
those files and nothing else: a planned run whose file was not handed over is "not run", even if
the file happens to lie on disk (a stale result of an earlier configuration never leaks in).

Its rule declares collections (`collect`): one JSON file holding the text of many result files
(a run's, a (benchmark, backbone)'s runs', a baseline's), keyed by their path below the results
folder, so a table has a handful of inputs and a deleted evaluation cannot change it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import yaml

from ..atomic import write_text
from ..errors import RicepoError
from ..layout import Run, bm25_metrics_file, metrics_file, runs, summary_baseline_metrics_file, train_log_file, validation_file

PAPER_RESULTS = Path(__file__).resolve().parents[3] / "config" / "paper_results.yaml"
PAPER_CLAIMS = PAPER_RESULTS.with_name("paper_claims.yaml")


def load_paper(path: Path = PAPER_RESULTS) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)["tables"]


def config_sha256(config: dict) -> str:
    """The hash of a resolved configuration, as the report and every cell cite it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


COLLECTED = "collected"  # a collection is {"collected": {path below the results folder: text}}
_HEAD = json.dumps({COLLECTED: 0})[:-2].encode()  # how its text begins: '{"collected": '


def _collection(path: Path) -> dict[str, str] | None:
    """The members of a collection file, or None if `path` is a result file of its own."""
    with open(path, "rb") as f:
        if f.read(len(_HEAD)) != _HEAD:
            return None
    return json.loads(path.read_text())[COLLECTED]


def collect(root: str | Path, files: list[str | Path], out: str | Path) -> int:
    """Write the result files `files` (or the members of collections among them) into one
    collection at `out`; how many result files it holds."""
    root, members = Path(root).resolve(), {}
    for f in map(Path, files):
        inner = _collection(f)
        members.update(inner if inner is not None else {str(f.resolve().relative_to(root)): f.read_text()})
    write_text(Path(out), json.dumps({COLLECTED: dict(sorted(members.items()))}) + "\n")
    return len(members)


class ResultFiles:
    """The results of one configuration, as far as a report job was handed them.

    `root` is the configuration's results folder (results/{run_name}); `files` the declared inputs:
    result files or collections of them.
    """

    def __init__(self, config: dict, root: str | Path, files: list[str | Path]):
        self.config, self.root = config, Path(root)
        self.texts: dict[Path, str | None] = {}  # None: a declared result file, read when asked for
        for f in map(Path, files):
            try:
                inner = _collection(f)
            except FileNotFoundError:
                raise RicepoError(f"{f}: declared as an input of this report job but missing") from None
            except json.JSONDecodeError as e:
                raise RicepoError(f"{f}: not JSON ({e})") from None
            if inner is None:
                self.texts[f.resolve()] = None
            else:
                self.texts.update({(self.root / rel).resolve(): text for rel, text in inner.items()})

    def handed(self, path: Path) -> bool:
        return path.resolve() in self.texts

    def _read(self, path: Path) -> str | None:
        path = path.resolve()
        if path not in self.texts:
            return None
        if self.texts[path] is None:
            try:
                self.texts[path] = path.read_text()
            except FileNotFoundError:
                raise RicepoError(f"{path}: declared as an input of this report job but missing") from None
        return self.texts[path]

    def metrics(self, run: Run, task: str) -> dict | None:
        """metrics.json of one evaluation (NDCG@10 and per-query values), or None if not handed over."""
        text = self._read(metrics_file(self.root, run, task))
        return json.loads(text) if text is not None else None

    def bm25(self, benchmark: str, task: str) -> dict | None:
        text = self._read(bm25_metrics_file(self.root, benchmark, task))
        return json.loads(text) if text is not None else None

    def summary_baseline(self, benchmark: str, summary: str, task: str) -> dict | None:
        text = self._read(summary_baseline_metrics_file(self.root, benchmark, summary, task))
        return json.loads(text) if text is not None else None

    def train_log(self, run: Run) -> list[dict]:
        text = self._read(train_log_file(self.root, run))
        return [json.loads(line) for line in (text or "").splitlines() if line.strip()]

    def validation(self, run: Run) -> list[dict]:
        """The run's validation scorings in step order ([] when it held nothing out or was not handed over)."""
        text = self._read(validation_file(self.root, run))
        return [json.loads(line) for line in (text or "").splitlines() if line.strip()]

    def _metrics_of(self, benchmark: str, backbone: str, method: str, variant: str | None):
        """(seed, task, metrics) of every planned run of this cell that was handed over."""
        for r in runs(self.config):
            if (r.benchmark, r.backbone, r.method, r.variant) != (benchmark, backbone, method, variant):
                continue
            for task in self.config["benchmarks"][benchmark]["tasks"]:
                result = self.metrics(r, task)
                if result is not None:
                    yield r.seed, task, result

    def metrics_files(self, benchmark: str, backbone: str, method: str, variant: str | None = None) -> dict[str, dict[int, Path]]:
        """{task: {seed: metrics.json}} of this cell's runs that were handed over."""
        out: dict[str, dict[int, Path]] = {}
        for r in runs(self.config):
            if (r.benchmark, r.backbone, r.method, r.variant) == (benchmark, backbone, method, variant):
                for task in self.config["benchmarks"][benchmark]["tasks"]:
                    f = metrics_file(self.root, r, task)
                    if self.handed(f):
                        out.setdefault(task, {})[r.seed] = f
        return out

    def measured(self, benchmark: str, backbone: str, method: str, variant: str | None = None) -> dict[int, dict[str, float]]:
        """{seed: {task: NDCG@10 x 100}} of this cell's runs."""
        out: dict[int, dict[str, float]] = {}
        for seed, task, result in self._metrics_of(benchmark, backbone, method, variant):
            out.setdefault(seed, {})[task] = 100 * float(result["ndcg_cut_10"])
        return out

    def per_query(self, benchmark: str, backbone: str, method: str, variant: str | None = None) -> dict[str, dict[str, float]]:
        """{task: {query id: NDCG@10 x 100 averaged over the seeds that ran}}."""
        out: dict[str, dict[str, list[float]]] = {}
        for _, task, result in self._metrics_of(benchmark, backbone, method, variant):
            for q, v in result["per_query"].items():
                out.setdefault(task, {}).setdefault(q, []).append(100 * float(v))
        return {t: {q: statistics.fmean(v) for q, v in qs.items()} for t, qs in out.items()}
