"""Credit assignment: one pure function per method, registered by name.

Every estimator takes one *group* in the JSON form of DESIGN.md's credit CLI and returns
{trajectory id: [{"reasoning": a, "summary": a} for each step]}. The trainer and the
`ricepo credit` CLI call the same functions.
"""
from .registry import REGISTRY, compute_credit, register  # noqa: F401
from . import gigpo, grpo, hgpo, ricepo, tree_grpo  # noqa: F401  (each registers itself)
