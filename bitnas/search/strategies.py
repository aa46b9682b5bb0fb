"""Search strategies: explicitly chosen, seeded Optuna samplers (registered in ``STRATEGIES``)."""

from __future__ import annotations

import warnings

import optuna

from bitnas.errors import BitnasError
from bitnas.registry import STRATEGIES


@STRATEGIES.register("tpe")
def tpe(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (Optuna); handles the depth-dependent knobs as groups."""
    with warnings.catch_warnings():  # `multivariate` and `group` are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=min(10, max(4, n_trials // 4))
        )


@STRATEGIES.register("nsga2")
def nsga2(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-II genetic search (Optuna), population sized to the trial budget."""
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(8, n_trials // 4)))


@STRATEGIES.register("nsga3")
def nsga3(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-III (Optuna): reference-direction selection, suited to three or more objectives."""
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=min(50, max(8, n_trials // 4)))


@STRATEGIES.register("gp")
def gp(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process Bayesian optimisation (Optuna's GPSampler); evaluation is deterministic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True,
                                         n_startup_trials=min(10, max(4, n_trials // 4)))


class UniformPrecisionSampler(optuna.samplers.BaseSampler):
    """Every layer group of a trial at the same precision: the baseline of every search.

    Per trial, each precision knob (``w_bits``, ``a_bits``, ``quantizer``, ``v_bits``)
    is drawn once at random and every group takes that value; architecture knobs
    are drawn at random too.
    """

    def __init__(self, seed: int) -> None:
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._draws: dict[int, dict[str, object]] = {}  # trial number -> knob -> value

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        if "." not in param_name:  # an architecture knob
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        knob = param_name.rpartition(".")[2]
        draws = self._draws.setdefault(trial.number, {})
        choices = getattr(param_distribution, "choices", ())
        if knob not in draws or draws[knob] not in choices:
            draws[knob] = self._random.sample_independent(study, trial, param_name, param_distribution)
        return draws[knob]

    def after_trial(self, study, trial, state, values):
        self._draws.pop(trial.number, None)


@STRATEGIES.register("uniform")
def uniform(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Uniform precision: all groups share one randomly drawn precision per trial (the baseline)."""
    return UniformPrecisionSampler(seed)


@STRATEGIES.register("random")
def random(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Uniform random sampling (Optuna): the sanity baseline for every other strategy."""
    return optuna.samplers.RandomSampler(seed=seed)


class _Picker:
    """Stands in for a trial: answers each categorical knob by ``pick(name, choices)``."""

    def __init__(self, pick) -> None:
        self.pick = pick
        self.params: dict = {}

    def suggest_categorical(self, name: str, choices):
        value = self.pick(name, tuple(choices))
        if value not in choices:
            raise BitnasError(f"{name} = {value!r} is not one of the space's choices {list(choices)}")
        self.params[name] = value
        return value


def uniform_params(space, w_bits: int, quantizer: str = "uniform",
                   arch: dict | None = None, arch_pick=None) -> dict:
    """Optuna params of the candidate with every group at ``w_bits`` and ``quantizer``.

    Architecture knobs take ``arch``'s values (keyed by Optuna param name, e.g.
    ``width0``, not ``arch_dict()``'s ``widths``), else ``arch_pick(choices)`` (default:
    the space's first choice; ``max`` gives the largest model); other
    precision knobs (a_bits, v_bits) take their widest choice. The result can be
    passed to ``study.enqueue_trial`` and rebuilds through ``space.suggest``.
    """
    arch = arch or {}

    def pick(name, choices):
        knob = name.rpartition(".")[2]
        if "." not in name:
            return arch[name] if name in arch else (arch_pick or (lambda c: c[0]))(choices)
        if knob == "w_bits":
            return w_bits
        if knob == "quantizer":
            return quantizer
        return max(choices)

    picker = _Picker(pick)
    space.suggest(picker)
    return picker.params
