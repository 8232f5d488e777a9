"""Dense retrieval through transformers, with corpus embeddings cached on disk.

Two poolings cover the paper's retrievers and the small test model:
- `mean`: attention-masked mean of the last hidden states (sentence-transformers models such as
  all-MiniLM-L6-v2), then L2-normalised when the model's sentence-transformers config has a
  Normalize module;
- `last_token`: the hidden state of each sequence's last real token (Qwen3-Embedding and
  Diver-Retriever-4B, which are Qwen3-Embedding fine-tunes), L2-normalised, with the
  instruction prefix `Instruct: {task}\\nQuery: ` on queries only.
Scores are dot products of the (normalised) embeddings, i.e. cosine similarity. The corpus is
encoded once per (model, corpus) in length-sorted batches (bf16 on a GPU, float32 on a CPU) and
saved as `embeddings.npy` with the document ids and the encoder settings, so a changed model or
setting is never mistaken for a cached one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import RicepoError
from ..packaged import resolve as resolve_model_path
from .bm25 import doc_text
from .ranking import top_k


@dataclass
class EncoderSettings:
    model: str  # Hub id or local folder
    pooling: str = "mean"  # mean | last_token
    normalize: bool = True  # L2-normalise embeddings (cosine similarity)
    query_prefix: str = ""  # prepended to queries (the instruction of instruction-tuned embedders)
    max_length: int = 512  # tokens per text (longer texts are truncated)
    batch_size: int = 32  # texts per forward pass


def settings_for(model: str, **overrides) -> EncoderSettings:
    """Pooling, normalisation and length from a sentence-transformers folder when there is one,
    then `overrides` (the config's `dense_models` entry)."""
    path = Path(resolve_model_path(model))
    settings = EncoderSettings(model=model)
    modules = path / "modules.json"
    if modules.exists():
        kinds = [m["type"] for m in json.loads(modules.read_text())]
        settings.normalize = any(k.endswith("Normalize") for k in kinds)
        pooling = path / "1_Pooling" / "config.json"
        if pooling.exists():
            cfg = json.loads(pooling.read_text())
            if cfg.get("pooling_mode_lasttoken"):
                settings.pooling = "last_token"
        sbert = path / "sentence_bert_config.json"
        if sbert.exists():
            settings.max_length = json.loads(sbert.read_text()).get("max_seq_length", settings.max_length)
    for key, value in overrides.items():
        if key not in EncoderSettings.__dataclass_fields__:
            raise RicepoError(f"dense model setting {key!r} is unknown; known: {', '.join(EncoderSettings.__dataclass_fields__)}")
        setattr(settings, key, value)
    return settings


class DenseEncoder:
    def __init__(self, settings: EncoderSettings, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        self.s = settings
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        path = resolve_model_path(settings.model)
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except OSError as e:
            raise RicepoError(f"dense model {settings.model!r} could not be loaded ({str(e).splitlines()[0]})") from None
        if settings.pooling == "last_token":
            self.tok.padding_side = "left"  # the last position is then every sequence's last token

    @torch.no_grad()
    def encode(self, texts: list[str], desc: str = "encode", progress: bool = True) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        batches = range(0, len(texts), self.s.batch_size)
        for start in tqdm(batches, desc=desc, disable=not progress, mininterval=5):
            idx = order[start : start + self.s.batch_size]
            batch = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.s.max_length, return_tensors="pt").to(
                self.device
            )
            hidden = self.model(**batch).last_hidden_state.float()
            if self.s.pooling == "mean":
                mask = batch["attention_mask"].unsqueeze(-1).float()
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            elif self.s.pooling == "last_token":
                emb = hidden[:, -1]
            else:
                raise RicepoError(f"unknown pooling {self.s.pooling!r} (mean | last_token)")
            if self.s.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
            out[idx] = emb.cpu().numpy()
        return out

    def encode_queries(self, queries: list[str], progress: bool = False) -> np.ndarray:
        return self.encode([self.s.query_prefix + q for q in queries], "encode queries", progress)


# Corpus embeddings up to this size live on the GPU in bf16 (DenseIndex._scores); ricepo plan counts them.
DEVICE_EMBEDDINGS_MAX_GIB = 8.0
SCORE_BLOCK = 65536  # documents scored per float32 block on the GPU
_ENCODERS: dict[str, DenseEncoder] = {}


def shared_encoder(settings: EncoderSettings) -> DenseEncoder:
    """One encoder per process and settings, shared by every task's index: a training job over 11
    BRIGHT tasks loads Diver-Retriever-4B (7.5 GiB in bf16) once, not 11 times."""
    key = json.dumps(asdict(settings), sort_keys=True)
    if key not in _ENCODERS:
        _ENCODERS[key] = DenseEncoder(settings)
    return _ENCODERS[key]


class DenseIndex:
    """Corpus embeddings (one row per document, corpus order) and the settings that made them."""

    def __init__(self, embeddings: np.ndarray, doc_ids: list[str], settings: EncoderSettings):
        self.embeddings, self.doc_ids, self.settings = embeddings, doc_ids, settings
        self._encoder: DenseEncoder | None = None
        self._device_embeddings: torch.Tensor | None = None

    @classmethod
    def build(cls, corpus: dict[str, dict], settings: EncoderSettings, device: str | None = None) -> DenseIndex:
        encoder = DenseEncoder(settings, device) if device else shared_encoder(settings)
        doc_ids = list(corpus)
        index = cls(encoder.encode([doc_text(corpus[d]) for d in doc_ids], "encode corpus"), doc_ids, settings)
        index._encoder = encoder
        return index

    def save(self, out_dir: str | Path) -> None:
        with atomic_dir(out_dir) as tmp:
            np.save(tmp / "embeddings.npy", self.embeddings)
            (tmp / "doc_ids.json").write_text(json.dumps(self.doc_ids))
            (tmp / "encoder.json").write_text(json.dumps(asdict(self.settings), indent=1))

    @classmethod
    def load(cls, index_dir: str | Path, expect: EncoderSettings | None = None) -> DenseIndex:
        index_dir = Path(index_dir)
        if not (index_dir / "encoder.json").exists():
            raise RicepoError(f"{index_dir}: not a dense index (no encoder.json); build it with `ricepo index --retriever dense`")
        settings = EncoderSettings(**json.loads((index_dir / "encoder.json").read_text()))
        if expect is not None and settings != expect:
            raise RicepoError(f"{index_dir}: embeddings were made with {asdict(settings)}, not {asdict(expect)}; delete the folder to re-encode")
        return cls(np.load(index_dir / "embeddings.npy"), json.loads((index_dir / "doc_ids.json").read_text()), settings)

    def encoder(self) -> DenseEncoder:
        if self._encoder is None:
            self._encoder = shared_encoder(self.settings)
        return self._encoder

    def _scores(self, queries: np.ndarray) -> np.ndarray:
        """Query-document scores. On a GPU the corpus embeddings are kept there in bf16 (half the
        memory of float32) when they are at most DEVICE_EMBEDDINGS_MAX_GIB, and scored in float32
        a block of documents at a time; larger ones, and every index on a CPU, stay float32 in
        host memory (numpy), so CPU runs compute exactly what they did."""
        device = self.encoder().device
        if not device.startswith("cuda") or self.embeddings.size * 2 > DEVICE_EMBEDDINGS_MAX_GIB * 2**30:
            return queries @ self.embeddings.T
        if self._device_embeddings is None:
            self._device_embeddings = torch.from_numpy(self.embeddings).to(device, torch.bfloat16)
        q = torch.from_numpy(queries).to(device)
        blocks = [q @ self._device_embeddings[i : i + SCORE_BLOCK].float().T for i in range(0, len(self._device_embeddings), SCORE_BLOCK)]
        return torch.cat(blocks, dim=1).cpu().numpy()

    def search_many(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-k (doc_id, score) per query, best first; ties broken by corpus order."""
        scores = self._scores(self.encoder().encode_queries(queries))
        return [top_k(row, self.doc_ids, k) for row in scores]

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        return self.search_many([query], k)[0]


def fuse(bm25: list[tuple[str, float]], dense: list[tuple[str, float]], dense_weight: float, k: int = 100) -> list[tuple[str, float]]:
    """Diver's hybrid: over the union of both lists, a document missing from a list scores 0 there;
    each list is min-max normalised per query (0 and the list's scores together), then
    dense_weight · dense + (1 - dense_weight) · bm25; the top k, ties broken by BM25 rank then id."""
    ids = list(dict.fromkeys([d for d, _ in bm25] + [d for d, _ in dense]))
    b, e = dict(bm25), dict(dense)

    def norm(scores: dict) -> dict:
        values = [scores.get(d, 0.0) for d in ids]
        lo, hi = min(values), max(values)
        return {d: (scores.get(d, 0.0) - lo) / (hi - lo) if hi > lo else 0.0 for d in ids}

    nb, ne = norm(b), norm(e)
    rank = {d: i for i, d in enumerate(ids)}
    fused = sorted(ids, key=lambda d: (-(dense_weight * ne[d] + (1 - dense_weight) * nb[d]), rank[d]))
    return [(d, dense_weight * ne[d] + (1 - dense_weight) * nb[d]) for d in fused[:k]]


class HybridRetriever:
    """BM25 and dense, fused per query as `fuse` describes (Diver's recipe)."""

    def __init__(self, bm25, dense: DenseIndex, dense_weight: float, depth: int = 100):
        self.bm25, self.dense, self.dense_weight, self.depth = bm25, dense, dense_weight, depth

    def search_many(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        dense = self.dense.search_many(queries, self.depth)
        return [fuse(b, d, self.dense_weight, min(k, self.depth)) for b, d in zip(self.bm25.search_many(queries, self.depth), dense)]

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        return self.search_many([query], k)[0]
