"""The same numbers on every CPU, shown on one machine: a configuration run end to end under
forced kernel paths, each graded against its expected scores.

    python scripts/kernel_paths.py [--configfile config/smoke.yaml] [--paths detected avx2 ...]
        [--workdir DIR] [--cores 2]

Each path (ricepo.kernels.KERNEL_PATHS: the machine's own kernels, AVX2 only, AVX-512 with bf16
and no AMX, the portable scalar/SSE paths, MKL as on the other CPU vendor's machine) runs
`snakemake check` in its own folder WORKDIR/PATH with those settings in the environment, so every
job (the tiny model's build, the training, the evaluations) computes as that CPU would. Prints
each path's `check` summary and its wall time; exits 1 if any cell of any path FAILs. A float32
configuration on portable kernels (smoke, scifact) must pass under every path; a bf16 one (mini)
within the tolerance its expected file derives.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from ricepo.kernels import KERNEL_PATHS, forced_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default=str(ROOT / "config" / "smoke.yaml"))
    ap.add_argument("--paths", nargs="+", default=list(KERNEL_PATHS), choices=list(KERNEL_PATHS))
    ap.add_argument("--workdir", default=None, help="default: a new temporary folder")
    ap.add_argument("--cores", default="2")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kernel-paths-"))
    work.mkdir(parents=True, exist_ok=True)
    shared = work / "shared"  # configurations on real data read ../shared beside their folder
    if not shared.exists() and (ROOT.parent / "shared").exists():
        shared.symlink_to(ROOT.parent / "shared")
    failed = []
    for name in args.paths:
        folder = work / name
        folder.mkdir(exist_ok=True)
        settings = forced_env(name, folder)
        t0 = time.time()
        out = subprocess.run(
            [
                "snakemake",
                "-s",
                str(ROOT / "Snakefile"),
                "-d",
                str(folder),
                "check",
                "--cores",
                args.cores,
                "--configfile",
                str(Path(args.configfile).resolve()),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **settings},
        )
        lines = (out.stdout + out.stderr).splitlines()
        summary = [x for x in lines if x.startswith("check ") and " cells" in x]
        differ = [x for x in lines if x.startswith("numerics differ in: ") or x.startswith("numerics: ")]
        shown = " ".join(f"{k}={v}" for k, v in settings.items()) or "as detected"
        print(f"{name:<12} [{shown}] {time.time() - t0:.0f} s", flush=True)
        print("  " + (summary[-1] if summary else f"no check summary (exit {out.returncode}); see {folder}"), flush=True)
        for x in differ[-1:]:
            print("  " + x, flush=True)
        if out.returncode != 0:
            failed.append(name)
            (folder / "kernel_paths.log").write_text(out.stdout + out.stderr)
    if failed:
        print(f"kernel paths with a FAIL or an error: {', '.join(failed)} (their output: WORKDIR/PATH/kernel_paths.log)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
