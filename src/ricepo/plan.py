"""Memory and GPU-hour plan of every GPU job, before launch (`ricepo plan`, the `plan` target).

A job's peak accelerator memory per process is predicted from the backbone's architecture (its
config.json: config/architectures/<backbone>.json for the paper's backbones, which cannot be
downloaded offline, else the backbone's own folder), the configured budgets and the token
lengths of the prepared data, component by component:

    train   rollout = weights + optimizer + reference + sampler copy + retriever + KV cache + sampling
            update  = weights + gradients + optimizer + reference + sampler copy + retriever
                      + activations of one micro-batch + one log-prob chunk's logits
            peak    = max(rollout, update)   (gradients are freed after each optimizer step)
    agent_eval      = sampler weights + retriever + KV cache + sampling
    dense_index     = encoder weights + one batch's activations

Bytes per parameter: float32 master weights 4, gradients 4, AdamW's two moments 8, the reference
2 (bf16) or 4, the bf16 sampler copy 2 under bf16-mixed. A training job of N processes
(`train.processes`, a backbone's own `train:` included) is planned per process: each rolls out and
trains on 1/N of the step's rows; under FSDP (`train.distributed: fsdp`) each also holds 1/N of the
weights, gradients, AdamW state and reference, a whole sampler copy, and, during the update, what
FSDP gathers while a layer runs. Each training job's line names the fewest GPUs that fit. The KV
cache holds `rollout.rows_per_call` rows at the longest context (prompt, every round at full
budgets, the observations between); an evaluation's holds `evaluate.slots` rows at twice that,
as its layout keeps the columns of rows that left until they are half of it (agent/kv_cache.py).
Activations: with gradient checkpointing one float32 hidden state per layer and token plus one
layer's activations recomputed; without, every layer's (`ACTIVATIONS`, measured on small Qwen2
layers); a log-prob chunk's logits (`LOGIT_BYTES`). The rollout's sampling tensors and prefill
(`sampling_bytes`, `prefill_bytes`) come from reading what each op keeps.
`scripts/plan_vs_measured.py` checks the whole prediction against a measured training step.

A job that does not fit its GPU (the config's `plan.gpu`, or `plan.backbone_gpu` per backbone,
less `plan.reserve_gib`) is refused before it starts, in one line naming the job, what it needs
and the cheapest change that makes it fit. GPU-hours are estimates (labelled so everywhere):
prefill and update FLOPs at `plan.mfu` of the GPU's bf16 peak, decode steps at
`plan.decode_efficiency` of its memory bandwidth.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RicepoError

GIB = 2 ** 30
ARCHITECTURES = Path(__file__).resolve().parents[2] / "config" / "architectures"
# Characters per token of English text for Qwen/Llama BPE tokenizers, used only where the
# backbone's tokenizer is not on this machine (the plan then says the lengths are estimated).
CHARS_PER_TOKEN = 4.0
GLUE_TOKENS = 8           # tags the harness writes per round (<think>, </think>, <summary>, </summary>), with slack
OBSERVATION_TAGS = 6      # <tool_response> and </tool_response> with their newlines


@dataclass(frozen=True)
class Arch:
    """What the plan needs from a model's config.json; `params` counted exactly (meta device)."""
    name: str
    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool          # the output head shares the input embedding's weights

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer (the rest: the embedding, the head unless tied, the norm)."""
        return (self.params - self.vocab * self.hidden * (1 if self.tied else 2)) // self.layers

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of every layer for one token, per byte of the cache's dtype."""
        return 2 * self.layers * self.kv_heads * self.head_dim


def read_arch(name: str, config: dict, causal_lm: bool = True) -> Arch:
    """An Arch from a config.json's contents: the model is built on the meta device (no memory)
    to count its parameters as transformers builds them."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = (AutoModelForCausalLM if causal_lm else AutoModel).from_config(cfg)
    heads = cfg.num_attention_heads
    return Arch(name=name, params=sum(p.numel() for p in model.parameters()), layers=cfg.num_hidden_layers,
                hidden=cfg.hidden_size, intermediate=cfg.intermediate_size, heads=heads,
                kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
                head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, vocab=cfg.vocab_size,
                tied=bool(getattr(cfg, "tie_word_embeddings", False)))


def arch_file(name: str, model: str) -> Path:
    """Where a model's config.json is read: config/architectures/<name>.json, else its folder."""
    own = ARCHITECTURES / f"{name}.json"
    if own.exists():
        return own
    from .packaged import resolve

    try:
        folder = Path(resolve(model))
    except Exception:   # a pkg: source that is not installed
        folder = Path(model)
    if (folder / "config.json").exists():
        return folder / "config.json"
    raise RicepoError(f"plan: no architecture for {name!r}: add config/architectures/{name}.json (the model's "
                      f"config.json) or build/download {model} first")


