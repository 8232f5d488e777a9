"""Peak memory of the tensors a piece of code creates, measured on any device (CPU included).

CUDA has `torch.cuda.max_memory_allocated`; the CPU has no counterpart, so `PeakMemory` watches
every operator's outputs through a dispatch mode and adds up the bytes of the distinct tensor
storages alive, each subtracted when its storage is freed. It counts tensors only (like CUDA's
figure): not the allocator's caching, not libraries' internal workspaces. Used by
scripts/plan_vs_measured.py (the plan against a measured step) and the memory tests.

The process's host memory as the operating system counts it (`process_rss_gib`, logged at every
training step), and the glibc settings that keep a CPU training job's from growing step by step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def process_rss_gib() -> tuple[float | None, float]:
    """This process's resident memory now (None where /proc is missing) and its peak so far, in
    GiB: what the operating system counts, allocator caches and fragmentation included.

    The peak is the current program image's (`VmHWM`), so a training that restarts itself
    (`os.execv`, train.restart_every) shows each process's own peak; `ru_maxrss`, the fallback
    where /proc is missing, survives `execve` and would carry the previous image's peak along."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        now, peak = (int(fields[k].split()[0]) / 2**20 for k in ("VmRSS", "VmHWM"))  # kB
        return now, peak
    return None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# glibc's mallopt parameter and the size from which a block gets its own pages (mmap), returned
# to the system when freed. glibc raises that size, by default, each time such a block is freed, up
# to 32 MiB; from then on a step's activations (MiBs each, of sizes that change with every batch's
# row lengths) come from its heap, which fragments. Measured on laptop.yaml (one GRPO job, one
# thread), the resident memory after steps 1-3 was 4.6, 6.0, 7.1 GiB as glibc has it, and 2.9, 3.4,
# 3.8 GiB with the threshold fixed at 8 MiB and the heap trimmed after every step, at the same speed
# (1 MiB or below: 20-40% slower). Its peak still grows, by about 0.4 GiB a step, while the live
# tensors stay at 1.76 GiB (counted through gc); the rest is not found yet (a oneDNN primitive
# cache of 128 instead of 1024 did not stop it), and `train.restart_every` hands it back (a new process).
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 8 * 2**20


@functools.cache  # find_library runs ldconfig in a subprocess: once per process, not once per step
def _libc():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_heap_growth() -> None:
    """Fix glibc's mmap threshold (above) for this process; nothing where the C library is not glibc."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the operating system (glibc's malloc_trim), after a
    training step, so that another job can use them while this one rolls out."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class PeakMemory(TorchDispatchMode):
    """`with PeakMemory() as m: ...` then `m.peak` (bytes) and `m.now` (bytes still alive)."""

    def __init__(self, device: str = "cpu"):
        super().__init__()
        self.device = device
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == self.device:
                self._see(t.untyped_storage())
        return out

    def _see(self, storage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if not size or key in self.live:
            return
        self.live[key] = size
        self.now += size
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)
