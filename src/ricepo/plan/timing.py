"""GPU-seconds of a job's phases, each with its basis: a rate measured on that GPU kind
(config/calibration/<gpu>.yaml, written by scripts/gpu_check.sh) where one exists, else the
roofline assumption (decode steps at `plan.decode_efficiency` of the GPU's memory bandwidth;
prefill and update FLOPs at `plan.mfu` of its bf16 peak).

A measured decode step is carried to another architecture by its layer count (the step measured
so far is bound by launching each layer's kernels, not by the GPU) and to other row counts by
linear interpolation between the measured ones (extrapolated from the nearest two outside them);
it is never priced below the roofline, which governs long contexts and many rows. Measured prefill
and update rates (tokens per second) are carried by parameter count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import RicepoError
from .arch import Arch, load_arch
from .lengths import Lengths
from .shape import TrainShape

CALIBRATIONS = Path(__file__).resolve().parents[3] / "config" / "calibration"
PHASES = ("decode", "prefill", "update")


@dataclass(frozen=True)
class Calibration:
    """What the GPU check measured on one GPU kind."""

    gpu: str  # a `gpus` key of the config
    date: str
    commit: str
    sampler: str  # which decode step ran: eager | compiled
    arch: Arch  # the architecture it ran
    decode_tokens_per_s: dict[int, float]  # rows per sampler call -> tokens per second
    prefill_tokens_per_s: float | None
    update_tokens_per_s: float | None

    @property
    def basis(self) -> str:
        return f"measured on {self.gpu} {self.date} ({self.sampler} sampler, {self.arch.name})"

    def decode_step_s(self, rows: int) -> float:
        """Seconds of one decode step of `rows` rows on the measured architecture."""
        points = sorted((r, r / tps) for r, tps in self.decode_tokens_per_s.items())
        if len(points) == 1:
            return points[0][1]
        i = min(max(sum(r <= rows for r, _ in points) - 1, 0), len(points) - 2)
        (r0, s0), (r1, s1) = points[i], points[i + 1]
        return max(s0 + (s1 - s0) * (rows - r0) / (r1 - r0), 0.0)


@functools.cache
def load_calibration(gpu: str, folder: Path = CALIBRATIONS) -> Calibration | None:
    path = folder / f"{gpu}.yaml"
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    try:
        if data["gpu"] != gpu:
            raise RicepoError(f"{path}: gpu: {data['gpu']!r} is not the file's GPU {gpu!r}")
        decode = {int(rows): float(tps) for rows, tps in data["decode_tokens_per_s"].items()}
        if not decode or min(decode.values()) <= 0:
            raise RicepoError(f"{path}: decode_tokens_per_s: needs positive rates, one per row count")
        name = data["architecture"]
        return Calibration(
            gpu=gpu,
            date=str(data["date"]),
            commit=str(data["commit"]),
            sampler=data["sampler"],
            arch=load_arch(name, name),
            decode_tokens_per_s=decode,
            prefill_tokens_per_s=data.get("prefill_tokens_per_s"),
            update_tokens_per_s=data.get("update_tokens_per_s"),
        )
    except KeyError as e:
        raise RicepoError(f"{path}: missing {e.args[0]}") from None


def gpu_kind(device_name: str, gpus: dict) -> str:
    """The config's `gpus` key of a device as torch names it ("NVIDIA H200" is h200_141gb's)."""
    found = [k for k, g in gpus.items() if g["name"].startswith(device_name) or device_name.startswith(g["name"])]
    if len(found) != 1:
        names = ", ".join(f"{k}: {g['name']}" for k, g in gpus.items())
        raise RicepoError(f"no single entry of the config's gpus is named like {device_name!r} ({names}); add one")
    return found[0]


def write_calibration(
    folder: Path, gpu: str, device: str, commit: str, command: str, sampler: str, architecture: str, decode_tokens_per_s: dict[int, float]
) -> Path:
    """config/calibration/<gpu>.yaml from a measurement (today the sampler's decode rates; prefill
    and update stay assumed until a measurement gives them)."""
    import datetime

    from ..atomic import write_text

    data = {
        "gpu": gpu,
        "device": device,
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "command": command,
        "sampler": sampler,
        "architecture": architecture,
        "decode_tokens_per_s": {int(r): round(float(t), 1) for r, t in sorted(decode_tokens_per_s.items())},
        "prefill_tokens_per_s": None,
        "update_tokens_per_s": None,
    }
    path = folder / f"{gpu}.yaml"
    write_text(
        path,
        "# What the GPU check measured on this GPU kind: `ricepo plan` prices a job planned for it from\n"
        "# these rates (src/ricepo/plan/timing.py). Written by scripts/bench_sampler.py --calibration.\n" + yaml.safe_dump(data, sort_keys=False),
    )
    return path


@dataclass(frozen=True)
class Rates:
    """How one job's phases are priced on its GPU."""

    gpu: dict  # the config's `gpus` entry
    plan: dict  # the config's `plan` section
    calibration: Calibration | None

    def decode_step(self, a: Arch, rows: int, context_mean: float, dtype_bytes: int) -> tuple[float, str]:
        bandwidth = self.plan["decode_efficiency"] * self.gpu["bandwidth_tb_s"] * 1e12
        roofline = (a.params * dtype_bytes + rows * context_mean * a.kv_bytes_per_token * dtype_bytes) / bandwidth
        c = self.calibration
        if c is None:
            return roofline, f"assumed: {self.plan['decode_efficiency']:g} of memory bandwidth"
        return max(c.decode_step_s(rows) * a.layers / c.arch.layers, roofline), c.basis

    def _flops_phase(self, a: Arch, tokens: float, flops_per_token_param: int, measured: float | None) -> tuple[float, str]:
        c = self.calibration
        if measured:
            return tokens / measured * a.params / c.arch.params, c.basis
        flops = self.plan["mfu"] * self.gpu["bf16_tflops"] * 1e12
        return flops_per_token_param * a.params * tokens / flops, f"assumed: {self.plan['mfu']:g} of bf16 peak"

    def prefill(self, a: Arch, tokens: float) -> tuple[float, str]:
        return self._flops_phase(a, tokens, 2, self.calibration and self.calibration.prefill_tokens_per_s)

    def update(self, a: Arch, tokens: float, flops_per_token_param: int) -> tuple[float, str]:
        """`tokens` forward-and-backward tokens at `flops_per_token_param` (6, 8 with recompute);
        a measured rate is of the paper step's update, which runs the same passes."""
        return self._flops_phase(a, tokens, flops_per_token_param, self.calibration and self.calibration.update_tokens_per_s)


