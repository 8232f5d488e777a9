"""What `cpu_kernels: portable` rests on: MKL picks float32 matmul kernels by CPU vendor, so Intel
and AMD machines round differently, and its COMPATIBLE branch does not."""

from __future__ import annotations

import os
import subprocess
import sys

from ricepo.kernels import CPU_KERNELS, KERNEL_ENV, cpu_vendor, other_vendor_mkl

# float32 linear layers of the shapes a model runs (a short K, a long K, a vocabulary projection),
# one thread; prints one hash of all their output bits
FINGERPRINT = """
import hashlib, torch
torch.set_num_threads(1)
g, h = torch.Generator().manual_seed(0), hashlib.sha256()
for m, k, n in [(7, 64, 64), (33, 300, 65), (64, 576, 1536), (16, 1000, 64), (1, 576, 49152), (5, 2048, 256)]:
    a, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    h.update(torch.nn.functional.linear(a, b).numpy().tobytes())
print(h.hexdigest())
"""


def fingerprint(settings: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in (*KERNEL_ENV, "LD_PRELOAD")}
    out = subprocess.run(
        [sys.executable, "-c", FINGERPRINT], env={**env, **settings, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_mkl_picks_float32_kernels_by_vendor_and_its_portable_branch_does_not(tmp_path):
    other = other_vendor_mkl(tmp_path)
    portable = CPU_KERNELS["portable"]
    # the shim is live: with MKL's own pick, this machine computes other bits as the other vendor's
    assert fingerprint({}) != fingerprint(other), f"{cpu_vendor()}: MKL computed the same bits as the other vendor"
    assert fingerprint(portable) == fingerprint({**portable, **other})
    assert fingerprint(portable) != fingerprint({})  # the branch is in force, not ignored
