"""Peak accelerator memory of a job's phases, component by component, and the host memory a job
asks the cluster for (module docstring of ricepo.plan: the model)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

from ..decode_shapes import columns_bucket, rows_bucket
from ..errors import RicepoError
from .arch import Arch, load_arch
from .lengths import Lengths
from .shape import TrainShape

GIB = 2**30

# Bytes the update's forward and backward pass holds beyond the weights, gradients and optimizer
# state, measured with ricepo.memory_meter on Qwen2 decoder layers (hidden 256, intermediate 2.75
# and 5.5 times that, 1 and 3 layers, 256 and 512 tokens, a gradient already accumulated; a linear
# fit in hidden H and intermediate I per token, and per parameter), per (compute bytes 2 = bf16
# autocast without its weight cache, as precision.autocast runs it, or 4 = float32; gradient
# checkpointing):
#   per_param: the bf16 weight copies a matmul keeps for its backward pass;
#   per_layer_token (H, I): what a layer keeps per token for the backward pass (with checkpointing:
#   its float32 input only);
#   per_token (H, I): the rest per token: embeddings, the final norm and, with checkpointing, the
#   one layer recomputed at a time.
ACTIVATIONS = {
    (2, False): {"per_param": 2, "per_layer_token": (32.1, 8.0), "per_token": (16.6, 0.0)},
    (4, False): {"per_param": 0, "per_layer_token": (36.1, 16.0), "per_token": (-15.3, 11.6)},
    (2, True): {"per_param": 0, "per_layer_token": (4.0, 0.0), "per_token": (34.6, 10.0)},
    (4, True): {"per_param": 0, "per_layer_token": (4.0, 0.0), "per_token": (36.6, 24.0)},
}
LOGIT_BYTES = 12  # per position and vocabulary id of a log-prob chunk (log-softmax output and its gradient)


def activation_bytes(a: Arch, tokens: int, dtype_bytes: int, checkpointing: bool) -> int:
    """The update pass's memory beyond weights, gradients and optimizer state for `tokens` tokens."""
    c = ACTIVATIONS[(dtype_bytes, checkpointing)]
    per_token = (
        a.layers * (c["per_layer_token"][0] * a.hidden + c["per_layer_token"][1] * a.intermediate)
        + c["per_token"][0] * a.hidden
        + c["per_token"][1] * a.intermediate
    )
    return int(c["per_param"] * a.params + tokens * per_token)


def sampling_bytes(a: Arch, rows: int) -> int:
    """One decode step's sampling tensors over the vocabulary, per row: float32 logits, scaled
    logits, log-probs, probabilities and the entropy's product, and the float64 CDF and its copy."""
    return rows * a.vocab * (5 * 4 + 2 * 8)


def prefill_bytes(a: Arch, tokens: int, dtype_bytes: int) -> int:
    """The widest moment of a no-grad forward over `tokens` tokens: the MLP's gate, up and
    activation side by side, plus the hidden state and the attention's q/k/v/output."""
    return tokens * dtype_bytes * (3 * a.intermediate + 2 * a.hidden + 2 * a.heads * a.head_dim + 2 * a.kv_heads * a.head_dim)