def train_seconds(s: TrainShape, rates: Rates) -> dict[str, tuple[float, str]]:
    """Seconds of one training step per phase, with their basis, its processes working in
    parallel on their shares (the collectives' time left out)."""
    a = s.arch
    dt = 2 if s.mixed else 4
    calls = math.ceil(s.rows_here / s.call_rows)
    step, decode_basis = rates.decode_step(a, s.call_rows, s.lengths.context_mean, dt)
    whole = s.rows_here * s.lengths.context_mean
    # with the prompt run once per query (train.shared_prefix), where no layer is recomputed
    queries = math.ceil(s.queries_per_step / s.processes) if s.queries_per_step else s.rows_here
    once = queries * s.lengths.prompt_mean + s.rows_here * (s.lengths.context_mean - s.lengths.prompt_mean)
    share = s.shared_prefix and not s.sharded
    scoring = (2 if s.old_pass else 0) + (2 if s.reference_bytes else 0)  # old, ref: forward only
    backward = 6 + (2 if s.gradient_checkpointing else 0)  # forward+backward, recompute
    # the scoring passes are priced as forward tokens of the update (a third of its FLOPs per token)
    update_tokens = (once if share else whole) * scoring / backward + (once if share and not s.gradient_checkpointing else whole)
    return {
        "decode": (calls * s.lengths.generated * step, decode_basis),
        "prefill": rates.prefill(a, s.rows_here * s.lengths.prompt_mean),
        "update": rates.update(a, update_tokens, backward),
    }


def eval_seconds(a: Arch, lengths: Lengths, queries: int, rows: int, mixed: bool, rates: Rates) -> dict[str, tuple[float, str]]:
    step, basis = rates.decode_step(a, rows, lengths.context_mean, 2 if mixed else 4)
    return {"decode": (math.ceil(queries / rows) * lengths.generated * step, basis), "prefill": rates.prefill(a, queries * lengths.prompt_mean)}
