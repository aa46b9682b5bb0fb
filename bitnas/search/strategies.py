"""Search strategies: explicitly chosen, seeded Optuna samplers (registered in ``STRATEGIES``).

A strategy is a :class:`Strategy` record: a sampler factory, an optional warm start
(params queued into the study before the sampler proposes anything) and a
one-line description. Register one with ``@strategy("name")`` on its sampler
factory, or, from a plugin, with an entry point in group ``bitnas.strategies``
that names a ``Strategy``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from bitnas.errors import BitnasError
from bitnas.registry import STRATEGIES
from bitnas.spaces.base import PRECISION_KNOBS, split_knob

#: (search context, spec, trial budget, log) -> Optuna params to queue before sampling
WarmStart = Callable[[Any, Any, int, Callable[[str], None]], list[dict]]


@dataclass(frozen=True)
class Strategy:
    """How a study proposes candidates.

    ``sampler(seed=, n_trials=)`` makes the seeded Optuna sampler; ``warm_start``,
    when set, computes params that the study evaluates first (once per study: its
    claim is recorded on the study, see ``bitnas.search.study``).
    """

    sampler: Callable[..., optuna.samplers.BaseSampler]
    description: str
    warm_start: WarmStart | None = None

    def __call__(self, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
        return self.sampler(seed=seed, n_trials=n_trials)


def strategy(name: str, *, warm_start: WarmStart | None = None
             ) -> Callable[[Callable[..., optuna.samplers.BaseSampler]], Strategy]:
    """Decorator: register a sampler factory as strategy ``name`` (its docstring's first
    line is the description)."""

    def deco(factory: Callable[..., optuna.samplers.BaseSampler]) -> Strategy:
        lines = (factory.__doc__ or "").strip().splitlines()
        record = Strategy(factory, lines[0] if lines else "", warm_start)
        STRATEGIES.register(name)(record)
        return record

    return deco


@strategy("tpe")
def tpe(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (Optuna); handles the depth-dependent knobs as groups."""
    with warnings.catch_warnings():  # `multivariate` and `group` are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=min(10, max(4, n_trials // 4))
        )


