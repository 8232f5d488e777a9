"""Multi-turn rollouts of the retrieval agent, kept token-exact for training.

One round (step) of the transcript:

    <think>\n  REASONING </think>  \n<summary>  SUMMARY </summary>  \n<tool_response>\n DOCS \n</tool_response>\n
    ^glue      ^policy               ^glue      ^policy             ^observation (never trained on)

The harness writes the opening tags (glue) and the policy writes each span's contents and its
closing tag; when the policy reaches the span's token budget without closing it, the harness
appends the closing tag as glue and flags the step. An end-of-sequence token from the policy
ends its episode: it is kept and trained as the policy's last action, the step retrieves with
what the summary holds so far (nothing, if it came in the reasoning), and nothing after it is
sampled or trained. Only policy-sampled tokens are trained on. Retrieval uses "query ⊕ summary";
an empty summary marks the step unparseable (config `rollout.format_penalty` is then subtracted
from the final reward) and retrieves with the query alone, or, with `rollout.empty_summary_search:
last_summary`, with query ⊕ the trajectory's latest earlier summary. Each step searches once;
its ranking gives the step's reward, and the last step's is the final ranking and reward
(NDCG@10). A trajectory is one flat
token list with typed segments, so any step's context can be sliced out and continued:
`Trajectory.branch(step)` copies everything before that step's reasoning, and `Agent.advance`
runs any mix of fresh and branched trajectories to the maximum depth in one batch (Tree-GRPO's
expansions and RICE-PO's branches use this).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import torch

from ..errors import RicepoError
from ..retrieval.retriever import TaskEnvironment
from .sampling import Sampled, Sampler
from .template import build_messages, format_documents

TRAINED_KINDS = ("reasoning", "summary")
_TAGS = re.compile(r"</?(think|summary|tool_response)>")


def strip_tags(text: str) -> str:
    """A span's text without agent tags: a summary made only of tags is empty (unparseable)."""
    return " ".join(_TAGS.sub(" ", text).split())


def content_tokens(tokenizer, ids: list[int]) -> list[bool]:
    """Which sampled tokens of a span are its content: not a special token (EOS among them) and
    no part of an agent tag, whatever pieces the tokenizer cuts the tag into (SmolLM2 writes
    `</summary>` as `</`, `summary`, `>`); a token that carries content and the start of a tag
    counts as tag. The summary entropy score (RICE-PO's trigger) averages over these only."""
    special = set(tokenizer.all_special_ids)
    tags = [m.span() for m in _TAGS.finditer(tokenizer.decode(ids, skip_special_tokens=False))]
    keep, start = [], 0
    for i, token in enumerate(ids):
        # character span of token i in the decoded text (needed only where there are tags)
        end = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=False)) if tags else 0
        keep.append(token not in special and not any(a < end and start < b for a, b in tags))
        start = max(start, end)
    return keep


