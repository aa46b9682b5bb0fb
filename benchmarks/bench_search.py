"""Speed of the time-critical paths, each as a ratio to a baseline measured in this run.

- cost model: generic45nm.cost per plan, against one FP forward pass (batch 1) of
  the same network: the cost model must be far cheaper than running the model;
- PTQ evaluation: fake-quant + calibration + validation accuracy of one plan,
  against a plain FP validation pass;
- per-trial framework overhead: a bitnas trial with the FP model cached (so no
  training), against a bare Optuna ask/suggest/tell loop on the same SQLite storage;
- the default strategy's framework overhead as a share of evaluation time, with the
  GP's proposals prefetched (computed while the previous trial evaluates, as shipped)
  and computed in turn, in alternating runs on the ``bitnas bench --quick`` model.

Run: `make bench` (or python benchmarks/bench_search.py [--quick] [--prefetch-only]).
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
from bitnas.search import bench
from bitnas.search.context import SearchContext
from bitnas.search.objective import SearchObjective
from bitnas.search.strategies import GP_TRIALS, HandoffSampler, gp, sensitivity_guided, strategy, tpe
from bitnas.spec import DEFAULT_STRATEGY, StudySpec

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


@strategy("sensitivity-guided-in-turn", warm_start=sensitivity_guided.warm_start)
def in_turn(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The default strategy with each GP proposal computed when its trial asks (no prefetch)."""
    return HandoffSampler(gp(seed=seed, n_trials=n_trials), tpe(seed=seed, n_trials=n_trials), GP_TRIALS)


def prefetch_overhead(trials: int, repeats: int) -> None:
    """Framework seconds per trial over evaluation seconds, prefetched against in turn.

    Runs alternate, so that other load on the machine hits both alike; evaluation is
    measured alone after each run (see ``bench.trial_overhead``), so a proposal that
    slows the evaluation beside it counts as framework.
    """
    cache = Path("runs") / "bench_quick" / "fp_cache"  # shared with `bitnas bench --quick`
    ctx = SearchContext(bench.bench_spec(bench.QUICK), cache_dir=cache)
    ratios: dict[str, list[float]] = {DEFAULT_STRATEGY: [], "sensitivity-guided-in-turn": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, runs in ratios.items():
                t = bench.trial_overhead(ctx, trials, Path(tmp), strategy=name)
                runs.append(t["framework_s"] / t["eval_s"])
                print(f"{name:28s}: {trials} trials, {t['total_s']:.3f} s/trial = evaluation "
                      f"{t['eval_s']:.3f} s (alone; {t['eval_in_trial_s']:.3f} s in the trials) + cost "
                      f"{t['cost_s'] * 1e3:.2f} ms + framework {t['framework_s'] * 1e3:.1f} ms; "
                      f"framework_ratio={runs[-1]:.3f}", flush=True)
    print("framework_ratio (framework / evaluation), median of "
          + ", ".join(f"{name} {statistics.median(r):.3f}" for name, r in ratios.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--prefetch-only", action="store_true",
                    help="only the default strategy's overhead, prefetched against in turn")
    args = ap.parse_args()
    if args.prefetch_only:
        prefetch_overhead(12 if args.quick else 24, 2 if args.quick else 3)
        return
    n = 20 if args.quick else 200
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
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"

        def bare(t: optuna.Trial) -> list[float]:
            ctx.space.suggest(t)
            return [0.0, 0.0]

        base = optuna.create_study(study_name="bare", storage=url, directions=spec.directions,
                                   sampler=optuna.samplers.RandomSampler(seed=0))
        start = time.perf_counter()
        base.optimize(bare, n_trials=trials)
        t_bare = (time.perf_counter() - start) / trials

        full = optuna.create_study(study_name="bitnas", storage=url, directions=spec.directions,
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
    prefetch_overhead(12 if args.quick else 24, 2 if args.quick else 3)


if __name__ == "__main__":
    main()
