"""Which CPU kernels a torch job computes with, and how to force another CPU's on this machine.

Without torch (the workflow reads `CPU_KERNELS` while it builds the DAG). Three libraries pick
kernels: torch's own vectorised ops (by instruction set), oneDNN for bf16 matmuls (by instruction
set) and MKL for float32 matmuls, which picks by instruction set and by CPU vendor: on an AMD CPU it
skips the AVX-512 kernels it runs on an Intel CPU with the same flags, so the two add in another
order (precision.py says what that does to a run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import RicepoError

# The CPU features that decide which kernels run (and so how results round), best first.
KERNEL_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")
# The settings that force a kernel path: torch's own vectorised ops, oneDNN (bf16 matmuls), MKL
# (float32 matmuls); unset means "as detected".
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
# config `cpu_kernels`: the settings a torch job runs under (they must be in its environment before
# torch loads MKL, so the workflow's rules set them). MKL's COMPATIBLE branch (SSE2, no approximate
# reciprocals) is the one MKL documents as giving the same results on Intel and non-Intel CPUs; it
# runs float32 matmuls at about half the speed of MKL's own pick on an AMD EPYC (45 against 96
# GFLOP/s on one thread, measured); bf16 matmuls (oneDNN) and GPUs are not affected.
CPU_KERNELS = {"auto": {}, "portable": {"MKL_CBWR": "COMPATIBLE"}}
# Kernel paths a machine can be forced onto, to see on one machine what another CPU would compute
# (scripts/kernel_paths.py, tests/test_workflow.py). `detected` is the machine's own pick;
# `other_vendor` (`forced_env`) is MKL as on the other vendor's CPU.
FORCED_KERNEL_PATHS = {
    "detected": {},
    # a CPU with AVX2 and no AVX-512 (older Intel, AMD before Zen 4)
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    # AVX-512 with native bf16 and no AMX, as AMD EPYC (Zen 4) has it
    "avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    # the portable paths: torch's scalar kernels, oneDNN's SSE4.1, MKL's portable branch
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", **CPU_KERNELS["portable"]},
}
KERNEL_PATHS = (*FORCED_KERNEL_PATHS, "other_vendor")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    return set(_cpuinfo().split())


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ... ("unknown" where /proc/cpuinfo does not say)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# MKL's own vendor check: no environment setting moves it, so `other_vendor_mkl` answers it the
# other way by preloading these two functions (MKL inside torch calls them through the dynamic
# linker), and MKL picks the kernels it picks on the other vendor's CPU with these instructions.
_VENDOR_SHIM = "int mkl_serv_intel_cpu_true(void) {{ return {0}; }}\nint mkl_serv_intel_cpu(void) {{ return {0}; }}\n"


def other_vendor_mkl(folder: Path) -> dict[str, str]:
    """The environment under which a torch process computes float32 matmuls as MKL does on the other
    CPU vendor's machine (on Intel: as on AMD; elsewhere: as on Intel): an LD_PRELOAD shim compiled
    into `folder` with the C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RicepoError("other_vendor_mkl: no C compiler (cc or gcc) on PATH to build the MKL vendor shim")
    folder.mkdir(parents=True, exist_ok=True)
    source, lib = folder / "mkl_vendor_shim.c", folder / "mkl_vendor_shim.so"
    source.write_text(_VENDOR_SHIM.format(0 if cpu_vendor() == "GenuineIntel" else 1))
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    return {"LD_PRELOAD": str(lib)}


def forced_env(path: str, folder: Path) -> dict[str, str]:
    """The environment of one of KERNEL_PATHS (`folder`: where `other_vendor` builds its shim)."""
    if path == "other_vendor":
        return other_vendor_mkl(folder)
    return FORCED_KERNEL_PATHS[path]
