"""`ricepo report WHAT`: one table, one figure, or the HTML page, from the files its rule declares."""

from __future__ import annotations

from pathlib import Path

from ..errors import RicepoError
from ..layout import FIGURES, TABLES
from .check import load_expected
from .claims import grade_claims, write_claims
from .figures import build_figure
from .html import render
from .results import ResultFiles
from .tables import build_table, write_table


def run(what: str, *, config: dict, config_files: list[str], results: Path, inputs: list[Path], out: Path) -> None:
    """`config` is the run's validated configuration, read from `config_files`; `results` the folder
    of its result files; `inputs` the files the rule declares: result files for a table or figure (and, for a table,
    the configuration's expected scores where it has them), the tables' and figures' JSON and PNG
    files for the page."""
    if what == "claims":
        write_claims(grade_claims(ResultFiles(config, results, inputs)), out)
    elif what in TABLES:
        expected = [Path(p) for p in inputs if Path(p).suffix == ".yaml"]
        write_table(build_table(what, ResultFiles(config, results, inputs), load_expected(expected[0]) if expected else None), out)
    elif what in FIGURES:
        build_figure(what, ResultFiles(config, results, inputs), out)
    elif what == "html":
        render(config, config_files, inputs, out)
    else:
        raise RicepoError(f"report: unknown artefact {what!r}; known: {', '.join(['claims', *TABLES, *FIGURES, 'html'])}")
