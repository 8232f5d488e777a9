"""The network boundary: Hugging Face Hub snapshots and BEIR's zip downloads.

Everything that touches the network goes through `download_hub` or `download_url`, so tests can
replace these two functions with a local fixture. Without a route (or with HF_HUB_OFFLINE=1) they
fail within seconds, in one line that names the dataset, the source tried and how to supply a
local copy; there are no retry loops.
"""
from __future__ import annotations

import os
import shutil
import socket
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from ..errors import RicepoError

PROBE_TIMEOUT_S = 3.0


def _probe(url: str, what: str, local_hint: str) -> None:
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
        raise RicepoError(f"{what}: HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}, so the Hub ({hub_endpoint()}) "
                          f"is not tried; {local_hint}")
    _probe(hub_endpoint(), what, local_hint)
    from huggingface_hub import HfApi, snapshot_download

    try:
        sha = HfApi().dataset_info(repo_id, revision=revision).sha
        folder = snapshot_download(repo_id, repo_type="dataset", revision=sha, allow_patterns=patterns)
    except Exception as e:   # the hub client raises many types; all mean the same to the user
        raise RicepoError(f"{what}: download from {hub_endpoint()} failed ({e.__class__.__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); {local_hint}") from None
    return Path(folder), sha


def download_url(url: str, dest: Path, what: str, local_hint: str) -> Path:
    """Download a zip to `dest` (atomically) and extract it beside it; returns the extracted folder."""
    _probe(url, what, local_hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise RicepoError(f"{what}: download of {url} failed ({e}); {local_hint}") from None
    tmp.replace(dest)
    with zipfile.ZipFile(dest) as z:
        z.extractall(dest.parent)
    return dest.parent / dest.stem
