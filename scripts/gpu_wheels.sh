#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels a GPU node without network needs to run
# scripts/gpu_check.sh: the project's runtime dependencies that a CUDA PyTorch image lacks
# (torch, transformers, accelerate, numpy, pandas, matplotlib, seaborn, jinja2, pyyaml, tqdm are
# expected there). Into .whl/ (git-ignored), for CPython 3.12 on x86-64 Linux by default:
#   scripts/gpu_wheels.sh [--python-version 3.12]
# The list is the project's resolved dependencies (`pip install --dry-run --report - -e .`) minus
# the packages of a stock CUDA PyTorch image; gpu_check.sh installs only those the node lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
py=3.12
[ "${1:-}" = "--python-version" ] && py=$2
mkdir -p .whl
NEEDED="annotated-types argparse-dataclass bm25s conda-inject configargparse connection-pool docutils dpath
fastjsonschema gitdb gitpython humanfriendly immutables jsonschema jsonschema-specifications jupyter-core nbformat
platformdirs pulp pydantic pydantic-core pystemmer pytrec-eval-terrier referencing rpds-py smart-open smmap
snakemake snakemake-interface-common snakemake-interface-executor-plugins snakemake-interface-logger-plugins
snakemake-interface-report-plugins snakemake-interface-scheduler-plugins snakemake-interface-storage-plugins
sqlalchemy sqlmodel greenlet tenacity throttler traitlets typing-inspection yte"
platforms=""
for n in 17 24 27 28 31 34; do platforms="$platforms --platform manylinux_2_${n}_x86_64"; done
for name in $NEEDED; do
  python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    $platforms --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$name"
done
du -sh .whl