@functools.lru_cache(maxsize=None)
def load_arch(name: str, model: str, causal_lm: bool = True) -> Arch:
    path = arch_file(name, model)
    try:
        return read_arch(name, json.loads(path.read_text()), causal_lm)
    except (ValueError, KeyError, AttributeError) as e:
        raise RicepoError(f"{path}: not a usable config.json ({type(e).__name__}: {e})") from None


# --- lengths ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lengths:
    """Token lengths of a job's rows, longest case (every round at its full budgets)."""
    prompt: int         # the longest prompt (template, query, first documents)
    prompt_mean: float
    observation: int    # one round's observation
    reasoning: int
    summary: int
    depth: int
    source: str         # where the query lengths come from

    @property
    def context(self) -> int:
        """The longest row: prompt, D rounds at full budgets and the D-1 observations between."""
        return (self.prompt + self.depth * (self.reasoning + self.summary + GLUE_TOKENS)
                + (self.depth - 1) * self.observation)

    @property
    def context_mean(self) -> float:
        return self.context - self.prompt + self.prompt_mean

    @property
    def generated(self) -> int:
        return self.depth * (self.reasoning + self.summary)


def split_texts(split_dir: Path | None, split: str, fallback: Path | None,
                sample_docs: int = 200) -> tuple[list[str], list[str], str]:
    """(query texts, a sample of document texts, source) of a task: from its prepared split
    (`queries.jsonl`, `qrels/<split>.tsv`, `corpus.jsonl`), else the queries of a fallback file
    (BRIGHT examples JSONL with `query`, a BEIR queries.jsonl with `text`, or BEIR's gzipped test
    topics, id TAB text) and no documents."""
    if split_dir is not None and (split_dir / "queries.jsonl").exists():
        from .data.canonical import Dataset

        ds = Dataset(split_dir)
        queries = ds.split_queries(split)
        if queries:
            docs = [f"{d.get('title', '')}: {d['text']}" for d in list(ds.corpus.values())[:sample_docs]]
            return [q["text"] for q in queries.values()], docs, f"{split_dir} ({split})"
    if fallback is not None and fallback.exists():
        if fallback.suffix == ".gz":      # BEIR topics: id TAB text
            import gzip

            lines = gzip.open(fallback, "rt", encoding="utf-8").read().splitlines()
            return [line.split("\t", 1)[-1] for line in lines if line.strip()], [], str(fallback)
        texts = [row.get("query") or row.get("text") or "" for row in
                 (json.loads(line) for line in fallback.read_text().splitlines() if line.strip())]
        return texts, [], str(fallback)
    return [], [], "no queries found"


def measure_lengths(queries: list[str], docs: list[str], source: str, rollout: dict, template: dict,
                    tokenizer=None) -> Lengths:
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
    return Lengths(prompt=max(query_tokens) + extra, prompt_mean=sum(query_tokens) / len(query_tokens) + extra,
                   observation=shown + OBSERVATION_TAGS, reasoning=rollout["max_reasoning_tokens"],
                   summary=rollout["max_summary_tokens"], depth=rollout["max_depth"],
                   source=source + ("" if tokenizer is not None else " (~tokens from characters)"))


# --- memory -----------------------------------------------------------------------------------
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
LOGIT_BYTES = 12          # per position and vocabulary id of a log-prob chunk (log-softmax output and its gradient)


def activation_bytes(a: Arch, tokens: int, dtype_bytes: int, checkpointing: bool) -> int:
    """The update pass's memory beyond weights, gradients and optimizer state for `tokens` tokens."""
    c = ACTIVATIONS[(dtype_bytes, checkpointing)]
    per_token = (a.layers * (c["per_layer_token"][0] * a.hidden + c["per_layer_token"][1] * a.intermediate)
                 + c["per_token"][0] * a.hidden + c["per_token"][1] * a.intermediate)
    return int(c["per_param"] * a.params + tokens * per_token)


