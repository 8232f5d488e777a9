#!/usr/bin/env bash
# Check the GPU path on a GPU node before launching the full reproduction (README, "GPU check").
#   scripts/gpu_check.sh [tests] [smoke] [paper]      (default: all three, about 10 minutes on an H100)
# tests: the tests marked gpu (sampling on CUDA, a bf16-mixed step at lr 1e-6 that moves every
#        parameter tensor, train + SIGKILL + resume equal to an uninterrupted run);
# smoke: the whole smoke DAG (config/smoke.yaml) in a temporary folder, training and evaluating on CUDA;
# paper: one paper-shaped training step with DeepSeek-R1-Distill-Qwen-1.5B's architecture at random
#        initialisation (scripts/paper_step.py) and the projected GPU-hours of reproduce_all.
# No network needed: with the project installed (pip install -e .) it runs as is; on a node
# without PyPI, run scripts/gpu_wheels.sh where PyPI is reachable and bring .whl/ along: the
# wheels the node lacks are installed into a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sections=${*:-tests smoke paper}
export PYTHONUNBUFFERED=1

if ! python3 -c "import ricepo" 2>/dev/null; then
  site=$(mktemp -d)
  if [ -d .whl ]; then
    # install only the wheels whose distribution this node does not have
    missing=$(python3 - <<'PY'
import importlib.metadata as md, pathlib
for whl in sorted(pathlib.Path(".whl").glob("*.whl")):
    name = whl.name.split("-")[0]
    try:
        md.version(name)
    except md.PackageNotFoundError:
        print(whl)
PY
)
    [ -n "$missing" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" $missing
  fi
  mkdir -p "$site/bin"
  printf '#!/bin/sh\nexec python3 -m ricepo "$@"\n' >"$site/bin/ricepo"
  [ -x "$site/bin/snakemake" ] || printf '#!/bin/sh\nexec python3 -m snakemake "$@"\n' >"$site/bin/snakemake"
  chmod +x "$site/bin/ricepo" "$site/bin/snakemake"
  export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
fi

echo "== gpu_check $(git rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'| transformers', transformers.__version__, '| device', torch.cuda.get_device_name(0))" || exit 1
python3 -c "import torch; from ricepo.precision import resolve_precision; \
print(resolve_precision('auto', torch.device('cuda')).describe())"
status=0

if [[ " $sections " == *" tests "* ]]; then
  echo "== tests marked gpu"
  python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider || status=1
fi

if [[ " $sections " == *" smoke "* ]]; then
  echo "== smoke DAG on CUDA"
  work=$(mktemp -d)
  start=$(date +%s)
  if snakemake -s "$root/Snakefile" -d "$work" reproduce_all --cores all --configfile "$root/config/smoke.yaml" \
       --resources gpus="$(nvidia-smi -L | wc -l)" --quiet rules >"$work/snakemake.log" 2>&1; then
    echo "smoke DAG: ok in $(( $(date +%s) - start )) s ($work/reports/smoke/report.html)"
    cuda=$(grep -l "on cuda" "$work"/results/smoke/logs/train/*/*/*/*.log | wc -l)
    total=$(ls "$work"/results/smoke/logs/train/*/*/*/*.log | wc -l)
    echo "training jobs that ran on CUDA: $cuda of $total"
    [ "$cuda" -eq "$total" ] || status=1
  else
    echo "smoke DAG: FAILED; the end of $work/snakemake.log:"; tail -30 "$work/snakemake.log"; status=1
  fi
fi

if [[ " $sections " == *" paper "* ]]; then
  echo "== paper-shaped step"
  python3 scripts/paper_step.py 2>&1 | grep -v -E "Loading weights|Writing model|it/s\]" || status=1
fi

echo "== gpu_check: $([ $status -eq 0 ] && echo ok || echo FAILED)"
exit $status
