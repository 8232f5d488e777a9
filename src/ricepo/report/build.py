"""Dispatch of `ricepo report WHAT`: a table, a figure, or the HTML page."""
from __future__ import annotations

from pathlib import Path

from ..errors import RicepoError
from .figures import FIGURES, build_figure
from .html import render
from ..layout import TABLES
from .tables import build_table, write_table


def run(what: str, *, config: dict | None, results: Path, out: Path) -> None:
    if config is None:
        raise RicepoError("report: --config-json is required (results/config.resolved.json)")
    if what in TABLES:
        write_table(build_table(what, config, results), out)
    elif what in FIGURES:
        build_figure(what, config, results, out)
    elif what == "html":
        render(config, results / "config.resolved.json", results / "tables", results / "figures", out)
    else:
        raise RicepoError(f"report: unknown artefact {what!r}; known: {', '.join([*TABLES, *FIGURES, 'html'])}")
