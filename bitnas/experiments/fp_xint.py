"""``bitnas reproduce fp_xint``: FP=xINT, low-bit series expansion for post-training quantization.

The paper (Zhang, Cheng, Zhang et al., arXiv 2412.06865, AAAI 2026) writes a full-precision
model as a sum of low-bit basis models, with no calibration data and no fine-tuning; its
headline is a 4-bit ResNet-50 at 77.03 % on ImageNet, above its FP baseline. Here, on two
tasks (a CNN on digits under ``generic45nm``; the quickstart's Spikformer on event digits
under ``snn45nm``), every layer is quantized alike, each row measured by the search's own
pipeline (cached FP model, PTQ, the spec's cost model):

- plain uniform PTQ at 2, 3, 4, 6 and 8 bits;
- the ``series`` quantizer: k = 2, 3, 4 residual terms of b = 2, 3, 4 bits (k = 1 is plain
  uniform PTQ by construction, the uniform row at b bits).

It reports accuracy against effective bits (k x b a weight) and compute passes (k).
What differs from the paper, and why: ``bitnas/experiments/fp_xint.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec
from bitnas.experiments.schemes import measure, pct, took, write_report
from bitnas.registry import EXPERIMENTS
from bitnas.search.context import SearchContext
from bitnas.spaces.base import WeightChoice

NAME = "fp_xint"
HERE = Path(__file__).parent
TASKS = {"CNN (digits, generic45nm)": HERE / "fp_xint_cnn.toml",
         "Spikformer (event digits, snn45nm)": HERE / "fp_xint_spikformer.toml"}
#: the paper's headline (ResNet-50, ImageNet): 4-bit series expansion against FP
PAPER = {"model": "ResNet-50, ImageNet", "bits": 4, "accuracy": 0.7703, "fp_accuracy": 0.7613}
UNIFORM_BITS = (2, 3, 4, 6, 8)
SERIES_BITS = (2, 3, 4)
TERMS = (2, 3, 4)
#: ``--quick``: the same pipeline, small enough for the test suite
QUICK = {"task": {"epochs": 3}, "space": {"w_bits": [2, 4]}}


def choices(quick: bool = False) -> list[WeightChoice]:
    """Every row's scheme: uniform at each bits, then series at each bits and term count."""
    ub, sb, ks = ((2, 4), (2,), (2,)) if quick else (UNIFORM_BITS, SERIES_BITS, TERMS)
    return ([WeightChoice(b, "uniform") for b in ub]
            + [WeightChoice(b, "series", (("terms", k),)) for b in sb for k in ks])


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """Measure every row on both tasks; write report.json and report.md into ``out_dir``."""
    start = time.perf_counter()
    rows = choices(quick)
    tasks = []
    for label, spec_file in TASKS.items():
        spec = load_experiment_spec(spec_file, QUICK, quick=quick)
        ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
        log(f"{NAME}: {label}: float model (trained once, then cached), then {len(rows)} plans")
        measured = []
        for choice in rows:
            row = measure(ctx, choice)
            k = dict(choice.options).get("terms", 1)
            row.update(terms=k, effective_bits=k * choice.w_bits, passes=k)
            log(f"  {choice.label():24s} {row['effective_bits']:2d} bits a weight, {k} passes: accuracy "
                f"{row['accuracy']:.3f} (test {row['test_accuracy']:.3f}), {row['energy_j']:.3g} J")
            measured.append(row)
        tasks.append({"task": label, "hardware": spec.hardware["name"], "rows": measured,
                      "fp_accuracy": measured[0]["fp_accuracy"],
                      "fp_test_accuracy": measured[0]["fp_test_accuracy"]})
    report = {"experiment": NAME, "quick": quick, "paper": PAPER, "tasks": tasks,
              "this_run_wall_s": time.perf_counter() - start}
    write_report(out_dir, report, format_report(report))
    return report


def format_report(r: dict[str, Any]) -> str:
    p = r["paper"]
    lines = [f"# {NAME}: plain uniform PTQ against FP=xINT series expansion", "",
             took(r), "",
             f"Paper: {p['model']}, {p['bits']}-bit series expansion {pct(p['accuracy'])} against FP "
             f"{pct(p['fp_accuracy'])} ({100 * (p['accuracy'] - p['fp_accuracy']):+.2f} points)."]
    for t in r["tasks"]:
        lines += ["", f"## {t['task']}: FP {pct(t['fp_accuracy'])} (test {pct(t['fp_test_accuracy'])})", "",
                  "| scheme | bits a term | terms k | bits a weight | passes | accuracy | test "
                  "| vs FP (test) | energy J | weight B |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for x in t["rows"]:
            drop = None if x["test_accuracy"] is None else 100 * (x["test_accuracy"] - t["fp_test_accuracy"])
            lines.append(f"| {x['scheme']} | {x['w_bits']} | {x['terms']} | {x['effective_bits']} | "
                         f"{x['passes']} | {pct(x['accuracy'])} | {pct(x['test_accuracy'])} | "
                         f"{'-' if drop is None else f'{drop:+.1f}'} | {x['energy_j']:.3g} | "
                         f"{int(x['weight_bytes']):,} |")
    lines += ["", "What differs from the paper and why: bitnas/experiments/fp_xint.md"]
    return "\n".join(lines)


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "FP=xINT: uniform PTQ against series expansion, k terms of b bits (Zhang et al. 2024)",
    run, format_report))
