"""Write docs/configuration.md, the configuration reference, from the config schema.

    python scripts/config_reference.py            # (re)write docs/configuration.md
    python scripts/config_reference.py --check    # exit 1 if the page differs from what it would write

The schema (workflow/schemas/config.schema.yaml, completed by ricepo.config.load_schema with the
method and variant names and each method's `credit.<method>` settings) is the one home of every
key's type, default and meaning; this page lays it out with one section per top-level key and one
row per key, at every depth, in the schema's own order. `$ref`s are followed, and a map's entries
(`additionalProperties`) are listed under a placeholder such as `benchmarks.<name>` or
`split_counts.<task>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from ricepo.config import load_schema  # noqa: E402
from ricepo.credit import METHODS  # noqa: E402

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PAGE = ROOT / "docs" / "configuration.md"
STALE = "docs/configuration.md is stale: run python scripts/config_reference.py"

# The placeholder of a map's entries, by the map's own key.
PLACEHOLDERS = {
    "benchmarks": "<name>",
    "dense_models": "<name>",
    "backbones": "<name>",
    "gpus": "<name>",
    "templates": "<family>",
    "split_counts": "<task>",
    "train_from": "<task>",
    "dense_weight": "<task>",
    "backbone_gpu": "<backbone>",
}


@dataclass
class Key:
    path: str  # dotted path, map entries as placeholders
    node: dict  # its schema, `$ref` resolved
    required: bool  # its parent requires it


def placeholder(path: str) -> str:
    """What stands for an entry of the map at `path`."""
    return PLACEHOLDERS.get(path.rsplit(".", 1)[-1], "<key>")


def resolve(node: dict, root: dict) -> dict:
    """`node` with its `$ref` followed (its own keys, e.g. a default or description, kept over the target's)."""
    if "$ref" not in node:
        return node
    target = root
    for part in node["$ref"].lstrip("#/").split("/"):
        target = target[part]
    return {**resolve(target, root), **{k: v for k, v in node.items() if k != "$ref"}}


def keys(schema: dict) -> list[Key]:
    """Every key of the configuration, at every depth, in the schema's order."""
    out: list[Key] = []

    def visit(path: str, node: dict, required: bool) -> None:
        node = resolve(node, schema)
        out.append(Key(path, node, required))
        for name, sub in node.get("properties", {}).items():
            visit(f"{path}.{name}", sub, name in node.get("required", []))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            visit(f"{path}.{placeholder(path)}", extra, False)

    for name, sub in schema["properties"].items():
        visit(name, sub, name in schema.get("required", []))
    return out


def generated_description(path: str) -> str:
    """The description of a `credit.<method>` section, which Method.settings_schema builds without one."""
    parts = path.split(".")
    if len(parts) == 2 and parts[0] == "credit" and parts[1] in METHODS:
        m = METHODS[parts[1]]
        return (
            f"settings of {m.label} ({m.name}; rollout collector: {m.rollout}), declared by its registration "
            f"in src/ricepo/credit/ and defined in docs/methods.md"
        )
    return ""


def description(key: Key) -> str:
    text = key.node.get("description") or generated_description(key.path)
    if "x-role" in key.node:
        text += f" (role: {key.node['x-role']})"
    return " ".join(text.split())


def _json_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", list: "array", dict: "object"}[type(value)]


def type_of(node: dict, root: dict) -> str:
    node = resolve(node, root)
    t = node.get("type")
    if t is None:
        if "enum" in node:
            return " or ".join(dict.fromkeys(_json_type(v) for v in node["enum"]))
        return "any"
    if isinstance(t, list):
        return " or ".join(t)
    if t == "array" and isinstance(node.get("items"), dict):
        return f"array of {type_of(node['items'], root)}"
    return t


def _bounds(node: dict) -> list[str]:
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            out.append(f"{sign} {json.dumps(node[key])}")
    return out


def _values(values: list) -> str:
    return ", ".join(f"`{json.dumps(v) if not isinstance(v, str) else v}`" for v in values)


def allowed(key: Key, root: dict) -> str:
    node, out = key.node, []
    if key.required:
        out.append("required")
    if "enum" in node:
        out.append(f"one of {_values(node['enum'])}")
    out += _bounds(node)
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    if "minItems" in node:
        out.append(f"at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
    if node.get("uniqueItems"):
        out.append("no repeats")
    items = resolve(node.get("items", {}), root)
    if "enum" in items:
        out.append(f"each one of {_values(items['enum'])}")
    if _bounds(items):
        out.append("each " + ", ".join(_bounds(items)))
    if "pattern" in items:
        out.append(f"each matches `{items['pattern']}`")
    if "enum" in node.get("propertyNames", {}):
        out.append(f"keys: {_values(node['propertyNames']['enum'])}")
    if "minProperties" in node:
        out.append(f"at least {node['minProperties']} entr{'ies' if node['minProperties'] != 1 else 'y'}")
    return "; ".join(out)


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped; outside code spans, `<` escaped so that `<think>` is shown, not
    taken for HTML."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "\\<") for i, p in enumerate(parts))


def render(schema: dict | None = None) -> str:
    """The page's text."""
    schema = schema or load_schema(SCHEMA)
    rows = keys(schema)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python scripts/config_reference.py` from workflow/schemas/config.schema.yaml: do not edit by hand. -->",
        "",
        "This page is generated by `python scripts/config_reference.py` from",
        "`workflow/schemas/config.schema.yaml` (method and variant names and the `credit.<method>` settings",
        "come from the method registrations in `src/ricepo/credit/`). Do not edit it by hand: change the",
        "schema and run the script again (`--check` tells whether the page is current).",
        "",
        "Every key is listed by its dotted path, at every depth; `<name>`, `<task>`, `<family>` and",
        "`<backbone>` stand for the entries of a map (a benchmark, a task, a backbone family, a backbone).",
        "`config/config.yaml` is the paper's configuration; an overlay (`--configfile`) merges dicts into it",
        "and replaces lists. A key left out takes its default; `ricepo config check --configfile FILE` validates a file.",
        "",
        "Sections: " + ", ".join(f"`{name}`" for name in schema["properties"]) + ".",
    ]
    for section in schema["properties"]:
        lines += ["", f"## `{section}`", "", "| Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
        for key in rows:
            if key.path != section and not key.path.startswith(section + "."):
                continue
            default = f"`{json.dumps(key.node['default'], ensure_ascii=False)}`" if "default" in key.node else ""
            lines.append(
                "| "
                + " | ".join(_cell(c) for c in (f"`{key.path}`", type_of(key.node, schema), default, allowed(key, schema), description(key)))
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not what it would write")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(STALE, file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
