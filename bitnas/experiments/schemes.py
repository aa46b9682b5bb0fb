"""What the weight-scheme experiments (``fp_xint``, ``nonuniform_ptq``, ``vq4all``) share:
one architecture per spec, every layer group at one (scheme, bits, options), measured by
the search's own pipeline (cached FP model, PTQ, the spec's hardware model), and the
signal-to-quantization-noise ratio of each group's weights."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FixedTrial

from bitnas.plan import Candidate
from bitnas.search.context import SearchContext
from bitnas.search.pareto import atomic_write
from bitnas.search.strategies import arch_params, uniform_params
from bitnas.spaces.base import WeightChoice, split_knob


def plan_params(ctx: SearchContext, choice: WeightChoice, arch: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """Optuna params of the space's first architecture (or ``arch``) with every group at
    ``choice``: its bits, scheme and options (those the spec searches per group)."""
    space = ctx.space
    arch = dict(arch) if arch is not None else arch_params(space, limit=1)[0]
    params = uniform_params(space, choice.w_bits, choice.quantizer, arch=arch)
    options = dict(choice.options)
    for key in list(params):
        group, knob = split_knob(key)
        prefix = f"{choice.quantizer}_"
        if group is not None and knob.startswith(prefix) and knob[len(prefix):] in options:
            params[key] = options[knob[len(prefix):]]
    return params


def candidate(ctx: SearchContext, choice: WeightChoice) -> Candidate:
    cand = ctx.space.suggest(FixedTrial(plan_params(ctx, choice)))
    for group, lq in cand.plan.layers.items():  # the spec must offer what the row asks for
        if (lq.w_bits, lq.quantizer) != (choice.w_bits, choice.quantizer) or any(
                lq.options.get(k) != v for k, v in choice.options):
            raise ValueError(f"the space gives group {group} {lq}, not {choice.label()}: "
                             "the experiment's spec must offer it")
    return cand


def sqnr_db(ctx: SearchContext, cand: Candidate) -> dict[str, float]:
    """Each group's weight SQNR in dB, 10 log10(||W||^2 / ||Q(W) - W||^2), under the plan
    (inf where the quantizer is exact)."""
    from bitnas.search.sensitivity import _group_weights, _rows, perturbations

    model, _ = ctx.fp_model(cand)
    groups, _ = ctx.structure(cand)
    choices = {g: [WeightChoice(lq.w_bits, lq.quantizer, tuple(lq.options.items()))]
               for g, lq in cand.plan.layers.items()}
    noise = perturbations(model, groups, choices)
    out = {}
    with torch.no_grad():
        for g, parts in _group_weights(model, groups).items():
            signal = float(sum(_rows(w, rows).pow(2).sum() for w, rows in parts))
            n = noise[g][choices[g][0]]
            out[g] = math.inf if n == 0 else 10 * math.log10(signal / n)
    return out


def measure(ctx: SearchContext, choice: WeightChoice, *, sqnr: bool = False, qat: bool = False
            ) -> dict[str, Any]:
    """Accuracy (validation and test), the cost fields and (if asked) each group's SQNR of
    the space's first architecture with every group at ``choice``, after PTQ (and QAT, the
    spec's ``qat_epochs`` at ``qat_lr``, if asked)."""
    cand = candidate(ctx, choice)
    metrics, timing, cost = ctx.evaluate(cand, qat=True if qat else None)
    row = {"scheme": choice.quantizer, "w_bits": choice.w_bits, "options": dict(choice.options),
           "accuracy": metrics["accuracy"], "test_accuracy": metrics.get("test_accuracy"),
           "macro_f1": metrics.get("macro_f1"), "test_macro_f1": metrics.get("test_macro_f1"),
           "fp_accuracy": ctx.fp_metrics(cand)["accuracy"],
           "fp_test_accuracy": ctx.fp_metrics(cand).get("test_accuracy"),
           **cost.values(), "seconds": sum(timing.values())}
    if sqnr:
        row["sqnr_db"] = sqnr_db(ctx, cand)
    return row


def write_report(out_dir: Path, report: dict[str, Any], text: str) -> None:
    """report.json and report.md, each replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "report.json", lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    atomic_write(out_dir / "report.md", lambda p: p.write_text(text + "\n"))


def took(r: dict[str, Any]) -> str:
    """"This run took N min" of a report (with ``this_run_wall_s`` and ``quick``)."""
    return f"This run took {r['this_run_wall_s'] / 60:.1f} min{' (--quick)' if r['quick'] else ''}."


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"
