"""Spiking transformers from SpikingJelly 2.0: Spikformer and the Spike-driven Transformer.

Both are built from SpikingJelly's own model classes, configured small enough for
a CPU, and wrapped in :class:`SpikingClassifier`, which resets neuron state before
every forward pass, integrates the task's event bins into the candidate's T frames
(or encodes static images, directly or as rate-coded spikes) and averages the
per-step outputs.

Layer groups: ``stem0`` (the first, dense-input convolution), ``stem`` (the other
patch-stem convolutions and the positional encoding), per block ``block{i}.q``,
``.k``, ``.v``, ``.proj``, ``.mlp1``, ``.mlp2``, and ``head``. Spikformer computes q,
k and v with one fused convolution; each group owns its third of the output rows.
A group's ``v_bits`` applies to the spiking neurons it owns, and only groups that
own neurons search it. Spikformer: each stage's neuron after its convolution;
``q`` owns the fused q/k/v neuron (``k`` and ``v`` own none); ``proj`` owns the
attention-output neuron that feeds the projection and the one after it; ``mlp1``
and ``mlp2`` the neurons after them. Spike-driven Transformer: ``stem`` owns the
stem neurons; ``q`` owns the block's shortcut neuron and, like ``k`` and ``v``, the
neuron after its convolution; ``proj`` the attention neuron; ``mlp1`` and
``mlp2`` the neurons that feed them; ``head`` the head's neuron. The cost models
charge each group for the membranes its neurons actually hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, Candidate, QuantPlan, check_bits
from bitnas.registry import SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose

ENCODINGS = ("direct", "rate")


def rebin(x: Tensor, steps: int) -> Tensor:
    """Sum event frames [B, bins, ...] into ``steps`` frames [B, steps, ...] (frame integration)."""
    chunks = torch.tensor_split(x, steps, dim=1)
    return torch.stack([c.sum(dim=1) for c in chunks], dim=1)


class SpikingClassifier(nn.Module):
    """A multi-step SpikingJelly network behind a [B, ...] -> [B, classes] interface."""

    def __init__(self, net: nn.Module, steps: int, events: bool, encoding: str) -> None:
        super().__init__()
        self.net = net
        self.steps = steps
        self.events = events
        self.encoding = encoding

    def encode(self, x: Tensor) -> Tensor:
        """[T, B, C, H, W] input for the network."""
        if self.events:
            return rebin(x, self.steps).transpose(0, 1).contiguous()
        seq = x.unsqueeze(0).expand(self.steps, *x.shape)
        if self.encoding == "rate":  # fixed noise, so that evaluation is deterministic
            gen = torch.Generator().manual_seed(0)
            return (torch.rand(seq.shape, generator=gen) < seq.clamp(0, 1)).to(x.dtype)
        return seq.contiguous()

    def forward(self, x: Tensor) -> Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.net)
        out = self.net(self.encode(x))
        return out.mean(0) if out.dim() == 3 else out


class _SpikingSpace(SearchSpace):
    """Shared knobs and precision choices of the spiking-transformer spaces."""

    example_task = {"name": "event_digits", "bins": 4, "size": 16}
    tiny_options = {"time_steps": [2], "embed_dims": [16], "depth": [1], "heads": [1], "mlp_ratio": [2]}
    spiking = True
    export_format = "torch"  # no NIR primitive for spike-times-spike attention

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        time_steps: Sequence[int] = (2, 4),
        embed_dims: Sequence[int] = (16, 32),
        depth: Sequence[int] = (1, 2),
        heads: Sequence[int] = (1, 2),
        mlp_ratio: Sequence[int] = (2, 4),
        w_bits: Sequence[int] = (1, 2, 3, 4, 6, 8),
        a_bits: Sequence[int] = (8,),
        quantizers: Sequence[str] = ("uniform", "pot"),
        v_bits: Sequence[int] = (FLOAT_BITS,),
        encoding: str = "direct",
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        self._time_steps(time_steps)
        self.embed_dims = choice_list(embed_dims, "space.embed_dims", minimum=8)
        self.depth = choice_list(depth, "space.depth", minimum=1)
        self.heads = choice_list(heads, "space.heads", minimum=1)
        self.mlp_ratio = choice_list(mlp_ratio, "space.mlp_ratio", minimum=1)
        for e in self.embed_dims:
            if e % 8:
                raise BitnasError(f"space.embed_dims must be multiples of 8, got {e}")
            for h in self.heads:
                if e % h:
                    raise BitnasError(f"space.embed_dims {e} is not divisible by space.heads {h}")
        self._precision(w_bits, a_bits, quantizers, group_w_bits, v_bits, encoding)
        channels, height, width = self.input_shape[-3:]
        if height != width or height < 8 or height & (height - 1):
            raise BitnasError(f"space {self.name} needs square inputs of 8, 16, 32, ... pixels, "
                              f"got {height}x{width}")

    def all_groups(self) -> list[str]:
        return self.group_names(max(self.depth))

    def group_names(self, depth: int) -> list[str]:
        blocks = [f"block{i}.{part}" for i in range(depth)
                  for part in ("q", "k", "v", "proj", "mlp1", "mlp2")]
        return ["stem0", "stem", *blocks, "head"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch = {
            "time_steps": choose(trial, "time_steps", self.time_steps),
            "embed_dims": choose(trial, "embed_dims", self.embed_dims),
            "depth": choose(trial, "depth", self.depth),
            "heads": choose(trial, "heads", self.heads),
            "mlp_ratio": choose(trial, "mlp_ratio", self.mlp_ratio),
        }
        return self._candidate(trial, arch)

    # shared by every spiking space (the transformers here, spiking_cnn) ---------------------

    def _time_steps(self, time_steps: Sequence[int]) -> None:
        """Check the input ([C, H, W] frames or [bins, C, H, W] events) and set the T choices."""
        if len(self.input_shape) not in (3, 4):
            raise BitnasError(f"space {self.name} needs images [C, H, W] or events [bins, C, H, W], "
                              f"got input shape {self.input_shape}")
        self.events = len(self.input_shape) == 4
        self.time_steps = choice_list(time_steps, "space.time_steps", minimum=1)
        if self.events and max(self.time_steps) > self.input_shape[0]:
            raise BitnasError(f"space.time_steps {max(self.time_steps)} exceeds the task's "
                              f"{self.input_shape[0]} event bins; lower it or raise task.bins")

    def _precision(self, w_bits: Sequence[int], a_bits: Sequence[int], quantizers: Sequence[str],
                   group_w_bits: Mapping[str, Sequence[int]] | None, v_bits: Sequence[int],
                   encoding: str) -> None:
        """The per-group precision choices, the membrane bits and the input encoding."""
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        self.precision.check_groups(set(self.all_groups()))
        self.v_bits = tuple(check_bits(b, "space.v_bits") for b in choice_list(v_bits, "space.v_bits"))
        if min(self.v_bits) < 2:
            raise BitnasError("space.v_bits must be 2..16 or 32 (a membrane needs a sign and a value)")
        if encoding not in ENCODINGS:
            raise BitnasError(f"space.encoding = {encoding!r}; use one of: {', '.join(ENCODINGS)}")
        self.encoding = encoding

    def _candidate(self, trial: optuna.trial.BaseTrial, arch: dict[str, Any]) -> Candidate:
        """``arch`` with every group's precision suggested, v_bits where it owns neurons."""
        layers = {}
        owners = {g for g, names in self._neurons(arch["depth"]).items() if names}
        for g in self.group_names(arch["depth"]):
            lq = self.precision.suggest(trial, g)
            # membrane bits only where the group owns neurons: elsewhere they change nothing
            v_bits = choose(trial, f"{g}.v_bits", self.v_bits) if g in owners else FLOAT_BITS
            layers[g] = lq.replace(v_bits=v_bits)
        return Candidate(arch=arch, plan=QuantPlan(layers), space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        net = self._build_net(arch)
        return SpikingClassifier(net, int(arch["time_steps"]), self.events, self.encoding)

    def example_input(self) -> Tensor:
        return torch.ones(1, *self.input_shape) * 0.5

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = self._groups(model)
        names = dict(model.named_modules())
        for g, members in groups.items():
            for m in members:
                if m.partition("[")[0] not in names:
                    raise AssertionError(f"{self.name}: group {g} names a missing module {m}")
        return groups

    def neuron_groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = self._neurons(self._depth(model))
        names = dict(model.named_modules())
        for g, members in groups.items():
            for n in members:
                if n not in names:
                    raise AssertionError(f"{self.name}: group {g} names a missing neuron {n}")
        return groups

    @staticmethod
    def _depth(model: nn.Module) -> int:
        return len(model.net.blocks)

    def _groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = self._stem_layers()
        for i in range(self._depth(model)):
            for part, members in self._block_layers(i, model.net.head.in_features).items():
                groups[f"block{i}.{part}"] = members
        groups["head"] = ["net.head"]
        return groups

    def _neurons(self, depth: int) -> dict[str, list[str]]:
        groups = self._stem_neurons()
        for i in range(depth):
            for part, members in self._block_neurons(i).items():
                groups[f"block{i}.{part}"] = members
        groups["head"] = self._head_neurons()
        return groups

    # each space fills in its module names
    def _build_net(self, arch: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def _stem_layers(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def _block_layers(self, i: int, embed_dims: int) -> dict[str, list[str]]:
        raise NotImplementedError

    def _stem_neurons(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def _block_neurons(self, i: int) -> dict[str, list[str]]:
        raise NotImplementedError

    def _head_neurons(self) -> list[str]:
        return []


@SPACES.register("spikformer")
class SpikformerSpace(_SpikingSpace):
    """Spikformer (SpikingJelly 2.0): T, embed dims, depth, heads, MLP ratio; bits, scheme per group."""

    name = "spikformer"

    def _build_net(self, arch: Mapping[str, Any]) -> nn.Module:
        from spikingjelly.activation_based.model.spikformer import Spikformer

        channels, height, width = self.input_shape[-3:]
        return Spikformer(T=int(arch["time_steps"]), in_channels=channels, img_size_h=height,
                          img_size_w=width, patch_size=4, num_classes=self.num_classes,
                          embed_dims=int(arch["embed_dims"]), num_heads=int(arch["heads"]),
                          mlp_ratio=float(arch["mlp_ratio"]), depths=int(arch["depth"]))

    def _stem_layers(self) -> dict[str, list[str]]:
        return {"stem0": ["net.patch_embed.stages.0.conv_bn.block.0"],
                "stem": [f"net.patch_embed.stages.{i}.conv_bn.block.0" for i in (1, 2, 3)]
                + ["net.patch_embed.positional_encoding.conv_bn.block.0"]}

    def _block_layers(self, i: int, embed_dims: int) -> dict[str, list[str]]:
        b, e = f"net.blocks.{i}", embed_dims
        qkv = f"{b}.attn.qkv_conv_bn.0"  # one fused convolution: q, k, v own a third of its rows
        return {"q": [f"{qkv}[0:{e}]"], "k": [f"{qkv}[{e}:{2 * e}]"], "v": [f"{qkv}[{2 * e}:{3 * e}]"],
                "proj": [f"{b}.attn.proj_conv_bn.0"], "mlp1": [f"{b}.mlp.fc1.0"],
                "mlp2": [f"{b}.mlp.fc2.0"]}

    def _stem_neurons(self) -> dict[str, list[str]]:
        return {"stem0": ["net.patch_embed.stages.0.neuron"],
                "stem": [f"net.patch_embed.stages.{i}.neuron" for i in (1, 2, 3)]
                + ["net.patch_embed.positional_encoding.neuron"]}

    def _block_neurons(self, i: int) -> dict[str, list[str]]:
        b = f"net.blocks.{i}"
        return {"q": [f"{b}.attn.qkv_lif"], "k": [], "v": [],
                "proj": [f"{b}.attn.attn_lif", f"{b}.attn.proj_lif"],
                "mlp1": [f"{b}.mlp.neuron1"], "mlp2": [f"{b}.mlp.neuron2"]}


@SPACES.register("spike_driven_transformer")
class SpikeDrivenTransformerSpace(_SpikingSpace):
    """Spike-driven Transformer (SpikingJelly 2.0): T, dims, depth, heads, MLP ratio; bits per group."""

    name = "spike_driven_transformer"

    def _build_net(self, arch: Mapping[str, Any]) -> nn.Module:
        from spikingjelly.activation_based.model.spike_driven_transformer import (
            SpikeDrivenTransformer,
        )

        channels, height, _ = self.input_shape[-3:]
        pools = max(0, min(4, int(math.log2(height // 4))))  # down to a 4x4 token grid
        return SpikeDrivenTransformer(T=int(arch["time_steps"]), in_channels=channels,
                                      num_classes=self.num_classes,
                                      embed_dims=int(arch["embed_dims"]),
                                      num_heads=int(arch["heads"]),
                                      depths=int(arch["depth"]), mlp_ratio=float(arch["mlp_ratio"]),
                                      pooling_stat="0" * (4 - pools) + "1" * pools)

    def _stem_layers(self) -> dict[str, list[str]]:
        return {"stem0": ["net.patch_embed.stages.0.0"],
                "stem": ["net.patch_embed.stages.1.0", "net.patch_embed.stages.2.0",
                         "net.patch_embed.final_stage.0", "net.patch_embed.rpe_conv"]}

    def _block_layers(self, i: int, embed_dims: int) -> dict[str, list[str]]:
        a = f"net.blocks.{i}.attn"
        return {"q": [f"{a}.q_conv"], "k": [f"{a}.k_conv"], "v": [f"{a}.v_conv"],
                "proj": [f"{a}.proj_conv"], "mlp1": [f"net.blocks.{i}.mlp.fc1"],
                "mlp2": [f"net.blocks.{i}.mlp.fc2"]}

    def _stem_neurons(self) -> dict[str, list[str]]:
        return {"stem0": [], "stem": ["net.patch_embed.stages.0.2", "net.patch_embed.stages.1.2",
                                      "net.patch_embed.stages.2.2", "net.patch_embed.final_lif"]}

    def _block_neurons(self, i: int) -> dict[str, list[str]]:
        a = f"net.blocks.{i}.attn"
        return {"q": [f"{a}.shortcut_lif", f"{a}.q_lif"], "k": [f"{a}.k_lif"], "v": [f"{a}.v_lif"],
                "proj": [f"{a}.attn_lif"], "mlp1": [f"net.blocks.{i}.mlp.lif1"],
                "mlp2": [f"net.blocks.{i}.mlp.lif2"]}

    def _head_neurons(self) -> list[str]:
        return ["net.head_lif"]
