"""One GPU per job: `ricepo gpu-run --gpus N -- COMMAND ...` runs COMMAND seeing only the N GPUs
it holds.

Snakemake's `--resources gpu=K` bounds how many GPUs the running jobs ask for together, but it
does not say which ones a job gets: every job would land on GPU 0. Each GPU of the machine has
a lock file; the wrapper takes N free ones with `flock`, sets CUDA_VISIBLE_DEVICES to them and
execs COMMAND with the locks still open, so they are held exactly as long as the job lives (a
killed job releases them with its process). On a machine with no GPU the command runs as is.

The GPUs this machine offers: RICEPO_GPU_IDS (a comma list; the tests use it to fake a count),
else CUDA_VISIBLE_DEVICES as the scheduler set it (a Slurm allocation), else every device torch
sees (none without an NVIDIA driver). Locks live in RICEPO_GPU_LOCK_DIR (default: a folder per
user in the temp dir).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

from .errors import RicepoError


def offered_gpus() -> list[str]:
    for var in ("RICEPO_GPU_IDS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            return [g.strip() for g in value.split(",") if g.strip() and g.strip() != "-1"]
    if not Path("/dev/nvidiactl").exists():  # no NVIDIA driver: skip importing torch (seconds per job)
        return []
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"ricepo-gpu-locks-{os.getuid()}"
    path = Path(os.environ.get("RICEPO_GPU_LOCK_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def acquire(n: int, gpus: list[str], locks: Path, poll_s: float = 0.5) -> tuple[list[str], list[int]]:
    """Block until `n` of `gpus` are free; returns their ids and the open, locked descriptors."""
    if n > len(gpus):
        raise RicepoError(
            f"gpu-run: the job asks for {n} GPU(s), this machine offers {len(gpus)} "
            f"({','.join(gpus) or 'none'}); lower train.processes or run on a bigger node"
        )
    while True:
        held: list[tuple[str, int]] = []
        for gpu in gpus:
            fd = os.open(locks / f"gpu{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((gpu, fd))
            if len(held) == n:
                return [g for g, _ in held], [fd for _, fd in held]
        for _, fd in held:  # not enough free at once: let the others finish, try again
            os.close(fd)
        time.sleep(poll_s)


def exec_on_gpus(n: int, command: list[str]) -> None:
    """Replace this process by `command`, holding `n` GPU locks (none on a machine without GPUs)."""
    if not command:
        raise RicepoError("gpu-run: give the command after --")
    env = dict(os.environ)
    gpus = offered_gpus()
    if n > 0 and gpus:
        ids, fds = acquire(n, gpus, lock_dir())
        for fd in fds:  # the exec'd job keeps the locks until it exits
            os.set_inheritable(fd, True)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        print(f"gpu-run: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", flush=True)
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        raise RicepoError(f"gpu-run: command not found: {command[0]}") from None
