"""The wheels a GPU node without network needs to run scripts/gpu_check.sh, computed from the
installed distributions' metadata (run where PyPI is reachable, with the project installed):

    python scripts/gpu_wheels.py [--python-version 3.12] [--out .whl] [--except FILE] [--list]
    python scripts/gpu_wheels.py --verify        # install them into an empty venv with only torch,
                                                 # transformers and accelerate, and check it

The list is the dependency closure of the project (its `ricepo` requirements, plus pytest, which
the check runs) less torch's closure and transformers and accelerate themselves, which every CUDA
PyTorch image brings: each requirement's markers are evaluated for the node's Python, and each
distribution is pinned to the version installed here, the one the tests ran with. The needs of
transformers and accelerate stay in the list: the image's versions are not this machine's (an
H200 image's transformers 5.17 lacked pydantic, which this machine's newer one pulls in and
Snakemake needs), and the check installs only what the node lacks. `--except`
names distributions (one per line) the node is known to hold already, to keep what is carried
small; gpu_check.sh installs only the wheels whose distribution the node lacks anyway.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("ricepo", "pytest")
IMAGE = ("torch", "transformers", "accelerate")
PLATFORMS = [
    "manylinux_2_17_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "any",
]


def closure(roots: tuple[str, ...], python: str) -> dict[str, str | None]:
    """Every distribution `roots` need on `python` (name -> installed version, None where this
    machine lacks it, e.g. one only an older or newer Python needs)."""
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0"}
    out: dict[str, str | None] = {}
    todo = [(canonicalize_name(r), frozenset()) for r in roots]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            out.setdefault(name, None)
            continue
        out[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return out


def needed(python: str, left_out: set[str]) -> dict[str, str | None]:
    image = set(closure(("torch",), python)) | set(IMAGE)
    return {n: v for n, v in sorted(closure(PROJECT, python).items()) if n not in image and n not in left_out and n != "ricepo"}


def download(wheels: dict[str, str | None], python: str, out: Path) -> None:
    """Each distribution's wheel for the node's Python and platform; one published only as an
    sdist is built into a wheel here, which must then be pure Python (py3-none-any) to carry."""
    out.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    for name, version in wheels.items():
        spec = f"{name}=={version}" if version else name
        got = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                python,
                "--implementation",
                "cp",
                "-d",
                str(out),
                *platforms,
                spec,
            ],
            capture_output=True,
            text=True,
        )
        if got.returncode == 0:
            continue
        before = set(out.glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), spec], check=True, capture_output=True, text=True)
        built = set(out.glob("*.whl")) - before
        if not all(w.name.endswith("-py3-none-any.whl") for w in built):
            raise SystemExit(
                f"{spec}: no wheel for Python {python} on PyPI, and the one built here is not pure Python ({', '.join(w.name for w in built)})"
            )
        print(f"{spec}: published as an sdist only; built here as {', '.join(w.name for w in built)}")


def verify(python: str) -> None:
    """An empty venv, torch + transformers + accelerate installed by pip, then only the wheels:
    `pip check` must find no distribution missing, the check's imports must work and Snakemake
    must plan the smoke DAG."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels, venv = Path(tmp) / "whl", Path(tmp) / "venv"
        download(needed(python, set()), python, wheels)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = str(venv / "bin" / "python")
        image = [f"{n}=={md.version(n)}" for n in IMAGE]
        subprocess.run([py, "-m", "pip", "install", "-q", *image], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))], check=True)
        # pip check: a distribution missing is a gap in the list (fail); a version outside a
        # project requirement's range is the image's choice (reported; the imports and the dry run
        # below show whether it matters)
        check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True).stdout.splitlines()
        missing = [line for line in check if "which is not installed" in line]
        conflicts = [line for line in check if line not in missing and "No broken requirements" not in line]
        if missing:
            raise SystemExit("the wheels miss distributions:\n  " + "\n  ".join(missing))
        if conflicts:
            print(
                "version conflicts with what pip chose for torch, transformers and accelerate (a node's image "
                "decides these):\n  " + "\n  ".join(conflicts)
            )
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(
            [
                py,
                "-c",
                "import ricepo.cli, ricepo.plan, ricepo.train.trainer, snakemake, pytest, bm25s, "
                "pytrec_eval, jsonschema, pandas, matplotlib, seaborn; print('imports: ok')",
            ],
            check=True,
            env=env,
        )
        subprocess.run(
            [
                py,
                "-m",
                "snakemake",
                "-s",
                str(ROOT / "Snakefile"),
                "-d",
                tmp,
                "-n",
                "reproduce_all",
                "--configfile",
                str(ROOT / "config" / "smoke.yaml"),
                "--quiet",
            ],
            check=True,
            env=env,
        )
        size = sum(p.stat().st_size for p in wheels.glob("*.whl"))
        print(
            f"verified: {len(list(wheels.glob('*.whl')))} wheels ({size / 2**20:.1f} MiB) on torch, transformers and "
            f"accelerate alone: nothing missing (pip check), the project imports, snakemake plans the smoke DAG"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-version", default="3.12", help="the node's Python (the H200 image: 3.12)")
    ap.add_argument("--out", default=str(ROOT / ".whl"))
    ap.add_argument("--except", dest="left_out", help="a file of distribution names the node already has")
    ap.add_argument("--list", action="store_true", help="print the list, download nothing")
    ap.add_argument("--verify", action="store_true", help="check the list for this machine's Python in a fresh venv")
    args = ap.parse_args()
    if args.verify:
        verify(".".join(platform.python_version_tuple()[:2]))
        return
    left_out = {canonicalize_name(x) for x in Path(args.left_out).read_text().split()} if args.left_out else set()
    wheels = needed(args.python_version, left_out)
    print(f"{len(wheels)} distributions beyond torch, transformers and accelerate: " + ", ".join(f"{n} {v or '(latest)'}" for n, v in wheels.items()))
    if not args.list:
        download(wheels, args.python_version, Path(args.out))
        size = sum(p.stat().st_size for p in Path(args.out).glob("*.whl"))
        print(f"{args.out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
