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


#: the ILP warm start gives each architecture it covers at least this many plans
PLANS_PER_ARCH = 3
#: and covers this many architectures at most: each one's float model is trained before
#: the first trial (hours, on real event data)
WARM_ARCHS = 4
#: architectures enumerated at most (a larger space is covered by the first ones)
MAX_ARCHS = 64


def arch_params(space, limit: int = MAX_ARCHS) -> list[dict]:
    """Every architecture of ``space`` (at most ``limit``), each as the Optuna params of
    its architecture knobs; knobs that exist only for some choices of others (a CNN's
    ``width1`` under ``depth = 2``) are followed. The first is the space's first choice
    of every knob."""
    out: list[dict] = []
    stack: list[list[int]] = [[]]  # choice indices of the arch knobs met, in order
    while stack and len(out) < limit:
        prefix = stack.pop()
        met: list[int] = []  # number of choices of each arch knob met

        def pick(name, choices, prefix=prefix, met=met):
            if split_knob(name)[0] is not None:
                return choices[0]
            i = len(met)
            met.append(len(choices))
            return choices[prefix[i] if i < len(prefix) else 0]

        picker = _Picker(pick)
        space.suggest(picker)
        out.append({k: v for k, v in picker.params.items() if split_knob(k)[0] is None})
        full = prefix + [0] * (len(met) - len(prefix))
        for i in range(len(met) - 1, len(prefix) - 1, -1):  # vary one knob past the prefix
            stack.extend(full[:i] + [c] for c in range(met[i] - 1, 0, -1))
    return out


def ilp_params(ctx, spec, n_plans: int, log=lambda msg: None) -> list[dict]:
    """Params of the ILP's front: HAWQ-V3-style plans for a sweep of budgets.

    The plans are shared among the space's architectures, at least
    ``PLANS_PER_ARCH`` each and ``WARM_ARCHS`` architectures at most; when there are
    more than that allows, the ones covered are spread evenly over the range of the
    cost field's value at each architecture's cheapest plan. Each covered
    architecture's FP model is trained for its sensitivities (128 training samples);
    costs come from the study's hardware model (static: no spikes are measured for a
    plan that is not built) on the first minimised cost objective, else weight_bytes.
    The spec's bounds on cost fields limit every plan (marginal costs, like the
    budget's), so that no queued plan is ruled out before it is built. Precision knobs
    other than weight bits and scheme (a_bits, v_bits) take their widest choice: the
    search after the warm start explores them.
    """
    from optuna.trial import FixedTrial

    space = ctx.space
    prec = space.precision
    field = next((o.name for o in spec.objectives
                  if o.name in spec.cost_fields and o.direction == "minimize"),
                 "weight_bytes")
    archs = arch_params(space)
    bases = [uniform_params(space, min, prec.quantizers[0], arch=a) for a in archs]  # fewest bits
    n_archs = min(len(archs), WARM_ARCHS, max(1, n_plans // PLANS_PER_ARCH))
    if n_archs < len(archs):
        import numpy as np

        by_cost = sorted(range(len(archs)),
                         key=lambda i: ctx.cost(space.suggest(FixedTrial(bases[i]))).value(field))
        bases = [bases[by_cost[int(i)]] for i in np.unique(np.linspace(0, len(archs) - 1, n_archs).round())]
    shares = [n_plans // len(bases) + (i < n_plans % len(bases)) for i in range(len(bases))]
    out: list[dict] = []
    for i, (base, share) in enumerate(zip(bases, shares, strict=True)):
        arch = " ".join(f"{k}={v}" for k, v in base.items() if split_knob(k)[0] is None)
        where = f" ({arch})" if len(archs) > 1 else ""
        log(f"ilp: architecture {i + 1} of {len(bases)}{where}: float model (trained once, then "
            "cached) and sensitivities")
        plans, note = _ilp_front(ctx, spec, base, share, field)
        out.extend(plans)
        log(f"ilp: {note}; {len(plans)} distinct plans over a sweep of {field} budgets"
            f"{' within ' + ', '.join(spec.constraints) if spec.constraints else ''} queued{where}")
    return out


def _ilp_front(ctx, spec, base: dict, n_plans: int, field: str) -> tuple[list[dict], str]:
    """The ILP's plans for the architecture of ``base`` (params with every group at its
    fewest bits), and a note on the sensitivities used."""
    import numpy as np
    from optuna.trial import FixedTrial

    from bitnas.evaluators.base import Split
    from bitnas.search import ilp, sensitivity

    space = ctx.space
    prec = space.precision
    cand = space.suggest(FixedTrial(base))
    all_groups, workload = ctx.structure(cand)
    members = {g: [w for w in workload if (w.group or w.name) == g and w.weighted and not w.folded]
               for g in all_groups}
    # the groups with weights to choose for (a scan state's group keeps the base's bits)
    groups = {g: names for g, names in all_groups.items() if members[g]}
    per_group = {g: prec.weight_choices(g) for g in groups}
    choices = list(dict.fromkeys(c for cs in per_group.values() for c in cs))
    model, _ = ctx.fp_model(cand)
    batch = Split(ctx.data.train.x[:128], ctx.data.train.y[:128])
    sens = sensitivity.estimate(model, groups, batch, per_group, seed=spec.seed)

    def with_choice(params: dict, g: str, c) -> dict:
        # the group's option knobs of another scheme do not apply to this one
        kept = {k: v for k, v in params.items()
                if not (k.startswith(f"{g}.") and split_knob(k)[1] not in PRECISION_KNOBS)}
        return {**kept, **c.params(g, prec.options)}

    base_cost = ctx.cost(cand)
    scheme = ctx.hardware.scheme_key
    broken_before = {k for k, v in base_cost.violations.items() if v > 0} | {scheme}

    def runs(g: str, c) -> bool:  # the hardware runs the group under the choice's scheme
        lq = space.suggest(FixedTrial(with_choice(base, g, c))).plan[g]
        return not any(ctx.hardware.scheme_issue(w, lq) for w in members[g])

    costs = [[ctx.cost(space.suggest(FixedTrial(with_choice(base, g, c)))) if c in per_group[g] else None
              for c in choices] for g in groups]
    # left out: a choice the group may not take, one whose scheme the hardware cannot run (even
    # where the base plan's can't either), and one that alone breaks a limit the base plan keeps
    allowed = np.array([[cost is not None and runs(g, c)
                         and not ({k for k, v in cost.violations.items() if v > 0} - broken_before)
                         for c, cost in zip(choices, row, strict=True)]
                        for g, row in zip(groups, costs, strict=True)])

    def marginal(name: str) -> np.ndarray:  # a choice a group may not take counts as 0
        base_value = base_cost.value(name)
        return ilp.marginal_costs(base_value, [[base_value if c is None else c.value(name) for c in row]
                                               for row in costs])

    # the spec's bounds on cost fields, as limits on the same marginal costs
    limits = [(marginal(name), bound - base_cost.value(name)) for name, bound in spec.constraints.items()]
    omega = np.array([[sens.omega(g, c) if c in per_group[g] else 0.0 for c in choices] for g in groups])
    out = []
    for plan in ilp.sweep(omega, marginal(field), n_plans, allowed, limits):
        params = dict(base)
        for g, i in zip(groups, plan, strict=True):
            params = with_choice(params, g, choices[i])
        out.append(params)
    return out, f"{sens.estimator} sensitivities of {len(groups)} groups x {len(choices)} choices"


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
