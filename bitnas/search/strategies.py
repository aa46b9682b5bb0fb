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
                   arch: dict | None = None) -> dict:
    """Optuna params of the candidate with every group at ``w_bits`` and ``quantizer``.

    Architecture knobs take ``arch``'s values (keyed by Optuna param name, e.g.
    ``width0``, not ``arch_dict()``'s ``widths``), else the space's first choice; other
    precision knobs (a_bits, v_bits) take their widest choice. The result can be
    passed to ``study.enqueue_trial`` and rebuilds through ``space.suggest``.
    """
    arch = arch or {}

    def pick(name, choices):
        knob = name.rpartition(".")[2]
        if "." not in name:
            return arch.get(name, choices[0])
        if knob == "w_bits":
            return w_bits
        if knob == "quantizer":
            return quantizer
        return max(choices)

    picker = _Picker(pick)
    space.suggest(picker)
    return picker.params
