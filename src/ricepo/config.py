"""Config validation against workflow/schemas/config.schema.yaml, with one-line errors.

Snakemake's own `validate` fills the defaults; this module adds what a schema cannot say
(cross references between sections) and turns a schema violation into one line that names
the key, so a typo stops the run before any job starts.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import RicepoError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The config schema: the file, completed from the method registry (credit/): the method and
    variant names, and each method's `credit.<name>` settings with their defaults."""
    from .credit import METHODS

    with open(path) as f:
        schema = yaml.safe_load(f)
    schema["definitions"]["method"] = {"enum": list(METHODS)}
    schema["definitions"]["variant"] = {"enum": sorted({v for m in METHODS.values() for v in m.variants})}
    schema["properties"]["credit"]["properties"] = {name: m.settings_schema() for name, m in METHODS.items() if m.params}
    return schema


def _defaults(key: str, fragment: dict, given: dict | None = None) -> dict:
    out = {key: dict(given or {})}
    _fill_defaults(out, {"properties": {key: fragment}}, load_schema())
    return out[key]


def section_defaults(section: str) -> dict:
    """What an empty top-level section (train, rollout, ...) resolves to: the schema's defaults."""
    return _defaults(section, load_schema()["properties"][section])


DOCUMENTED_SECTIONS = ("rollout", "train", "evaluate")


def describe_defaults() -> str:
    """Each setting of the rollout, train and evaluate sections: its default and what it means."""
    schema, lines = load_schema(), []
    for section in DOCUMENTED_SECTIONS:
        lines.append(f"{section}:")
        for key, sub in schema["properties"][section]["properties"].items():
            lines.append(f"  {key}: {json.dumps(sub['default'])}  # {sub.get('description', '')}".rstrip(" #"))
    return "\n".join(lines)


def retriever_settings(retriever: dict | None = None) -> dict:
    """A benchmark's `retriever` entry with the schema's defaults filled (BM25 when none is given)."""
    return _defaults("retriever", load_schema()["definitions"]["benchmark"]["properties"]["retriever"], retriever)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "<top level>"


def _one_line(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"config error at {where}: unknown key(s) {', '.join(map(repr, extra))}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config error at {where}: {error.instance!r} is not one of [{allowed}]"
    return f"config error at {where}: {error.message}"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Recursively insert `default` values of the schema's object properties."""
    if "$ref" in schema:
        ref = schema["$ref"].lstrip("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        schema = target
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def check_config(config: dict, schema: dict | None = None) -> dict:
    """Validate `config`; return a copy with defaults filled. Raises RicepoError (one line).
    A benchmark set to null (`bright: null` in an overlay config) is dropped: it is not run."""
    schema = schema or load_schema()
    if isinstance(config.get("benchmarks"), dict):
        config = {**config, "benchmarks": {k: v for k, v in config["benchmarks"].items() if v is not None}}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise RicepoError(_one_line(jsonschema.exceptions.best_match(errors) or errors[0]))
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, schema)
    _check_references(config)
    _check_backbone_overlays(config, schema)
    return config


def _check_backbone_overlays(config: dict, schema: dict) -> None:
    """A backbone's `train:` / `rollout:` names only keys of that section, and the section it
    makes for the backbone's jobs is valid."""
    entry = schema["properties"]["backbones"]["additionalProperties"]["properties"]
    for name, bb in config["backbones"].items():
        for section in (k for k in bb if k in entry and k in schema["properties"]):
            where = f"backbones.{name}.{section}"
            unknown = sorted(set(bb[section]) - set(config[section]))
            if unknown:
                raise RicepoError(f"config error at {where}: {unknown[0]!r} is not a setting of {section} ({', '.join(sorted(config[section]))})")
            merged = {**config[section], **bb[section]}
            error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema["properties"][section]).iter_errors(merged))
            if error:
                key = ".".join(str(k) for k in error.absolute_path)
                raise RicepoError(f"config error at {where}.{key}: {error.message}")


def _check_local_paths(bench: str, spec: dict) -> None:
    """A local source's folders exist when the DAG is built, not only when `data prepare` reads them."""
    if not spec.get("path"):
        raise RicepoError(f"config error at benchmarks.{bench}.path: source 'local' needs a path")
    root = Path(spec["path"])
    if not root.exists():
        raise RicepoError(f"config error at benchmarks.{bench}.path: {root} does not exist")
    if bench == "beir":
        missing = [t for t in spec["tasks"] if not (root / t).is_dir()]
        if missing:
            raise RicepoError(
                f"config error at benchmarks.beir.path: {root} has no folder for "
                f"{', '.join(missing)} (a local BEIR source holds one folder per dataset)"
            )
    if spec.get("reasonir_path") and not Path(spec["reasonir_path"]).exists():
        raise RicepoError(f"config error at benchmarks.{bench}.reasonir_path: {spec['reasonir_path']} does not exist")