def train_memory(s: TrainShape) -> tuple[dict, dict]:
    """(rollout parts, update parts) in bytes, of one process."""
    a, P = s.arch, s.arch.params
    dt = 2 if s.mixed else 4
    n = s.processes if s.sharded else 1  # FSDP keeps 1/N of the weights, gradients, AdamW state and reference
    # the sampler's own copy: under bf16-mixed, and always under FSDP (it cannot sample from shards)
    sampler = 2 * P if s.mixed else (4 * P if s.sharded else 0)
    fixed = {"weights": 4 * P // n, "optimizer": 8 * P // n, "reference": s.reference_bytes * P // n, "sampler copy": sampler, **s.retriever}
    # at the static decode step's storage size (bucketed rows and columns), which the eager loop's
    # exactly sized storage never exceeds
    kv = rows_bucket(s.call_rows) * columns_bucket(s.lengths.context) * a.kv_bytes_per_token * dt
    rollout = {**fixed, "KV cache": kv, "sampling": max(sampling_bytes(a, s.call_rows), prefill_bytes(a, s.call_rows * s.lengths.prompt, dt))}
    T = max(s.micro_tokens, s.lengths.context)
    trained = (T // s.lengths.context) * s.lengths.generated  # trained positions of a micro-batch
    chunk = min(s.logprob_chunk_tokens, max(trained, 1))
    batch = s.rows_here * s.lengths.context * 8 * 7  # ids, mask, advantages, log-probs ...
    # A vocabulary-sized float32 gradient (the head's, from a log-prob chunk) is allocated before it
    # is added to the accumulated one while the activations are alive; at the end of the backward
    # pass, with the activations gone, the embedding's contribution and its sum with the accumulated
    # gradient are two such tensors at once.
    vocab_grad = 4 * a.vocab * a.hidden
    activations, logits = activation_bytes(a, T, dt, s.gradient_checkpointing) + batch, chunk * a.vocab * LOGIT_BYTES
    update = {
        **fixed,
        "gradients": 4 * P // n,
        "activations": activations,
        "logits": logits + vocab_grad,
        "gradient accumulation": max(0, 2 * vocab_grad - (activations + logits + vocab_grad)),
    }
    if s.sharded:
        # gathered while they run: the root's embedding (and head) for the whole pass, the running
        # and the prefetched layer, and one layer's float32 gradient before its reduce-scatter
        root = a.vocab * a.hidden * (1 if a.tied else 2)
        update["FSDP gathered"] = root * dt + 2 * a.layer_params * dt + 4 * a.layer_params
    return rollout, update


def eval_memory(a: Arch, lengths: Lengths, rows: int, mixed: bool, retriever: dict) -> dict:
    dt = 2 if mixed else 4
    columns = 2 * lengths.context  # holes left by finished rows, up to half the layout before a repack
    kv = rows_bucket(rows) * columns_bucket(columns) * a.kv_bytes_per_token * dt  # as train_memory's
    return {
        "weights": dt * a.params,
        **retriever,
        "KV cache": kv,
        "sampling": max(sampling_bytes(a, rows), prefill_bytes(a, rows * lengths.prompt, dt)),
    }


def most_rows(peak_gib, capacity: float, ceiling: int = 4096) -> int:
    """The largest row count up to `ceiling` whose `peak_gib(rows)` (growing with rows) fits; 0 if none."""
    low, high = 0, ceiling
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if peak_gib(mid) <= capacity else (low, mid - 1)
    return low


def index_memory(a: Arch, batch: int, max_length: int) -> dict:
    return {"encoder": 2 * a.params, "activations": prefill_bytes(a, batch * max_length, 2) + batch * max_length * a.hidden * 4}


def gib(parts: dict) -> dict:
    return {k: v / GIB for k, v in parts.items() if v}


@functools.cache
def corpus_docs(split_dir: Path, benchmark: str, task: str) -> int:
    """Documents of a task: counted in its prepared split, else the published count."""
    corpus = split_dir / "corpus.jsonl"
    if corpus.exists():
        with open(corpus, "rb") as f:
            return sum(1 for _ in f)
    from ..data import beir, bright

    return {"bright": bright.KNOWN_DOCS, "beir": beir.KNOWN_DOCS}[benchmark].get(task, 0)


def retriever_bytes(retriever: dict, dense_models: dict, corpus_docs: dict[str, int]) -> dict:
    """Device bytes of a job's retriever: one shared dense encoder (bf16) and each task's corpus
    embeddings that DenseIndex keeps on the GPU (bf16, up to DEVICE_EMBEDDINGS_MAX_GIB each)."""
    from ..config import retriever_settings
    from ..retrieval.dense import DEVICE_EMBEDDINGS_MAX_GIB

    retriever = retriever_settings(retriever)
    if retriever["name"] == "bm25":
        return {}
    name = retriever["dense_model"]
    enc = load_arch(name, dense_models[name]["model"], causal_lm=False)
    embeddings = 0
    for docs in corpus_docs.values():
        size = docs * enc.hidden * 2
        embeddings += size if size <= DEVICE_EMBEDDINGS_MAX_GIB * GIB else 0
    return {"retriever encoder": 2 * enc.params, "corpus embeddings": embeddings}


def train_peak_gib(shape: TrainShape) -> float:
    return max(sum(p.values()) for p in train_memory(shape)) / GIB


def smallest_processes(s: TrainShape, capacity: float, most: int = 8) -> int | None:
    """The fewest processes (FSDP beyond one) at which the job fits `capacity` GiB per GPU."""
    import dataclasses

    for n in range(1, most + 1):
        if train_peak_gib(dataclasses.replace(s, processes=n, sharded=n > 1)) <= capacity:
            return n
    return None


# Host (CPU) memory of a job, for the cluster's memory request (estimates, with room to spare).
HOST_RUNTIME_GIB = 6.0  # Python, torch, transformers, the CUDA context: per process
# a document's text, its BM25 tokens and postings, its id, per process: 11.5 KiB measured on BEIR
# SciFact (1.6 KB per document on disk: the corpus dict 2.4 KiB, tokens and bm25s index 8.8 KiB)
HOST_BYTES_PER_DOC = 16 * 1024


def host_mb(config: dict, results: Path, kind: str, benchmark: str, backbone: str | None = None, tasks: list[str] | None = None) -> int:
    """Host memory (MB) a train, agent_eval or dense_index job asks the cluster for: per process
    the runtime, the backbone's float32 weights as they load (and, in the main process, gathered
    whole to be saved), each task's corpus and float32 corpus embeddings (which stay in host memory
    even where a copy is on the GPU); times the processes."""
    from ..layout import backbone_settings

    bench = config["benchmarks"][benchmark]
    tasks = tasks if tasks is not None else bench["tasks"]
    docs = {t: corpus_docs(results / "splits" / benchmark / t, benchmark, t) for t in tasks}
    retriever = bench["retriever"]  # a checked config: its defaults are filled
    dim = 0
    if retriever["name"] != "bm25":
        name = retriever["dense_model"]
        encoder = load_arch(name, config["dense_models"][name]["model"], causal_lm=False)
        dim = encoder.hidden
    if kind == "dense_index":
        total = HOST_RUNTIME_GIB * GIB + 4 * encoder.params + sum(docs.values()) * (HOST_BYTES_PER_DOC + 4 * dim)
        return math.ceil(total / 2**20)
    processes = backbone_settings(config, backbone, "train")["processes"] if kind == "train" else 1
    bb = config["backbones"][backbone]
    try:
        params = load_arch(backbone, bb["model"]).params
    except RicepoError:
        if not bb.get("build") or Path(bb["model"]).exists():
            raise
        # a backbone the workflow builds, not built yet: only a dry run asks before its build job
        # has run (a real run asks when the job starts), and its weights are not known yet
        params = 0
    per_process = HOST_RUNTIME_GIB * GIB + 4 * params + sum(docs.values()) * (HOST_BYTES_PER_DOC + 4 * dim)
    return math.ceil((processes * per_process + (4 * params if processes > 1 else 0)) / 2**20)
