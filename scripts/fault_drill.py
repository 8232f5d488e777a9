"""Fault drill: kill the workflow at seeded random moments and check that reruns end with the
numbers of an undisturbed run.

    python scripts/fault_drill.py [--configfile config/smoke.yaml] [--kills 8] [--seed 0]
        [--target reproduce_all] [--cores 1] [--workdir DIR]

1. Runs TARGET undisturbed in WORKDIR/clean.
2. In WORKDIR/drill, again and again: starts Snakemake, waits until a job of a rule kind still
   to be killed is running, waits a seeded random fraction of that kind's longest job in step 1,
   and SIGKILLs Snakemake's whole process tree. Each kind is killed once, and the kinds with many
   jobs (train, agent_eval) again until `--kills` in all. A kind whose jobs all ended before the
   drill caught one is named; fewer kills than `--kills` fails the drill.
3. Reruns until Snakemake exits 0, as a user would after a crash: `--unlock` releases the locks
   the killed run left, `--rerun-incomplete` redoes the jobs it had started.
4. Compares every metrics.json, log.jsonl and table (csv, md, json) of the two folders, the
   seconds each step or job took left out: identical, or exit 1 naming the files that differ.
Exit 0 when every file is identical.

One core by default: with more, a short job (a split, an index) can start and end on another core
while the drill waits to kill a longer one, and its kind is never caught.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (rule kind, a string of its job's command line), in the DAG's order.
KINDS = [
    ("prepare_data", "ricepo data prepare"),
    ("build_tiny_backbone", "ricepo model build"),
    ("split", "ricepo data split"),  # and its BM25 index
    ("bm25_baseline", "ricepo retrieve"),
    ("train", " train --spec-file"),
    ("agent_eval", " agent-eval "),
    ("table", "ricepo report table_"),
    ("figure", "ricepo report figure_"),
    ("report", "ricepo report html"),
]
ORDER = [kind for kind, _ in KINDS]


def snakemake_cmd(args, workdir: Path, *extra: str) -> list[str]:
    # --configfile takes several files: it comes last, so a target is not read as one
    return [
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        str(args.cores),
        "--rerun-incomplete",
        *extra,
        "--configfile",
        str(Path(args.configfile).resolve()),
    ]


def processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every process, from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out[int(d.name)] = (ppid, cmd)
    return out


def tree(root: int) -> dict[int, str]:
    """{pid: command line} of `root` and all its descendants."""
    procs, found, frontier = processes(), {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs:
            found[pid] = procs[pid][1]
            frontier += [p for p, (pp, _) in procs.items() if pp == pid]
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process group and every descendant (jobs may start their own groups)."""
    pids = tree(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def run_clean(args, workdir: Path) -> dict[str, float]:
    """Undisturbed run; returns each kind's longest seen running time (seconds), by polling."""
    proc = subprocess.Popen(
        snakemake_cmd(args, workdir, args.target), stdout=subprocess.DEVNULL, stderr=open(workdir.parent / "clean.log", "w"), start_new_session=True
    )
    seen: dict[int, tuple[str, float]] = {}
    durations: dict[str, float] = {}
    while proc.poll() is None:
        now = time.time()
        running = tree(proc.pid)
        for pid, cmd in running.items():
            for kind, needle in KINDS:
                if needle in cmd and pid not in seen:
                    seen[pid] = (kind, now)
        for pid, (kind, start) in list(seen.items()):
            if pid not in running:
                durations[kind] = max(durations.get(kind, 0.0), now - start)
                del seen[pid]
        time.sleep(0.05)
    if proc.returncode != 0:
        sys.exit(f"fault drill: the undisturbed run failed (rc {proc.returncode}); see {workdir.parent / 'clean.log'}")
    return durations


def one_kill(args, workdir: Path, remaining: list[str], fraction: float, typical: dict[str, float], log):
    """Start the workflow; once a job of a kind in `remaining` runs, wait `fraction` of that kind's
    longest job and SIGKILL everything. Returns (kind, what was running) or (None, why not)."""
    subprocess.run(snakemake_cmd(args, workdir, "--unlock"), capture_output=True)
    proc = subprocess.Popen(snakemake_cmd(args, workdir, args.target), stdout=log, stderr=log, start_new_session=True)
    needles = {kind: needle for kind, needle in KINDS if kind in remaining}
    while proc.poll() is None:
        hit = [(kind, cmd) for cmd in tree(proc.pid).values() for kind, needle in needles.items() if needle in cmd]
        if hit:  # the kind earliest in the DAG first: later ones get their chance in the reruns
            kind, cmd = min(hit, key=lambda h: ORDER.index(h[0]))
            time.sleep(fraction * typical[kind])
            if proc.poll() is not None:
                break
            alive = any(needles[kind] in c for c in tree(proc.pid).values())
            kill_tree(proc)
            where = "during" if alive else "just after"
            return kind, f"{where} {kind} ({fraction:.2f} of its {typical[kind]:.1f} s): {cmd.strip()[:110]}"
        time.sleep(0.01)
    return None, f"the run finished (rc {proc.returncode}) before a job of {', '.join(sorted(needles))} started"


def normalised(path: Path):
    from ricepo.train.distributed import NOT_REPRODUCED

    def strip(x):
        if isinstance(x, dict):
            # durations (the logs name them `*_s`) and the step log's memory differ between any two runs
            return {k: strip(v) for k, v in x.items() if not k.endswith("_s") and k not in NOT_REPRODUCED}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    if path.suffix == ".json":
        return strip(json.loads(path.read_text()))
    if path.suffix == ".jsonl":
        return [strip(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return path.read_text()


def compared_files(workdir: Path) -> list[Path]:
    pats = ["results/**/metrics.json", "results/**/log.jsonl", "results/**/tables/*.csv", "results/**/tables/*.md", "results/**/tables/*.json"]
    return sorted({p.relative_to(workdir) for pat in pats for p in workdir.glob(pat)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default=str(ROOT / "config" / "smoke.yaml"))
    ap.add_argument("--kills", type=int, default=8, help="at least this many (and one per rule kind)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="reproduce_all")
    ap.add_argument("--cores", type=int, default=1, help="more cores: short jobs may slip by uncaught")
    ap.add_argument("--workdir", help="default: a new temporary folder")
    args = ap.parse_args()

    import tempfile

    base = Path(args.workdir or tempfile.mkdtemp(prefix="fault-drill-")).resolve()
    clean, drill = base / "clean", base / "drill"
    clean.mkdir(parents=True, exist_ok=True)
    drill.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    typical = run_clean(args, clean)
    kinds = [(k, n) for k, n in KINDS if k in typical]
    print(
        f"undisturbed run: {time.time() - t0:.0f} s; rule kinds seen (longest job, s): " + ", ".join(f"{k} {typical[k]:.1f}" for k, _ in kinds),
        flush=True,
    )

    # Every kind once; the kills beyond that land in the kinds with many jobs (train, agent_eval).
    remaining = [k for k, _ in kinds]
    heavy = [k for k in remaining if k in ("train", "agent_eval")] or remaining
    remaining += [heavy[i % len(heavy)] for i in range(args.kills - len(remaining))]
    rng = random.Random(args.seed)
    t1 = time.time()
    with open(base / "drill.log", "w") as log:
        landed = 0
        while remaining:
            kind, outcome = one_kill(args, drill, remaining, rng.random(), typical, log)
            if kind is None:
                print(f"no more kills: {outcome}; not killed: {', '.join(remaining)}", flush=True)
                break
            remaining.remove(kind)
            landed += 1
            print(f"kill {landed}: {outcome}", flush=True)
        reruns = 0
        while True:
            reruns += 1
            subprocess.run(snakemake_cmd(args, drill, "--unlock"), capture_output=True)
            rc = subprocess.run(snakemake_cmd(args, drill, args.target), stdout=log, stderr=log).returncode
            if rc == 0:
                break
            if reruns == 3:
                print(f"fault drill: FAIL: the workflow does not finish after the kills (rc {rc}); see {base / 'drill.log'}")
                return 1
    print(f"kills landed: {landed}; reruns to finish: {reruns}; drill {time.time() - t1:.0f} s", flush=True)

    files = compared_files(clean)
    missing = [f for f in files if not (drill / f).exists()]
    extra = [f for f in compared_files(drill) if f not in files]
    differ = [f for f in files if f not in missing and normalised(clean / f) != normalised(drill / f)]
    print(
        f"files compared: {len(files)} (metrics.json {sum(f.name == 'metrics.json' for f in files)}, "
        f"log.jsonl {sum(f.name == 'log.jsonl' for f in files)}, "
        f"tables {sum(f.parent.name == 'tables' for f in files)})"
    )
    for label, bad in (("differs", differ), ("missing after the drill", missing), ("only after the drill", extra)):
        for f in bad:
            print(f"fault drill: FAIL: {f} {label}")
    if landed < args.kills:
        print(f"fault drill: FAIL: only {landed} of {args.kills} kills landed in a running job")
    if differ or missing or extra or not files or landed < args.kills:
        return 1
    print(f"fault drill: OK: every file identical ({base})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
