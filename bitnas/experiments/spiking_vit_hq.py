"""``bitnas reproduce spiking_vit_hq``: the spiking-ViT heterogeneous quantization experiment.

The paper (Xu, Song, Li, arXiv 2412.05505) lets every layer of a Spikformer choose
its weight bits and its quantizer scheme (uniform or power-of-two), and reports the
accuracy, compression and energy reduction of the result against the floating-point
model. Here the same question is put to a small Spikformer on ``event_digits``:

1. the uniform-precision baselines (every group at the same bits, each scheme) are
   queued into the study first, so that they are measured the same way;
2. TPE searches per-group bits and schemes with objectives accuracy, ``loihi``
   energy and weight memory;
3. the report picks the front member with the largest compression whose validation
   accuracy is within 1 point of FP, the best uniform model that needs no more
   memory than it, and the smallest uniform model within 1 point; all three are
   rebuilt and costed again under ``loihi`` and under ``snn45nm`` (the Spikformer
   energy convention, which the paper's model resembles);
4. ``report.md`` and ``report.json`` set the figures beside the paper's.

What differs from the paper, and why the trend does or does not carry over:
``bitnas/experiments/spiking_vit_hq.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from bitnas.errors import BitnasError
from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec
from bitnas.plan import FLOAT_BITS, Candidate, QuantPlan
from bitnas.registry import EXPERIMENTS, HARDWARE
from bitnas.search.context import SearchContext
from bitnas.search.pareto import atomic_write, feasible_trials, front_trials
from bitnas.search.strategies import uniform_params
from bitnas.search.study import run_search
from bitnas.spec import StudySpec

NAME = "spiking_vit_hq"
SPEC_FILE = Path(__file__).with_name(f"{NAME}.toml")
#: the largest accuracy loss against FP that still counts as "no loss" (the paper: under 1 point)
MAX_DROP = 0.01

#: the paper's headline figures (arXiv 2412.05505, abstract and results), per dataset
PAPER = {
    "N-Caltech101": {"accuracy": 85.3, "energy_reduction": 5.69},
    "DVS128 Gesture": {"accuracy": 97.57, "energy_reduction": 8.72},
    "CIFAR10-DVS": {"accuracy": 80.4, "energy_reduction": 10.2},
}
PAPER_COMPRESSION = (8.71, 10.19)
PAPER_AVG_BITS = (3.1, 3.7)

#: ``--quick``: the same pipeline, small enough for the test suite (about a minute)
QUICK = {
    "study": {"name": f"{NAME}_quick", "trials": 8},
    "space": {"time_steps": [2], "embed_dims": [16], "w_bits": [2, 4, 8]},
    "task": {"bins": 4, "epochs": 4, "qat_epochs": 1},
}


def load(quick: bool = False, trials: int | None = None) -> StudySpec:
    """The experiment's spec (its ``--quick`` variant when asked)."""
    return load_experiment_spec(SPEC_FILE, QUICK, quick=quick, trials=trials)


def baselines(spec: StudySpec, ctx: SearchContext) -> list[dict[str, Any]]:
    """Optuna params of the uniform-precision candidates: every w_bits, every scheme."""
    space = ctx.space
    return [uniform_params(space, b, q)
            for q in space.precision.quantizers for b in sorted(space.precision.w_bits, reverse=True)]


def _is_uniform(plan: dict[str, dict[str, Any]]) -> bool:
    return len({(lq["w_bits"], lq["quantizer"]) for lq in plan.values()}) == 1


def _avg_bits(plan: QuantPlan, ctx: SearchContext, cand: Candidate) -> float:
    """Weight bits averaged over the weights (biases excluded), as the paper counts them."""
    _, workload = ctx.structure(cand)
    n = sum(w.params for w in workload)
    return sum(w.params * plan[w.group or w.name].w_bits for w in workload) / n


