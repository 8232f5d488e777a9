"""Decode speed of the shipped sampler against transformers' own `generate()` on the same model,
prompts, rows, new tokens and precision: tokens per second of each, and their ratio.

    python scripts/bench_sampler.py [--model resources/models/smollm2_135m] [--rows 8 32 64]
        [--new-tokens 48] [--precision bf16] [--threads 1] [--device cpu] [--mode agent|raw] [--profile]

`--mode agent` (the default): prompts are the agent's real first prompt (the config's default
template) on SciFact test claims from `../shared/data/beir/scifact`, each with its judged documents
as the observation; with `--group G` each prompt fills G rows, as a training group's rollouts do.
Both sides decode greedily until `</think>`, end-of-sequence or `--new-tokens`; `generate()` is
told the same stop string (`stop_strings`). `--mode raw`: plain decoding, the same short chat
prompts (each claim alone as the user's message) on every side, no stop string, each row through
its end-of-sequence or `--new-tokens`. Each side's rate counts the tokens it kept for each row
(through the stop string or end-of-sequence). Ours runs twice: with the eager decode loop and with
the compiled static step (`rollout.compile: off` and `on`; `--no-compiled` skips the latter); the
ratios compare the faster of the two. `--profile` adds, for the eager sampler, a decode step's
milliseconds split into the model's forward pass, the sampling arithmetic and the bookkeeping
(torch.profiler over the sampler's `decode/*` ranges, one profiled run after the timed ones). Each configuration runs once to warm up, then
`--repeats` times; the best time is reported (the machine is shared; the best run is the least
disturbed). `static` is `generate()` with transformers' static KV cache. `same` is the share of
rows whose tokens agree with `generate()`'s (bf16 kernels on different batch shapes may round
apart; in fp32 they agree).

`--architecture NAME` (the GPU check) decodes with one of the paper's backbones instead, built at
random initialisation from config/architectures/NAME.json with a byte-level tokenizer trained on
SciFact's corpus (its vocabulary, 4k tokens, replaces the backbone's; nothing is downloaded), so
the tokens are meaningless and the speed is the architecture's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from ricepo.agent.models import load_backbone
from ricepo.agent.sampling import TransformersSampler, cast_parameters, eos_ids
from ricepo.agent.template import build_messages, format_documents
from ricepo.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "beir" / "scifact"
AGENT_STOP = "</think>"


def prompts(tokenizer, n: int, group: int, mode: str) -> list[list[int]]:
    """The agent's first prompt for the first n / group SciFact test claims, each shown its
    judged documents (then the corpus' first ones, to three), each repeated `group` times; in raw
    mode each claim alone as a chat prompt."""
    template = load_config(ROOT / "config" / "config.yaml")["templates"]["default"]
    claims = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open())}
    if mode == "raw":
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": claims[q]}], tokenize=False, add_generation_prompt=True)
            for q in list(claims)[: -(-n // group)]
        ]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(group)][:n]
    judged: dict[str, list[str]] = {}
    for line in list((SCIFACT / "qrels" / "test.tsv").open())[1:]:
        qid, doc, _ = line.split("\t")
        judged.setdefault(qid, []).append(doc)
    corpus = {d["_id"]: d for d in map(json.loads, (SCIFACT / "corpus.jsonl").open())}
    filler = list(corpus)[:3]
    out = []
    for qid in list(judged)[: -(-n // group)]:
        shown = (judged[qid] + filler)[:3]
        docs = format_documents([(d, 0.0) for d in shown], corpus, 3, 160)
        text = tokenizer.apply_chat_template(build_messages(template, claims[qid], docs), tokenize=False, add_generation_prompt=True)
        out += [tokenizer(text + "<think>\n", add_special_tokens=False)["input_ids"]] * group
    return out[:n]


def random_backbone(name: str) -> str:
    """A folder holding backbone `name`'s architecture at random initialisation, in bf16, with a
    tokenizer trained on SciFact's corpus (the model's vocabulary sized to it)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ricepo.agent.models import build_tiny_backbone

    out = Path(tempfile.mkdtemp()) / name
    texts = [json.loads(line)["text"] for line, _ in zip((SCIFACT / "corpus.jsonl").open(), range(2000))]
    build_tiny_backbone(out / "tokenizer", texts, vocab_size=4096)
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    arch = {k: v for k, v in json.loads((ROOT / "config" / "architectures" / f"{name}.json").read_text()).items() if not k.startswith("_")}
    arch.update(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    config = AutoConfig.for_model(**arch)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    return str(out / "model")


def kept(ids: list[int], eos: set[int], tokenizer, stop: str | None) -> list[int]:
    """A row's tokens through its first end-of-sequence or stop string."""
    for i, t in enumerate(ids):
        if t in eos or (stop and stop in tokenizer.decode(ids[: i + 1])):
            return ids[: i + 1]
    return ids


def timed(fn, repeats: int):
    fn()  # warm-up: allocator, kernels, a compiled step
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def ours(sampler, contexts, new_tokens, stop: str | None):
    def run():
        sampler.reset()
        return [r.ids for r in sampler.sample(contexts, max_new_tokens=new_tokens, stop=stop, temperature=0.0, generator=None)]

    return run


def profiled(run) -> tuple[dict[str, float], int]:
    """Milliseconds per decode step of each `decode/*` range, and the steps, over one run of `run`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        run()
    parts = {e.key.removeprefix("decode/"): e for e in prof.key_averages() if e.key.startswith("decode/")}
    steps = parts["forward"].count + 1  # the last step samples and stops without a forward pass
    # CPU time of each range covers the kernels it launched; on a GPU, their device time where longer
    return {k: max(e.cpu_time_total, getattr(e, "device_time_total", 0.0)) / 1000 / steps for k, e in parts.items()}, steps


def theirs(model, tokenizer, contexts, new_tokens, cache: str | None, stop: str | None):
    width = max(map(len, contexts))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=model.device)
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=model.device)
    extra = {"cache_implementation": cache} if cache else {}

    def run():
        stopping = {"stop_strings": [stop], "tokenizer": tokenizer} if stop else {}
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad, **stopping, **extra)
        return [row[width:].tolist() for row in out]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources" / "models" / "smollm2_135m"))
    ap.add_argument("--rows", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--group", type=int, default=1, help="rows per prompt: 1 as in evaluation, G as in a training group")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-static", action="store_true", help="skip generate() with a static cache")
    ap.add_argument("--no-compiled", action="store_true", help="skip our sampler with the compiled decode step")
    ap.add_argument("--architecture", help="a config/architectures/ name: that backbone at random initialisation")
    ap.add_argument("--require-cuda", action="store_true", help="exit 1 at once unless --device is a CUDA device")
    ap.add_argument(
        "--mode",
        choices=["agent", "raw"],
        default="agent",
        help="agent: the agent's prompts, stop at </think>; raw: short chat prompts, each row to its eos",
    )
    ap.add_argument("--profile", action="store_true", help="split the sampler's decode step into its parts")
    ap.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="write DIR/<gpu>.yaml, the measured decode rates `ricepo plan` prices that GPU kind by (needs --architecture and a CUDA device)",
    )
    args = ap.parse_args()
    if args.require_cuda and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        sys.exit(f"bench_sampler: --require-cuda, but the device is {args.device}")
    if args.calibration and not (args.architecture and args.device.startswith("cuda")):
        sys.exit("bench_sampler: --calibration needs --architecture (a paper backbone) and a CUDA device")
    torch.set_num_threads(args.threads)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.precision]
    if args.architecture:
        args.model = random_backbone(args.architecture)
    model, tokenizer = load_backbone(args.model, device=torch.device(args.device))
    model = cast_parameters(model, dtype).eval()
    eager = TransformersSampler(model, tokenizer, compile="off")
    compiled = None if args.no_compiled else TransformersSampler(model, tokenizer, compile="on")
    eos = eos_ids(model, tokenizer)
    stop = AGENT_STOP if args.mode == "agent" else None
    print(
        f"model {args.architecture or Path(args.model).name}  device {args.device}  {args.precision}  threads {args.threads}  "
        f"mode {args.mode}  new tokens {args.new_tokens}  rows per prompt {args.group}  greedy, stop {stop!r}"
    )
    print(
        f"{'rows':>5} {'eager':>8} {'compiled':>9} {'generate':>9} {'ratio':>6} {'static':>8} {'ratio':>6} {'same':>5}"
        + ("  eager decode step ms: forward / sampling / bookkeeping (share)" if args.profile else "")
    )
    measured, sampler_kind = {}, "eager"
    for rows in args.rows:
        contexts = prompts(tokenizer, rows, args.group, args.mode)
        t_ours, ids_ours = timed(ours(eager, contexts, args.new_tokens, stop), args.repeats)
        rate_eager = sum(len(x) for x in ids_ours) / t_ours
        rate_compiled = None
        if compiled is not None:
            t_c, ids_c = timed(ours(compiled, contexts, args.new_tokens, stop), args.repeats)
            rate_compiled = sum(len(x) for x in ids_c) / t_c
            if ids_c != ids_ours:
                print(
                    f"  note: at {rows} rows the compiled step's tokens differ from the eager loop's in "
                    f"{sum(a != b for a, b in zip(ids_c, ids_ours))} rows (bf16 rounding)",
                    flush=True,
                )
        best = max(rate_eager, rate_compiled or 0.0)
        t_gen, ids_gen = timed(theirs(model, tokenizer, contexts, args.new_tokens, None, stop), args.repeats)
        ids_gen = [kept(x, eos, tokenizer, stop) for x in ids_gen]
        n_gen = sum(len(x) for x in ids_gen)
        same = sum(a == b for a, b in zip(ids_ours, ids_gen)) / rows
        line = (
            f"{rows:>5} {rate_eager:>8.1f} {'-' if rate_compiled is None else f'{rate_compiled:.1f}':>9} "
            f"{n_gen / t_gen:>9.1f} {best / (n_gen / t_gen):>6.2f}"
        )
        if args.no_static:
            line += f" {'-':>8} {'-':>6}"
        else:
            t_st, ids_st = timed(theirs(model, tokenizer, contexts, args.new_tokens, "static", stop), args.repeats)
            n_st = sum(len(kept(x, eos, tokenizer, stop)) for x in ids_st)
            line += f" {n_st / t_st:>8.1f} {best / (n_st / t_st):>6.2f}"
        line += f" {same:>5.2f}"
        if args.profile:
            ms, steps = profiled(ours(eager, contexts, args.new_tokens, stop))
            total = sum(ms.values())
            line += (
                f"  {ms['forward']:.1f} / {ms['sampling']:.1f} / {ms['bookkeeping']:.1f} ms of {total:.1f} "
                f"({ms['forward'] / total:.0%} / {ms['sampling'] / total:.0%} / {ms['bookkeeping'] / total:.0%}, "
                f"{steps} steps)"
            )
        print(line, flush=True)
        # what a job runs (rollout.compile: auto compiles on a GPU) is what prices its decode
        ran_compiled = compiled is not None and compiled.step is not None
        measured[rows], sampler_kind = (rate_compiled, "compiled") if ran_compiled else (rate_eager, "eager")
        if args.calibration:  # after each row count: a check stopped at its time limit keeps what it measured
            write_measured(args, sampler_kind, measured)
    for s in (eager, compiled):
        if s is not None:
            print(s.describe())


def write_measured(args, sampler_kind: str, measured: dict[int, float]) -> None:
    import subprocess

    from ricepo.plan.timing import gpu_kind, write_calibration

    device = torch.cuda.get_device_name(torch.device(args.device))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"
    path = write_calibration(
        args.calibration,
        gpu_kind(device, load_config()["gpus"]),
        device,
        commit,
        "scripts/bench_sampler.py " + " ".join(sys.argv[1:]),
        sampler_kind,
        args.architecture,
        measured,
    )
    print(f"calibration written: {path}\n{path.read_text()}", flush=True)


if __name__ == "__main__":
    main()
