"""The network boundary: Hugging Face Hub snapshots, and the reachability probe before a download.

The Hub goes through `download_hub`, so tests can replace it with a local fixture; BEIR's zips are
ir_datasets' downloads (data/beir.py), probed here first. Without a route (or with
HF_HUB_OFFLINE=1) both fail within seconds, in one line that names the dataset, the source tried
and how to supply a local copy; there are no retry loops.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from ..errors import RicepoError

PROBE_TIMEOUT_S = 3.0


def probe(url: str, what: str, local_hint: str) -> None:
    """A TCP connect with a short timeout, so that a missing route fails fast and clearly."""
    host = urllib.parse.urlparse(url).hostname
    port = urllib.parse.urlparse(url).port or 443
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise RicepoError(f"{what}: cannot reach {url} ({e.__class__.__name__}); {local_hint}") from None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def download_hub(repo_id: str, patterns: list[str], local_hint: str, revision: str | None = None) -> tuple[Path, str]:
    """Snapshot the files of a Hub dataset that match `patterns`; returns (folder, commit sha)."""
    what = f"dataset {repo_id}"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise RicepoError(f"{what}: HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}, so the Hub ({hub_endpoint()}) is not tried; {local_hint}")
    probe(hub_endpoint(), what, local_hint)
    from huggingface_hub import HfApi, snapshot_download

    try:
        sha = HfApi().dataset_info(repo_id, revision=revision).sha
        folder = snapshot_download(repo_id, repo_type="dataset", revision=sha, allow_patterns=patterns)
    except Exception as e:  # the hub client raises many types; all mean the same to the user
        raise RicepoError(
            f"{what}: download from {hub_endpoint()} failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); {local_hint}"
        ) from None
    return Path(folder), sha
