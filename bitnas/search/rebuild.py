"""Rebuilding a stored trial: same params -> same candidate -> same quantized model and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.plan import Candidate
from bitnas.search.context import SearchContext
from bitnas.spec import StudySpec


def rebuild_candidate(ctx: SearchContext, params: dict[str, Any]) -> Candidate:
    """The candidate a trial with ``params`` evaluated (no new sampling happens)."""
    try:
        return ctx.space.suggest(FixedTrial(params))
    except ValueError as e:
        raise BitnasError(f"these params do not fit the study's space: {e}") from None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None: as it is), restoring the count afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def recorded_threads(value: Any) -> int | None:
    """A stored torch thread count, or None where none was stored (older trials and exports)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def rebuild_trial(study: optuna.Study, spec: StudySpec, number: int,
                  cache_dir: Path | None) -> dict[str, Any]:
    """Rebuild trial ``number`` and measure it again; returns candidate and both metric sets.

    It runs with the torch thread count the trial was evaluated with (user attr
    ``runtime``): float reductions, and so spikes and metrics, depend on it.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise BitnasError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0..{max(trials, default=-1)})")
    trial = trials[number]
    if "candidate" not in trial.user_attrs:
        raise BitnasError(f"trial {number} never got a candidate (state {trial.state.name})")
    threads = trial.user_attrs.get("runtime", {}).get("torch_threads")
    threads = recorded_threads(threads)
    with torch_threads(threads):
        ctx = SearchContext(spec, cache_dir=cache_dir)
        cand = rebuild_candidate(ctx, trial.params)
        stored = Candidate.from_dict(trial.user_attrs["candidate"])
        if cand != stored:
            raise BitnasError(f"trial {number}: its params rebuild {cand.to_json()}, "
                              f"but it stored {stored.to_json()}; the space code has changed")
        stored_metrics = trial.user_attrs.get("metrics", {})
        # the QAT decision as taken in the search (for qat = "promote" it depended on the front then)
        qat = bool(stored_metrics["qat"]) if "qat" in stored_metrics else None
        metrics, _, cost = ctx.evaluate(cand, qat=qat)
    return {"candidate": cand, "metrics": metrics, "state": trial.state.name,
            "stored_metrics": stored_metrics, "cost": cost, "torch_threads": threads}


def rebuild_export(path: Path) -> dict[str, Any]:
    """Load a ``bitnas export --format torch`` file (its state dict and JSON alone, no run
    needed) and measure it again on its spec's task: the same shape as :func:`rebuild_trial`."""
    from bitnas.exporters.pytorch import load_export

    model, cand, info = load_export(path)
    threads = recorded_threads(info.get("torch_threads"))
    with torch_threads(threads):  # as the trial was measured (float sums depend on it)
        ctx = SearchContext(StudySpec.from_dict(info["spec"]), cache_dir=None)
        metrics = ctx.evaluator.evaluate(model)
        cost = ctx.measured_cost(cand, model)
    return {"candidate": cand, "metrics": metrics, "state": "COMPLETE", "trial": info.get("trial"),
            "stored_metrics": info.get("metrics", {}), "cost": cost, "torch_threads": threads}
