"""The `ai8x` space: CNNs made only of what the MAX78000/MAX78002 accelerators run.

A network is an input transform, then conv layers, each optionally preceded by a pool
(pooling runs before the conv on this hardware), each followed by ReLU, then a flatten
into a linear classifier. Convolutions are 3x3 or 1x1 with padding 0 to 2 and stride 1
(Conv1d, kernel 1 to 9, for a task whose inputs are (C, L) signals), pools are 1 to 16
wide. Weights take 1, 2, 4 or 8 bits under the ``ai8x`` quantizer (one power-of-two shift
per layer, as ai8x-training quantizes), activations 8 bits.

Searched (arch knobs; ``space`` options give each one's choices):

- ``input``: the input transform (``input_transforms``, default ["dex"]) that shrinks the
  task's stored images to ``input_size`` (default: the images' size, at most 32);
- ``dex_channels``: C_t, the first conv's input channels, for a transform that takes
  them (``dex``, ``repeat``; default {3, 6, 18, 36, 64}); the others fix their own;
- ``depth``, ``width<i>`` (``widths``; multiples of 4 use the chip's processors best),
  ``kernel_size``, and ``pool<i>``, the pool before conv i >= 1 (``pools``: 0 for none, or
  its window, stride equal to the window; default [2]).

Inputs (images in [0, 1]) are mapped to the chip's signed range, 2x - 1, after the input
transform (``signed``), as ai8x-training feeds them; without it, training fails at large
C_t (64 channels of DEX on ``textures`` at 32x32: float accuracy 12.5 %, chance, unsigned;
100 % signed, in one run).
With the ``ai8x`` quantizer a layer's input is the chip's fixed point: 8 bits in [-1, 1) at
steps of 1/128, not calibrated. A float model whose activations exceed 1 is clipped there
after PTQ; QAT (``task.qat``) fine-tunes it under the clip.

An architecture may instead list its layers (``layers``: [op, C_out, kernel, padding,
pool, pool kind], the last entry the linear head with its outputs): how bitnas rebuilds
the SDK's example networks (KWS20, CIFAR-10, MNIST) with their exact shapes to
calibrate the ``max78000`` model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import Candidate, QuantPlan
from bitnas.registry import INPUT_TRANSFORMS, SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose

DEX_CHANNELS = (3, 6, 18, 36, 64)


def conv_layers(arch: Mapping[str, Any]) -> list[list[Any]]:
    """The explicit layer list of an architecture: [op, C_out, kernel, padding, pool,
    pool kind] per conv layer (op "conv2d" or "conv1d"; pool 0 for none; kind "max" or "avg")."""
    if "layers" in arch:
        return [list(x) for x in arch["layers"]]
    k = int(arch["kernel_size"])
    # padding at most 2 (the accelerator's limit); a wider Conv1d kernel then shortens the signal
    return [[arch.get("op", "conv2d"), int(w), k, min(k // 2, 2), int(p), "max"]
            for w, p in zip(arch["widths"], arch["pools"], strict=True)]


class SignedInput(nn.Module):
    """Inputs in [0, 1] mapped to the chip's signed range [-1, 1] (2x - 1), as ai8x-training
    feeds them; done where the input is prepared, before it is loaded: not costed."""

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x - 1


@SPACES.register("ai8x")
class Ai8xSpace(SearchSpace):
    """MAX7800x CNNs: input transform and DEX channels, depth, widths, pools; bits {1,2,4,8}."""

    name = "ai8x"
    export_format = "ai8x"
    tiny_options = {"depth": [2], "widths": [4, 8], "dex_channels": [3, 6], "w_bits": [2, 8]}

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        depth: Sequence[int] = (3, 4),
        widths: Sequence[int] = (16, 32, 64),
        kernel_size: Sequence[int] = (3,),
        pools: Sequence[int] = (2,),
        input_transforms: Sequence[str] = ("dex",),
        input_size: int | None = None,
        dex_channels: Sequence[int] = DEX_CHANNELS,
        w_bits: Sequence[int] = (1, 2, 4, 8),
        a_bits: Sequence[int] = (8,),
        quantizers: Sequence[str] = ("ai8x",),
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        self.depth = choice_list(depth, "space.depth", minimum=1)
        self.widths = choice_list(widths, "space.widths", minimum=1)
        if len(self.input_shape) not in (2, 3):
            raise BitnasError(f"space ai8x takes images (C, H, W) or signals (C, L); the task's inputs "
                              f"are {self.input_shape}")
        #: signals (C, L) run Conv1d layers and take no input transform
        self.signal = len(self.input_shape) == 2
        self.kernel_size = choice_list(kernel_size, "space.kernel_size", minimum=1)
        for k in self.kernel_size:
            if (k > 9) if self.signal else (k not in (1, 3)):
                raise BitnasError(f"space.kernel_size: the accelerator runs "
                                  f"{'Conv1d kernels of 1 to 9' if self.signal else '3x3 and 1x1 kernels'}"
                                  f", got {k}")
        self.pools = choice_list(pools, "space.pools", minimum=0)
        for p in self.pools:
            if p == 1 or p > 16:
                raise BitnasError(f"space.pools holds 0 (no pool) or a window of 2 to 16, got {p}")
        self.transforms = tuple(INPUT_TRANSFORMS.check(t, "space.input_transforms")
                                for t in choice_list(input_transforms, "space.input_transforms", kind=str))
        self.dex_channels = choice_list(dex_channels, "space.dex_channels", minimum=1)
        stored = min(self.input_shape[1:])
        size = (stored if self.signal else min(stored, 32)) if input_size is None else input_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= stored:
            raise BitnasError(f"space.input_size must be an integer from 1 to the stored images' "
                              f"{stored}, got {input_size!r}")
        if self.signal and size != stored:
            raise BitnasError("space.input_size applies to images; a signal task's inputs are not resized")
        self.input_size = size
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        self.precision.check_groups(set(self.all_groups()))

    def all_groups(self) -> list[str]:
        return [f"conv{i}" for i in range(max(self.depth))] + ["fc"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch: dict[str, Any] = {}
        if not self.signal:
            transform = choose(trial, "input", self.transforms)
            arch.update({"input": transform, "size": self.input_size})
            if INPUT_TRANSFORMS.get(transform).takes_channels:
                arch["channels"] = choose(trial, "dex_channels", self.dex_channels)
        else:
            arch["op"] = "conv1d"
        depth = choose(trial, "depth", self.depth)
        arch["depth"] = depth
        arch["widths"] = [choose(trial, f"width{i}", self.widths) for i in range(depth)]
        arch["kernel_size"] = choose(trial, "kernel_size", self.kernel_size)
        arch["pools"] = [0] + [choose(trial, f"pool{i}", self.pools) for i in range(1, depth)]
        arch["signed"] = True
        groups = [f"conv{i}" for i in range(depth)] + ["fc"]
        plan = QuantPlan({g: self.precision.suggest(trial, g) for g in groups})
        return Candidate(arch=arch, plan=plan, space=self.name)

    def transform(self, arch: Mapping[str, Any]) -> nn.Module | None:
        """The architecture's input transform (None for a signal task's raw input)."""
        name = arch.get("input")
        if name is None:
            return None
        size = int(arch.get("size", self.input_size))
        return INPUT_TRANSFORMS.create(name, in_shape=self.input_shape, size=(size, size),
                                       channels=arch.get("channels"))

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        transform = self.transform(arch)
        shape = list(self.input_shape)
        if transform is not None:
            modules["input"] = transform
            shape = list(transform.out_shape)
        if arch.get("signed"):
            modules["signed"] = SignedInput()
        for i, (op, c_out, k, pad, pool, kind) in enumerate(conv_layers(arch)):
            one_d = op == "conv1d"
            if pool:
                pool_cls = {("max", False): nn.MaxPool2d, ("avg", False): nn.AvgPool2d,
                            ("max", True): nn.MaxPool1d, ("avg", True): nn.AvgPool1d}[(kind, one_d)]
                modules[f"pool{i}"] = pool_cls(pool, pool)
                shape[1:] = [s // pool for s in shape[1:]]
            conv_cls = nn.Conv1d if one_d else nn.Conv2d
            modules[f"conv{i}"] = conv_cls(shape[0], c_out, k, padding=pad, bias=arch.get("bias", True))
            modules[f"relu{i}"] = nn.ReLU()
            shape = [c_out, *(s + 2 * pad - k + 1 for s in shape[1:])]
            if min(shape[1:]) < 1:
                raise BitnasError(f"architecture {dict(arch)}: conv{i} leaves no pixels; use fewer pools")
        flat = 1
        for s in shape:
            flat *= s
        modules["flatten"] = nn.Flatten()
        modules["fc"] = nn.Linear(flat, self.num_classes, bias=arch.get("fc_bias", True))
        return nn.Sequential(modules)

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
        return {**{n: [n] for n in convs}, "fc": ["fc"]}
