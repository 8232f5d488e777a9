"""The method registry: one `Method` per name, registered once, by the module that defines it.

A method is what a config's `methods:` list names. It bundles
- `rollout`: the name of the collector that generates its rows (train/collect.py: `independent`,
  `trees`, `branches`), or None for a method that is not trained (the prompting agent);
- `credit`: the pure function from one group (DESIGN.md's credit JSON) to span advantages;
- `params`: its settings as JSON-schema fragments, each with its `default` (the one home of the
  default) and its role, `credit` (a keyword of the credit function) or `rollout` (an option of
  the collector). The config schema's `credit.<method>` section is built from them;
- `variants`: named overlays of those settings (the ablations), each with its report label;
- `label`: its name in the report.

A new method is one module in this package that calls `register(Method(...))`: the package imports
every module in it (credit/__init__.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RicepoError


@dataclass(frozen=True)
class Param:
    schema: dict  # JSON schema of the value, with its `default`
    role: str = "credit"  # credit: a keyword of the credit function; rollout: an option of the collector
    doc: str = ""  # one line for the config reference


@dataclass(frozen=True)
class Variant:
    label: str  # row label in the ablation tables
    overlay: dict  # settings that differ from the method's


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    rollout: str | None
    credit: Callable | None = None
    params: dict[str, Param] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    runtime: tuple[str, ...] = ()  # credit keywords the caller supplies per call (a seed), not settings

    def defaults(self) -> dict:
        return {k: copy.deepcopy(p.schema["default"]) for k, p in self.params.items()}

    def settings(self, options: dict, variant: str | None = None) -> tuple[dict, dict]:
        """(credit keywords, collector options): defaults, then `options` (the config's
        `credit.<name>`), then the variant's overlay."""
        if variant is not None and variant not in self.variants:
            raise RicepoError(f"method {self.name!r} has no variant {variant!r}; its variants: {', '.join(self.variants) or 'none'}")
        unknown = set(options) - set(self.params)
        if unknown:
            raise RicepoError(
                f"method {self.name!r} takes no setting(s) {', '.join(sorted(unknown))}; it takes: {', '.join(sorted(self.params)) or 'none'}"
            )
        merged = {**self.defaults(), **options, **(self.variants[variant].overlay if variant else {})}
        split = {"credit": {}, "rollout": {}}
        for key, value in merged.items():
            split[self.params[key].role][key] = value
        return split["credit"], split["rollout"]

    def label_of(self, variant: str | None) -> str:
        return self.variants[variant].label if variant else self.label

    def settings_schema(self) -> dict:
        """The config schema of `credit.<name>`; `x-role` says which settings shape the rollout."""
        props = {}
        for key, p in self.params.items():
            props[key] = {**p.schema, "x-role": p.role} | ({"description": p.doc} if p.doc else {})
        return {"type": "object", "additionalProperties": False, "default": {}, "properties": props}


METHODS: dict[str, Method] = {}
# The name of a run without a variant (its path segment, ricepo/layout.py): no variant may take it.
BASE_VARIANT = "default"


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise RicepoError(f"method {method.name!r} is registered twice")
    for key, p in method.params.items():
        if p.role not in ("credit", "rollout") or "default" not in p.schema:
            raise RicepoError(f"method {method.name!r}: setting {key!r} needs a default and the role credit or rollout")
    for name, v in method.variants.items():
        if name == BASE_VARIANT:
            raise RicepoError(f"method {method.name!r}: a variant may not be called {BASE_VARIANT!r}")
        unknown = set(v.overlay) - set(method.params)
        if unknown:
            raise RicepoError(f"method {method.name!r}: variant {name!r} sets unknown setting(s) {', '.join(sorted(unknown))}")
    METHODS[method.name] = method
    return method


def describe_methods() -> str:
    """The settings reference: per method its collector, settings (default, role) and variants."""
    lines = []
    for m in METHODS.values():
        lines.append(f"{m.name} ({m.label}): rollout {m.rollout or 'none (not trained)'}")
        for key, p in m.params.items():
            lines.append(f"  credit.{m.name}.{key} = {p.schema['default']!r} [{p.role}] {p.doc}".rstrip())
        for name, v in m.variants.items():
            lines.append(f"  variant {name} ({v.label}): {v.overlay}")
    return "\n".join(lines)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise RicepoError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def compute_credit(method: str, group: dict, **params) -> dict[str, list[dict]]:
    """Span advantages of one group. `params`: settings that differ from their defaults (rollout
    settings are accepted and ignored: they shaped the group before it got here) and the method's
    runtime keywords."""
    m = get_method(method)
    if m.credit is None:
        raise RicepoError(f"method {method!r} assigns no credit (it is not trained)")
    _check_group(group)
    runtime = {k: params.pop(k) for k in m.runtime if k in params}
    credit, _ = m.settings(params)
    try:
        return m.credit(group, **credit, **runtime)
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
