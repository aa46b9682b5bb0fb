"""Multi-fidelity: what `task.qat = "promote"` saves against fine-tuning every candidate.

The demo study (bitnas/experiments/quickstart.toml: Spikformer on event digits,
snn45nm energy, 16 KB weight budget) at 4 time steps only, with the TPE strategy (so that the timed window
holds trials only, no ILP warm start), runs once per QAT mode, from the same FP model
(trained once, before any timing):

- always: every feasible candidate is fine-tuned (the expensive fidelity for all);
- when_broken: fine-tuned where PTQ lost more than qat_threshold (the demo's setting);
- promote: fine-tuned only where PTQ, given promote_margin more accuracy, would not be
  dominated by the study's feasible trials so far.

For each: the search's wall time, how many candidates were fine-tuned, and the
hypervolume of the feasible trials under the reference point the study declares (the
same for every mode), each as a ratio to `always` measured in the same run.

Run: `make bench-fidelity` (or python benchmarks/bench_fidelity.py [--seeds 0 1] [--trials N]).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

import optuna
from optuna.trial import TrialState

import bitnas.experiments
from bitnas.search.context import SearchContext
from bitnas.search.hypervolume import feasible_points, hypervolume, study_reference
from bitnas.search.study import run_search
from bitnas.spec import StudySpec

MODES = ("always", "when_broken", "promote")


def spec_for(mode: str, seed: int, trials: int) -> StudySpec:
    raw = tomllib.loads(Path(bitnas.experiments.__file__).with_name("quickstart.toml").read_text())
    raw["task"]["qat"] = mode
    raw["space"]["time_steps"] = [4]  # one architecture, one FP model, trained before the timing
    raw["study"].update(seed=seed, trials=trials, name=f"fidelity-{mode}-{seed}", strategy="tpe")
    return StudySpec.from_dict(raw)


def measure(spec: StudySpec, out: Path, cache: Path) -> dict[str, float]:
    ctx = SearchContext(spec, cache_dir=cache)
    ctx.fp_model(ctx.space.suggest(optuna.trial.FixedTrial(first_params(ctx))))  # cached: untimed
    start = time.perf_counter()
    result = run_search(spec, out, ctx=ctx, log=lambda *_: None, export=False)
    wall = time.perf_counter() - start
    study = result.study
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs]
    reference = study_reference(study, spec.objectives)
    return {
        "wall_s": wall,
        "evaluated": len(evaluated),
        "qat": sum(1 for t in evaluated if t.user_attrs["metrics"].get("qat")),
        "hv": hypervolume(feasible_points(trials), reference, spec.directions),
    }


def first_params(ctx: SearchContext) -> dict:
    """Params of some candidate of the (single-architecture) space, to train its FP model."""
    from bitnas.search.strategies import uniform_params

    return uniform_params(ctx.space, 8, ctx.space.precision.quantizers[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="study seeds (default: 0)")
    ap.add_argument("--trials", type=int, default=32, help="trials per study (default 32, as the demo)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for seed in args.seeds:
            for mode in MODES:
                r = measure(spec_for(mode, seed, args.trials), tmp / f"{mode}-{seed}", tmp / "fp_cache")
                rows[mode].append(r)
                print(f"seed {seed}  {mode:<12} wall {r['wall_s']:6.1f}s  fine-tuned {r['qat']:2d} of "
                      f"{r['evaluated']:2d} evaluated  hypervolume {r['hv']:.4g}", flush=True)
        base = rows["always"]
        print(f"\n{args.trials} trials, seeds {args.seeds}; ratios to `always`, median over seeds:")
        for mode in MODES:
            pairs = list(zip(rows[mode], base, strict=True))
            time_ratio = statistics.median(r["wall_s"] / b["wall_s"] for r, b in pairs)
            hv_ratio = statistics.median(r["hv"] / b["hv"] for r, b in pairs)
            print(f"{mode:<12} time_ratio={time_ratio:.2f}  hv_ratio={hv_ratio:.3f}  "
                  f"fine-tuned {sum(r['qat'] for r in rows[mode])} of "
                  f"{sum(r['evaluated'] for r in rows[mode])}")


if __name__ == "__main__":
    main()
