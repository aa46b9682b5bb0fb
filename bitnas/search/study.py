"""Creating, resuming and running a study, and exporting its front.

``trials`` is the study's total budget of finished trials (COMPLETE, or PRUNED
for infeasible candidates): a rerun runs only what is missing. A RUNNING trial
whose worker process on this host is gone (killed) is marked FAIL on resume and
its parameters are enqueued again, so nothing is left dangling.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from bitnas import __version__
from bitnas.errors import BitnasError
from bitnas.hardware_models import Cost
from bitnas.plan import Candidate, QuantPlan, describe_arch, describe_plan
from bitnas.registry import STRATEGIES
from bitnas.search.context import SearchContext
from bitnas.search.hypervolume import REFERENCE_ATTR, default_reference, front_hypervolume
from bitnas.search.objective import SearchObjective, process_start_time, worker_id
from bitnas.search.pareto import (
    atomic_write_all,
    format_table,
    front_trials,
    member_record,
    write_csv,
    write_json,
    write_png,
)
from bitnas.search.storage import mask_url, open_storage, run_dir_url
from bitnas.search.strategies import uniform_params
from bitnas.spec import StudySpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spec_of(study: optuna.Study) -> StudySpec:
    """The spec a bitnas study was created with (stored on the study)."""
    raw = study.user_attrs.get("bitnas_spec")
    if raw is None:
        raise BitnasError(
            f"study {study.study_name!r} was not created by bitnas (no stored spec); "
            "open it with the Optuna CLI instead"
        )
    try:
        return StudySpec.from_dict(raw, default_name=study.study_name)
    except BitnasError as e:
        raise BitnasError(
            f"the spec stored on study {study.study_name!r} is invalid ({e}); the storage was "
            "altered, or written by an incompatible bitnas version"
        ) from None


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: stored {json.dumps(a)}, spec {json.dumps(b)}"


def open_study(spec: StudySpec, url: str,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or load it after checking it was made from an equivalent spec."""
    storage = storage or open_storage(url)
    try:
        existing = {s.study_name for s in storage.get_all_studies()}
        if spec.name not in existing:
            try:
                return _create(spec, storage)
            except optuna.exceptions.DuplicatedStudyError:
                pass  # another worker created it a moment ago: join it
        study = optuna.load_study(study_name=spec.name, storage=storage)
        study = _await_identity(study, storage)
    except BitnasError:
        raise
    except Exception as e:
        raise BitnasError(
            f"cannot open study {spec.name!r} in {mask_url(url)}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        ) from None
    stored = _unset_dropped(study.user_attrs.get("bitnas_identity"))
    wanted = _unset_dropped(spec.identity())
    # nothing to lose: an empty shell whose creation was cut short, or a bitnas study
    # whose first run failed or was stopped before any trial finished
    if (stored is None and not study.trials) or (
            stored is not None and stored != wanted and not finished_trials(study)):
        optuna.delete_study(study_name=spec.name, storage=storage)
        try:
            return _create(spec, storage)
        except optuna.exceptions.DuplicatedStudyError:  # another worker recreated it first
            return _await_identity(optuna.load_study(study_name=spec.name, storage=storage), storage)
    if stored is None:
        raise BitnasError(
            f"study {spec.name!r} in {mask_url(url)} was not created by bitnas; "
            "choose another [study] name or --out"
        )
    if stored != wanted:
        raise BitnasError(
            f"study {spec.name!r} in {mask_url(url)} was created from a different spec "
            f"({_first_difference(stored, wanted)}); use another --out or study name"
        )
    if study.metric_names is None:  # a study made by a bitnas that did not name its metrics
        _name_metrics(study, spec)
    return study


def _unset_dropped(identity: Any) -> Any:
    """The identity without options left unset (None): a study made before an optional
    option existed still matches a spec that leaves it unset."""
    if isinstance(identity, dict):
        return {k: _unset_dropped(v) for k, v in identity.items() if v is not None}
    if isinstance(identity, list):
        return [_unset_dropped(v) for v in identity]
    return identity


#: how long a study without bitnas's identity may be another worker's creation in progress
CREATION_GRACE_S = 10.0


def _await_identity(study: optuna.Study, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """A study another worker is creating has no identity for a few milliseconds; wait
    for it rather than take the study for an abandoned shell and delete it."""
    deadline = time.monotonic() + CREATION_GRACE_S
    while "bitnas_identity" not in study.user_attrs and not study.trials and time.monotonic() < deadline:
        time.sleep(0.2)
        study = optuna.load_study(study_name=study.study_name, storage=storage)
    return study


def _create(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions)
    study.set_user_attr("bitnas_spec", spec.to_dict(include_storage=False))
    study.set_user_attr("bitnas_identity", spec.identity())
    study.set_user_attr("bitnas_version", __version__)
    study.set_user_attr("objectives", [o.to_dict() for o in spec.objectives])
    _name_metrics(study, spec)
    return study


def _name_metrics(study: optuna.Study, spec: StudySpec) -> None:
    """Name the study's values after the spec's objectives, so that Optuna's plots and
    optuna-dashboard label their axes (accuracy, energy_j, ...) rather than Objective 0, 1."""
    with warnings.catch_warnings():  # set_metric_names is marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in spec.objectives])


def _alive(worker: str) -> bool:
    host, _, rest = worker.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's worker: not ours to judge
    try:
        pid = int(pid_s)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return start in ("?", process_start_time(pid))


#: A RUNNING trial with no worker recorded yet, while another registered worker is
#: alive, is only judged dead after this long: a live worker claims its trial
#: within milliseconds of creating it.
UNCLAIMED_GRACE_S = 60.0
WORKER_KEY = "worker:"


def register_worker(study: optuna.Study) -> str:
    """Record this process on the study, so that others can tell whether it is alive."""
    me = worker_id()
    study.set_user_attr(WORKER_KEY + me, datetime.datetime.now().isoformat(timespec="seconds"))
    return me


def recover_orphans(study: optuna.Study, me: str | None = None) -> list[int]:
    """Re-run what a killed or interrupted run left unfinished.

    RUNNING trials of dead local workers are marked FAIL; they, and FAIL trials
    that were interrupted (Ctrl-C, SIGTERM), get their params enqueued once. A
    RUNNING trial that no worker has claimed yet (killed between Optuna creating it
    and bitnas starting it) is an orphan at once when no other registered worker
    is alive, and after ``UNCLAIMED_GRACE_S`` otherwise.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    others_alive = any(_alive(key[len(WORKER_KEY):]) for key in study.user_attrs
                       if key.startswith(WORKER_KEY) and key[len(WORKER_KEY):] != me)
    now = datetime.datetime.now()
    recovered = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            worker = t.user_attrs.get("worker")
            if worker is None:
                started = t.datetime_start or now
                if others_alive and (now - started).total_seconds() < UNCLAIMED_GRACE_S:
                    continue
            elif _alive(worker):
                continue
            study.tell(t.number, state=TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number not in retried:
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
            recovered.append(t.number)
    return recovered


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def _sampler_seed(seed: int, n_existing: int, salt: int = 0) -> int:
    # a resumed run must not replay the random stream of the first run, and workers that
    # join at the same moment (same n_existing) must not replay each other's (salt)
    return int(np.random.SeedSequence([seed, n_existing, salt]).generate_state(1)[0])


def _describe_trial(t: FrozenTrial, spec: StudySpec) -> str:
    plan = t.user_attrs.get("candidate", {}).get("plan", {})
    bits = describe_plan(plan)
    arch = t.user_attrs.get("candidate", {}).get("arch", {})
    arch_s = describe_arch(arch)
    timing = t.user_attrs.get("timing_s", {})
    if t.state == TrialState.PRUNED:
        reasons = t.user_attrs.get("cost", {}).get("reasons", {})
        bad = "; ".join(reasons.get(k) or f"{k} {v:+.0%} over" for k, v in t.constraints.items() if v > 0)
        return f"#{t.number:<4d} infeasible ({bad}), not evaluated  {arch_s}  {bits}"
    vals = "  ".join(f"{o.name}={v:.4g}" for o, v in zip(spec.objectives, t.values, strict=True))
    extra = ""
    if timing.get("fp_train_s"):
        extra = f", trained FP in {timing['fp_train_s']:.1f}s"
    if "duplicate_of" in t.user_attrs:
        extra = f", same as #{t.user_attrs['duplicate_of']}"
    dur = t.duration.total_seconds() if t.duration else 0.0
    return f"#{t.number:<4d} {vals}  {arch_s}  {bits}  ({dur:.2f}s{extra})"


_UNITS = {"_bytes": "bytes", "_j": "J", "_s": "s"}


def check_feasible(spec: StudySpec, ctx: SearchContext) -> None:
    """Refuse a spec whose cheapest candidate (every arch knob at its smallest choice,
    every group at its fewest bits, under each quantizer) already breaks a static bound:
    every trial would be infeasible, and the run would end with an empty front.

    Bounds on fields that depend on measured activity are left out: statically they are
    upper bounds only.
    """
    space = ctx.space
    deferred = set(ctx.hardware.activity_fields)
    least: dict[str, tuple[float, Cost]] = {}  # field -> the cheapest plan's violation, its cost
    for q in space.precision.quantizers:
        params = uniform_params(space, min, q, arch_pick=min, precision_pick=min)
        cost = ctx.cost(space.suggest(optuna.trial.FixedTrial(params)))
        for field, v in cost.violations.items():
            if field not in deferred and (field not in least or v < least[field][0]):
                least[field] = (v, cost)
    for field, (v, cost) in least.items():
        if v <= 0:
            continue
        if field in spec.constraints:
            unit = next((u for suffix, u in _UNITS.items() if field.endswith(suffix)), "")
            raise BitnasError(
                f"no candidate can meet constraints.{field} = {spec.constraints[field]:g}: the cheapest "
                f"plan (smallest architecture, fewest bits) needs {cost.value(field):g} {unit}".rstrip()
                + "; raise the bound or shrink the space")
        why = cost.reasons.get(field) or f"{v:+.0%}"
        raise BitnasError(
            f"no candidate fits hardware {spec.hardware['name']!r}: even the cheapest plan (smallest "
            f"architecture, fewest bits) breaks its {field} limit ({why}); shrink the space")


def _open_in(out_dir: Path, spec: StudySpec, url: str
             ) -> tuple[optuna.storages.BaseStorage, optuna.Study]:
    """Open the study, making ``out_dir`` (the default storage lives there); if that
    fails, the folders made for it are removed again, so a failed run leaves none."""
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        storage = open_storage(url)
        return storage, open_study(spec, url, storage)
    except BaseException:
        for p in made:  # deepest first; one that holds something stays
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


#: the study's warm-start claim: {"strategy", "worker" (host:pid:start), "state": claimed | done};
#: a plain string (older bitnas: the strategy's name) means done, "" released
WARM_START_ATTR = "bitnas_warm_start"


def _warm_start_due(study: optuna.Study, log: Log) -> bool:
    """Whether this run computes the warm start: nobody claimed it, or the claiming
    worker died before it was done (a SIGKILL during the computation)."""
    claim = study.user_attrs.get(WARM_START_ATTR)
    if not claim:
        return True
    if isinstance(claim, str):
        return False
    if not isinstance(claim, dict) or not isinstance(claim.get("worker"), str):
        return True  # unreadable: doing it again costs time, never trials (queueing skips repeats)
    if claim.get("state") == "done":
        return False
    worker = claim["worker"]
    if _alive(worker):
        log(f"warm start: worker {worker} is computing it; this run leaves it to that worker")
        return False
    log(f"warm start: worker {worker} claimed it and died before it was done; taking it over")
    return True


def _warm_start(study: optuna.Study, spec: StudySpec, ctx: SearchContext, log: Log) -> None:
    """Queue the strategy's warm start (e.g. the ILP's plans) once per study."""
    warm_start = STRATEGIES.get(spec.sampler).warm_start
    if (warm_start is None or len(finished_trials(study)) >= spec.trials
            or not _warm_start_due(study, log)):
        return
    # claimed before the (slow) computation, so a worker joining meanwhile skips it; the
    # claim names this worker, so that if it is killed the next run can tell and redo it
    claim = {"strategy": spec.sampler, "worker": worker_id(), "state": "claimed"}
    study.set_user_attr(WARM_START_ATTR, claim)
    try:
        for params in warm_start(ctx, spec, spec.trials, log):
            study.enqueue_trial(params, skip_if_exists=True)
    except BaseException:
        study.set_user_attr(WARM_START_ATTR, "")  # not done: the next run does it
        raise
    study.set_user_attr(WARM_START_ATTR, {**claim, "state": "done"})


@dataclass
class SearchResult:
    study: optuna.Study
    records: list[dict[str, Any]]
    url: str
    out_dir: Path
    wall_s: float
    #: the run's report.html, where it was written (None: no export, or it failed)
    report: Path | None = None


def run_search(spec: StudySpec, out_dir: Path, *, storage_url: str | None = None,
               log: Log = _stderr, enqueue: Sequence[dict[str, Any]] = (),
               ctx: SearchContext | None = None, export: bool = True,
               shared: bool = False) -> SearchResult:
    """Run (or resume) the study to ``spec.trials`` finished trials and export its front.

    ``enqueue``: trial params to evaluate before the sampler's own proposals (for
    example uniform-precision baselines); params a trial of the study already has are
    not queued again, so a resumed run does not repeat them. ``ctx``: the study's
    context, when the caller has built it already. ``export=False`` (a worker among
    many) skips writing the front; ``bitnas pareto`` reads it from the storage.
    ``shared``: other workers run the same study at the same time, so this one's
    sampler is seeded from its process too (otherwise they would propose the same).
    """
    start = time.perf_counter()
    # bitnas prints its own progress; errors propagate out of optimize() with their traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url or spec.storage or run_dir_url(out_dir)
    # data, space and cost model first: a spec that cannot run never creates a study, nor
    # --out (the FP cache makes its folder when it first stores something)
    ctx = ctx or SearchContext(spec, cache_dir=out_dir / "fp_cache")
    check_feasible(spec, ctx)
    storage, study = _open_in(out_dir, spec, url)
    if REFERENCE_ATTR not in study.user_attrs:  # declared once, kept for the study's life
        study.set_user_attr(REFERENCE_ATTR, default_reference(spec, ctx))
    for params in enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    _warm_start(study, spec, ctx, log)
    recovered = recover_orphans(study, register_worker(study))
    if recovered:
        log(f"recovered trial(s) {recovered} left unfinished by a killed or interrupted run: "
            "their parameters are queued to run again")
    done = finished_trials(study)
    remaining = spec.trials - len(done)
    log(f"study {spec.name!r} in {mask_url(url)}: {len(done)}/{spec.trials} trials finished, "
        f"{max(0, remaining)} to run; sampler {spec.sampler}, seed {spec.seed}")

    if remaining > 0:
        salt = os.getpid() if shared else 0
        sampler = STRATEGIES.create(spec.sampler, seed=_sampler_seed(spec.seed, len(study.trials), salt),
                                    n_trials=spec.trials)
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
        objective = SearchObjective(ctx, spec.objectives, done)
        counter = {"n": len(done)}

        def progress(study: optuna.Study, trial: FrozenTrial) -> None:
            if objective.interrupts.requested:
                study.stop()
            if trial.state in FINISHED:
                counter["n"] += 1
                log(f"[{counter['n']:>{len(str(spec.trials))}}/{spec.trials}] "
                    + _describe_trial(trial, spec))

        stop = optuna.study.MaxTrialsCallback(spec.trials, states=FINISHED)
        with objective.interrupts.installed():
            study.optimize(objective, n_trials=remaining, callbacks=[progress, stop])
        if objective.interrupts.requested:
            raise KeyboardInterrupt  # stopped cleanly between trials; the CLI exits 130

    if export:
        out_dir.mkdir(parents=True, exist_ok=True)  # the study may live elsewhere (--storage)
    records = export_front(study, spec, ctx, out_dir) if export else []
    report = None
    # after the front's files: a report that fails is one warning, they stay written;
    # BITNAS_NO_REPORT=1 skips it (scripted sweeps, the test suite: `bitnas report` writes it later)
    if export and os.environ.get("BITNAS_NO_REPORT", "") in ("", "0"):
        from bitnas.search.report import try_write_report

        run = str(out_dir) if url == run_dir_url(out_dir) else mask_url(url)
        report = try_write_report(study, spec, out_dir / "report.html", run=run, storage=mask_url(url))
    return SearchResult(study, records, url, out_dir, time.perf_counter() - start, report)


def reference_int8(ctx: SearchContext, record: dict[str, Any]) -> dict[str, Any]:
    """The same architecture with every group at 8-bit weights and activations, under the
    space's first quantizer (uniform, unless the space offers others only: ai8x)."""
    cand = Candidate.from_dict({"space": ctx.space.name, "arch": record["arch"],
                                "plan": record["plan"]})
    groups = list(record["plan"])
    quantizer = ctx.space.precision.quantizers[0]
    ref = Candidate(cand.arch_dict(), QuantPlan.uniform(groups, 8, 8, quantizer), cand.space)
    metrics, _, cost = ctx.evaluate(ref)
    return {"plan": f"{quantizer} w8/a8", **metrics, "energy_j": cost.energy_j,
            "weight_bytes": cost.weight_bytes}


