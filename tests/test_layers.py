"""The package's layers: a module imports only from its own unit or the layers below it."""
import ast

from conftest import ROOT

PACKAGE = ROOT / "src" / "ricepo"
LAYERS = [                       # lowest first; a unit is a module or a subpackage of ricepo
    {"errors", "atomic", "identity"},
    {"kernels"},                             # CPU kernel paths, without torch (precision, the workflow)
    {"data", "credit", "precision", "packaged", "gpu_slots", "memory_meter", "decode_shapes",
     "slurm_failures"},                      # slurm_failures: the Slurm executor's failed jobs, read back
    {"config", "layout", "metrics", "summaries", "summary_baselines"},  # the config schema, the run matrix, NDCG,
                                                                       # summary measures, fixed summaries
    {"retrieval", "report"},
    {"environments", "agent", "plan"},   # plan: memory and GPU-hours from config, layout and retrieval
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
    depth = len(path.relative_to(PACKAGE).parts) - 1       # 1 for a module inside a subpackage
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("ricepo."):
                yield node.module.split(".")[1]
            elif node.level == depth + 1 and node.module:   # from the package root: .x / ..x
                yield node.module.split(".")[0]
            elif node.level == depth + 1:                   # `from . import x` at the root
                yield from (a.name for a in node.names if not a.name.startswith("__"))
            elif node.level and depth:                      # within its own subpackage
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
