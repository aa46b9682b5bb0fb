"""``bitnas bench``: search strategies against the exhaustive front of a small space.

The ground truth: a Spikformer on ``event_digits`` whose free layer groups each take
2, 4 or 8 weight bits (the other groups pinned at 8), PTQ fidelity. Every plan is
evaluated once and the table is kept on disk, so a rerun reuses it. The true front
and its hypervolume come from the table.

PTQ evaluation is deterministic, so the strategies' trials look their results up in
the table (as NAS-Bench does) instead of evaluating again; the output says so. Each
strategy runs at every budget with the same seeds; the figure is the hypervolume
ratio found / true, median and minimum over the seeds.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FixedTrial

from bitnas.registry import STRATEGIES
from bitnas.search.context import SearchContext
from bitnas.search.hypervolume import hypervolume
from bitnas.search.pareto import atomic_write
from bitnas.spec import DEFAULT_STRATEGY, StudySpec

BITS = (2, 4, 8)
FULL = {
    "groups": ("stem", "block0.q", "block0.k", "block0.v", "block0.mlp1", "block0.mlp2"),
    "arch": {"time_steps": [4], "embed_dims": [32]},
    "task": {"bins": 16, "epochs": 30},
    "budgets": (25, 50, 100, 200),
    "seeds": 3,
}
QUICK = {
    "groups": ("stem", "block0.q", "block0.v", "block0.mlp1", "block0.mlp2"),
    "arch": {"time_steps": [2], "embed_dims": [16]},
    "task": {"bins": 4, "epochs": 8},
    "budgets": (25, 50),
    "seeds": 3,
}
STRATEGY_NAMES = ("random", "uniform", "tpe", "nsga2", "gp", "ehvi", "ilp", "sensitivity-guided")
ALL_GROUPS = ("stem0", "stem", "block0.q", "block0.k", "block0.v", "block0.proj", "block0.mlp1",
              "block0.mlp2", "head")

Log = Callable[[str], None]


def bench_spec(cfg: dict[str, Any]) -> StudySpec:
    pinned = {g: [8] for g in ALL_GROUPS if g not in cfg["groups"]}
    return StudySpec.from_dict({
        "study": {"name": "bench", "trials": max(cfg["budgets"]), "seed": 0},
        "space": {"name": "spikformer", **cfg["arch"], "depth": [1], "heads": [2], "mlp_ratio": [2],
                  "w_bits": list(BITS), "quantizers": ["uniform"], "group_w_bits": pinned},
        "task": {"name": "event_digits", "lr": 0.01, **cfg["task"]},
        "hardware": {"name": "snn45nm"},
        "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
    })


def _key(cand, groups: Sequence[str]) -> str:
    return ",".join(str(cand.plan[g].w_bits) for g in groups)


def exhaustive(ctx: SearchContext, groups: Sequence[str], path: Path, log: Log) -> dict[str, Any]:
    """Every plan's (accuracy, energy), evaluated once; resumes from ``path``."""
    from bitnas.search.strategies import uniform_params

    base = uniform_params(ctx.space, 8)
    # the static cost of one plan stands for the cost model's code: a table computed before
    # the model changed is computed again rather than mixed with new costs
    probe = ctx.cost(ctx.space.suggest(FixedTrial(base)))
    identity = {"spec": ctx.spec.identity(), "groups": list(groups),
                "cost_probe": [probe.energy_j, probe.latency_s, probe.weight_bytes, probe.peak_act_bytes]}
    table: dict[str, Any] = {"identity": identity, "plans": {}, "eval_s": [], "cost_s": []}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("identity") == identity:
            table = stored
        else:
            log(f"bench: {path} holds another spec's or cost model's plans; evaluating again")
    todo = [bits for bits in itertools.product(BITS, repeat=len(groups))
            if ",".join(map(str, bits)) not in table["plans"]]
    if todo:
        log(f"bench: evaluating {len(todo)} of {len(BITS) ** len(groups)} plans once (PTQ), "
            f"kept in {path}")
    start = time.perf_counter()
    for i, bits in enumerate(todo, start=1):
        params = {**base, **{f"{g}.w_bits": b for g, b in zip(groups, bits, strict=True)}}
        cand = ctx.space.suggest(FixedTrial(params))
        t0 = time.perf_counter()
        metrics, _, cost = ctx.evaluate(cand)
        t1 = time.perf_counter()
        ctx.cost(cand)  # the static cost model alone, for its timing
        table["cost_s"].append(time.perf_counter() - t1)
        table["eval_s"].append(t1 - t0)
        table["plans"][_key(cand, groups)] = [metrics["accuracy"], cost.energy_j]
        if i % 25 == 0 or i == len(todo):
            atomic_write(path, lambda p: p.write_text(json.dumps(table)))
            rate = i / (time.perf_counter() - start)
            log(f"bench: {len(table['plans'])}/{len(BITS) ** len(groups)} plans "
                f"({rate:.2f} plans/s)")
    return table


