"""Where a number was measured: the commit and the machine, as the report and the expected files record them."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def git_commit() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def machine() -> str:
    desc = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    try:
        import torch

        if torch.cuda.is_available():
            desc += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc
