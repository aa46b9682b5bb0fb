"""A third-party bitnas plugin, as a user would write it: a space, a quantizer, a task, a
hardware model and a strategy, registered only through entry points (see the
dist-info folder beside this file). bitnas's own files know nothing of it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.evaluators.base import Split, Task, TaskData
from bitnas.hardware_models.base import Cost, HardwareModel, layer_quants, weight_bits_per_layer
from bitnas.plan import Candidate, QuantPlan
from bitnas.quantizers.base import Quantizer, numel
from bitnas.search.strategies import Strategy
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose


class BlobsTask(Task):
    """Four Gaussian blobs in 6 dimensions (generated, seeded)."""

    input_shape = (6,)
    num_classes = 4

    def __init__(self, *, samples: int = 240) -> None:
        self.samples = samples

    def load(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        centers = rng.normal(0, 3, size=(4, 6))
        y = rng.integers(0, 4, size=self.samples)
        x = centers[y] + rng.normal(0, 1, size=(self.samples, 6))
        xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
        n = self.samples // 3
        return TaskData(Split(xt[:n], yt[:n]), Split(xt[n:2 * n], yt[n:2 * n]), Split(xt[2 * n:], yt[2 * n:]))


class MLPSpace(SearchSpace):
    """A two-layer MLP: hidden width; bits per layer."""

    name = "toy_mlp"
    tiny_options: Mapping[str, Any] = {}
    example_task: Mapping[str, Any] = {"name": "toy_blobs"}

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (8, 16),
                 w_bits: Sequence[int] = (2, 4, 8), quantizers: Sequence[str] = ("halfstep",),
                 quantizer_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        self.hidden = choice_list(hidden, "space.hidden", minimum=1)
        self.precision = PrecisionChoices(w_bits, (8,), quantizers, None, self.quantizer_options)

    def all_groups(self) -> list[str]:
        return ["fc0", "fc1"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch = {"hidden": choose(trial, "hidden", self.hidden)}
        plan = QuantPlan({g: self.precision.suggest(trial, g) for g in self.all_groups()})
        return Candidate(arch=arch, plan=plan, space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        h = int(arch["hidden"])
        return nn.Sequential(OrderedDict(fc0=nn.Linear(self.input_shape[0], h), act=nn.ReLU(),
                                         fc1=nn.Linear(h, self.num_classes)))

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        return {"fc0": ["fc0"], "fc1": ["fc1"]}


@dataclass(frozen=True)
class HalfstepConfig:
    levels_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.levels_scale <= 0:
            raise ValueError(f"levels_scale must be positive, got {self.levels_scale}")


class HalfstepQuantizer(Quantizer):
    """Per-tensor symmetric uniform weights with one float scale."""

    Config = HalfstepConfig
    name = "halfstep"

    def quantize(self, w: torch.Tensor, bits: int) -> torch.Tensor:
        if bits >= 32:
            return w
        qmax = max(1, 2 ** (bits - 1) - 1)
        scale = (w.detach().abs().max() * self.config.levels_scale / qmax).clamp_min(1e-12)
        return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        return Storage(numel(shape) * bits, scale_bits=0 if bits >= 32 else 32)

    def compute(self, bits: int) -> Compute:
        return Compute(ComputeKind.MULTIPLY)


class BitOpsHardware(HardwareModel):
    """A toy accelerator: energy = 1 pJ per MAC-bit, latency = 1 ns per MAC, 2..8-bit weights."""

    name = "toy_bitops"
    supported_weight_bits = frozenset({2, 4, 8})
    extra_cost_fields = ("bitops",)

    def cost(self, workload, plan: QuantPlan) -> Cost:
        lqs = layer_quants(workload, plan)
        wbits = weight_bits_per_layer(workload, lqs)
        per_layer = {}
        for w, lq in zip(workload, lqs, strict=True):
            compute = self.compute_of(lq)
            bitops = compute.passes * w.timesteps * w.macs * lq.w_bits * lq.a_bits
            per_layer[w.name] = {"energy_j": bitops * 1e-12, "compute_energy_j": bitops * 1e-12,
                                 "weight_energy_j": 0.0, "act_energy_j": 0.0, "state_energy_j": 0.0,
                                 "latency_s": w.macs * 1e-9, "bitops": float(bitops)}
        return Cost.from_layers(per_layer, weight_bytes=-(-sum(wbits) // 8),
                                peak_act_bytes=max(w.in_elems + w.out_elems for w in workload),
                                extra={"bitops": sum(p["bitops"] for p in per_layer.values())})


def _sampler(*, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=seed, qmc_type="halton", scramble=True)


HALTON = Strategy(_sampler, "Scrambled Halton quasi-random sampling (a toy plugin strategy)")
