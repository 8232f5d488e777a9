"""Name -> estimator registry, and parameter parsing shared by the CLI and the trainer."""
from __future__ import annotations

import inspect
from typing import Callable

from ..errors import RicepoError

REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def wrap(fn: Callable) -> Callable:
        REGISTRY[name] = fn
        return fn
    return wrap


def compute_credit(method: str, group: dict, **params) -> dict[str, list[dict]]:
    if method not in REGISTRY:
        raise RicepoError(f"unknown credit method {method!r}; known: {', '.join(sorted(REGISTRY))}")
    fn = REGISTRY[method]
    accepted = set(inspect.signature(fn).parameters) - {"group"}
    unknown = set(params) - accepted
    if unknown:
        raise RicepoError(f"credit method {method!r} takes no parameter(s) {', '.join(sorted(unknown))}; "
                          f"it takes: {', '.join(sorted(accepted)) or 'none'}")
    _check_group(group)
    try:
        return fn(group, **params)
    except ValueError as e:
        raise RicepoError(f"credit method {method!r}: {e}") from None


def _check_group(group: dict) -> None:
    if not isinstance(group, dict) or "trajectories" not in group:
        raise RicepoError("credit input: a group needs a 'trajectories' list")
    for i, t in enumerate(group["trajectories"]):
        for key in ("id", "final_reward", "steps"):
            if key not in t:
                raise RicepoError(f"credit input: trajectories[{i}] lacks {key!r}")


def parse_value(text: str):
    """`--set key=value` values: booleans, numbers, else strings."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