def export_front(study: optuna.Study, spec: StudySpec, ctx: SearchContext | None,
                 out_dir: Path) -> list[dict[str, Any]]:
    """Write pareto.json, pareto.csv and pareto.png, all three or none (they must agree);
    return the records."""
    records = [member_record(t, spec.objectives) for t in front_trials(study)]
    if ctx is not None:
        refs: dict[str, dict[str, Any]] = {}  # one per architecture: members often share it
        for r in records:
            arch = json.dumps(r["arch"], sort_keys=True)
            if arch not in refs:
                refs[arch] = reference_int8(ctx, r)
            r["reference_int8"] = refs[arch]
            r["fp_metrics"] = ctx.fp_metrics(Candidate.from_dict({**r, "space": ctx.space.name}))
    title = f"{spec.name}: {len(records)} front members of {len(finished_trials(study))} trials"
    atomic_write_all({
        out_dir / "pareto.json": lambda p: write_json(records, p),
        out_dir / "pareto.csv": lambda p: write_csv(records, spec.objectives, p),
        out_dir / "pareto.png": lambda p: write_png(study, spec.objectives, p, title=title),
    })
    return records


def mean_timing(trials: Sequence[FrozenTrial], key: str) -> float:
    """Mean seconds of one ``timing_s`` entry over ``trials`` (0 where a trial has none)."""
    timing = [t.user_attrs.get("timing_s", {}) for t in trials]
    return float(np.mean([x.get(key, 0.0) for x in timing])) if timing else 0.0


def summary(result: SearchResult, spec: StudySpec) -> str:
    """The end-of-run report: the front table and where the time went."""
    trials = result.study.get_trials(deepcopy=False, states=FINISHED)
    infeasible = sum(1 for t in trials if t.state == TrialState.PRUNED)
    durations = [t.duration.total_seconds() for t in trials if t.duration]
    def mean(key: str) -> float:
        return mean_timing(trials, key)
    per_trial = float(np.mean(durations)) if durations else 0.0
    overhead = per_trial - sum(mean(k) for k in ("workload_s", "cost_s", "fp_train_s", "eval_s"))
    lines = [
        f"Pareto front of {spec.name!r} ({len(result.records)} members; {len(trials)} trials, "
        f"{infeasible} infeasible and skipped):",
        format_table(result.records, spec.objectives),
        "",
        f"per trial: {per_trial:.3f}s = sampler + workload {mean('workload_s') * 1e3:.2f}ms + cost model "
        f"{mean('cost_s') * 1e3:.2f}ms + FP training "
        f"{mean('fp_train_s'):.3f}s + evaluation (PTQ, QAT) {mean('eval_s'):.3f}s + framework "
        f"{max(0.0, overhead):.3f}s",
        front_hypervolume(result.study, spec.objectives),
        f"wrote {result.out_dir / 'pareto.json'}, pareto.csv, pareto.png"
        + (", report.html; " if result.report else "; ") +
        f"storage {mask_url(result.url)}; wall time {result.wall_s:.1f}s",
    ]
    return "\n".join(lines)
