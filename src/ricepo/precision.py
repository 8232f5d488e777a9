"""One precision policy for every device (config `train.precision`).

- `fp32`: float32 weights, optimizer state and arithmetic everywhere.
- `bf16-mixed`: float32 master weights and optimizer state; forward and backward passes of the
  trainer run under bf16 autocast (torch.amp, as verl and OpenRLHF do), and sampling and
  evaluation run a bf16 copy of the weights, as an inference engine beside a trainer does.
  Pure bf16 weights would not train: at lr 1e-6 most AdamW updates fall below bf16's resolution.
- `auto`: bf16-mixed on CUDA with bf16 support and on CPUs with native bf16 (AMX or AVX512-BF16,
  several times faster than float32 there), float32 elsewhere.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import RicepoError

SETTINGS = ("auto", "fp32", "bf16-mixed")
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flag() -> str | None:
    """The CPU feature that gives native bf16 arithmetic, if the CPU has one (Linux /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    return next((f for f in _CPU_BF16_FLAGS if f in flags), None)


@dataclass(frozen=True)
class Precision:
    name: str              # fp32 | bf16-mixed (resolved)
    device: torch.device
    reason: str            # why this precision, for the log

    @property
    def mixed(self) -> bool:
        return self.name == "bf16-mixed"

    @property
    def sampler_dtype(self) -> torch.dtype:
        """The dtype of the weights that sampling and evaluation run."""
        return torch.bfloat16 if self.mixed else torch.float32

    def autocast(self):
        """The context the trainer's forward and backward passes run in."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"precision {self.name} on {self.device.type} ({self.reason})"


def resolve_precision(setting: str, device: torch.device | str) -> Precision:
    device = torch.device(device)
    if setting not in SETTINGS:
        raise RicepoError(f"train.precision: {setting!r} is not one of {', '.join(SETTINGS)}")
    if setting != "auto":
        return Precision(setting, device, "set in the config")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16-mixed", device, "auto: CUDA with bf16")
        return Precision("fp32", device, "auto: this GPU has no bf16")
    flag = cpu_bf16_flag() if device.type == "cpu" else None
    if flag:
        return Precision("bf16-mixed", device, f"auto: CPU with native bf16 ({flag})")
    return Precision("fp32", device, f"auto: no native bf16 on this {device.type}")