@strategy("nsga2")
def nsga2(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-II genetic search (Optuna), population sized to the trial budget."""
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(8, n_trials // 4)))


@strategy("nsga3")
def nsga3(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-III (Optuna): reference-direction selection, suited to three or more objectives."""
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=min(50, max(8, n_trials // 4)))


@strategy("gp")
def gp(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process Bayesian optimisation (Optuna's GPSampler); evaluation is deterministic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True,
                                         n_startup_trials=min(10, max(4, n_trials // 4)))


@strategy("ehvi")
def ehvi(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process EHVI over a pool of candidates (bitnas's own; cheap proposals)."""
    from bitnas.search.ehvi import PoolEHVISampler

    return PoolEHVISampler(seed=seed, n_startup_trials=min(10, max(4, n_trials // 4)))


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
        group, knob = split_knob(param_name)
        if group is None:  # an architecture knob
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        draws = self._draws.setdefault(trial.number, {})
        choices = getattr(param_distribution, "choices", ())
        if knob not in draws:
            draws[knob] = self._random.sample_independent(study, trial, param_name, param_distribution)
        if draws[knob] in choices:
            return draws[knob]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._draws.pop(trial.number, None)


@strategy("uniform")
def uniform(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """Uniform precision: all groups share one randomly drawn precision per trial (the baseline)."""
    return UniformPrecisionSampler(seed)


@strategy("random")
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


def uniform_params(space, w_bits, quantizer: str = "uniform",
                   arch: dict | None = None, arch_pick=None, precision_pick=None) -> dict:
    """Optuna params of the candidate with every group at ``w_bits`` and ``quantizer``.

    Architecture knobs take ``arch``'s values (keyed by Optuna param name, e.g.
    ``width0``, not ``arch_dict()``'s ``widths``), else ``arch_pick(choices)`` (default:
    the space's first choice; ``max`` gives the largest model); other
    precision knobs (a_bits, v_bits) take their widest choice, and quantizer options
    their first, unless ``precision_pick(choices)`` is given (``min``: the cheapest; it
    applies to numeric options only). The result can be passed to
    ``study.enqueue_trial`` and rebuilds through ``space.suggest``.
    """
    arch = arch or {}

    def pick(name, choices):
        group, knob = split_knob(name)
        if group is None:
            return arch[name] if name in arch else (arch_pick or (lambda c: c[0]))(choices)
        if knob == "w_bits":
            if callable(w_bits):  # e.g. min or max: each group's own extreme
                return w_bits(choices)
            pinned = group in space.precision.group_w_bits
            if pinned and w_bits not in choices:  # pinned by group_w_bits: its nearest bits
                return min(choices, key=lambda b: (abs(b - w_bits), -b))
            return w_bits
        if knob == "quantizer":
            return quantizer
        if knob in PRECISION_KNOBS:  # a_bits, v_bits: the widest
            return (precision_pick or max)(choices)
        if precision_pick is not None and all(isinstance(c, int | float) for c in choices):
            return precision_pick(choices)
        return choices[0]  # a quantizer option searched per group: its first value

    picker = _Picker(pick)
    space.suggest(picker)
    return picker.params


def ilp_params(ctx, spec, n_plans: int, log=lambda msg: None) -> list[dict]:
    """Params of the ILP's front: HAWQ-V3-style plans for a sweep of budgets.

    The architecture is the space's first choice of every knob (fix the arch in the
    spec to choose it). Sensitivities come from the trained FP model on 128 training
    samples; costs from the study's hardware model (static: no spikes are measured
    for a plan that is not built) on the first minimised cost objective, else
    weight_bytes. The spec's bounds on cost fields limit every plan (marginal costs,
    like the budget's), so that no queued plan is ruled out before it is built.
    """
    import numpy as np
    from optuna.trial import FixedTrial

    from bitnas.evaluators.base import Split
    from bitnas.search import ilp, sensitivity

    space = ctx.space
    prec = space.precision
    choices = [(b, q) for q in prec.quantizers for b in prec.all_w_bits()]
    base = uniform_params(space, min, prec.quantizers[0])  # each group at its fewest bits
    cand = space.suggest(FixedTrial(base))
    groups, _ = ctx.structure(cand)
    field = next((o.name for o in spec.objectives
                  if o.name in spec.cost_fields and o.direction == "minimize"),
                 "weight_bytes")
    model, _ = ctx.fp_model(cand)
    batch = Split(ctx.data.train.x[:128], ctx.data.train.y[:128])
    sens = sensitivity.estimate(model, groups, batch, choices, seed=spec.seed)

    def with_choice(params: dict, g: str, c: tuple[int, str]) -> dict:
        return {**params, f"{g}.w_bits": c[0], f"{g}.quantizer": c[1]}

    allowed = np.array([[c[0] in prec.group_w_bits.get(g, prec.w_bits) for c in choices] for g in groups])
    base_cost = ctx.cost(cand)
    costs = [[ctx.cost(space.suggest(FixedTrial(with_choice(base, g, c)))) if ok else None
              for c, ok in zip(choices, row, strict=True)] for g, row in zip(groups, allowed, strict=True)]

    def marginal(name: str) -> np.ndarray:  # a choice a group may not take counts as 0
        base_value = base_cost.value(name)
        return ilp.marginal_costs(base_value, [[base_value if c is None else c.value(name) for c in row]
                                               for row in costs])

    # the spec's bounds on cost fields, as limits on the same marginal costs
    limits = [(marginal(name), bound - base_cost.value(name)) for name, bound in spec.constraints.items()]
    omega = np.array([[sens.omega(g, *c) for c in choices] for g in groups])
    plans = ilp.sweep(omega, marginal(field), n_plans, allowed, limits)
    bounded = f" within {', '.join(spec.constraints)}" if limits else ""
    log(f"ilp: {sens.estimator} sensitivities of {len(groups)} groups x {len(choices)} choices; "
        f"{len(plans)} distinct plans over a sweep of {field} budgets{bounded} queued")
    out = []
    for plan in plans:
        params = dict(base)
        for g, i in zip(groups, plan, strict=True):
            params = with_choice(params, g, choices[i])
        out.append(params)
    return out


@strategy("ilp", warm_start=ilp_params)
def ilp(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """HAWQ-V3-style: an ILP over Hessian (or Fisher) sensitivities, swept over budgets."""
    return optuna.samplers.RandomSampler(seed=seed)  # only once the ILP's plans are spent


#: sensitivity-guided: the share of the budget given to the ILP's front
ILP_SHARE = 1 / 3


def _ilp_share(ctx, spec, n_trials: int, log) -> list[dict]:
    return ilp_params(ctx, spec, max(4, int(n_trials * ILP_SHARE)), log)


@strategy("sensitivity-guided", warm_start=_ilp_share)
def sensitivity_guided(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The ILP's front first (a third of the budget), then Gaussian-process EHVI refines it."""
    # Optuna's GPSampler found the same fronts on the bench, but its proposals cost ~0.3 s
    # (a third of a PTQ evaluation); computed beside the evaluation instead, in a thread
    # or a process, it slowed the evaluation on 2 cores by more than it hid
    return ehvi(seed=seed, n_trials=n_trials)
