#!/usr/bin/env bash
# Check the GPU path on a GPU node before launching the full reproduction (docs/gpu-check.md).
#   scripts/gpu_check.sh [tests] [smoke] [paper] [sampler]   (default: all four, in this order;
#   10 minutes on one H200, each part stopped at its share: tests 100 s, smoke 140, paper 200,
#   sampler 140)
# tests: the tests marked gpu (sampling on CUDA, a bf16-mixed step at lr 1e-6 that moves every
#        parameter tensor, train + SIGKILL + resume equal to an uninterrupted run); fails if any
#        of them is skipped or none ran;
# smoke: the CUDA smoke subset (config/smoke.yaml + config/gpu_smoke.yaml: one task, one seed, the
#        prompting agent, GRPO and RICE-PO, through to a report) in a temporary folder; fails
#        unless the DAG completes and every training job's log says it ran on CUDA
#        (scripts/train_devices.py);
# paper: one paper-shaped training step with DeepSeek-R1-Distill-Qwen-1.5B's architecture at random
#        initialisation, 4 queries (scripts/paper_step.py --check --queries 4); fails unless it ran
#        on CUDA and the plan's peak is within 10% of the measured one;
# sampler: the sampler's tokens per second against transformers' generate() on CUDA, 8 and 64
#        rows, with the same architecture at random initialisation (scripts/bench_sampler.py
#        --architecture); a report: fails only if it cannot run on CUDA or overruns. It writes
#        the measured decode rates to config/calibration/<gpu>.yaml (RICEPO_CALIBRATION_DIR
#        elsewhere) and prints the file: commit it, and `ricepo plan` prices that GPU kind by it.
# Each part prints its time; the check prints which parts failed and exits 1 if any did.
# Drill: RICEPO_GPU_CHECK_DRILL=1 skips the CUDA gate, so that on a machine without a GPU every
# part runs on the CPU and must fail (tests/test_gpu_check.py runs it so; the paper step at
# --scale tiny there).
# No network needed: with the project installed (pip install -e .) it runs as is; on a node
# without PyPI, run scripts/gpu_wheels.py where PyPI is reachable and bring .whl/ along: the
# wheels the node lacks are installed into a temporary folder (docs/gpu-check.md).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sections=${*:-tests smoke paper sampler}
export PYTHONUNBUFFERED=1
check_start=$(date +%s)
failed=""

part_time() { echo "-- $1: $2 in $(( $(date +%s) - $3 )) s"; }

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
    if [ -n "$missing" ] && ! python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" $missing; then
      echo "== gpu_check: FAILED: the wheels in .whl/ did not install"; exit 1
    fi
  fi
  mkdir -p "$site/bin"
  printf '#!/bin/sh\nexec python3 -m ricepo "$@"\n' >"$site/bin/ricepo"
  [ -x "$site/bin/snakemake" ] || printf '#!/bin/sh\nexec python3 -m snakemake "$@"\n' >"$site/bin/snakemake"
  chmod +x "$site/bin/ricepo" "$site/bin/snakemake"
  export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
  python3 -c "import ricepo, snakemake, pytest" || { echo "== gpu_check: FAILED: the project does not import"; exit 1; }
fi

echo "== gpu_check $(git rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ)"
paper_args=""
if [ "${RICEPO_GPU_CHECK_DRILL:-0}" = 1 ]; then
  echo "drill: the CUDA gate is skipped; on a machine without a GPU every part must fail"
  gpus=1; paper_args="--scale tiny"
elif ! python3 -c "import torch, transformers; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, \
'| devices', torch.cuda.device_count(), torch.cuda.get_device_name(0))"; then
  echo "== gpu_check: FAILED: no usable CUDA device"; exit 1
else
  python3 -c "import torch; from ricepo.precision import resolve_precision; \
print(resolve_precision('auto', torch.device('cuda')).describe())"
  gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
fi

# Each part has its share of the 10 minutes; one over it is stopped and fails, so that a slow
# part cannot starve the ones after it (seen on an H200: the paper step, then 2 full steps,
# ran out the lease). RICEPO_GPU_CHECK_LIMIT_<PART>=SECONDS overrides a share.
limit_tests=${RICEPO_GPU_CHECK_LIMIT_TESTS:-100}
limit_smoke=${RICEPO_GPU_CHECK_LIMIT_SMOKE:-140}
limit_paper=${RICEPO_GPU_CHECK_LIMIT_PAPER:-200}
limit_sampler=${RICEPO_GPU_CHECK_LIMIT_SAMPLER:-140}

# part_end NAME RC START: the part's verdict line (rc 124: stopped at its limit)
part_end() {
  local limit_var="limit_$1"
  if [ "$2" -eq 124 ]; then failed="$failed $1"; part_time "$1" "FAILED (stopped at its limit, ${!limit_var} s)" "$3"
  elif [ "$2" -ne 0 ]; then failed="$failed $1"; part_time "$1" FAILED "$3"
  else part_time "$1" ok "$3"; fi
}

if [[ " $sections " == *" tests "* ]]; then
  echo "== tests marked gpu"
  start=$(date +%s)
  out=$(mktemp)
  timeout -k 10 "$limit_tests" python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -rs 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  # a skipped test or none at all is a failure: the check exists to run them on CUDA
  if [ "$rc" -eq 0 ] && { grep -q "skipped" "$out" || ! grep -qE "[0-9]+ passed" "$out"; }; then rc=1; fi
  part_end tests "$rc" "$start"
fi

if [[ " $sections " == *" smoke "* ]]; then
  echo "== CUDA smoke subset"
  work=$(mktemp -d)
  start=$(date +%s)
  if timeout -k 10 "$limit_smoke" snakemake -s "$root/Snakefile" -d "$work" reproduce_all --cores all --resources gpu="$gpus" \
       --configfile "$root/config/smoke.yaml" "$root/config/gpu_smoke.yaml" --quiet rules >"$work/snakemake.log" 2>&1; then
    echo "smoke DAG: complete ($work/reports/gpu_smoke/report.html)"
    python3 scripts/train_devices.py "$work/results/gpu_smoke"
    rc=$?
  else
    rc=$?
    echo "smoke DAG: FAILED; the end of $work/snakemake.log:"; tail -30 "$work/snakemake.log"
  fi
  part_end smoke "$rc" "$start"
fi

if [[ " $sections " == *" paper "* ]]; then
  echo "== paper-shaped step"
  start=$(date +%s)
  # eager decoding: compiling each shape would take the part's time; the sampler part times both
  timeout -k 10 "$limit_paper" python3 scripts/paper_step.py --check --queries 4 --compile off $paper_args 2>&1 \
    | grep -v -E "Loading weights|Writing model|it/s\]"
  part_end paper "${PIPESTATUS[0]}" "$start"
fi

if [[ " $sections " == *" sampler "* ]]; then
  echo "== sampler against generate()"
  start=$(date +%s)
  timeout -k 10 "$limit_sampler" python3 scripts/bench_sampler.py --require-cuda --architecture r1_distill_qwen_1p5b \
    --rows 8 64 --repeats 1 --calibration "${RICEPO_CALIBRATION_DIR:-config/calibration}" 2>&1 | grep -v -E "Loading weights|Writing model|it/s\]|[Ww]arning|forward_call"
  part_end sampler "${PIPESTATUS[0]}" "$start"
fi

echo "== gpu_check: $([ -z "$failed" ] && echo ok || echo "FAILED:$failed") in $(( $(date +%s) - check_start )) s"
[ -z "$failed" ]
