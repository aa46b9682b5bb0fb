"""Per-group quantization sensitivity, HAWQ-V3 style: curvature times weight perturbation.

For a layer group g with weights W_g and a precision choice c = (bits, scheme, the
scheme's options: a series expansion's terms, say), measured with c's own quantizer:

    Omega_g(c) = (Tr(H_g) / n_g) * ||Q_c(W_g) - W_g||^2

Tr(H_g) is the trace of the loss Hessian over the group's weights (n_g of them).
It is estimated by Hutchinson's method, E[v^T H v] over Rademacher vectors v, using
Hessian-vector products by double backward. A spiking network's loss is a step
function of its weights; it trains through surrogate gradients, and differentiating
a surrogate twice gives the surrogate's curvature, not the loss's. So for a model
with spiking neurons, and wherever double backward fails, the empirical Fisher
trace, the mean over single samples of ||d loss_i / d W_g||^2, stands in for the
Hessian trace. The estimate used is reported, and one estimator serves the whole
model. A negative Hutchinson estimate (sampling noise, or a saddle) is taken as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bitnas.evaluators.base import Split
from bitnas.plan import split_member
from bitnas.registry import QUANTIZERS
from bitnas.spaces.base import WeightChoice


@dataclass(frozen=True)
class Sensitivity:
    """Per-group curvature and the quantization perturbation of each precision choice."""

    estimator: str  # "hutchinson" or "fisher"
    trace: dict[str, float]  # group -> mean curvature per weight, Tr(H_g) / n_g
    perturbation: dict[str, dict[WeightChoice, float]]  # group -> choice -> ||dW||^2

    def omega(self, group: str, choice: WeightChoice) -> float:
        return self.trace[group] * self.perturbation[group][choice]


def _group_weights(model: nn.Module, groups: Mapping[str, Sequence[str]]
                   ) -> dict[str, list[tuple[nn.Parameter, slice | None]]]:
    out = {}
    for g, members in groups.items():
        parts = []
        for member in members:
            name, rows = split_member(member)
            weight = getattr(model.get_submodule(name), "weight", None)
            if isinstance(weight, torch.Tensor):  # a member without weights (a scan) has none
                parts.append((weight, rows))
        out[g] = parts
    return out


def _rows(t: Tensor, rows: slice | None) -> Tensor:
    return t if rows is None else t[rows]


def _spiking(model: nn.Module) -> bool:
    from spikingjelly.activation_based.neuron import BaseNode

    return any(isinstance(m, BaseNode) for m in model.modules())


def perturbations(model: nn.Module, groups: Mapping[str, Sequence[str]],
                  choices: Mapping[str, Sequence[WeightChoice]] | Sequence[WeightChoice]
                  ) -> dict[str, dict[WeightChoice, float]]:
    """||Q_c(W_g) - W_g||^2 per group and choice (a list for every group, or each group's
    own), each choice's quantizer made with its options, quantizing each member's rows as
    PTQ does."""
    weights = _group_weights(model, groups)
    out: dict[str, dict[WeightChoice, float]] = {}
    with torch.no_grad():
        for g, parts in weights.items():
            out[g] = {}
            for c in (choices[g] if isinstance(choices, Mapping) else choices):
                q = QUANTIZERS.create(c.quantizer, **dict(c.options))
                out[g][c] = float(sum(
                    (q.quantize(_rows(w, rows).detach(), c.w_bits) - _rows(w, rows)).pow(2).sum()
                    for w, rows in parts))
    return out


def _hutchinson(model, weights, batch: Split, samples: int, gen) -> dict[str, float]:
    params = list(dict.fromkeys(w for parts in weights.values() for w, _ in parts))
    loss = nn.functional.cross_entropy(model(batch.x), batch.y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    sums = {g: 0.0 for g in weights}
    for _ in range(samples):
        vs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in params]
        hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        by_param = {id(p): (v * h).detach() for p, v, h in zip(params, vs, hv, strict=True)}
        for g, parts in weights.items():
            sums[g] += float(sum(_rows(by_param[id(w)], rows).sum() for w, rows in parts))
    return {g: s / samples for g, s in sums.items()}


def _fisher(model, weights, batch: Split) -> dict[str, float]:
    params = list(dict.fromkeys(w for parts in weights.values() for w, _ in parts))
    sums = {g: 0.0 for g in weights}
    for i in range(len(batch)):
        loss = nn.functional.cross_entropy(model(batch.x[i:i + 1]), batch.y[i:i + 1])
        grads = dict(zip(map(id, params), torch.autograd.grad(loss, params), strict=True))
        for g, parts in weights.items():
            sums[g] += float(sum(_rows(grads[id(w)], rows).pow(2).sum() for w, rows in parts))
    return {g: s / len(batch) for g, s in sums.items()}


def estimate(model: nn.Module, groups: Mapping[str, Sequence[str]], batch: Split,
             choices: Mapping[str, Sequence[WeightChoice]] | Sequence[WeightChoice], *,
             samples: int = 16, seed: int = 0,
             estimator: str = "auto") -> Sensitivity:
    """Sensitivity of every group of the trained FP ``model`` on ``batch``.

    ``estimator``: ``hutchinson``, ``fisher``, or ``auto`` (Fisher for a spiking
    model, else Hutchinson where double backward works, else Fisher).
    """
    if estimator not in ("auto", "hutchinson", "fisher"):
        raise ValueError(f"estimator {estimator!r}: use auto, hutchinson or fisher")
    if estimator == "auto" and _spiking(model):
        estimator = "fisher"
    weights = _group_weights(model, groups)
    model.eval()  # BatchNorm statistics stay fixed; neuron state is reset per forward
    gen = torch.Generator().manual_seed(seed)
    trace = None
    used = estimator
    if estimator in ("auto", "hutchinson"):
        try:
            trace = _hutchinson(model, weights, batch, samples, gen)
            used = "hutchinson"
        except RuntimeError:
            if estimator == "hutchinson":
                raise
    if trace is None:
        trace = _fisher(model, weights, batch)
        used = "fisher"
    counts = {g: sum(_rows(w, rows).numel() for w, rows in parts) for g, parts in weights.items()}
    return Sensitivity(
        estimator=used,
        trace={g: max(trace[g], 0.0) / counts[g] if counts[g] else 0.0 for g in weights},
        perturbation=perturbations(model, groups, choices),
    )
