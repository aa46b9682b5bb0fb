"""A small CNN family: conv blocks (ReLU, 2x2 max-pool after the first) and a linear head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from torch import nn

from bitnas.errors import BitnasError
from bitnas.plan import Candidate, QuantPlan
from bitnas.registry import SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose


@SPACES.register("cnn")
class CNNSpace(SearchSpace):
    """Small CNN: depth, per-block width and kernel size; bits per conv and the head."""

    name = "cnn"
    tiny_options = {"depth": [1, 2], "widths": [4], "kernel_size": [3]}

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        depth: Sequence[int] = (1, 2, 3),
        widths: Sequence[int] = (8, 16, 32),
        kernel_size: Sequence[int] = (3, 5),
        w_bits: Sequence[int] = (2, 3, 4, 6, 8),
        a_bits: Sequence[int] = (8,),
        quantizers: Sequence[str] = ("uniform",),
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        self.depth = choice_list(depth, "space.depth", minimum=1)
        self.widths = choice_list(widths, "space.widths", minimum=1)
        self.kernel_size = choice_list(kernel_size, "space.kernel_size", minimum=1)
        for k in self.kernel_size:
            if k % 2 == 0:
                raise BitnasError(f"space.kernel_size must be odd (same padding), got {k}")
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        self.precision.check_groups(set(self.all_groups()))

    def all_groups(self) -> list[str]:
        return self.group_names(max(self.depth))

    @staticmethod
    def group_names(depth: int) -> list[str]:
        return [f"conv{i}" for i in range(depth)] + ["fc"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        depth = choose(trial, "depth", self.depth)
        widths = [choose(trial, f"width{i}", self.widths) for i in range(depth)]
        kernel = choose(trial, "kernel_size", self.kernel_size)
        arch = {"depth": depth, "widths": widths, "kernel_size": kernel}
        plan = QuantPlan({g: self.precision.suggest(trial, g) for g in self.group_names(depth)})
        return Candidate(arch=arch, plan=plan, space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        channels, height, width = self.input_shape
        k = int(arch["kernel_size"])
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, c_out in enumerate(arch["widths"]):
            layers[f"conv{i}"] = nn.Conv2d(channels, c_out, k, padding=k // 2)
            layers[f"relu{i}"] = nn.ReLU()
            if i > 0 and min(height, width) >= 4:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
                height, width = height // 2, width // 2
            channels = c_out
        model = nn.Sequential(
            OrderedDict(
                features=nn.Sequential(layers),
                flatten=nn.Flatten(),
                fc=nn.Linear(channels * height * width, self.num_classes),
            )
        )
        return model

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        groups = {name.rpartition(".")[2]: [name] for name in convs}
        groups["fc"] = ["fc"]
        return groups