def sampling_bytes(a: Arch, rows: int) -> int:
    """One decode step's sampling tensors over the vocabulary, per row: float32 logits, scaled
    logits, log-probs, probabilities and the entropy's product, and the float64 CDF and its copy."""
    return rows * a.vocab * (5 * 4 + 2 * 8)


def prefill_bytes(a: Arch, tokens: int, dtype_bytes: int) -> int:
    """The widest moment of a no-grad forward over `tokens` tokens: the MLP's gate, up and
    activation side by side, plus the hidden state and the attention's q/k/v/output."""
    return tokens * dtype_bytes * (3 * a.intermediate + 2 * a.hidden + 2 * a.heads * a.head_dim
                                   + 2 * a.kv_heads * a.head_dim)


@dataclass
class JobPlan:
    job: str                          # e.g. train bright/r1_distill_qwen_1p5b/grpo seed 0
    kind: str                         # train | agent_eval | dense_index
    gpu: str
    capacity_gib: float               # the GPU's memory less the reserve
    parts: dict[str, float]           # component -> GiB at the peak phase
    phase: str                        # which phase peaks (rollout | update | forward)
    gpu_hours: float                  # estimate
    lengths_source: str
    advice: list[str] = field(default_factory=list)   # cheapest changes first
    spread: str = ""                  # how a training job spreads over its GPUs and the fewest that fit;
                                      # an evaluation's most slots that fit

    @property
    def peak_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.peak_gib <= self.capacity_gib

    def refusal(self) -> str:
        fix = self.advice[0] if self.advice else "use a GPU with more memory"
        return (f"{self.job}: needs {self.peak_gib:.1f} GiB at its {self.phase} peak, {self.gpu} has "
                f"{self.capacity_gib:.1f} GiB usable; cheapest change: {fix}")


@dataclass(frozen=True)
class TrainShape:
    """The settings of a training job that decide its memory and time."""
    arch: Arch
    lengths: Lengths
    rows_per_step: int                # rows the step trains on (and rolls out at least)
    rows_per_call: int                # rows per sampler call (0: all)
    micro_batch_size: int
    micro_batch_tokens: int
    logprob_chunk_tokens: int
    gradient_checkpointing: bool
    mixed: bool                       # bf16-mixed (else fp32)
    reference_bytes: int              # 2 or 4 per parameter; 0 without a KL term (no reference held)
    retriever: dict                   # name -> bytes on the device (encoder, embeddings)
    processes: int = 1                # train.processes: each rolls out and trains on its share of the rows
    sharded: bool = False             # FSDP (train.distributed fsdp, processes > 1): 1/N of the model state each
    queries_per_step: int = 0         # the step's queries (rows_per_step of them share each prompt); 0: rows alone
    old_pass: bool = True             # a pass recomputes the old log-probs (not with one update per batch)
    shared_prefix: bool = False       # train.shared_prefix: a query's rows run their prompt once per pass

    @property
    def rows_here(self) -> int:
        """The rows one process rolls out and trains on."""
        return math.ceil(self.rows_per_step / self.processes)

    @property
    def call_rows(self) -> int:
        return min(self.rows_per_call or self.rows_here, self.rows_here)

    @property
    def micro_tokens(self) -> int:
        rows_tokens = self.micro_batch_size * self.lengths.context
        return min(rows_tokens, self.micro_batch_tokens) if self.micro_batch_tokens else rows_tokens


