"""HAWQ-V3-style bit allocation: an integer linear program over per-group sensitivities.

Pick one precision choice c per layer group g (x[g, c] = 1) to minimise the total
sensitivity sum Omega_g(c) subject to a budget on one cost, sum cost_g(c) <= B.
``scipy.optimize.milp`` (HiGHS) solves it exactly; a sweep of budgets between the
cheapest and the dearest plan gives a whole front of plans in well under a second.

The cost model is not additive in general (a layer's output is written at the next
layer's bits; static energy depends on the slowest core), so the ILP uses each
group's *marginal* cost: the plan's cost with g at c and every other group at the
cheapest choice, minus the all-cheapest plan's cost. The plans it picks are then
evaluated for real, with the full cost model, in the study.

The spec's bounds on cost fields (``weight_bytes <= 16384``) enter as further linear
constraints, in the same marginal form, so that the sweep spends no trial on a plan
the bounds already rule out (exact for additive fields such as weight bytes).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

#: a further bound: (cost per [group, choice], the most the chosen choices may sum to)
Limit = tuple[np.ndarray, float]


def _scaled_row(cost: np.ndarray, bound: float, allowed: np.ndarray) -> LinearConstraint:
    """sum(cost[chosen]) <= bound, in O(1) units: costs of 1e-10 J sit below HiGHS's
    feasibility tolerance (1e-7)."""
    cost = np.where(allowed, cost, 0.0)
    scale = float(np.abs(cost).max()) or 1.0
    return LinearConstraint((cost / scale).ravel()[None, :], -np.inf, bound / scale)


def solve(omega: np.ndarray, cost: np.ndarray, budget: float,
          allowed: np.ndarray | None = None, limits: Sequence[Limit] = ()) -> list[int] | None:
    """Choice index per group minimising sum(omega) with sum(cost) <= budget and every
    further limit kept; None if no plan fits. ``omega``, ``cost``, ``allowed`` (which
    choices a group may take; default all) and each limit's costs are [groups, choices]."""
    n_groups, n_choices = omega.shape
    allowed = np.ones(omega.shape, dtype=bool) if allowed is None else allowed
    omega = np.where(allowed, omega, 0.0)
    omega = omega / (float(np.abs(omega).max()) or 1.0)
    one_each = np.kron(np.eye(n_groups), np.ones(n_choices))
    res = milp(
        c=omega.ravel(),
        constraints=[LinearConstraint(one_each, 1, 1), _scaled_row(cost, budget, allowed),
                     *(_scaled_row(c, b, allowed) for c, b in limits)],
        integrality=np.ones(omega.size),
        bounds=Bounds(0, allowed.ravel().astype(float)),
    )
    if res.status != 0 or res.x is None:
        return None
    return [int(i) for i in np.argmax(res.x.reshape(n_groups, n_choices), axis=1)]


def brute_force(omega: np.ndarray, cost: np.ndarray, budget: float,
                allowed: np.ndarray | None = None, limits: Sequence[Limit] = ()) -> list[int] | None:
    """The same problem by enumeration (for tests on tiny problems)."""
    allowed = np.ones(omega.shape, dtype=bool) if allowed is None else allowed
    best, best_val = None, np.inf
    for pick in itertools.product(range(omega.shape[1]), repeat=omega.shape[0]):
        rows = np.arange(omega.shape[0])
        if not allowed[rows, pick].all():
            continue
        if any(c[rows, pick].sum() > b + 1e-12 for c, b in limits):
            continue
        if cost[rows, pick].sum() <= budget + 1e-12 and omega[rows, pick].sum() < best_val:
            best, best_val = list(pick), omega[rows, pick].sum()
    return best


def sweep(omega: np.ndarray, cost: np.ndarray, n_budgets: int,
          allowed: np.ndarray | None = None, limits: Sequence[Limit] = ()) -> list[list[int]]:
    """Distinct optimal plans for budgets spread evenly from the cheapest plan's cost to
    the cost of the least sensitive plan within the limits, cheapest first (none if no
    plan keeps the limits)."""
    allowed = np.ones(omega.shape, dtype=bool) if allowed is None else allowed
    rows = np.arange(omega.shape[0])
    lo = np.where(allowed, cost, np.inf).min(axis=1).sum()
    hi = np.where(allowed, cost, -np.inf).max(axis=1).sum()
    if limits:  # past the best plan the limits allow, a larger budget buys nothing
        best = solve(omega, cost, np.inf, allowed, limits)
        if best is None:
            return []
        hi = cost[rows, best].sum()
        lo = min(lo, hi)
    plans: list[list[int]] = []
    for budget in np.linspace(lo, hi, max(2, n_budgets)):
        plan = solve(omega, cost, float(budget) + 1e-9 * abs(float(budget)) + 1e-300, allowed, limits)
        if plan is not None and plan not in plans:
            plans.append(plan)
    return plans


def marginal_costs(base_cost: float, costs: Sequence[Sequence[float]]) -> np.ndarray:
    """[groups, choices] costs relative to the all-cheapest plan (see the module docstring)."""
    return np.asarray(costs, dtype=float) - base_cost
