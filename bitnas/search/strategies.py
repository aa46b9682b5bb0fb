"""Search strategies: explicitly chosen, seeded Optuna samplers (registered in ``STRATEGIES``)."""

from __future__ import annotations

import optuna

from bitnas.registry import STRATEGIES


@STRATEGIES.register("tpe")
def tpe(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (Optuna); handles the depth-dependent knobs as groups."""
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
