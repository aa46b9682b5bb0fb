"""Take a slow sampler's proposals off the critical path: the next trial's proposal is
computed in a background thread while the current trial is evaluated.

Optuna's GPSampler spends about 0.2 s per proposal optimising its acquisition function,
which is as much as a PTQ evaluation of a small model. :class:`PrefetchSampler` starts
trial n+1's relative proposal as soon as trial n's is drawn, from a snapshot of the
study at that moment (trials numbered below n, with trial n pending at its proposed
params), so that the two run side by side. The sampler sees what two workers sharing a
study would see (GPSampler's batch acquisition treats pending trials as such): one
trial's lag, never a timing-dependent one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class _Proposal:
    """One background ``sample_relative``: for trial ``number`` over ``space``."""

    def __init__(self, number: int, space: dict[str, BaseDistribution], work) -> None:
        self.number, self.space = number, space
        self.params: dict[str, Any] | None = None  # None: no proposal (the budget is spent)
        self.error: BaseException | None = None
        # perf_counter() when the computation started and ended (tests check the overlap)
        self.start_s = self.end_s = float("nan")

        def target() -> None:
            self.start_s = time.perf_counter()
            try:
                self.params = work()
            except BaseException as e:  # re-raised in the trial that takes the proposal
                self.error = e
            finally:
                self.end_s = time.perf_counter()

        # not a daemon: a proposal in flight at exit finishes instead of dying inside torch
        self._thread = threading.Thread(target=target, name=f"bitnas-prefetch-{number}")
        self._thread.start()

    def result(self) -> dict[str, Any] | None:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.params

    def join(self) -> None:
        self._thread.join()


class PrefetchSampler(optuna.samplers.BaseSampler):
    """``base``'s proposals, each computed during the previous trial's evaluation.

    When trial n draws its relative params (from a prefetched proposal, or computed at
    once when none fits), trial n+1's proposal starts in a thread: ``base.sample_relative``
    on an in-memory copy of the study holding its COMPLETE and RUNNING trials numbered
    below n, plus trial n as RUNNING at its proposed params. Trial n+1 takes that proposal
    when its relative search space is the one it was computed for and it is not empty
    (``base`` had too few trials then, as in its start-up phase); otherwise it computes
    its own, as ``base`` would. The proposal depends only on the trials and ``base``'s
    seeded state, never on timing, so a seeded one-worker study repeats exactly.

    ``stop_at``: no proposal is computed for a trial that would start once the study has
    this many finished trials (the budget, or a hand-over to another sampler): the thread
    that finds so ends at once, instead of optimising an acquisition nobody asks for.

    ``base`` must not share mutable state between ``sample_relative`` and its other
    methods, which run meanwhile on the caller's thread (true of GPSampler: its random
    state and GP cache serve ``sample_relative`` only; independent sampling has its own).
    """

    def __init__(self, base: optuna.samplers.BaseSampler, *, stop_at: int | None = None) -> None:
        self.base, self.stop_at = base, stop_at
        self._next: _Proposal | None = None
        # trials of one study.optimize(n_jobs > 1) ask from several threads: one at a time
        self._lock = threading.Lock()
        #: the proposals taken, and the last one started (kept for the timing test)
        self.taken = 0
        self.last: _Proposal | None = None

    def infer_relative_search_space(self, study, trial):
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        with self._lock:
            params = self._take(trial.number, search_space)
            if params is None:  # nothing prefetched that fits: compute it now, as base would
                params = self.base.sample_relative(study, trial, search_space)
            else:
                self.taken += 1
            self._start(study, trial.number, params, search_space)
        return params

    def _take(self, number: int, search_space: dict[str, BaseDistribution]) -> dict[str, Any] | None:
        """The prefetched proposal for trial ``number``, or None when there is none that fits.
        Any other proposal in flight is waited for first: ``base`` serves one call at a time."""
        ahead, self._next = self._next, None
        if ahead is None:
            return None
        if ahead.number != number or ahead.space != search_space:
            ahead.join()  # computed for another trial or space: discarded, whatever it holds
            return None
        # an empty proposal (too few trials then, one more now) is asked for again
        return ahead.result() or None

    def _start(self, study: optuna.Study, number: int, params: dict[str, Any],
               search_space: dict[str, BaseDistribution]) -> None:
        pending = optuna.trial.create_trial(state=TrialState.RUNNING, params=dict(params),
                                            distributions={k: search_space[k] for k in params})

        def work() -> dict[str, Any] | None:
            # the trials as they stood when trial `number` began (those numbered below it
            # are not written by this worker meanwhile: trial `number` is its only one)
            trials = [t for t in study.get_trials(deepcopy=False) if t.number < number]
            if self.stop_at is not None and sum(t.state in FINISHED for t in trials) + 1 >= self.stop_at:
                return None  # trial `number` may finish the budget: no proposal after it
            snapshot, next_trial = _snapshot(study.directions, trials, pending)
            return self.base.sample_relative(snapshot, next_trial, search_space)

        self._next = self.last = _Proposal(number + 1, search_space, work)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        with self._lock:
            if self._next is not None:  # base's random state must not change under the thread
                self._next.join()
                self._next = None
            self.base.reseed_rng()


def _snapshot(directions: Sequence[optuna.study.StudyDirection], trials: Sequence[FrozenTrial],
              pending: FrozenTrial) -> tuple[optuna.Study, FrozenTrial]:
    """An in-memory study of ``trials`` (COMPLETE and RUNNING: what a relative sampler
    reads) and ``pending``, and a fresh RUNNING trial of it to propose for.

    Only what a sampler reads is copied (params, values, constraints), not the user
    attrs: bitnas stores each trial's cost breakdown there, and copying it per proposal
    would cost more than it saves.
    """
    copies = [optuna.trial.create_trial(
        state=t.state, values=t.values if t.state == TrialState.COMPLETE else None,
        params=t.params, distributions=t.distributions, constraints=t.constraints or None)
        for t in trials if t.state in (TrialState.COMPLETE, TrialState.RUNNING)]
    study = optuna.create_study(directions=list(directions),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.add_trials([*copies, pending])
    number = study.ask().number
    return study, study.get_trials(deepcopy=False)[number]
