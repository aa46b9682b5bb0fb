"""``bitnas export``: a stored trial, rebuilt exactly, written in a deployable format."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from bitnas.errors import BitnasError
from bitnas.exporters import ExportItem
from bitnas.plan import Candidate
from bitnas.registry import EXPORTERS
from bitnas.search.context import SearchContext
from bitnas.search.rebuild import rebuild_candidate, recorded_threads, torch_threads
from bitnas.spec import StudySpec


def export_trial(study: optuna.Study, spec: StudySpec, number: int, fmt: str, out_dir: Path,
                 cache_dir: Path | None) -> tuple[list[Path], int]:
    """Rebuild trial ``number`` (as ``bitnas rebuild`` does) and write it as ``fmt``; returns
    the files and the cost model's ``weight_bytes`` of the candidate (to set beside them)."""
    exporter = EXPORTERS.create(EXPORTERS.check(fmt, "--format"))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise BitnasError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0..{max(trials, default=-1)})")
    trial = trials[number]
    if trial.state == TrialState.PRUNED:
        reasons = trial.user_attrs.get("cost", {}).get("reasons", {})
        why = "; ".join(reasons.values()) or "it breaks a constraint"
        raise BitnasError(f"trial {number} is infeasible ({why}); export a feasible trial "
                          "(`bitnas pareto` lists the front)")
    if trial.state != TrialState.COMPLETE or "candidate" not in trial.user_attrs:
        raise BitnasError(f"trial {number} did not complete (state {trial.state.name}); export a "
                          "completed trial")
    threads = recorded_threads(trial.user_attrs.get("runtime", {}).get("torch_threads"))
    with torch_threads(threads):
        ctx = SearchContext(spec, cache_dir=cache_dir)
        cand = rebuild_candidate(ctx, trial.params)
        if cand != Candidate.from_dict(trial.user_attrs["candidate"]):
            raise BitnasError(f"trial {number}: its params no longer rebuild the stored candidate; "
                              "the space code has changed")
        stored = trial.user_attrs.get("metrics", {})
        qat = bool(stored["qat"]) if "qat" in stored else None
        model, metrics, _, _ = ctx.prepared(cand, qat=qat)
        groups, workload = ctx.structure(cand)
        item = ExportItem(candidate=cand, model=model, groups=groups, workload=workload,
                          hardware=ctx.hardware, space=ctx.space, task=spec.task["name"],
                          trial=number, metrics=metrics, spec=spec.to_dict(include_storage=False),
                          torch_threads=threads)
        return exporter.export(item, out_dir), ctx.cost(cand, workload).weight_bytes
