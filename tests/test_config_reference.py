"""docs/configuration.md: every schema key described, the page current, every paper-config key on it."""

from __future__ import annotations

import importlib.util
import sys

import yaml

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


ref = _script()


def _first_undescribed(schema: dict, generated_ok: bool) -> str | None:
    for key in ref.keys(schema):
        own = (key.node.get("description") or "").strip()
        if own or (generated_ok and ref.generated_description(key.path)):
            continue
        return key.path
    return None


def test_every_key_of_the_schema_file_has_a_description():
    """The file itself: every property at every depth, under `definitions:` ($ref) and map entries included."""
    with open(ref.SCHEMA) as f:
        missing = _first_undescribed(yaml.safe_load(f), generated_ok=False)
    assert missing is None, f"workflow/schemas/config.schema.yaml: {missing} has no description"


def test_every_key_of_the_completed_schema_has_a_description():
    """As load_schema completes it: the method settings carry their registration's doc; the
    `credit.<method>` sections themselves, which Method.settings_schema builds without one, get the
    page's generated line."""
    missing = _first_undescribed(ref.load_schema(ref.SCHEMA), generated_ok=True)
    assert missing is None, f"{missing} has no description"


def test_the_page_is_current():
    assert ref.PAGE.read_text(encoding="utf-8") == ref.render(), ref.STALE


def test_check_mode_names_a_stale_page(tmp_path, monkeypatch, capsys):
    assert ref.main(["--check"]) == 0
    monkeypatch.setattr(ref, "PAGE", tmp_path / "configuration.md")
    (tmp_path / "configuration.md").write_text("old\n")
    assert ref.main(["--check"]) == 1
    assert capsys.readouterr().err == ref.STALE + "\n"


def _page_paths(value: dict, node: dict, path: str, schema: dict):
    """The page path of every key of `value` (a config mapping) under schema `node`: map entries
    as their placeholder; a backbone's `train:`/`rollout:` keys as the section's own keys."""
    node = ref.resolve(node, schema)
    for key, sub in value.items():
        if key in node.get("properties", {}):
            child, where = node["properties"][key], f"{path}.{key}" if path else key
        elif isinstance(node.get("additionalProperties"), dict):
            child, where = node["additionalProperties"], f"{path}.{ref.placeholder(path)}"
        elif path.rsplit(".", 1)[-1] in schema["properties"] and "properties" not in node:
            section = path.rsplit(".", 1)[-1]  # backbones.<name>.train: keys of train:
            child, where = schema["properties"][section]["properties"][key], f"{section}.{key}"
        else:
            raise AssertionError(f"{path}.{key}: not a key of the schema")
        yield where
        if isinstance(sub, dict):
            yield from _page_paths(sub, child, where, schema)


def test_every_key_of_the_paper_config_is_on_the_page():
    schema = ref.load_schema(ref.SCHEMA)
    page = ref.PAGE.read_text(encoding="utf-8")
    with open(ROOT / "config" / "config.yaml") as f:
        config = yaml.safe_load(f)
    paths = list(dict.fromkeys(_page_paths(config, schema, "", schema)))
    assert "benchmarks.<name>.retriever.dense_weight.<task>" in paths and "train.processes" in paths
    missing = [p for p in paths if f"| `{p}` |" not in page]
    assert not missing, f"docs/configuration.md lacks {missing}"
