"""One precision policy for every device (config `train.precision`).

- `fp32`: float32 weights, optimizer state and arithmetic everywhere.
- `bf16-mixed`: float32 master weights and optimizer state; forward and backward passes of the
  trainer run under bf16 autocast (torch.amp, as verl and OpenRLHF do), and sampling and
  evaluation run a bf16 copy of the weights, as an inference engine beside a trainer does.
  Pure bf16 weights would not train: at lr 1e-6 most AdamW updates fall below bf16's resolution.
- `auto`: bf16-mixed on CUDA with bf16 support and on CPUs with native bf16 (AMX or AVX512-BF16,
  several times faster than float32 there), float32 elsewhere.

Which numbers a run gives depends on its precision and on the kernels the CPU picks. bf16 matmuls
round differently on AMX, AVX512-BF16 and AVX2 (a sampled token flips and a trained policy moves by
tens of points). float32 matmuls round differently on Intel and AMD CPUs (MKL picks by vendor:
kernels.py), and on a random tiny model one bit is enough to flip a sampled token (AdamW turns a
rounding-level gradient into a full-size step); `cpu_kernels: portable` removes that (docs/numerics.md, "Same
numbers on every CPU"). `numerics()` is what each torch job records beside its results
(metrics.json, the trained model's numerics.json) and the expected scores record beside theirs
(`ricepo check` compares the two).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .errors import RicepoError
from .kernels import KERNEL_ENV, KERNEL_FLAGS, cpu_flags, cpu_vendor

SETTINGS = ("auto", "fp32", "bf16-mixed")
REFERENCE_SETTINGS = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
NUMERICS_FILE = "numerics.json"  # beside a trained policy's weights: the numerics it was trained under


def cpu_bf16_flag() -> str | None:
    """The CPU feature that gives native bf16 arithmetic, if the CPU has one."""
    flags = cpu_flags()
    return next((f for f in _CPU_BF16_FLAGS if f in flags), None)


def numerics(precision: Precision) -> dict:
    """What this process's numbers depend on: resolved precision, torch, the kernel path torch and
    the libraries run (`cpu_capability` is torch's pick; the settings are as set, "unset" if not),
    the CPU's vendor (MKL's pick depends on it) and kernel-relevant flags, the intra-op threads."""
    flags = cpu_flags()
    return {
        "precision": precision.name,
        "device": precision.device.type,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **{k: os.environ.get(k, "unset") for k in KERNEL_ENV},
        "cpu_vendor": cpu_vendor(),
        "cpu_flags": [f for f in KERNEL_FLAGS if f in flags],
        "threads": torch.get_num_threads(),
    }


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16-mixed (resolved)
    device: torch.device
    reason: str  # why this precision, for the log

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
        # No weight cache: with it autocast keeps a bf16 copy of every weight for the whole pass
        # (2 bytes per parameter, measured); without, a layer's copies go once its backward is done.
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=False)

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


def reference_dtype(setting: str, precision: Precision) -> torch.dtype:
    """The dtype of the frozen reference policy's weights (config `train.reference_precision`).

    `auto` is bf16 under bf16-mixed and float32 under fp32. A bf16 reference halves its memory
    (2 bytes per parameter instead of 4) and, under bf16-mixed, changes little: autocast already
    rounds every matmul's weights to bf16, so only the embedding output, the norms' weights and
    the residual stream round too. The KL term's log π_ref moves by that rounding (measured on the
    tiny model: tests/test_memory.py bounds it), far below the policy's own drift that the KL
    penalises; verl keeps its reference in bf16 for the same reason. Under fp32 `auto` keeps it
    float32, so a float32 run computes exactly what it did."""
    if setting not in REFERENCE_SETTINGS:
        raise RicepoError(f"train.reference_precision: {setting!r} is not one of {', '.join(REFERENCE_SETTINGS)}")
    if setting == "auto":
        return precision.sampler_dtype
    return torch.bfloat16 if setting == "bf16" else torch.float32
