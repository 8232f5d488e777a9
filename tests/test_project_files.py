"""The files a user or a citation tool looks for beside the code: a license that says what
pyproject.toml says, and a CITATION.cff with the keys the Citation File Format 1.2.0 requires."""

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_file_is_the_one_pyproject_names():
    license_name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert license_name == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_citation_cff_has_what_the_format_requires():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff[key], key
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert str(cff["version"]) == version
    (paper,) = cff["references"]
    assert paper["title"].startswith("RICE-PO:")
