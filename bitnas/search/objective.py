"""The Optuna objective: suggest, cost first, skip the infeasible, evaluate the rest.

Each trial stores enough to rebuild it: the candidate, its cost (with the
per-layer breakdown), its metrics and where its time went, as user attrs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import optuna
import torch
from optuna.trial import TrialState

from bitnas.hardware_models import Cost
from bitnas.plan import Candidate, candidate_key
from bitnas.search.context import Promote, SearchContext
from bitnas.search.pareto import dominates, is_feasible
from bitnas.spec import Objective


def worker_id() -> str:
    """host:pid:start-time of this process, to tell dead workers from live ones."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start_time(os.getpid())}"


def process_start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "?"


class Interrupts:
    """Ctrl-C and SIGTERM that never tear Optuna's own bookkeeping.

    Inside the objective a signal raises KeyboardInterrupt at once (Optuna then
    marks the trial FAIL, and the next run retries it); anywhere else, for
    instance while Optuna records a finished trial, it only sets ``requested`` and
    the run stops after that trial is stored.
    """

    def __init__(self) -> None:
        self.requested = False
        self._inside = False

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._inside = True
        try:
            if self.requested:
                raise KeyboardInterrupt
            yield
        finally:
            self._inside = False

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._inside:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM here (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class SearchObjective:
    """Callable objective for ``study.optimize``; values follow the spec's objectives."""

    def __init__(self, ctx: SearchContext, objectives: Sequence[Objective],
                 done: Sequence[optuna.trial.FrozenTrial] = ()) -> None:
        self.ctx = ctx
        self.objectives = list(objectives)
        self.directions = [o.direction for o in self.objectives]
        self.interrupts = Interrupts()
        self.worker = worker_id()
        # canonical candidate -> (first trial that evaluated it, its metrics, its cost, the
        # runtime it was evaluated under)
        self.seen: dict[str, tuple[int, dict[str, float], Cost, dict | None]] = {}
        for t in done:
            if t.state == TrialState.COMPLETE and "metrics" in t.user_attrs:
                key = candidate_key(t.user_attrs["candidate"])
                self.seen.setdefault(key, (t.number, t.user_attrs["metrics"],
                                           Cost.from_dict(t.user_attrs["cost"]),
                                           t.user_attrs.get("runtime")))

    def __call__(self, trial: optuna.trial.Trial) -> list[float]:
        trial.set_user_attr("worker", self.worker)
        try:
            with self.interrupts.interruptible():
                return self._run(trial)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the next run retries these params
            trial.set_user_attr("interrupted", True)
            raise

    def _run(self, trial: optuna.trial.Trial) -> list[float]:
        start = time.perf_counter()
        cand = self.ctx.space.suggest(trial)
        self.ctx.structure(cand)  # build + workload extraction, cached per arch
        mid = time.perf_counter()
        cost = self.ctx.cost(cand)
        cost_s = time.perf_counter() - mid
        base = {"workload_s": mid - start, "cost_s": cost_s}
        # bounds on what depends on activity wait for the spikes measured after evaluation
        deferred = self.ctx.hardware.activity_fields
        static = {k: v for k, v in cost.violations.items() if k not in deferred}
        for key, value in static.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("candidate", cand.to_dict())
        trial.set_user_attr("cost", cost.to_dict())
        if any(v > 0 for v in static.values()):
            trial.set_user_attr("timing_s", base)
            static_cost = cost.with_violations({k: v for k, v in static.items() if v > 0})
            raise optuna.TrialPruned("infeasible: " + "; ".join(static_cost.why_infeasible()))

        key = cand.to_json()
        if key in self.seen:  # evaluation is deterministic: reuse, don't recompute
            earlier, metrics, cost, runtime = self.seen[key]
            timing = {**base, "fp_train_s": 0.0, "eval_s": 0.0}
            trial.set_user_attr("duplicate_of", earlier)
        else:
            promote = self._promoter(trial, cand) if self.ctx.train_cfg.qat == "promote" else None
            metrics, timing, cost = self.ctx.evaluate(cand, promote=promote)
            timing = {**base, **timing}
            # float reductions (training, spiking thresholds) depend on torch's thread count:
            # a rebuild repeats it to reproduce the figures exactly
            runtime = {"torch_threads": torch.get_num_threads()}
            self.seen[key] = (trial.number, metrics, cost, runtime)
        if runtime is not None:
            trial.set_user_attr("runtime", runtime)
        for key_ in deferred:
            if key_ in cost.violations:
                trial.set_constraint(key_, cost.violations[key_])
        for bound_key, value in self._metric_violations(cand, metrics).items():
            trial.set_constraint(bound_key, value)
        if deferred:
            trial.set_user_attr("cost", cost.to_dict())
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("timing_s", timing)
        return self._values(metrics, cost)

    def _metric_violations(self, cand: Candidate, metrics: dict[str, float]) -> dict[str, float]:
        """The spec's bounds on task metrics (> 0: broken), measured after evaluation; a
        ``max_drop`` compares with the candidate's own FP model."""
        out = {}
        for bound in self.ctx.spec.metric_bounds:
            fp = self.ctx.fp_metrics(cand)[bound.metric] if bound.max_drop is not None else None
            out[bound.key()] = bound.violation(float(metrics[bound.metric]), fp)
        return out

    def _values(self, metrics: dict[str, float], cost: Cost) -> list[float]:
        return [float(metrics[o.name]) if o.name in metrics else cost.value(o.name)
                for o in self.objectives]

    def _promoter(self, trial: optuna.trial.Trial, cand: Candidate) -> Promote:
        """Multi-fidelity (``task.qat = "promote"``): PTQ is the cheap fidelity, PTQ + QAT
        the expensive one. A candidate is promoted when its PTQ result, with each metric
        objective (accuracy) ``promote_margin`` better, is not dominated by any feasible
        finished trial of the study; cost objectives count as measured on the PTQ model.
        The PTQ objective values and the decision are stored as user attr ``fidelity``."""
        margin = self.ctx.train_cfg.promote_margin
        metrics = self.ctx.spec.metrics

        def promote(ptq: dict[str, float], cost: Cost) -> bool:
            low = self._values(ptq, cost)
            optimistic = [v if o.name not in metrics else v + (margin if o.direction == "maximize"
                                                                 else -margin)
                          for v, o in zip(low, self.objectives, strict=True)]
            done = [t.values for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if is_feasible(t)]
            dominated_by = next((v for v in done if dominates(v, optimistic, self.directions)), None)
            trial.set_user_attr("fidelity", {
                "low_values": low, "promoted": dominated_by is None, "margin": margin,
                "compared_with": len(done)})
            return dominated_by is None

        return promote