def _check_references(config: dict) -> None:
    backbones = config["backbones"]
    templates = config.get("templates", {})
    for bench, spec in config["benchmarks"].items():
        for i, bb in enumerate(spec["backbones"]):
            if bb not in backbones:
                raise RicepoError(
                    f"config error at benchmarks.{bench}.backbones[{i}]: unknown backbone {bb!r} (defined: {', '.join(sorted(backbones))})"
                )
        for task in spec["tasks"]:
            if task not in spec["split_counts"]:
                raise RicepoError(f"config error at benchmarks.{bench}.split_counts: no counts for task {task!r}")
        online = {"bright": "hub", "beir": "ir_datasets"}.get(bench)
        if spec["source"] in ("hub", "ir_datasets") and spec["source"] != online:
            raise RicepoError(
                f"config error at benchmarks.{bench}.source: {bench} is not read from "
                f"{spec['source']!r} (sources: {online + ', ' if online else ''}local, fixture)"
            )
        if spec["source"] == "local":
            _check_local_paths(bench, spec)
        if (
            bench == "bright"
            and spec["source"] == "local"
            and not spec.get("reasonir_path")
            and any(spec["split_counts"][t]["train"] > 0 for t in spec["tasks"])
        ):
            raise RicepoError(
                "config error at benchmarks.bright.reasonir_path: BRIGHT train queries come from "
                "ReasonIR; a local source needs a local copy of reasonir/reasonir-data (hq)"
            )
        if spec.get("retriever", {}).get("name") in ("dense", "hybrid"):
            model = spec["retriever"].get("dense_model")
            if model not in config.get("dense_models", {}):
                raise RicepoError(
                    f"config error at benchmarks.{bench}.retriever.dense_model: {model!r} is not in "
                    f"dense_models ({', '.join(sorted(config.get('dense_models', {}))) or 'none'})"
                )
    abl = config.get("ablations")
    if abl and abl.get("variants"):
        from .credit import get_method

        variants = get_method(abl["method"]).variants
        for i, v in enumerate(abl["variants"]):
            if v not in variants:
                raise RicepoError(
                    f"config error at ablations.variants[{i}]: {v!r} is not a variant of method {abl['method']!r} ({', '.join(variants) or 'none'})"
                )
        if abl.get("benchmark") not in config["benchmarks"]:
            raise RicepoError(f"config error at ablations.benchmark: {abl.get('benchmark')!r} is not a configured benchmark")
        if abl.get("backbone") not in config["benchmarks"][abl["benchmark"]]["backbones"]:
            raise RicepoError(f"config error at ablations.backbone: {abl.get('backbone')!r} is not a backbone of benchmark {abl['benchmark']!r}")
    for name, bb in backbones.items():
        if bb.get("build") == "gguf" and not bb.get("source"):
            raise RicepoError(f"config error at backbones.{name}.source: build 'gguf' needs a source (.gguf file or pkg:...)")
        if bb["family"] not in templates and "default" not in templates:
            raise RicepoError(f"config error at backbones.{name}.family: no template for {bb['family']!r}")


def read_config_file(path: str | Path) -> dict:
    """A config file's mapping: JSON for a .json file, as Snakemake reads it (YAML 1.1 would read
    JSON's `1e-05` as a string), else YAML; a missing file or a syntax error is one line naming the
    file (and line)."""
    path = Path(path)
    try:
        with open(path) as f:
            raw = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    except FileNotFoundError:
        raise RicepoError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise RicepoError(f"config file {path} is a folder") from None
    except json.JSONDecodeError as e:
        raise RicepoError(f"config file {path} line {e.lineno}: invalid JSON ({e.msg})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise RicepoError(f"config file {path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if raw is not None and not isinstance(raw, dict):
        raise RicepoError(f"config file {path}: expected a mapping of keys, got {type(raw).__name__}")
    return raw or {}


def overlay(base: dict, top: dict) -> dict:
    """Snakemake's merge of a --configfile over the default config: dicts merge, the rest replaces."""
    out = dict(base)
    for k, v in top.items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# A run's configuration as it ran, defaults filled (results/RUN/<this>, written by the workflow).
RESOLVED_CONFIG = "config.resolved.json"


def load_config(*overlays: str | Path) -> dict:
    """The validated config the workflow runs with `--configfile OVERLAY`: config/config.yaml with
    each overlay (YAML or JSON) merged over it. A run's resolved configuration (a file named
    RESOLVED_CONFIG) is complete: it replaces what came before instead of merging over it (merged,
    it would bring back a benchmark its run left out). An error names the last overlay file and the key."""
    config = read_config_file(DEFAULT_CONFIG)
    for path in overlays:
        top = read_config_file(path)
        config = top if Path(path).name == RESOLVED_CONFIG else overlay(config, top)
    try:
        return check_config(config)
    except RicepoError as e:
        raise RicepoError(f"{overlays[-1] if overlays else DEFAULT_CONFIG}: {e}") from None


@functools.lru_cache
def configfile_of(run_name: str) -> Path | None:
    """The file under config/ that runs `run_name` (config.yaml itself for its own run_name), or None
    for a configuration kept elsewhere."""
    for path in [DEFAULT_CONFIG, *sorted(DEFAULT_CONFIG.parent.glob("*.yaml"))]:
        if read_config_file(path).get("run_name") == run_name:
            return path
    return None


def snakemake_command(run_name: str, *targets: str) -> str:
    """The command that (re)builds `targets` of configuration `run_name`."""
    path = configfile_of(run_name)
    where = (
        ""
        if path == DEFAULT_CONFIG
        else f" --configfile {path.relative_to(DEFAULT_CONFIG.parents[1])}"
        if path
        else f" --configfile <the file with run_name: {run_name}>"
    )
    return f"snakemake --cores all {' '.join(targets)}{where}"
