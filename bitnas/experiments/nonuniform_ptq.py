"""``bitnas reproduce nonuniform_ptq``: post-training non-uniform quantization of a CNN.

The paper (Luqman, Qazi, Khan, arXiv 2412.07391; ICDM 2025) quantizes trained CNN weights
with no data, choosing clipping thresholds and non-uniform levels analytically to minimise
the quantization noise. Here a 3-layer CNN on digits, every layer alike, at 2 to 6 bits:

- ``uniform``: symmetric per-channel levels, clipping searched per channel for the least
  squared error;
- ``nonuniform``: Lloyd-Max levels per layer (``bitnas/quantizers/nonuniform.py``), a
  table of 2^b 8-bit levels looked up before each MAC.

Each row: accuracy (validation and test, by the search's own pipeline), each layer's
weight SQNR, weight memory (tables and scales included) and ``generic45nm`` energy (the
lookups included). What differs from the paper: ``bitnas/experiments/nonuniform_ptq.md``.
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

NAME = "nonuniform_ptq"
SPEC_FILE = Path(__file__).with_name(f"{NAME}.toml")
BITS = (2, 3, 4, 5, 6)
SCHEMES = ("uniform", "nonuniform")
#: ``--quick``: the same pipeline, small enough for the test suite
QUICK = {"task": {"epochs": 3}, "space": {"w_bits": [2, 4]}}


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """Measure every (scheme, bits) row; write report.json and report.md into ``out_dir``."""
    start = time.perf_counter()
    spec = load_experiment_spec(SPEC_FILE, QUICK, quick=quick)
    ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
    bits = (2, 4) if quick else BITS
    log(f"{NAME}: float model (trained once, then cached), then {len(bits) * len(SCHEMES)} plans")
    rows = []
    for b in bits:
        for scheme in SCHEMES:
            row = measure(ctx, WeightChoice(b, scheme), sqnr=True)
            sq = ", ".join(f"{g} {v:.1f}" for g, v in row["sqnr_db"].items())
            log(f"  {scheme:10s} {b} bits: accuracy {row['accuracy']:.3f} (test {row['test_accuracy']:.3f}); "
                f"SQNR dB {sq}")
            rows.append(row)
    report = {"experiment": NAME, "quick": quick, "rows": rows, "groups": list(rows[0]["sqnr_db"]),
              "fp_accuracy": rows[0]["fp_accuracy"], "fp_test_accuracy": rows[0]["fp_test_accuracy"],
              "this_run_wall_s": time.perf_counter() - start}
    write_report(out_dir, report, format_report(report))
    return report


def format_report(r: dict[str, Any]) -> str:
    groups = r["groups"]
    lines = [f"# {NAME}: uniform against non-uniform post-training weight quantization (CNN, digits)", "",
             took(r) + " "
             f"FP model: {pct(r['fp_accuracy'])} (test {pct(r['fp_test_accuracy'])}); "
             "activations 8 bits.", "",
             "| bits | scheme | accuracy | test | " + " | ".join(f"SQNR {g} dB" for g in groups)
             + " | weight B | energy J |",
             "|---|---|---|---|" + "---|" * len(groups) + "---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['w_bits']} | {x['scheme']} | {pct(x['accuracy'])} | {pct(x['test_accuracy'])} | "
                     + " | ".join(f"{x['sqnr_db'][g]:.1f}" for g in groups)
                     + f" | {int(x['weight_bytes']):,} | {x['energy_j']:.3g} |")
    lines += ["", "What differs from the paper and why: bitnas/experiments/nonuniform_ptq.md"]
    return "\n".join(lines)


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "Post-training non-uniform quantization of a CNN: uniform vs Lloyd-Max levels, 2-6 bits",
    run, format_report))
