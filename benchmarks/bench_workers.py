"""Trials per minute with one worker and with two on one journal file, as a ratio.

The study is the demo's (bitnas/experiments/quickstart.toml: Spikformer on event
digits) at 4 time steps only (one FP model), run with the random strategy and with QAT
where PTQ lost more than 2 points (qat = "when_broken": the demo's "promote" would make
a trial's cost depend on what the other workers have finished, which differs between
runs). The FP model is trained once first into a shared --out, so every run below starts from the cache and
measures trials only. Each run gets a fresh journal file and the same total budget:

- 1 worker, torch's default threads (one per core), and 1 worker with --threads 1;
- 2 workers, default threads each (every worker uses every core: they compete);
- 2 workers, --threads 1 each (one core each, the set-up the README advises).

Throughput counts finished trials over the span from the first trial's start to the
last one's end (process start-up excluded; wall times with it are printed too). The
ratios are against the 1-worker run measured in the same invocation; the scaling line
compares 2 workers with 1 worker at one thread per worker.

Run: `make bench-workers` (or python benchmarks/bench_workers.py [--trials N]).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

import bitnas.experiments
from bitnas.search.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_workers(spec: Path, out: Path, log: Path, trials: int, n: int, threads: int | None
                ) -> tuple[float, list]:
    """Start ``n`` workers on a fresh journal ``log``; wall seconds and the finished trials."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"journal:///{log}"
    cmd = [sys.executable, "-m", "bitnas", "worker", str(spec), "--storage", url,
           "--out", str(out), "--trials", str(trials), "--quiet", "--strategy", "random"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a worker failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=None, storage=open_storage(url, must_exist=True))
    return wall, study.get_trials(states=FINISHED)


def per_minute(trials: list) -> float:
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return len(trials) / ((end - start).total_seconds() / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16, help="the study's budget in each run (default 16)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    demo = Path(bitnas.experiments.__file__).with_name("quickstart.toml").read_text()
    if 'qat = "promote"' not in demo:
        sys.exit("quickstart.toml no longer says qat = \"promote\"; update this benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = tmp / "quickstart.toml"
        demo = re.sub(r"(?m)^time_steps = .*$", "time_steps = [4]", demo)  # one FP model
        spec.write_text(demo.replace('qat = "promote"', 'qat = "when_broken"\nqat_threshold = 0.02'))
        out = tmp / "run"
        print("training the FP model once (cached for every run below) ...", flush=True)
        run_workers(spec, out, tmp / "warm.log", 1, 1, None)
        runs = [("1 worker", 1, None), ("1 worker, 1 thread", 1, 1), ("2 workers", 2, None),
                ("2 workers, 1 thread each", 2, 1)]
        rates = {}
        print(f"{args.trials} trials per run, journal storage, {os.cpu_count()} cores")
        for i, (label, n, threads) in enumerate(runs):
            wall, trials = run_workers(spec, out, tmp / f"run{i}.log", args.trials, n, threads)
            rates[label] = rate = per_minute(trials)
            print(f"{label:<26} {len(trials):3d} trials  {rate:6.1f} trials/min  "
                  f"(wall {wall:5.1f}s)  ratio {rate / rates['1 worker']:.2f}", flush=True)
        scaling = rates["2 workers, 1 thread each"] / rates["1 worker, 1 thread"]
        print(f"scaling at one thread per worker: 2 workers / 1 worker = {scaling:.2f}")


if __name__ == "__main__":
    main()