def _row(ctx: SearchContext, trial: FrozenTrial | None, cand: Candidate, fp: dict[str, Any],
         snn45nm) -> dict[str, Any]:
    """Rebuild one candidate, measure it again and cost it under both energy models."""
    stored = trial.user_attrs.get("metrics", {}) if trial is not None else {}
    qmodel, metrics, _, _ = ctx.prepared(cand, qat=bool(stored["qat"]) if "qat" in stored else None)
    loihi = ctx.measured_cost(cand, qmodel)
    snn = ctx.measured_cost(cand, qmodel, hardware=snn45nm)
    return {
        "trial": None if trial is None else trial.number,
        "plan": cand.plan.to_dict(),
        "accuracy": metrics["accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        "drop_points": 100 * (fp["accuracy"] - metrics["accuracy"]),
        "test_drop_points": 100 * (fp["test_accuracy"] - metrics["test_accuracy"]),
        "qat": bool(metrics.get("qat")),
        "rebuilt_exactly": stored.get("accuracy") == metrics["accuracy"] if stored else None,
        "weight_bytes": loihi.weight_bytes,
        "compression": fp["weight_bytes"] / loihi.weight_bytes,
        "avg_w_bits": _avg_bits(cand.plan, ctx, cand),
        "loihi_energy_j": loihi.energy_j,
        "loihi_energy_reduction": fp["loihi_energy_j"] / loihi.energy_j,
        "loihi_cores": sum(p["cores"] for p in loihi.per_layer.values()),
        "snn45nm_energy_j": snn.energy_j,
        "snn45nm_energy_reduction": fp["snn45nm_energy_j"] / snn.energy_j,
    }


def analyse(study, spec: StudySpec, ctx: SearchContext) -> dict[str, Any]:
    """The report's figures, measured from the finished study."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if "candidate" in t.user_attrs]
    if not trials:
        raise BitnasError(f"study {spec.name!r} has no completed trial to report on; "
                          "run more trials (--trials)")
    arches = {Candidate.from_dict(t.user_attrs["candidate"]).arch_key() for t in trials}
    if len(arches) > 1:  # the FP reference below is one architecture's
        raise BitnasError(f"study {spec.name!r} holds {len(arches)} architectures; {NAME} compares "
                          "plans of one fixed architecture, so give each arch knob one value")
    cand0 = Candidate.from_dict(trials[0].user_attrs["candidate"])
    groups, _ = ctx.structure(cand0)
    fp_plan = QuantPlan.uniform(list(groups), FLOAT_BITS, FLOAT_BITS)
    fp_model, _ = ctx.fp_model(cand0)
    snn45nm = HARDWARE.create("snn45nm")
    fp_loihi = ctx.measured_cost(cand0, fp_model, hardware=ctx.hardware, plan=fp_plan)
    fp_snn = ctx.measured_cost(cand0, fp_model, hardware=snn45nm, plan=fp_plan)
    fp = {**ctx.fp_metrics(cand0), "weight_bytes": fp_loihi.weight_bytes,
          "loihi_energy_j": fp_loihi.energy_j, "snn45nm_energy_j": fp_snn.energy_j,
          "loihi_cores": sum(p["cores"] for p in fp_loihi.per_layer.values())}

    def stored(t: FrozenTrial) -> tuple[float, int]:
        return t.user_attrs["metrics"]["accuracy"], t.user_attrs["cost"]["weight_bytes"]

    front = front_trials(study)
    within = [t for t in front if fp["accuracy"] - stored(t)[0] <= MAX_DROP + 1e-12]
    chosen = min(within, key=lambda t: (stored(t)[1], -stored(t)[0])) if within else None
    # feasible, each plan once (TPE may propose a baseline again), smallest first
    uniform = sorted((t for t in feasible_trials(study) if _is_uniform(t.user_attrs["candidate"]["plan"])),
                     key=lambda t: stored(t)[1])
    budget = stored(chosen)[1] if chosen else None
    fits = [t for t in uniform if budget is not None and stored(t)[1] <= budget]
    best_uniform = max(fits, key=lambda t: (stored(t)[0], -stored(t)[1])) if fits else None
    ok = [t for t in uniform if fp["accuracy"] - stored(t)[0] <= MAX_DROP + 1e-12]
    smallest_ok = min(ok, key=lambda t: (stored(t)[1], -stored(t)[0])) if ok else None

    def row(t: FrozenTrial | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return _row(ctx, t, Candidate.from_dict(t.user_attrs["candidate"]), fp, snn45nm)

    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {
        "experiment": NAME,
        "study": spec.name,
        "trials": len(trials),
        # first trial's start (which trains the FP model) to the last trial's end, over all runs
        "trials_span_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "qat_trials": sum(1 for t in trials if t.user_attrs["metrics"].get("qat")),
        "front_size": len(front),
        "fp": fp,
        "chosen": row(chosen),
        "best_uniform_same_memory": row(best_uniform),
        "smallest_uniform_within_1pt": row(smallest_ok),
        "uniform": [{"trial": t.number, "w_bits": next(iter(t.user_attrs["candidate"]["plan"].values()))
                     ["w_bits"], "quantizer": next(iter(t.user_attrs["candidate"]["plan"].values()))
                     ["quantizer"], "accuracy": stored(t)[0], "weight_bytes": stored(t)[1],
                     "qat": bool(t.user_attrs["metrics"].get("qat"))} for t in uniform],
        "max_drop_points": 100 * MAX_DROP,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _uniform(row: dict[str, Any] | None, missing: str) -> str:
    if row is None:
        return f"{missing} |"
    lq = next(iter(row["plan"].values()))
    return (f"w{lq['w_bits']} {lq['quantizer']}: {_pct(row['accuracy'])} (test "
            f"{_pct(row['test_accuracy'])}; drop {row['drop_points']:.2f} / "
            f"{row['test_drop_points']:.2f} points), {_x(row['compression'])}, snn45nm "
            f"{_x(row['snn45nm_energy_reduction'])} |")


def format_report(r: dict[str, Any]) -> str:
    """The side-by-side table, as Markdown."""
    fp, c = r["fp"], r["chosen"]
    u, s = r["best_uniform_same_memory"], r["smallest_uniform_within_1pt"]
    paper_acc = " / ".join(f"{v['accuracy']} %" for v in PAPER.values())
    paper_e = " / ".join(f"{v['energy_reduction']}x" for v in PAPER.values())

    def get(row: dict[str, Any] | None, k: str) -> Any:
        return None if row is None else row[k]

    lines = [
        f"# {NAME}: heterogeneous quantization search, Spikformer on event_digits",
        "",
        f"{r['trials']} completed trials ({len(r['uniform'])} of them uniform-precision baselines), "
        f"{r['front_size']} on the accuracy / loihi energy / weight-memory front; "
        f"{r['qat_trials']} were fine-tuned by QAT."
        + ("" if r["trials_span_s"] is None else f" Trials took {r['trials_span_s'] / 60:.1f} min "
           "from the first one's start (FP training included)."),
        "Accuracies are on the validation split (the objective); test accuracy is beside them.",
        "",
        "| | paper (N-Caltech101 / DVS128 Gesture / CIFAR10-DVS) | bitnas (event_digits) |",
        "|---|---|---|",
        f"| FP accuracy | not in the abstract | {_pct(fp['accuracy'])} "
        f"(test {_pct(fp['test_accuracy'])}) |",
        f"| chosen member: accuracy | {paper_acc} | "
        + ("none within 1 point |" if c is None else
           f"{_pct(c['accuracy'])} (test {_pct(c['test_accuracy'])}), trial {c['trial']} |"),
        "| accuracy drop vs FP (validation / test) | under 1 point | "
        + ("- |" if c is None else f"{c['drop_points']:.2f} / {c['test_drop_points']:.2f} points |"),
        f"| weight compression vs FP32 | {PAPER_COMPRESSION[0]}-{PAPER_COMPRESSION[1]}x | "
        f"{_x(get(c, 'compression'))} |",
        f"| average weight bits | {PAPER_AVG_BITS[0]}-{PAPER_AVG_BITS[1]} | "
        + ("- |" if c is None else f"{c['avg_w_bits']:.2f} |"),
        f"| energy reduction vs FP, paper's model / snn45nm | {paper_e} | "
        f"{_x(get(c, 'snn45nm_energy_reduction'))} |",
        f"| energy reduction vs FP, loihi (the objective) | - | {_x(get(c, 'loihi_energy_reduction'))} |",
        "| best uniform model at the same memory or less | - | "
        + _uniform(u, "none fits" if c is not None else "-"),
        "| smallest uniform model within 1 point of FP | - | " + _uniform(s, "none"),
        "",
    ]
    if c is not None:
        lines += ["Chosen plan (w_bits, scheme per group): " + ", ".join(
            f"{g} {lq['w_bits']}{'p' if lq['quantizer'] == 'pot' else 'u'}" for g, lq in c["plan"].items())
            + ("; fine-tuned by QAT" if c["qat"] else "; PTQ only"), ""]
    lines += ["Uniform baselines: " + ", ".join(
        f"w{x['w_bits']} {x['quantizer']} {_pct(x['accuracy'])}{' (QAT)' if x['qat'] else ''}"
        for x in r["uniform"]), ""]
    lines.append("What differs from the paper and why: bitnas/experiments/spiking_vit_hq.md")
    return "\n".join(lines)


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """Run (or resume) the experiment; write report.json and report.md into ``out_dir``."""
    spec = load(quick, trials)
    ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
    queued = baselines(spec, ctx)
    log(f"{NAME}{' (quick)' if quick else ''}: {len(queued)} uniform baselines (queued unless the "
        f"study has them already), {spec.trials} trials in all")
    result = run_search(spec, out_dir, storage_url=storage_url, log=log, enqueue=queued, ctx=ctx)
    log("rebuilding the chosen member and the uniform baselines for the report ...")
    report = analyse(result.study, spec, ctx)
    report["this_run_wall_s"] = result.wall_s
    atomic_write(out_dir / "report.json",
                 lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    text = format_report(report)
    atomic_write(out_dir / "report.md", lambda p: p.write_text(text + "\n"))
    return report


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "Heterogeneous quantization search for spiking ViTs (Xu, Song, Li 2024), on event digits",
    run, format_report))
