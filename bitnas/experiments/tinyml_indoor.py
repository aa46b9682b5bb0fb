"""``bitnas reproduce tinyml_indoor``: transformers and Mamba for indoor localisation on a microcontroller.

The paper (Suwannaphong, Jovan, Craddock, McConville, arXiv 2412.09289) classifies the room a
person is in from windows of BLE RSSI readings. A quantized transformer student, distilled from
a large transformer teacher, fits 64 KB of RAM; a compact Mamba fits 32 KB without compression;
int8 post-training quantization is the deployment baseline. Here, on the generated house B
(``rssi_rooms``: 11 access points, 11 rooms, fingerprint walk for training, free living for test)
and the ``cortex_m4`` model (STM32L4R5), each figure measured by bitnas's own pipeline:

1. the FP teacher (a 64-wide, 2-block transformer), float weights and activations;
2. the student transformer (the largest the space offers) at int8 PTQ;
3. mixed-precision students searched per layer group under 64 KB of RAM, without and with
   knowledge distillation from the teacher (same seed, same budget);
4. the largest Mamba of the space without compression (float);
5. Mamba searched per mixer part, scan-state bits included, under 32 KB of RAM.

Objectives: macro-F1 (the paper's main metric) and flash; RAM is the constraint. The report
gives accuracy and macro-F1 (test: the free-living recording) against RAM, flash and latency.
What differs from the paper: ``bitnas/experiments/tinyml_indoor.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from optuna.trial import FixedTrial

from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec, spec_variant
from bitnas.experiments.schemes import measure, pct, plan_params, took, write_report
from bitnas.hardware_models.base import Cost
from bitnas.plan import FLOAT_BITS, describe_arch, describe_plan
from bitnas.registry import EXPERIMENTS
from bitnas.search.context import SearchContext
from bitnas.search.pareto import front_trials
from bitnas.search.study import run_search
from bitnas.spaces.base import WeightChoice
from bitnas.spec import StudySpec

NAME = "tinyml_indoor"
HERE = Path(__file__).parent
TRANSFORMER, MAMBA = HERE / "tinyml_indoor_transformer.toml", HERE / "tinyml_indoor_mamba.toml"
PAPER = {"transformer_ram_kb": 64, "mamba_ram_kb": 32}
#: ``--quick``: the same pipeline, small enough for the test suite
QUICK = {"study": {"trials": 3}, "task": {"epochs": 2, "qat_epochs": 1, "teacher_epochs": 2},
         "space": {"d_model": [8], "depth": [1]}}
QUICK_MAMBA = {"study": {"trials": 3}, "task": {"epochs": 2, "qat_epochs": 1},
               "space": {"d_model": [8], "d_state": [4], "layers": [1]}}


def _row(label: str, r: dict[str, Any], plan: str = "", arch: str = "") -> dict[str, Any]:
    return {"row": label, "accuracy": r["accuracy"], "test_accuracy": r.get("test_accuracy"),
            "macro_f1": r["macro_f1"], "test_macro_f1": r.get("test_macro_f1"),
            "ram_bytes": r["ram_bytes"], "flash_bytes": r["flash_bytes"],
            "latency_ms": 1e3 * r["latency_s"], "plan": plan, "arch": arch}


def _measured(ctx: SearchContext, choice: WeightChoice, label: str, log: Log) -> dict[str, Any]:
    row = _row(label, measure(ctx, choice), arch=describe_arch(ctx.space.suggest(
        FixedTrial(plan_params(ctx, choice))).arch_dict()), plan=choice.label())
    log(f"{NAME}: {label}: macro-F1 {row['test_macro_f1']:.3f} (test), RAM {row['ram_bytes']:,.0f} B, "
        f"flash {row['flash_bytes']:,.0f} B, {row['latency_ms']:.2f} ms")
    return row


def _front(result: Any, label: str) -> list[dict[str, Any]]:
    rows = []
    for t in front_trials(result.study):
        cand, metrics, cost = t.user_attrs["candidate"], t.user_attrs["metrics"], t.user_attrs["cost"]
        values = Cost.from_dict(cost).values()
        rows.append({**_row(f"{label}, trial {t.number}", {**metrics, **values},
                            describe_plan(cand["plan"]), describe_arch(cand["arch"])), "trial": t.number})
    return sorted(rows, key=lambda r: r["flash_bytes"])


def _context(spec: StudySpec, out_dir: Path) -> SearchContext:
    return SearchContext(spec, cache_dir=out_dir / "fp_cache")


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """The five rows and the three searches; write report.json and report.md into ``out_dir``."""
    start = time.perf_counter()
    tspec = load_experiment_spec(TRANSFORMER, QUICK, quick=quick, trials=trials)
    mspec = load_experiment_spec(MAMBA, QUICK_MAMBA, quick=quick, trials=trials)
    teacher = dict(tspec.train.teacher)
    floats = {"w_bits": [FLOAT_BITS], "a_bits": [8, FLOAT_BITS]}
    # 1. the FP teacher, in float; 2. the largest student at int8 PTQ
    teacher_epochs = tspec.train.teacher_epochs or tspec.train.epochs  # trained as KD trains it
    fp = spec_variant(tspec, f"{tspec.name}_teacher",
                      {**{k: [teacher[k]] for k in ("d_model", "depth", "heads")}, **floats},
                      {"qat": "off", "epochs": teacher_epochs})
    rows = [_measured(_context(fp, out_dir), WeightChoice(FLOAT_BITS, "uniform"), "FP teacher (float)", log)]
    largest = {k: [max(tspec.space[k])] for k in ("d_model", "depth")}
    student = spec_variant(tspec, f"{tspec.name}_int8", {**largest, "w_bits": [8]}, {"qat": "off"})
    rows.append(_measured(_context(student, out_dir), WeightChoice(8, "uniform"),
                          "transformer student, int8 PTQ", log))
    # 3. the searched students, without and with distillation
    fronts = {}
    for kd in (False, True):
        label = "transformer, searched" + (" + KD" if kd else "")
        spec = spec_variant(tspec, f"{tspec.name}{'_kd' if kd else ''}", task={"kd": kd})
        log(f"{NAME}: {label}: {spec.trials} trials under {spec.constraints['ram_bytes']:,.0f} B of RAM")
        result = run_search(spec, out_dir / spec.name, storage_url=storage_url, log=log)
        fronts[label] = _front(result, label)
    # 4. Mamba without compression; 5. Mamba searched, its state bits included
    largest = {k: [max(mspec.space[k])] for k in ("d_model", "d_state", "layers")}
    mfp = spec_variant(mspec, f"{mspec.name}_float", {**largest, **floats, "state_bits": [FLOAT_BITS]},
                   {"qat": "off"})
    rows.append(_measured(_context(mfp, out_dir), WeightChoice(FLOAT_BITS, "uniform"),
                          "Mamba, no compression (float)", log))
    budget = mspec.constraints["ram_bytes"]
    log(f"{NAME}: Mamba, searched: {mspec.trials} trials under {budget:,.0f} B of RAM")
    result = run_search(mspec, out_dir / mspec.name, storage_url=storage_url, log=log)
    fronts["Mamba, searched"] = _front(result, "Mamba, searched")
    report = {"experiment": NAME, "quick": quick, "paper": PAPER, "rows": rows, "fronts": fronts,
              "budgets": {"transformer": tspec.constraints["ram_bytes"], "mamba": budget},
              "this_run_wall_s": time.perf_counter() - start}
    write_report(out_dir, report, format_report(report))
    return report


def _line(x: dict[str, Any]) -> str:
    return (f"| {x['row']} | {pct(x['test_accuracy'])} | {x['macro_f1']:.3f} / {x['test_macro_f1']:.3f} | "
            f"{x['ram_bytes']:,.0f} | {x['flash_bytes']:,.0f} | {x['latency_ms']:.2f} | {x['arch']} | "
            f"{x['plan']} |")


HEADER = ["| model | test accuracy | macro-F1, validation / test | RAM B | flash B | latency ms | arch "
          "| plan |", "|---|---|---|---|---|---|---|---|"]


def format_report(r: dict[str, Any]) -> str:
    b = r["budgets"]
    lines = [f"# {NAME}: room-level localisation on a Cortex-M4 (generated house B)", "", took(r), "",
             "| | paper | bitnas |", "|---|---|---|",
             f"| quantized transformer student | fits 64 KB RAM | searched under {b['transformer']:,.0f} B "
             "(below) |",
             f"| Mamba without compression | fits 32 KB RAM | {r['rows'][2]['ram_bytes']:,.0f} B of RAM |",
             "", "Validation: windows of the fingerprint walk held out; test: the free-living recording "
             "(shifted conditions). RAM, flash (32 KiB of code included) and latency from the cortex_m4 "
             "model. The searches' objective is validation macro-F1.", "", *HEADER]
    lines += [_line(x) for x in r["rows"]]
    for label, front in r["fronts"].items():
        lines += ["", f"## {label}: the front (validation macro-F1 against flash, within the RAM budget)",
                  "", *HEADER]
        lines += [_line(x) for x in front] or ["| (no feasible trial) | | | | | | | |"]
    lines += ["", "What differs from the paper and why: bitnas/experiments/tinyml_indoor.md"]
    return "\n".join(lines)


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "TinyML indoor localisation: transformer (+KD) and Mamba students on a Cortex-M4 "
    "(Suwannaphong et al. 2024)",
    run, format_report))
