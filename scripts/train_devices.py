"""Did every training job of a results folder run on CUDA? The assertion scripts/gpu_check.sh makes
after its smoke DAG: `python3 scripts/train_devices.py RESULTS_DIR` prints "training jobs that ran
on CUDA: K of N" and exits 1 unless N > 0 and K == N. A job's log says where it ran in the
trainer's first line (`precision ... on cuda|cpu (...)`, ricepo/precision.py); the logs are found
by the workflow's own path pattern (ricepo.layout.TRAIN_DIR), so a change of layout cannot leave
the check counting nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ricepo import layout

ON_CUDA = re.compile(r"^precision \S+ on cuda\b", re.MULTILINE)


def train_logs(results: Path) -> list[Path]:
    return sorted(results.glob(re.sub(r"\{[^}]+\}", "*", f"logs/{layout.TRAIN_DIR}.log")))


def main(results: str) -> int:
    logs = train_logs(Path(results))
    cpu = [p for p in logs if not ON_CUDA.search(p.read_text(errors="replace"))]
    print(
        f"training jobs that ran on CUDA: {len(logs) - len(cpu)} of {len(logs)}"
        + (f" (not on CUDA: {', '.join(str(p) for p in cpu[:3])}{' ...' if len(cpu) > 3 else ''})" if cpu else "")
        + ("" if logs else f" (no training log under {results})")
    )
    return 0 if logs and not cpu else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
