"""PrefetchSampler: the default strategy's GP proposals computed while the trial evaluates."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from bitnas.search.prefetch import PrefetchSampler
from bitnas.search.strategies import HandoffSampler, sensitivity_guided

CHOICES = [2, 4, 8]
GROUPS = 3
#: the GP proposes after 4 random trials (its n_startup_trials for this budget): trial 4
#: computes its proposal at once, trials 5-7 take theirs prefetched
N_TRIALS, PREFETCHED = 8, 3


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def two_objectives(trial: optuna.Trial, groups: int = GROUPS) -> tuple[float, float]:
    bits = [trial.suggest_categorical(f"g{i}.w_bits", CHOICES) for i in range(groups)]
    accuracy = sum(min(b, 5) for b in bits) / (5 * groups)  # saturates: a real trade-off
    energy_j = sum(b * (i + 1) for i, b in enumerate(bits)) * 1e-9
    return accuracy, energy_j


def run(objective, seed: int = 0) -> tuple[optuna.Study, PrefetchSampler, dict]:
    """The default strategy's sampler on ``objective``; also, per trial, the proposal
    that was started for the next trial once its params were drawn."""
    sampler = sensitivity_guided(seed=seed, n_trials=N_TRIALS)
    assert isinstance(sampler, HandoffSampler) and isinstance(sampler.first, PrefetchSampler)
    prefetch = sampler.first
    ahead: dict[int, object] = {}

    def recording(trial):
        values = objective(trial)
        ahead[trial.number] = prefetch.last
        return values

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(recording, n_trials=N_TRIALS)
    return study, prefetch, ahead


def no_prefetch_thread_left(sampler: PrefetchSampler) -> bool:
    """After the last trial only a thread that found the budget spent may still be ending."""
    assert sampler.last is not None and sampler.last.number == N_TRIALS
    sampler.last.join()
    assert sampler.last.params is None  # it computed nothing
    return not any(t.name.startswith("bitnas-prefetch") for t in threading.enumerate())


def test_seeded_runs_repeat_exactly_whatever_the_timing():
    """The proposal depends on the trials before it, not on when the thread reads them:
    trials that end at once (before the thread reads the study) and trials that take
    a while must give the same params."""
    fast, fast_sampler, _ = run(two_objectives)

    def slow(trial):
        values = two_objectives(trial)
        time.sleep(0.05 * (trial.number % 2))  # some trials end after the thread's read
        return values

    slow_study, slow_sampler, _ = run(slow)
    assert [t.params for t in fast.trials] == [t.params for t in slow_study.trials]
    assert fast_sampler.taken == slow_sampler.taken == PREFETCHED
    assert no_prefetch_thread_left(fast_sampler)  # none for a trial past the budget


def test_prefetched_params_are_valid_used_and_computed_during_the_evaluation():
    """Timestamps, not speed: trial n+1's proposal runs during trial n's evaluation."""
    spans: dict[int, tuple[float, float]] = {}

    def evaluating(trial):
        values = two_objectives(trial)  # the params are drawn: the next proposal has started
        start = time.perf_counter()
        time.sleep(0.3)  # the evaluation
        spans[trial.number] = (start, time.perf_counter())
        return values

    study, sampler, ahead = run(evaluating)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert set(t.params) == {f"g{i}.w_bits" for i in range(GROUPS)}
        assert all(v in CHOICES for v in t.params.values())
    used = [t for t in study.trials[1:] if ahead[t.number - 1] is not None and ahead[t.number - 1].params]
    assert len(used) == sampler.taken == PREFETCHED
    for t in used:
        proposal = ahead[t.number - 1]
        assert proposal.number == t.number and proposal.params == t.params  # taken as computed
        assert t.params != study.trials[t.number - 1].params  # the pending trial is not proposed again
        start, end = spans[t.number - 1]
        assert proposal.start_s < end  # began before the previous trial's evaluation was over
        assert max(start, proposal.start_s) < min(end, proposal.end_s)  # and ran beside it
    assert no_prefetch_thread_left(sampler)


def test_a_changed_search_space_is_proposed_afresh():
    """From trial 6 on, one group is no longer searched: the proposal prefetched for the
    old space is dropped, and the trial's params still fit its own."""

    def shrinking(trial):
        return two_objectives(trial, groups=GROUPS if trial.number < 6 else GROUPS - 1)

    study, sampler, _ = run(shrinking)
    assert all(set(t.params) == {f"g{i}.w_bits" for i in range(GROUPS - 1)} for t in study.trials[6:])
    assert sampler.taken == PREFETCHED - 1  # trial 7's space lost a group: computed on the spot
    assert no_prefetch_thread_left(sampler)


def test_a_failed_proposal_is_raised_in_the_trial_that_takes_it():
    class Failing(optuna.samplers.RandomSampler):
        def infer_relative_search_space(self, study, trial):
            return {"x": optuna.distributions.CategoricalDistribution(CHOICES)}

        def sample_relative(self, study, trial, search_space):
            if trial.number >= 1:  # the call prefetched for trial 1 fails
                raise RuntimeError("acquisition failed")
            return {"x": 2}

    study = optuna.create_study(sampler=PrefetchSampler(Failing(seed=0)))
    with pytest.raises(RuntimeError, match="acquisition failed"):
        study.optimize(lambda t: t.suggest_categorical("x", CHOICES), n_trials=3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
