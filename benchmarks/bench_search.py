"""Speed of the time-critical paths, each as a ratio to a baseline measured in this run.

- cost model: generic45nm.cost per plan, against one FP forward pass (batch 1) of
  the same network: the cost model must be far cheaper than running the model;
- PTQ evaluation: fake-quant + calibration + validation accuracy of one plan,
  against a plain FP validation pass;
- per-trial framework overhead: a bitnas trial with the FP model cached (so no
  training), against a bare Optuna ask/suggest/tell loop on the same storage (a journal file,
  bitnas's default).

Run: `make bench` (or python benchmarks/bench_search.py [--quick]).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from bitnas.evaluators import accuracy
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.search.context import SearchContext
from bitnas.search.objective import SearchObjective
from bitnas.search.storage import open_storage
from bitnas.spec import StudySpec

SPEC = {
    "study": {"name": "bench", "trials": 50, "seed": 0, "sampler": "random"},
    "space": {"name": "cnn", "depth": [2], "widths": [16], "kernel_size": [3],
              "w_bits": [2, 3, 4, 6, 8], "a_bits": [4, 8]},
    "task": {"name": "digits", "epochs": 5},
    "hardware": {"name": "generic45nm"},
    "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
}


def per_call(fn, repeat: int) -> float:
    """Median seconds per call over ``repeat`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    n = 20 if ap.parse_args().quick else 200
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec.from_dict(SPEC)
    ctx = SearchContext(spec, cache_dir=None)
    study = optuna.create_study(directions=spec.directions)
    trial = study.ask()
    cand = ctx.space.suggest(trial)
    groups, workload = ctx.structure(cand)
    model, _ = ctx.fp_model(cand)
    x1 = ctx.space.example_input()

    plans = [QuantPlan({g: LayerQuant(b, 8) for g in groups}) for b in (2, 3, 4, 6, 8)]
    t_cost = per_call(lambda: [ctx.hardware.cost(workload, p) for p in plans], n) / len(plans)
    with torch.no_grad():
        t_fwd = per_call(lambda: model(x1), n)
    print(f"cost model     : {t_cost * 1e6:8.1f} us/plan ({1 / t_cost:,.0f} plans/s); "
          f"FP forward (batch 1) {t_fwd * 1e6:.1f} us; ratio forward/cost = {t_fwd / t_cost:.1f}x")

    t_ptq = per_call(lambda: ctx.evaluate(cand), max(5, n // 20))
    t_fp_eval = per_call(lambda: accuracy(model, ctx.data.val), max(5, n // 20))
    print(f"PTQ evaluation : {t_ptq * 1e3:8.2f} ms/plan; FP val pass {t_fp_eval * 1e3:.2f} ms; "
          f"ratio PTQ/FP = {t_ptq / t_fp_eval:.1f}x")

    trials = max(10, n // 5)
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(f"journal:///{Path(tmp) / 'bench.log'}")

        def bare(t: optuna.Trial) -> list[float]:
            ctx.space.suggest(t)
            return [0.0, 0.0]

        base = optuna.create_study(study_name="bare", storage=storage, directions=spec.directions,
                                   sampler=optuna.samplers.RandomSampler(seed=0))
        start = time.perf_counter()
        base.optimize(bare, n_trials=trials)
        t_bare = (time.perf_counter() - start) / trials

        full = optuna.create_study(study_name="bitnas", storage=storage, directions=spec.directions,
                                   sampler=optuna.samplers.RandomSampler(seed=0))
        objective = SearchObjective(ctx, spec.objectives)
        start = time.perf_counter()
        full.optimize(objective, n_trials=trials)
        t_full = (time.perf_counter() - start) / trials
        evals = [t.user_attrs["timing_s"]["eval_s"] for t in full.trials
                 if "eval_s" in t.user_attrs.get("timing_s", {})]
        t_eval = statistics.mean(evals) if evals else 0.0
    overhead = t_full - t_eval
    print(f"per trial      : {t_full * 1e3:8.2f} ms (of which PTQ eval {t_eval * 1e3:.2f} ms); "
          f"bare Optuna trial {t_bare * 1e3:.2f} ms; bitnas overhead/bare = {overhead / t_bare:.2f}x")


if __name__ == "__main__":
    main()
