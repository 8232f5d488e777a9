"""Peak memory of the tensors a piece of code creates, measured on any device (CPU included).

CUDA has `torch.cuda.max_memory_allocated`; the CPU has no counterpart, so `PeakMemory` watches
every operator's outputs through a dispatch mode and adds up the bytes of the distinct tensor
storages alive, each subtracted when its storage is freed. It counts tensors only (like CUDA's
figure): not the allocator's caching, not libraries' internal workspaces. Used by
scripts/plan_vs_measured.py (the plan against a measured step) and the memory tests.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
