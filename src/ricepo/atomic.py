"""Atomic writes: a file or folder appears under its final name only once it is complete.

A job killed at any moment (power, OOM, SIGKILL) leaves at most a `.partial` sibling, never a
truncated file under the name that Snakemake, a resume or a later job would take as done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def partial(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs):
    """`with atomic_file(p) as f: f.write(...)`: written to `p.partial`, renamed over `p` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial(path)
    with open(tmp, mode, **open_kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """`with atomic_dir(out) as tmp: ...write into tmp...`: `tmp` becomes `out` on success (an older
    `out` is removed first); a failure leaves `out` as it was and `out.partial` behind."""
    path = Path(path)
    tmp = partial(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