def train_memory(s: TrainShape) -> tuple[dict, dict]:
    """(rollout parts, update parts) in bytes, of one process."""
    a, P = s.arch, s.arch.params
    dt = 2 if s.mixed else 4
    n = s.processes if s.sharded else 1   # FSDP keeps 1/N of the weights, gradients, AdamW state and reference
    # the sampler's own copy: under bf16-mixed, and always under FSDP (it cannot sample from shards)
    sampler = 2 * P if s.mixed else (4 * P if s.sharded else 0)
    fixed = {"weights": 4 * P // n, "optimizer": 8 * P // n, "reference": s.reference_bytes * P // n,
             "sampler copy": sampler, **s.retriever}
    rollout = {**fixed, "KV cache": s.call_rows * s.lengths.context * a.kv_bytes_per_token * dt,
               "sampling": max(sampling_bytes(a, s.call_rows), prefill_bytes(a, s.call_rows * s.lengths.prompt, dt))}
    T = max(s.micro_tokens, s.lengths.context)
    trained = (T // s.lengths.context) * s.lengths.generated      # trained positions of a micro-batch
    chunk = min(s.logprob_chunk_tokens, max(trained, 1))
    batch = s.rows_here * s.lengths.context * 8 * 7    # ids, mask, advantages, log-probs ...
    # A vocabulary-sized float32 gradient (the head's, from a log-prob chunk) is allocated before it
    # is added to the accumulated one while the activations are alive; at the end of the backward
    # pass, with the activations gone, the embedding's contribution and its sum with the accumulated
    # gradient are two such tensors at once.
    vocab_grad = 4 * a.vocab * a.hidden
    activations, logits = activation_bytes(a, T, dt, s.gradient_checkpointing) + batch, chunk * a.vocab * LOGIT_BYTES
    update = {**fixed, "gradients": 4 * P // n, "activations": activations, "logits": logits + vocab_grad,
              "gradient accumulation": max(0, 2 * vocab_grad - (activations + logits + vocab_grad))}
    if s.sharded:
        # gathered while they run: the root's embedding (and head) for the whole pass, the running
        # and the prefetched layer, and one layer's float32 gradient before its reduce-scatter
        root = a.vocab * a.hidden * (1 if a.tied else 2)
        update["FSDP gathered"] = root * dt + 2 * a.layer_params * dt + 4 * a.layer_params
    return rollout, update


def train_seconds(s: TrainShape, gpu: dict, plan: dict) -> float:
    """Estimated seconds of one training step on `gpu`, its processes working in parallel on
    their shares (the collectives' time left out)."""
    a, P = s.arch, s.arch.params
    dt = 2 if s.mixed else 4
    flops = plan["mfu"] * gpu["bf16_tflops"] * 1e12
    bandwidth = plan["decode_efficiency"] * gpu["bandwidth_tb_s"] * 1e12
    calls = math.ceil(s.rows_here / s.call_rows)
    decode_step = (P * dt + s.call_rows * s.lengths.context_mean * a.kv_bytes_per_token * dt) / bandwidth
    rollout = calls * s.lengths.generated * decode_step + 2 * P * s.rows_here * s.lengths.prompt_mean / flops
    whole = s.rows_here * s.lengths.context_mean
    # with the prompt run once per query (train.shared_prefix), where no layer is recomputed
    queries = math.ceil(s.queries_per_step / s.processes) if s.queries_per_step else s.rows_here
    once = queries * s.lengths.prompt_mean + s.rows_here * (s.lengths.context_mean - s.lengths.prompt_mean)
    share = s.shared_prefix and not s.sharded
    scoring = (2 if s.old_pass else 0) + (2 if s.reference_bytes else 0)     # old, ref: forward only
    tokens = (once if share else whole) * scoring + (6 + (2 if s.gradient_checkpointing else 0)) * (
        once if share and not s.gradient_checkpointing else whole)           # forward+backward, recompute
    return rollout + P * tokens / flops


def eval_memory(a: Arch, lengths: Lengths, rows: int, mixed: bool, retriever: dict) -> dict:
    dt = 2 if mixed else 4
    columns = 2 * lengths.context   # holes left by finished rows, up to half the layout before a repack
    return {"weights": dt * a.params, **retriever, "KV cache": rows * columns * a.kv_bytes_per_token * dt,
            "sampling": max(sampling_bytes(a, rows), prefill_bytes(a, rows * lengths.prompt, dt))}


def most_rows(peak_gib, capacity: float, ceiling: int = 4096) -> int:
    """The largest row count up to `ceiling` whose `peak_gib(rows)` (growing with rows) fits; 0 if none."""
    low, high = 0, ceiling
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if peak_gib(mid) <= capacity else (low, mid - 1)
    return low


def eval_seconds(a: Arch, lengths: Lengths, queries: int, rows: int, mixed: bool, gpu: dict, plan: dict) -> float:
    dt = 2 if mixed else 4
    bandwidth = plan["decode_efficiency"] * gpu["bandwidth_tb_s"] * 1e12
    step = (a.params * dt + rows * lengths.context_mean * a.kv_bytes_per_token * dt) / bandwidth
    prefill = 2 * a.params * queries * lengths.prompt_mean / (plan["mfu"] * gpu["bf16_tflops"] * 1e12)
    return math.ceil(queries / rows) * lengths.generated * step + prefill


def index_memory(a: Arch, batch: int, max_length: int) -> dict:
    return {"encoder": 2 * a.params, "activations": prefill_bytes(a, batch * max_length, 2)
            + batch * max_length * a.hidden * 4}


def gib(parts: dict) -> dict:
    return {k: v / GIB for k, v in parts.items() if v}


# --- a configuration's jobs -------------------------------------------------------------------
def rows_per_query(method: str, credit: dict, variant: str | None, group_size: int) -> int:
    """Rows a method samples per query in one step (what its collector rolls out: credit/)."""
    from .credit import get_method

    m = get_method(method)
    _, r = m.settings(credit, variant)
    if m.rollout == "trees":
        return r["trees"] * (1 + r["expansions"] * r["rounds"])
    if m.rollout == "branches":
        return group_size + r["anchors"] * (r["branches"] - 1)
    return r.get("group_size", group_size)


def _tokenizer(model: str):
    """The backbone's tokenizer when it is on this machine (a local folder), else None."""
    if not (Path(model) / "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def _fallback(query_files: Path | None, benchmark: str, task: str) -> Path | None:
    """A task's query file under `--query-files`: BRIGHT examples, BEIR queries, or BEIR test topics."""
    if query_files is None:
        return None
    candidates = {"bright": [query_files / "bright" / "examples" / f"{task}.jsonl"],
                  "beir": [query_files / "beir" / task / "queries.jsonl",
                           query_files / "beir" / task / "topics.test.tsv.gz"]}[benchmark]
    return next((c for c in candidates if c.exists()), candidates[0])


@functools.lru_cache(maxsize=None)
def _corpus_docs(split_dir: Path, benchmark: str, task: str) -> int:
    """Documents of a task: counted in its prepared split, else the published count."""
    corpus = split_dir / "corpus.jsonl"
    if corpus.exists():
        with open(corpus, "rb") as f:
            return sum(1 for _ in f)
    from .data import beir, bright

    return {"bright": bright.KNOWN_DOCS, "beir": beir.KNOWN_DOCS}[benchmark].get(task, 0)


def retriever_bytes(retriever: dict, dense_models: dict, corpus_docs: dict[str, int]) -> dict:
    """Device bytes of a job's retriever: one shared dense encoder (bf16) and each task's corpus
    embeddings that DenseIndex keeps on the GPU (bf16, up to DEVICE_EMBEDDINGS_MAX_GIB each)."""
    from .config import retriever_settings
    from .retrieval.dense import DEVICE_EMBEDDINGS_MAX_GIB

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


def _gpu(config: dict, backbone: str) -> tuple[str, dict]:
    plan = config["plan"]
    key = plan["backbone_gpu"].get(backbone, plan["gpu"])
    if key not in config["gpus"]:
        raise RicepoError(f"plan: GPU {key!r} (for {backbone}) is not in gpus ({', '.join(sorted(config['gpus']))})")
    return key, config["gpus"][key]


def train_shape(train: dict, rollout: dict, credit: dict, method: str, variant: str | None, arch: Arch,
                lens: Lengths, retriever: dict) -> TrainShape:
    """A training job's shape from the config's (or a job spec's) `train` and `rollout` and the
    method's `credit` settings."""
    mixed = train["precision"] in ("auto", "bf16-mixed")       # auto is bf16-mixed on a bf16 GPU
    ref = train["reference_precision"]
    ref_bytes = (2 if ref == "bf16" or (ref == "auto" and mixed) else 4) if train["kl_coef"] > 0 else 0
    per_query = rows_per_query(method, credit, variant, rollout["group_size"])
    return TrainShape(arch=arch, lengths=lens, rows_per_step=train["queries_per_step"] * per_query,
                      rows_per_call=rollout["rows_per_call"], micro_batch_size=train["micro_batch_size"],
                      micro_batch_tokens=train["micro_batch_tokens"], logprob_chunk_tokens=train["logprob_chunk_tokens"],
                      gradient_checkpointing=train["gradient_checkpointing"], mixed=mixed, reference_bytes=ref_bytes,
                      retriever=retriever, processes=train["processes"],
                      sharded=train["distributed"] == "fsdp" and train["processes"] > 1,
                      queries_per_step=train["queries_per_step"], shared_prefix=train["shared_prefix"],
                      old_pass=train["ppo_epochs"] * train["ppo_mini_batches"] > 1)


def train_peak_gib(shape: TrainShape) -> float:
    return max(sum(p.values()) for p in train_memory(shape)) / GIB


def smallest_processes(s: TrainShape, capacity: float, most: int = 8) -> int | None:
    """The fewest processes (FSDP beyond one) at which the job fits `capacity` GiB per GPU."""
    import dataclasses

    for n in range(1, most + 1):
        if train_peak_gib(dataclasses.replace(s, processes=n, sharded=n > 1)) <= capacity:
            return n
    return None


def _train_advice(s: TrainShape, need: float, capacity: float) -> list[str]:
    """Changes that make a training job fit, cheapest first (each checked by recomputing): the
    settings that cost no GPU first, then sharding over more GPUs."""
    import dataclasses

    peak = train_peak_gib

    tries = []
    if not s.gradient_checkpointing:
        tries.append(("set train.gradient_checkpointing: true", dataclasses.replace(s, gradient_checkpointing=True)))
    for rows in (64, 32, 16, 8, 4, 2, 1):
        if rows < s.call_rows:
            tries.append((f"set rollout.rows_per_call: {rows}", dataclasses.replace(s, rows_per_call=rows)))
    for tokens in (16384, 8192, 4096):
        if not s.micro_batch_tokens or tokens < s.micro_batch_tokens:
            tries.append((f"set train.micro_batch_tokens: {tokens}", dataclasses.replace(s, micro_batch_tokens=tokens)))
    if s.reference_bytes == 4:
        tries.append(("set train.reference_precision: bf16", dataclasses.replace(s, reference_bytes=2)))
    fitting = [what for what, shape in tries if peak(shape) <= capacity]
    n = smallest_processes(s, capacity)
    if n and n > s.processes:
        fitting.append(f"set train.processes: {n} and train.distributed: fsdp (this backbone's `train:`)")
    return fitting or [f"no setting tried fits: {need:.0f} GiB of which {(16 * s.arch.params) / GIB:.0f} GiB is "
                       f"weights, gradients and optimizer state; use a larger GPU"]


def plan_config(config: dict, results: Path, query_files: Path | None = None) -> list[JobPlan]:
    """Every GPU job of `config`: each training run, each (run, task) evaluation, each dense index."""
    from .layout import backbone_settings, runs, template, train_tasks

    splits = results / "splits"
    plans, archs, lens_cache, evaluations = [], {}, {}, {}

    def _retriever(benchmark: str, tasks: list[str]) -> dict:
        return retriever_bytes(config["benchmarks"][benchmark]["retriever"], config["dense_models"],
                               {t: _corpus_docs(splits / benchmark / t, benchmark, t) for t in tasks})

    def lens_for(benchmark: str, tasks: list[str], split: str, backbone: str) -> Lengths:
        key = (benchmark, tuple(tasks), split, backbone)
        if key not in lens_cache:
            queries, docs, sources = [], [], []
            for task in tasks:
                q, d, src = split_texts(splits / benchmark / task, split, _fallback(query_files, benchmark, task))
                queries += q
                docs += d
                sources.append(src)
            model = config["backbones"][backbone]["model"]
            source = sources[0] if len(set(sources)) == 1 else f"{len(tasks)} tasks' splits or query files"
            lens_cache[key] = measure_lengths(queries, docs, source, backbone_settings(config, backbone, "rollout"),
                                              template(config, backbone),
                                              _tokenizer(model))
        return lens_cache[key]

    for run in runs(config):
        bench = config["benchmarks"][run.benchmark]
        if run.backbone not in archs:
            archs[run.backbone] = load_arch(run.backbone, config["backbones"][run.backbone]["model"])
        arch = archs[run.backbone]
        gpu_key, gpu = _gpu(config, run.backbone)
        capacity = gpu["memory_gib"] - config["plan"]["reserve_gib"]
        label = f"{run.benchmark}/{run.backbone}/{run.method}{'/' + run.variant if run.variant else ''} seed {run.seed}"
        if run.trained:
            tasks = train_tasks(config, run.benchmark)
            lens = lens_for(run.benchmark, tasks, "train", run.backbone)
            train = backbone_settings(config, run.backbone, "train")
            shape = train_shape(train, backbone_settings(config, run.backbone, "rollout"),
                                config["credit"].get(run.method, {}), run.method, run.variant, arch, lens,
                                _retriever(run.benchmark, tasks))
            rollout, update = (sum(p.values()) / GIB for p in train_memory(shape))
            parts = train_memory(shape)[0 if rollout >= update else 1]
            hours = train["steps"] * train_seconds(shape, gpu, config["plan"]) * shape.processes / 3600
            fewest = smallest_processes(shape, capacity)
            job = JobPlan(job=f"train {label}", kind="train", gpu=gpu_key, capacity_gib=capacity, parts=gib(parts),
                          phase="rollout" if rollout >= update else "update", gpu_hours=hours,
                          lengths_source=lens.source,
                          spread=(f"{shape.processes} GPUs, {'fsdp' if shape.sharded else 'ddp'}; "
                                  if shape.processes > 1 else "")
                          + f"fewest GPUs that fit: {fewest or 'none up to 8'}")
            if not job.fits:
                job.advice = _train_advice(shape, job.peak_gib, capacity)
            plans.append(job)
        for task in bench["tasks"]:
            evaluations.setdefault((run.benchmark, run.backbone, task), []).append(run)
    mixed = config["train"]["precision"] in ("auto", "bf16-mixed")
    for (benchmark, backbone, task), evaluated in evaluations.items():
        arch, (gpu_key, gpu) = archs[backbone], _gpu(config, backbone)
        lens = lens_for(benchmark, [task], "test", backbone)
        slots = config["evaluate"]["slots"]
        parts = eval_memory(arch, lens, slots, mixed, _retriever(benchmark, [task]))
        queries = config["benchmarks"][benchmark]["split_counts"][task]["test"]
        hours = eval_seconds(arch, lens, queries, slots, mixed, gpu, config["plan"]) / 3600
        capacity = gpu["memory_gib"] - config["plan"]["reserve_gib"]
        most = most_rows(lambda r: sum(gib(eval_memory(arch, lens, r, mixed, _retriever(benchmark, [task]))).values()),
                         capacity)
        job = JobPlan(job=f"agent_eval {benchmark}/{backbone} {task} (x{len(evaluated)} runs)", kind="agent_eval",
                      gpu=gpu_key, capacity_gib=capacity, parts=gib(parts), phase="rollout",
                      gpu_hours=hours * len(evaluated), lengths_source=lens.source,
                      spread=f"{slots} slots; most that fit: {most or 'none'}")
        if not job.fits:
            job.advice = [f"lower evaluate.slots (now {slots})"]
        plans.append(job)
    plans += _index_plans(config, splits)
    return plans


def _index_plans(config: dict, splits: Path) -> list[JobPlan]:
    from .config import retriever_settings
    from .retrieval.dense import settings_for

    out = []
    key, gpu = config["plan"]["gpu"], config["gpus"][config["plan"]["gpu"]]
    for benchmark, bench in config["benchmarks"].items():
        retriever = retriever_settings(bench["retriever"])
        if retriever["name"] == "bm25":
            continue
        entry = dict(config["dense_models"][retriever["dense_model"]])
        enc = load_arch(retriever["dense_model"], entry["model"], causal_lm=False)
        s = settings_for(entry.pop("model"), **entry)
        parts = index_memory(enc, s.batch_size, s.max_length)
        for task in bench["tasks"]:
            docs = _corpus_docs(splits / benchmark / task, benchmark, task)
            # each document at up to 512 tokens (most BRIGHT and BEIR documents are shorter): an estimate
            seconds = 2 * enc.params * docs * min(s.max_length, 512) / (config["plan"]["mfu"] * gpu["bf16_tflops"] * 1e12)
            out.append(JobPlan(job=f"dense_index {benchmark}/{task} {retriever['dense_model']}", kind="dense_index",
                               gpu=key, capacity_gib=gpu["memory_gib"] - config["plan"]["reserve_gib"],
                               parts=gib(parts), phase="forward", gpu_hours=seconds / 3600,
                               lengths_source=f"{docs} documents"))
    return out


# Host (CPU) memory of a job, for the cluster's memory request (estimates, with room to spare).
HOST_RUNTIME_GIB = 6.0          # Python, torch, transformers, the CUDA context: per process
# a document's text, its BM25 tokens and postings, its id, per process: 11.5 KiB measured on BEIR
# SciFact (1.6 KB per document on disk: the corpus dict 2.4 KiB, tokens and bm25s index 8.8 KiB)
HOST_BYTES_PER_DOC = 16 * 1024


def host_mb(config: dict, results: Path, kind: str, benchmark: str, backbone: str | None = None,
            tasks: list[str] | None = None) -> int:
    """Host memory (MB) a train, agent_eval or dense_index job asks the cluster for: per process
    the runtime, the backbone's float32 weights as they load (and, in the main process, gathered
    whole to be saved), each task's corpus and float32 corpus embeddings (which stay in host memory
    even where a copy is on the GPU); times the processes."""
    from .layout import backbone_settings

    bench = config["benchmarks"][benchmark]
    tasks = tasks if tasks is not None else bench["tasks"]
    docs = {t: _corpus_docs(results / "splits" / benchmark / t, benchmark, t) for t in tasks}
    retriever = bench["retriever"]   # a checked config: its defaults are filled
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


def format_plan(plans: list[JobPlan], title: str) -> str:
    """One line per job: peak and its parts, GPU-hours (estimate); refusals at the end."""
    lines = [f"{title}: {len(plans)} GPU jobs; peak accelerator memory per process (GiB) and GPU-hours "
             f"(estimates: computed, not measured)"]
    for p in plans:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in p.parts.items())
        verdict = "fits" if p.fits else "DOES NOT FIT"
        spread = f"{p.spread}; " if p.spread else ""
        lines.append(f"  {p.job}: {p.peak_gib:.1f} of {p.capacity_gib:.1f} on {p.gpu} ({verdict}; {spread}{p.phase} "
                     f"peak; {parts}) ~{p.gpu_hours:.2f} GPU-h")
    sources = sorted({p.lengths_source for p in plans if p.kind != "dense_index"})
    shown = "; ".join(sources) if len(sources) <= 3 else f"{len(sources)} sources, e.g. {sources[0]}"
    lines.append(f"token lengths from: {shown}")
    hours = sum(p.gpu_hours for p in plans)
    by_kind = {k: sum(p.gpu_hours for p in plans if p.kind == k) for k in ("train", "agent_eval", "dense_index")}
    lines.append("estimated GPU-hours: " + ", ".join(f"{k} {v:.0f}" for k, v in by_kind.items()) + f"; total {hours:.0f}")
    refused = [p for p in plans if not p.fits]
    lines.append(f"{len(plans) - len(refused)} of {len(plans)} jobs fit" + ("" if not refused else "; refused:"))
    lines += ["  " + p.refusal() for p in refused]
    return "\n".join(lines)


def check_training_fits(spec: dict, envs: dict, queries: list[str], free_gib: float, gpu: str) -> JobPlan:
    """The plan of one training job (its job spec, its loaded task environments and train query
    texts) against `free_gib` of GPU memory; a job that does not fit is refused, before its model
    is loaded."""
    from transformers import AutoConfig

    model = spec["backbone"]["model"]
    try:
        arch = read_arch(Path(model).name, AutoConfig.from_pretrained(model).to_dict())
    except OSError as e:
        raise RicepoError(f"plan: cannot read the architecture of {model!r}: {str(e).splitlines()[0]}") from None
    docs = [f"{d.get('title', '')}: {d['text']}" for env in envs.values() for d in list(env.corpus.values())[:200]]
    lens = measure_lengths(queries, docs, "the job's train splits", spec["rollout"], spec["template"], _tokenizer(model))
    retriever = retriever_bytes(spec.get("retriever") or {"name": "bm25"}, spec.get("dense_models") or {},
                                {task: len(env.corpus) for task, env in envs.items()})
    shape = train_shape(spec["train"], spec["rollout"], spec.get("credit", {}), spec["method"], spec.get("variant"),
                        arch, lens, retriever)
    rollout, update = train_memory(shape)
    peak = max((rollout, update), key=lambda p: sum(p.values()))
    job = JobPlan(job=f"train {spec['benchmark']}/{Path(model).name}/{spec['method']} seed {spec['seed']}",
                  kind="train", gpu=gpu, capacity_gib=free_gib, parts=gib(peak),
                  phase="rollout" if peak is rollout else "update", gpu_hours=0.0, lengths_source=lens.source)
    if not job.fits:
        job.advice = _train_advice(shape, job.peak_gib, free_gib)
        raise RicepoError(job.refusal())
    return job