def run_strategy(name: str, seed: int, budget: int, ctx: SearchContext, groups: Sequence[str],
                 plans: dict[str, list[float]], warm: Callable[[str, int], list[dict]]
                 ) -> tuple[list[list[float]], float]:
    """The objective values a strategy finds within ``budget`` trials (looked up), and the
    mean seconds per trial spent outside the lookup (sampler and Optuna)."""
    sampler = STRATEGIES.create(name, seed=seed, n_trials=budget)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for params in warm(name, budget)[:budget]:
        study.enqueue_trial(params, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        acc, energy = plans[_key(ctx.space.suggest(trial), groups)]
        return acc, energy

    start = time.perf_counter()
    study.optimize(objective, n_trials=budget)
    per_trial = (time.perf_counter() - start) / budget
    return [list(t.values) for t in study.trials if t.values is not None], per_trial


def trial_overhead(ctx: SearchContext, n: int, out_dir: Path, strategy: str = DEFAULT_STRATEGY
                   ) -> dict[str, float]:
    """Seconds per trial of ``n`` real bitnas trials (the default strategy, FP model
    cached, a fresh study in a run directory's default storage), split into evaluation,
    cost model and framework: everything else between the first trial's start and the last one's end (the
    sampler's proposals, Optuna's storage, and bitnas's own bookkeeping).

    Evaluation is the same candidates evaluated again afterwards, alone (``eval_s``): the
    time the trials recorded (``eval_in_trial_s``) grows when a proposal is computed
    beside it, and that slowdown is the framework's cost, not the evaluation's.
    """
    from bitnas.plan import Candidate
    from bitnas.search.strategies import uniform_params
    from bitnas.search.study import mean_timing, run_search

    # the process's first evaluation loads the FP model and warms torch and SpikingJelly up
    # (seconds, once per process): an evaluation cost, done before the clock starts
    ctx.evaluate(ctx.space.suggest(FixedTrial(uniform_params(ctx.space, 8))))
    run_dir = out_dir / "overhead"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = ctx.spec.replace(trials=n, sampler=strategy, name="bench-overhead")
    result = run_search(spec, run_dir, ctx=ctx, log=lambda m: None, export=False)
    trials = [t for t in result.study.trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    alone = []
    for t in trials:  # duplicates and infeasible candidates were not evaluated: 0 s
        evaluated = t.user_attrs.get("timing_s", {}).get("eval_s", 0.0) > 0
        start = time.perf_counter()
        if evaluated:
            ctx.evaluate(Candidate.from_dict(t.user_attrs["candidate"]))
        alone.append(time.perf_counter() - start if evaluated else 0.0)
    evaluation = statistics.mean(alone) + mean_timing(trials, "fp_train_s")
    cost = mean_timing(trials, "cost_s")
    # the space's suggest(): the sampler's proposals and Optuna's param writes (the
    # workload itself is cached per architecture)
    suggest = mean_timing(trials, "workload_s")
    total = span / len(trials)
    return {"trials": len(trials), "strategy": strategy, "total_s": total, "eval_s": evaluation,
            "eval_in_trial_s": mean_timing(trials, "eval_s") + mean_timing(trials, "fp_train_s"),
            "cost_s": cost, "framework_s": total - evaluation - cost, "suggest_s": suggest}


def run(out_dir: Path, *, quick: bool = False, log: Log = print,
        strategies: Sequence[str] = STRATEGY_NAMES, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole bench; writes bench.json, bench.md and bench.png into ``out_dir``.
    ``cfg`` replaces the FULL / QUICK configuration (the tests run a tiny one)."""
    cfg = cfg or (QUICK if quick else FULL)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = bench_spec(cfg)
    ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
    groups = cfg["groups"]
    table = exhaustive(ctx, groups, out_dir / f"table_{'quick' if quick else 'full'}.json", log)
    plans = table["plans"]
    points = list(plans.values())
    # accuracy 0; 5 % above the dearest plan's energy, so that every plan can count
    reference = [0.0, 1.05 * max(e for _, e in points)]
    directions = ["maximize", "minimize"]
    true_hv = hypervolume(points, reference, directions)
    log("bench: PTQ evaluation is deterministic, so the strategies' trials look their results "
        "up in the exhaustive table (as NAS-Bench does)")

    cache: dict[tuple[str, int], list[dict]] = {}

    def warm(name: str, budget: int) -> list[dict]:
        record = STRATEGIES.get(name)
        if record.warm_start is None:
            return []
        if (name, budget) not in cache:
            cache[(name, budget)] = record.warm_start(ctx, spec, budget, lambda m: None)
        return cache[(name, budget)]

    results: dict[str, dict[int, list[float]]] = {}
    histories: dict[str, list[float]] = {}
    overhead: dict[str, float] = {}
    top = cfg["budgets"][-1]
    for name in strategies:
        results[name] = {}
        times = []
        for budget in cfg["budgets"]:
            ratios, curves = [], []
            for seed in range(cfg["seeds"]):
                found, per_trial = run_strategy(name, seed, budget, ctx, groups, plans, warm)
                ratios.append(hypervolume(found, reference, directions) / true_hv)
                times.append(per_trial)
                if budget == top:  # the hypervolume after each trial, in trial order
                    curves.append([hypervolume(found[:k], reference, directions) / true_hv
                                   for k in range(1, len(found) + 1)])
            results[name][budget] = ratios
        histories[name] = [statistics.median(c[k] for c in curves) for k in range(min(map(len, curves)))]
        overhead[name] = statistics.mean(times)
        log(f"strategy={name} budget={top} hv_ratio={statistics.median(results[name][top]):.4f} "
            f"min={min(results[name][top]):.4f} "
            + " ".join(f"@{b}={statistics.median(r):.3f}" for b, r in results[name].items()))

    per_trial = trial_overhead(ctx, cfg.get("overhead_trials", 12 if quick else 40), out_dir)
    pt = per_trial
    log(f"bench: per real trial {pt['total_s']:.3f} s = evaluation {pt['eval_s']:.3f} s "
        f"+ cost model {pt['cost_s'] * 1e3:.2f} ms + framework {pt['framework_s'] * 1e3:.1f} ms "
        f"(framework_ratio={pt['framework_s'] / pt['eval_s']:.3f} of evaluation; proposals "
        f"{pt['suggest_s'] * 1e3:.1f} ms of it; evaluation took {pt['eval_in_trial_s']:.3f} s "
        "inside the trials)")
    eval_s = statistics.mean(table["eval_s"]) if table["eval_s"] else float("nan")
    cost_s = statistics.mean(table["cost_s"]) if table["cost_s"] else float("nan")
    report = {
        "quick": quick, "groups": list(groups), "bits": list(BITS), "plans": len(plans),
        "true_hypervolume": true_hv, "reference": reference, "budgets": list(cfg["budgets"]),
        "seeds": cfg["seeds"], "hv_ratio": {n: {str(b): r for b, r in v.items()} for n, v in results.items()},
        "eval_s_per_plan": eval_s, "cost_model_s_per_plan": cost_s,
        "cost_model_plans_per_s": 1 / cost_s if cost_s else None,
        "sampler_s_per_trial": overhead,
        "real_trial_s": per_trial,
        "hv_history": histories,  # median ratio after each trial, at the largest budget
    }
    atomic_write(out_dir / "bench.json", lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    text = format_report(report)
    atomic_write(out_dir / "bench.md", lambda p: p.write_text(text + "\n"))
    _plot(report, out_dir / "bench.png")
    return report


def format_report(r: dict[str, Any]) -> str:
    budgets = r["budgets"]
    lines = [
        f"# bitnas bench{' --quick' if r['quick'] else ''}: {r['plans']} plans "
        f"({len(r['groups'])} groups x {r['bits']} bits), true hypervolume {r['true_hypervolume']:.6g}",
        "",
        "Hypervolume ratio found / true, median (min) over "
        f"{r['seeds']} seeds; trials are looked up in the exhaustive PTQ table.",
        "",
        "| strategy | " + " | ".join(f"{b} trials" for b in budgets) + " | sampler s/trial |",
        "|---|" + "---|" * (len(budgets) + 1),
    ]
    for name, by_budget in r["hv_ratio"].items():
        cells = [f"{statistics.median(v):.3f} ({min(v):.3f})" for v in by_budget.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['sampler_s_per_trial'][name]:.4f} |")
    lines += [
        "",
        f"Per evaluated plan: PTQ + spike counting {r['eval_s_per_plan']:.3f} s; cost model "
        f"{r['cost_model_s_per_plan'] * 1e3:.3f} ms ({r['cost_model_plans_per_s']:.0f} plans/s).",
    ]
    if "real_trial_s" in r:
        t = r["real_trial_s"]
        outside = t["total_s"] - t["eval_in_trial_s"] - t["cost_s"]
        lines.append(
            f"A real bitnas trial ({t['trials']} trials, {t['strategy']}, FP model cached, journal file): "
            f"{t['total_s']:.3f} s = evaluation {t['eval_s']:.3f} s (alone; {t['eval_in_trial_s']:.3f} s "
            f"inside the trials) + cost model {t['cost_s'] * 1e3:.2f} ms "
            f"+ framework {t['framework_s'] * 1e3:.1f} ms ({100 * t['framework_s'] / t['eval_s']:.1f} % of "
            f"evaluation). Outside the evaluations the trials spent "
            f"{outside * 1e3:.1f} ms each ({100 * outside / t['eval_in_trial_s']:.1f} % of the evaluation "
            f"inside them), of which proposals and their param writes {t['suggest_s'] * 1e3:.1f} ms. "
            "The two timings of the same evaluations differ by run-to-run noise, which is why "
            "the framework's share can come out below the proposals' alone.")
    return "\n".join(lines)


def _plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_budget in r["hv_ratio"].items():
        budgets = [int(b) for b in by_budget]
        ax.plot(budgets, [statistics.median(v) for v in by_budget.values()], marker="o", label=name)
        curve = r["hv_history"].get(name, [])
        hist.plot(range(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("trial budget")
    ax.set_ylabel("hypervolume found / true (median over seeds)")
    ax.set_xscale("log")
    hist.set_xlabel(f"trials into a {r['budgets'][-1]}-trial run")
    hist.set_ylabel("hypervolume so far / true (median)")
    for a in (ax, hist):
        a.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
