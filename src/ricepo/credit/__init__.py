"""Methods and their credit assignment: one module per method, each registering its `Method`.

Every credit function takes one *group* in the JSON form of DESIGN.md's credit CLI and returns
{trajectory id: [{"reasoning": a, "summary": a} for each step]}. The trainer and the
`ricepo credit` CLI call the same functions. Every module of this package is imported here, so a
new method is one new file.
"""

import importlib
import pkgutil

from .registry import METHODS, Method, Param, Variant, compute_credit, get_method, register  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
