"""Token lengths of a job's rows, from its prepared splits (or query files) and its backbone's
tokenizer where it is on this machine."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# Characters per token of English text for Qwen/Llama BPE tokenizers, used only where the
# backbone's tokenizer is not on this machine (the plan then says the lengths are estimated).
CHARS_PER_TOKEN = 4.0
GLUE_TOKENS = 8  # tags the harness writes per round (<think>, </think>, <summary>, </summary>), with slack
OBSERVATION_TAGS = 6  # <tool_response> and </tool_response> with their newlines


@dataclass(frozen=True)
class Lengths:
    """Token lengths of a job's rows, longest case (every round at its full budgets)."""

    prompt: int  # the longest prompt (template, query, first documents)
    prompt_mean: float
    observation: int  # one round's observation
    reasoning: int
    summary: int
    depth: int
    source: str  # where the query lengths come from

    @property
    def context(self) -> int:
        """The longest row: prompt, D rounds at full budgets and the D-1 observations between."""
        return self.prompt + self.depth * (self.reasoning + self.summary + GLUE_TOKENS) + (self.depth - 1) * self.observation

    @property
    def context_mean(self) -> float:
        return self.context - self.prompt + self.prompt_mean

    @property
    def generated(self) -> int:
        return self.depth * (self.reasoning + self.summary)


def split_texts(split_dir: Path | None, split: str, fallback: Path | None, sample_docs: int = 200) -> tuple[list[str], list[str], str]:
    """(query texts, a sample of document texts, source) of a task: from its prepared split
    (`queries.jsonl`, `qrels/<split>.tsv`, `corpus.jsonl`), else the queries of a fallback file
    (BRIGHT examples JSONL with `query`, a BEIR queries.jsonl with `text`, or BEIR's gzipped test
    topics, id TAB text) and no documents."""
    if split_dir is not None and (split_dir / "queries.jsonl").exists():
        from ..data.canonical import Dataset

        ds = Dataset(split_dir)
        queries = ds.split_queries(split)
        if queries:
            docs = [f"{d.get('title', '')}: {d['text']}" for d in list(ds.corpus.values())[:sample_docs]]
            return [q["text"] for q in queries.values()], docs, f"{split_dir} ({split})"
    if fallback is not None and fallback.exists():
        if fallback.suffix == ".gz":  # BEIR topics: id TAB text
            import gzip

            lines = gzip.open(fallback, "rt", encoding="utf-8").read().splitlines()
            return [line.split("\t", 1)[-1] for line in lines if line.strip()], [], str(fallback)
        texts = [
            row.get("query") or row.get("text") or "" for row in (json.loads(line) for line in fallback.read_text().splitlines() if line.strip())
        ]
        return texts, [], str(fallback)
    return [], [], "no queries found"


def measure_lengths(queries: list[str], docs: list[str], source: str, rollout: dict, template: dict, tokenizer=None) -> Lengths:
    """Lengths from the texts: the backbone's tokenizer where it is here, else CHARS_PER_TOKEN
    (the source then says `~tokens from characters`). A shown document counts at the mean cut
    length of `docs` (a sample of the corpus; `doc_max_chars` characters without one): on the
    real corpora nearly every document is longer than the cut, so the mean is the length."""

    def count(text: str) -> int:
        if tokenizer is not None:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    cut = rollout["doc_max_chars"]
    lines = [count(f"[10] {' '.join(d.split())[:cut]}\n") for d in docs]
    doc = math.ceil(sum(lines) / len(lines)) if lines else math.ceil((cut + 6) / CHARS_PER_TOKEN) + 1
    shown = rollout["docs_in_observation"] * doc
    frame = count(" ".join(v.replace("{query}", "").replace("{documents}", "") for v in template.values() if v))
    query_tokens = [count(t) for t in queries] or [0]
    extra = frame + shown + GLUE_TOKENS
    return Lengths(
        prompt=max(query_tokens) + extra,
        prompt_mean=sum(query_tokens) / len(query_tokens) + extra,
        observation=shown + OBSERVATION_TAGS,
        reasoning=rollout["max_reasoning_tokens"],
        summary=rollout["max_summary_tokens"],
        depth=rollout["max_depth"],
        source=source + ("" if tokenizer is not None else " (~tokens from characters)"),
    )


def tokenizer_of(model: str):
    """The backbone's tokenizer when it is on this machine (a local folder), else None."""
    if not (Path(model) / "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def query_file(query_files: Path | None, benchmark: str, task: str) -> Path | None:
    """A task's query file under `--query-files`: BRIGHT examples, BEIR queries, or BEIR test topics."""
    if query_files is None:
        return None
    candidates = {
        "bright": [query_files / "bright" / "examples" / f"{task}.jsonl"],
        "beir": [query_files / "beir" / task / "queries.jsonl", query_files / "beir" / task / "topics.test.tsv.gz"],
    }[benchmark]
    return next((c for c in candidates if c.exists()), candidates[0])
