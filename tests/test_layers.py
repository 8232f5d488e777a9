"""The package's layers: a module imports only from its own unit or the layers below it."""

import ast

from conftest import ROOT

PACKAGE = ROOT / "src" / "ricepo"
LAYERS = [  # lowest first; a unit is a module or a subpackage of ricepo
    {"errors", "atomic", "identity"},
    {"kernels"},  # CPU kernel paths, without torch (precision, the workflow)
    {
        "data",
        "credit",
        "precision",
        "packaged",
        "gpu_slots",
        "memory_meter",
        "decode_shapes",
        "slurm_failures",
    },  # slurm_failures: the Slurm executor's failed jobs, read back
    {"config", "layout", "metrics", "summaries", "summary_baselines"},  # the config schema, the run matrix, NDCG,
    # summary measures, fixed summaries
    {"retrieval", "report"},
    {"environments", "agent", "plan"},  # plan: memory and GPU-hours from config, layout and retrieval
    {"train", "evaluate"},
    {"jobs"},
    {"cli", "__init__"},
    {"__main__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(path):
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path):
    """The ricepo units a module imports (absolute `ricepo.X` or relative imports)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 for a module inside a subpackage
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("ricepo."):
                yield node.module.split(".")[1]
            elif node.level == depth + 1 and node.module:  # from the package root: .x / ..x
                yield node.module.split(".")[0]
            elif node.level == depth + 1:  # `from . import x` at the root
                yield from (a.name for a in node.names if not a.name.startswith("__"))
            elif node.level and depth:  # within its own subpackage
                yield unit_of(path)


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYER), units - set(LAYER)


def test_no_import_runs_up_the_layers():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        here = unit_of(path)
        for unit in imported_units(path):
            if unit != here and LAYER[unit] >= LAYER[here]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {unit}")
    assert not upward, upward


def imported_modules(path):
    """The ricepo modules a module imports, relative or absolute, at the top or inside a function
    (`from .x import y` counts x.y where y is a module, else x)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py")}
    here = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = here.removesuffix(".__init__") if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("ricepo")):
            continue
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            yield f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target


def test_no_module_imports_one_that_imports_it_back():
    """No import circle between modules, however long (within a unit too: the layers cannot see it)."""

    def name(p):
        return ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")

    graph = {name(p): set(imported_modules(p)) - {name(p)} for p in PACKAGE.rglob("*.py")}
    circles = []
    for start in graph:  # a depth-first walk back to `start`
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    circles.append(" -> ".join(trail + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert not circles, circles[:5]
