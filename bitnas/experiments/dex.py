"""``bitnas reproduce dex``: DEX, data channel extension for tiny AI accelerators.

The paper (Gong, Kawsar, Min, NeurIPS 2024, arXiv 2412.06566) keeps the high-resolution
image and fills the first layer's idle MAX78000 processors with more of its pixels: each
output pixel's patch gives K = min(patch pixels, ceil(C_t/3)) evenly spaced pixels,
stacked into C_t input channels. It reports +3.5 points of accuracy on average against
plain downsampling at unchanged latency. Here, on the ``max78000`` model and the
generated ``textures`` task (128x128 images shrunk to 32x32):

1. **Calibration.** The cost model against the SDK's measured examples
   (:mod:`bitnas.experiments.max7800x_calibration`).
2. **The C_t ablation.** One network (3 conv layers of 32 channels, pools before the
   last two, 8-bit weights) fed by DEX at C_t in {3, 6, 18, 36, 64}, by plain
   downsampling, CoordConv and channel repetition (to 64), and, as a reference that
   does not fit the chip, the same layers on the full 128x128 image: accuracy, latency,
   weight bytes and the first layer's processors, each measured by bitnas's own pipeline
   (FP training, PTQ at 8 bits).
3. **The searched front.** A study over C_t, the widths and every layer's weight bits
   (1, 2, 4, 8), with objectives accuracy, latency and weight memory, under the chip's
   limits.

``report.md`` and ``report.json`` set the figures beside the paper's. What differs from
the paper, and why: ``bitnas/experiments/dex.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from optuna.trial import FixedTrial

from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec, spec_variant
from bitnas.experiments.max7800x_calibration import calibration_rows, format_rows
from bitnas.plan import describe_arch, describe_plan
from bitnas.registry import EXPERIMENTS
from bitnas.search.context import SearchContext
from bitnas.search.pareto import atomic_write
from bitnas.search.study import run_search
from bitnas.spec import StudySpec

NAME = "dex"
SPEC_FILE = Path(__file__).with_name(f"{NAME}.toml")
#: the paper's headline: average gain over downsampling, 4 models x 4 datasets, latency unchanged
PAPER_GAIN_POINTS = 3.5
#: (label, input transform, C_t) of each ablation row
ROWS = [("downsample", "downsample", None), ("CoordConv", "coordconv", None),
        ("repeat to 64", "repeat", 64)] + [(f"DEX C_t={c}", "dex", c) for c in (3, 6, 18, 36, 64)]

#: ``--quick``: the same pipeline, small enough for the test suite
QUICK = {
    "study": {"name": f"{NAME}_quick", "trials": 4},
    "space": {"widths": [8, 16], "input_size": 8, "dex_channels": [3, 18]},
    "task": {"size": 32, "per_class": 12, "epochs": 2},
}


def load(quick: bool = False, trials: int | None = None) -> StudySpec:
    """The experiment's spec (its ``--quick`` variant when asked)."""
    return load_experiment_spec(SPEC_FILE, QUICK, quick=quick, trials=trials)


def _width(spec: StudySpec) -> int:
    """The ablation network's width: 32, or the widest the spec offers if it has no 32."""
    widths = spec.space.get("widths", [32])
    return 32 if 32 in widths else max(widths)


def _ablation_spec(spec: StudySpec, full: bool) -> StudySpec:
    """The ablation's space: the fixed network at 8 bits, every input transform (or, for the
    full-resolution reference, the stored image as it is)."""
    channels = sorted({c for _, _, c in ROWS if c})
    space = {"w_bits": [8], "widths": [_width(spec)], "depth": [3], "pools": [2],
             "kernel_size": [3], "dex_channels": channels,
             "input_transforms": ["full"] if full else ["downsample", "coordconv", "repeat", "dex"]}
    if full:
        space["input_size"] = spec.task.get("size", 128)
    return spec_variant(spec, f"{spec.name}_ablation", space=space)


def _measure(ctx: SearchContext, params: dict[str, Any]) -> dict[str, Any]:
    cand = ctx.space.suggest(FixedTrial(params))
    metrics, timing, cost = ctx.evaluate(cand)
    first = next(iter(cost.per_layer.values()))
    return {
        "accuracy": metrics["accuracy"], "test_accuracy": metrics["test_accuracy"],
        "fp_accuracy": ctx.fp_metrics(cand)["accuracy"],
        "latency_us": cost.latency_s * 1e6, "input_load_us": cost.value("input_load_s") * 1e6,
        "weight_bytes": cost.weight_bytes, "conv0_processors": int(first["processors"]),
        "feasible": cost.feasible, "broken": cost.why_infeasible(),
        "seconds": sum(timing.values()),
    }


def ablation(spec: StudySpec, out_dir: Path, log: Log) -> list[dict[str, Any]]:
    """Every ablation row, measured by the search's own pipeline (FP models cached)."""
    rows = []
    for full in (False, True):
        aspec = _ablation_spec(spec, full)
        ctx = SearchContext(aspec, cache_dir=out_dir / "fp_cache")
        todo = [("full resolution (reference)", "full", None)] if full else ROWS
        for label, transform, channels in todo:
            params: dict[str, Any] = {"input": transform}
            if channels:
                params["dex_channels"] = channels
            row = {"row": label, "input": transform, "channels": channels, **_measure(ctx, params)}
            log(f"ablation: {label:28s} accuracy {row['accuracy']:.3f} (test {row['test_accuracy']:.3f}), "
                f"{row['latency_us']:.0f} us, {row['weight_bytes']} B, layer 1 on "
                f"{row['conv0_processors']} processors" + ("" if row["feasible"] else ", does not fit"))
            rows.append(row)
    return rows