@dataclass
class RolloutSettings:
    """How the agent acts. No defaults here: the config schema's `rollout:` section holds them
    (workflow/schemas/config.schema.yaml); nucleus and top-k sampling are off in training."""

    max_depth: int  # D: retrieval rounds per trajectory
    temperature: float  # sampling temperature (0 = greedy)
    max_reasoning_tokens: int  # budget before the harness closes </think>
    max_summary_tokens: int  # budget before the harness closes </summary>
    rows_per_call: int  # trajectories per sampler call and KV cache (0: all at once)
    docs_in_observation: int  # documents shown inside <tool_response>
    doc_max_chars: int  # characters kept of each shown document
    format_penalty: float  # subtracted from the final reward if a step is unparseable
    empty_summary_search: str  # what a step without a summary searches with: query | last_summary
    compile: str  # the sampler's decode step: auto | on | off (decode_step.choose_step)
    top_p: float  # nucleus sampling (1 = off); test time only, see for_evaluation
    top_k: int  # top-k sampling (0 = off); test time only

    @classmethod
    def from_config(cls, rollout: dict, temperature: float | None = None) -> RolloutSettings:
        """From the config's `rollout:` section (group_size is the trainer's); a key missing from
        it, or one nobody reads, is an error naming it."""
        given = {k: v for k, v in rollout.items() if k != "group_size"}
        fields = set(cls.__dataclass_fields__) - {"top_p", "top_k"}
        if set(given) != fields:
            unknown, missing = sorted(set(given) - fields), sorted(fields - set(given))
            raise RicepoError(
                "rollout settings: "
                + "; ".join(([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + ([f"missing {', '.join(missing)}"] if missing else []))
            )
        s = cls(**given, top_p=1.0, top_k=0)
        if temperature is not None:
            s.temperature = temperature
        return s

    @classmethod
    def for_evaluation(cls, rollout: dict, decoding: str, generation: dict) -> RolloutSettings:
        """Test-time settings: greedy, or the backbone's recommended temperature/top_p/top_k."""
        if decoding == "greedy":
            return cls.from_config(rollout, temperature=0.0)
        if decoding != "backbone":
            raise RicepoError(f"evaluate.decoding: unknown mode {decoding!r} (greedy | backbone)")
        s = cls.from_config(rollout, temperature=generation.get("temperature", 1.0))
        s.top_p, s.top_k = generation.get("top_p", 1.0), generation.get("top_k", 0)
        return s


@dataclass
class Segment:
    kind: str  # prompt | glue | reasoning | summary | observation
    start: int
    end: int
    step: int  # -1 for the prompt


@dataclass
class Step:
    reasoning: str
    summary: str
    closed_think: bool  # the policy closed </think> itself
    closed_summary: bool  # the policy closed </summary> itself
    parseable: bool  # a non-empty summary was produced
    state: list[str]  # document ids returned before this step (GiGPO/HGPO anchor state)
    retrieved: list[str] = field(default_factory=list)
    local_reward: float = 0.0
    summary_entropy: float = math.nan  # mean entropy over the summary's content tokens; NaN if none
    eos: bool = False  # the policy ended its episode in this step


@dataclass
class Trajectory:
    id: str
    query_id: str
    task: str
    query: str
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # NaN where not sampled by the policy
    entropies: list[float] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    final_reward: float = 0.0
    final_ranking: list[tuple[str, float]] = field(default_factory=list)  # the latest step's ranking
    next_state: list[str] = field(default_factory=list)  # anchor state of the next step
    generated_from: int = 0  # first step this row sampled itself (earlier steps were copied)
    trainable_from: int = 0  # first step whose spans enter the loss
    tree: int = 0  # Tree-GRPO: which of the query's trees this leaf belongs to

    def append(self, kind: str, ids: list[int], step: int, logprobs=None, entropies=None) -> None:
        if not ids:
            return
        start = len(self.tokens)
        self.tokens.extend(ids)
        self.logprobs.extend(logprobs if logprobs is not None else [math.nan] * len(ids))
        self.entropies.extend(entropies if entropies is not None else [math.nan] * len(ids))
        self.segments.append(Segment(kind, start, len(self.tokens), step))

    def loss_mask(self) -> list[bool]:
        mask = [False] * len(self.tokens)
        for seg in self.segments:
            if seg.kind in TRAINED_KINDS and seg.step >= self.trainable_from:
                mask[seg.start : seg.end] = [True] * (seg.end - seg.start)
        return mask

    def span(self, kind: str, step: int) -> Segment | None:
        return next((s for s in self.segments if s.kind == kind and s.step == step), None)

    def context_before(self, step: int) -> list[int]:
        """Tokens up to (excluding) step `step`'s reasoning: where a branch restarts."""
        seg = self.span("reasoning", step)
        return list(self.tokens[: seg.start]) if seg else list(self.tokens)

    def branch(self, step: int, new_id: str, trainable_from: int = 0) -> Trajectory:
        """A copy of this trajectory cut just before step `step`'s reasoning, to be continued by
        `Agent.advance`. Its steps before `step` are shared (not regenerated, not counted as cost)."""
        cut = self.span("reasoning", step)
        if cut is None:
            raise ValueError(f"trajectory {self.id} has no step {step} to branch at")
        b = Trajectory(
            id=new_id,
            query_id=self.query_id,
            task=self.task,
            query=self.query,
            tokens=self.tokens[: cut.start],
            logprobs=self.logprobs[: cut.start],
            entropies=self.entropies[: cut.start],
            segments=[copy.copy(s) for s in self.segments if s.end <= cut.start],
            steps=copy.deepcopy(self.steps[:step]),
            next_state=list(self.steps[step].state),
            generated_from=step,
            trainable_from=trainable_from,
        )
        return b

    @property
    def ended(self) -> bool:
        """The policy emitted its end-of-sequence token: no further step."""
        return bool(self.steps) and self.steps[-1].eos

    @property
    def generated_tokens(self) -> int:
        """Tokens this row sampled itself: the cost of producing it."""
        return sum(s.end - s.start for s in self.segments if s.kind in TRAINED_KINDS and s.step >= self.generated_from)


def _rankings(trajs: list[Trajectory], envs: dict[str, TaskEnvironment], texts: list[str]) -> list[list]:
    """Each trajectory's ranking for its text, every task's texts searched in one batch."""
    out: list[list] = [[] for _ in trajs]
    for task in dict.fromkeys(t.task for t in trajs):
        rows = [i for i, t in enumerate(trajs) if t.task == task]
        for i, ranking in zip(rows, envs[task].rankings_for([(trajs[i].query_id, texts[i]) for i in rows])):
            out[i] = ranking
    return out


class Agent:
    """Runs the multi-turn loop for many trajectories at once (batched across the group)."""

    def __init__(self, sampler: Sampler, tokenizer, template: dict, settings: RolloutSettings):
        self.sampler, self.tok, self.template, self.s = sampler, tokenizer, template, settings

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prompt(self, trajs: list[Trajectory], envs: dict[str, TaskEnvironment]) -> None:
        """Each trajectory's prompt, with the documents its query retrieves (searched in one batch per task)."""
        for traj, first in zip(trajs, _rankings(trajs, envs, [t.query for t in trajs])):
            env = envs[traj.task]
            docs = format_documents(first, env.corpus, self.s.docs_in_observation, self.s.doc_max_chars)
            text = self.tok.apply_chat_template(build_messages(self.template, traj.query, docs), tokenize=False, add_generation_prompt=True)
            traj.append("prompt", self._encode(text), -1)
            # R1-distill and Qwen3-thinking templates already open the reasoning block.
            traj.append("glue", self._encode("" if text.rstrip().endswith("<think>") else "<think>\n"), 0)
            traj.next_state = [f"query:{traj.query_id}"]

    def rollout(
        self, jobs: list[tuple[str, str, str, str]], envs: dict[str, TaskEnvironment], generator: torch.Generator | None = None
    ) -> list[Trajectory]:
        """jobs: (trajectory id, task, query id, query text). Returns finished trajectories."""
        trajs = [Trajectory(id=tid, query_id=qid, task=task, query=q) for tid, task, qid, q in jobs]
        self._prompt(trajs, envs)
        return self.advance(trajs, envs, generator)

    def advance(self, trajs: list[Trajectory], envs: dict[str, TaskEnvironment], generator: torch.Generator | None = None) -> list[Trajectory]:
        """Run every trajectory (fresh, or cut by `branch` at any step) to the maximum depth,
        batching the unfinished ones of each group of `rows_per_call` in each round (a group runs
        to the end before the next starts, so only its KV cache is held), then score them."""
        group = self.s.rows_per_call or max(len(trajs), 1)
        for first in range(0, len(trajs), group):
            self.sampler.reset()
            while True:
                active = [t for t in trajs[first : first + group] if self._unfinished(t)]
                if not active:
                    break
                self.step(active, envs, generator)
        self.sampler.reset()
        for t in trajs:
            self.finish(t)
        return trajs

    def _unfinished(self, t: Trajectory) -> bool:
        return len(t.steps) < self.s.max_depth and not t.ended

    def stream(
        self, jobs: Iterable[tuple[str, str, str, str]], envs: dict[str, TaskEnvironment], generator: torch.Generator | None, slots: int
    ) -> Iterator[Trajectory]:
        """Run `jobs` (as `rollout`'s) with `slots` trajectories in flight, yielding each when it
        is finished: when a trajectory ends, the next job takes its slot at the next round
        (continuous batching), its prompt prefilled beside the others' cached rows."""
        pending, active = iter(jobs), []
        self.sampler.reset()
        while True:
            joining = [Trajectory(id=tid, query_id=qid, task=task, query=q) for tid, task, qid, q in islice(pending, slots - len(active))]
            self._prompt(joining, envs)
            active += joining
            if not active:
                break
            self.step(active, envs, generator)
            for t in active:
                if not self._unfinished(t):
                    self.finish(t)
                    yield t
            active = [t for t in active if self._unfinished(t)]
        self.sampler.reset()

    def _sample(self, trajs: list[Trajectory], generator, budget: int, stop: str) -> list[Sampled]:
        return self.sampler.sample(
            [t.tokens for t in trajs],
            max_new_tokens=budget,
            stop=stop,
            temperature=self.s.temperature,
            top_p=self.s.top_p,
            top_k=self.s.top_k,
            generator=generator,
        )

    def step(self, trajs: list[Trajectory], envs: dict[str, TaskEnvironment], generator: torch.Generator | None) -> None:
        """One round for every trajectory (each at its own next step): reasoning, summary (unless
        the reasoning ended the episode), one retrieval, and the observation if another round follows."""
        steps = [len(t.steps) for t in trajs]
        reasoning = self._sample(trajs, generator, self.s.max_reasoning_tokens, "</think>")
        for t, r, step in zip(trajs, reasoning, steps):
            t.append("reasoning", r.ids, step, r.logprobs, r.entropies)
            if not r.eos:
                t.append("glue", self._encode(("" if r.stopped else "</think>") + "\n<summary>"), step)
        writing = [i for i, r in enumerate(reasoning) if not r.eos]
        summaries = [Sampled([], [], [], False) for _ in trajs]
        if writing:
            got = self._sample([trajs[i] for i in writing], generator, self.s.max_summary_tokens, "</summary>")
            for i, s in zip(writing, got):
                summaries[i] = s
        summary_texts = [strip_tags(self.tok.decode(s.ids, skip_special_tokens=True)) for s in summaries]
        rankings = _rankings(trajs, envs, [self._search_text(t, text) for t, text in zip(trajs, summary_texts)])
        for t, r, s, step, summary_text, ranking in zip(trajs, reasoning, summaries, steps, summary_texts, rankings):
            t.append("summary", s.ids, step, s.logprobs, s.entropies)
            eos = r.eos or s.eos
            if not (s.stopped or eos):
                t.append("glue", self._encode("</summary>"), step)
            env = envs[t.task]
            reasoning_text = strip_tags(self.tok.decode(r.ids, skip_special_tokens=True))
            content = [h for h, keep in zip(s.entropies, content_tokens(self.tok, s.ids)) if keep]
            t.steps.append(
                Step(
                    reasoning=reasoning_text,
                    summary=summary_text,
                    closed_think=r.stopped,
                    closed_summary=s.stopped,
                    parseable=bool(summary_text),
                    state=t.next_state,
                    retrieved=[d for d, _ in ranking[:10]],
                    local_reward=env.score(t.query_id, ranking),
                    summary_entropy=sum(content) / len(content) if content else math.nan,
                    eos=eos,
                )
            )
            t.final_ranking = ranking
            if step + 1 < self.s.max_depth and not eos:
                docs = format_documents(ranking, env.corpus, self.s.docs_in_observation, self.s.doc_max_chars)
                t.append("observation", self._encode(f"\n<tool_response>\n{docs}\n</tool_response>\n"), step)
                t.append("glue", self._encode("<think>\n"), step + 1)
                t.next_state = [d for d, _ in ranking[: self.s.docs_in_observation]]

    def _search_text(self, t: Trajectory, summary: str) -> str:
        """query ⊕ summary; without a summary the query alone, or with `empty_summary_search:
        last_summary` query ⊕ the trajectory's latest earlier summary (the query alone if none)."""
        if not summary and self.s.empty_summary_search == "last_summary":
            summary = next((s.summary for s in reversed(t.steps) if s.summary), "")
        return f"{t.query} {summary}" if summary else t.query

    def finish(self, t: Trajectory) -> None:
        t.final_reward = t.steps[-1].local_reward
        if not all(s.parseable for s in t.steps):
            t.final_reward -= self.s.format_penalty
