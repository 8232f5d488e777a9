"""A run's identity: everything that shapes its numbers, as content hashes.

A checkpoint is resumed only by a run of the same identity (train/trainer.py), and the workflow
passes the code version to every job as a parameter, so Snakemake reruns a job whose code
changed (workflow/rules/common.smk). The identity of a training run holds
- the resolved job spec: every config value the run reads (retriever and dense models included);
- the sha256 of each task's split manifest (which itself holds the sha256 of every split file);
- the sha256 of the index folders the retriever reads;
- the sha256 of the backbone's files (a local folder), or its Hub id;
- the code version: the package version and a hash of the package's source, the report code
  left out, so that editing a table or the page does not retrain anything.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from . import __version__

PACKAGE = Path(__file__).resolve().parent
# Code that shapes no trained policy or measured number: a change here reruns only report jobs.
REPORT_ONLY = ("report",)
# Train settings that do not change the numbers of the steps two runs share: a finished run can be
# extended (`steps`), checkpointing, process restarts, activation recomputation and where the
# numbers are also shown (TensorBoard, W&B) may change between attempts.
# `precision` as configured (auto) is left out because the trainer adds the resolved one.
NOT_IDENTITY = ("steps", "save_every", "restart_every", "gradient_checkpointing", "precision", "tensorboard", "wandb_project")


def tree_sha256(path: str | Path) -> str:
    """sha256 over a file, or over a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


@cache
def code_version(with_report: bool = False) -> str:
    """`VERSION+HASH`: the package version and a hash of its Python source and templates."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE.rglob("*")):
        rel = f.relative_to(PACKAGE)
        if not f.is_file() or f.suffix not in (".py", ".j2") or "__pycache__" in rel.parts:
            continue
        if not with_report and rel.parts[0] in REPORT_ONLY:
            continue
        h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"


def backbone_identity(model: str) -> str:
    """The backbone as the run reads it: a local folder by content, a Hub id by name."""
    return f"sha256:{tree_sha256(model)}" if Path(model).exists() else f"hub:{model}"


def training_identity(spec: dict, tasks: dict[str, tuple[Path, Path]], index_parts: list[str]) -> dict:
    """{what: hash} of one training run; two runs of equal identity compute the same numbers."""
    spec = {**spec, "train": {k: v for k, v in spec["train"].items() if k not in NOT_IDENTITY}}
    return {
        "spec": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
        **{f"split:{t}": tree_sha256(Path(split) / "manifest.json") for t, (split, _) in sorted(tasks.items())},
        **{f"index:{t}/{part}": tree_sha256(Path(root) / part) for t, (_, root) in sorted(tasks.items()) for part in index_parts},
        "backbone": backbone_identity(spec["backbone"]["model"]),
        "code": code_version(),
    }


def differences(saved: dict, mine: dict) -> list[str]:
    return sorted(k for k in saved.keys() | mine.keys() if saved.get(k) != mine.get(k))