def analyse(result: Any, spec: StudySpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's figures from the ablation rows and the finished study."""
    from bitnas.search.pareto import front_trials

    front = []
    for t in front_trials(result.study):
        cand = t.user_attrs["candidate"]
        front.append({"trial": t.number, "accuracy": t.user_attrs["metrics"]["accuracy"],
                      "test_accuracy": t.user_attrs["metrics"]["test_accuracy"],
                      "latency_us": t.user_attrs["cost"]["latency_s"] * 1e6,
                      "weight_bytes": t.user_attrs["cost"]["weight_bytes"],
                      "channels": cand["arch"].get("channels"), "arch": describe_arch(cand["arch"]),
                      "plan": describe_plan(cand["plan"])})
    front.sort(key=lambda r: (r["latency_us"], r["weight_bytes"]))
    down = next(r for r in rows if r["input"] == "downsample")
    dex = [r for r in rows if r["input"] == "dex"]
    best = max(dex, key=lambda r: r["accuracy"])
    trials = result.study.get_trials(deepcopy=False)
    return {
        "experiment": NAME, "study": spec.name, "trials": len(trials),
        "infeasible_trials": sum(1 for t in trials if t.state.name == "PRUNED"),
        "calibration": calibration_rows(), "ablation": rows, "front": front,
        "best_dex": best, "gain_points": 100 * (best["accuracy"] - down["accuracy"]),
        "test_gain_points": 100 * (best["test_accuracy"] - down["test_accuracy"]),
        "latency_ratio": best["latency_us"] / down["latency_us"],
        "paper_gain_points": PAPER_GAIN_POINTS,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def format_report(r: dict[str, Any]) -> str:
    """The three tables, as Markdown."""
    best = r["best_dex"]
    lines = [
        f"# {NAME}: data channel extension on the max78000, textures 128x128 -> 32x32",
        "",
        "| | paper (4 models x 4 datasets) | bitnas (textures, one model) |",
        "|---|---|---|",
        f"| accuracy gain of DEX over downsampling | +{r['paper_gain_points']} points on average | "
        f"{r['gain_points']:+.1f} points on validation, {r['test_gain_points']:+.1f} on test "
        f"({best['row']}) |",
        f"| latency with DEX / without | 1.00 (unchanged) | {r['latency_ratio']:.2f} |",
        "",
        "## The C_t ablation (8-bit weights; accuracy after PTQ, FP beside it)",
        "",
        "| input | accuracy (test) | FP | latency us | input load us | weight B | layer-1 processors "
        "| fits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in r["ablation"]:
        lines.append(f"| {x['row']} | {_pct(x['accuracy'])} ({_pct(x['test_accuracy'])}) | "
                     f"{_pct(x['fp_accuracy'])} | {x['latency_us']:,.0f} | {x['input_load_us']:,.0f} | "
                     f"{x['weight_bytes']:,} | {x['conv0_processors']} | "
                     + ("yes |" if x["feasible"] else "no: " + "; ".join(x["broken"]) + " |"))
    lines += ["", f"## The searched front ({r['trials']} trials, {r['infeasible_trials']} over the chip's "
              "limits and not trained)", "",
              "| trial | accuracy (test) | latency us | weight B | C_t | arch | bits |",
              "|---|---|---|---|---|---|---|"]
    for f in r["front"]:
        lines.append(f"| {f['trial']} | {_pct(f['accuracy'])} ({_pct(f['test_accuracy'])}) | "
                     f"{f['latency_us']:,.0f} | {f['weight_bytes']:,} | {f['channels']} | {f['arch']} | "
                     f"{f['plan']} |")
    lines += ["", "## The cost model against the SDK's measurements", "", format_rows(r["calibration"]), "",
              "What differs from the paper and why: bitnas/experiments/dex.md"]
    if r.get("this_run_wall_s") is not None:
        lines.insert(2, f"This run took {r['this_run_wall_s'] / 60:.1f} min.\n")
    return "\n".join(lines)


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """Run (or resume) the experiment; write report.json and report.md into ``out_dir``."""
    start = time.perf_counter()
    spec = load(quick, trials)
    log(f"{NAME}{' (quick)' if quick else ''}: the C_t ablation ({len(ROWS) + 1} inputs), then a "
        f"{spec.trials}-trial search over C_t, widths and bits on the {spec.hardware['name']}")
    rows = ablation(spec, out_dir, log)
    result = run_search(spec, out_dir, storage_url=storage_url, log=log)
    report = analyse(result, spec, rows)
    report["this_run_wall_s"] = time.perf_counter() - start
    atomic_write(out_dir / "report.json", lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    text = format_report(report)
    atomic_write(out_dir / "report.md", lambda p: p.write_text(text + "\n"))
    return report


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "DEX: data channel extension on the MAX78000 (Gong, Kawsar, Min 2024), on textures",
    run, format_report))
