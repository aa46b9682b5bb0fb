"""A spiking CNN of SpikingJelly 2.0 conv-BN-LIF blocks: what Loihi-class chips run.

The network is a plain multi-step SpikingJelly stack, made only of layers the
Neuromorphic Intermediate Representation (NIR) has (conv, LIF, pool, flatten, affine, once
each BatchNorm is folded into its convolution):

- ``stem``: Conv2d(in_channels -> width0, 3x3, pad 1, no bias) - BatchNorm2d - LIF;
- ``block{i}`` (``depth`` of them): Conv2d(width{i} -> width{i+1}, 3x3, pad 1, no bias) -
  BatchNorm2d - AvgPool2d(2) - LIF, the pool left out once the map is down to 1 pixel
  (an 8x8 digit pools at most three times, a 16x16 event frame four). The pool comes
  before the neuron, so every layer after the stem takes binary spikes (an average of
  spikes, k/4, would be rounded by an activation grid that NIR cannot express), and the
  neuron holds a quarter of the membranes;
- ``head``: Flatten - Linear(num_classes), with no neuron after it: its per-step
  outputs (the membrane input a read-out neuron would integrate) are averaged over the
  T steps by :class:`~bitnas.spaces.spiking.SpikingClassifier`.

The cost models take every BatchNorm as folded into the convolution before it, as a chip
runs it. The fake-quant model (what the search measures) quantizes the convolution's own
weights and runs the BatchNorm after it in float. For per-channel ``uniform`` weights that
is the folded network (a channel's step absorbs the BatchNorm's factor); a scheme whose
levels do not scale with the channel (``pot``) may round the folded weights differently. The
LIF neurons are SpikingJelly's ``LIFNode`` (tau 2, hard reset to 0, ``decay_input``,
detached reset, sigmoid surrogate), as in the spiking transformer spaces.

Architecture knobs: ``time_steps``, ``depth``, ``width0`` (the stem) and ``width1`` ..
``width{depth}`` (the blocks), chosen from ``widths``. Layer groups: ``stem``,
``block{i}``, ``head``; each takes its weight bits, activation bits and scheme, and the
groups that own a LIF neuron (``stem`` and the blocks; not ``head``) their membrane bits
``v_bits``. Event input, encodings and state reset are the spiking spaces' (see
:mod:`bitnas.spaces.spiking`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from torch import nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, Candidate
from bitnas.registry import SPACES
from bitnas.spaces.base import SearchSpace, choice_list, choose
from bitnas.spaces.spiking import _SpikingSpace


def lif() -> nn.Module:
    """A multi-step LIF neuron, configured as the spiking transformer spaces' neurons."""
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                          surrogate_function=surrogate.Sigmoid(), detach_reset=True, step_mode="m")


def conv_bn_lif(c_in: int, c_out: int) -> OrderedDict[str, nn.Module]:
    """conv (3x3, same padding, no bias: the BatchNorm's shift is its bias) - BN - LIF."""
    from spikingjelly.activation_based import layer

    return OrderedDict(conv=layer.Conv2d(c_in, c_out, 3, padding=1, bias=False, step_mode="m"),
                       bn=layer.BatchNorm2d(c_out, step_mode="m"), lif=lif())


@SPACES.register("spiking_cnn")
class SpikingCNNSpace(_SpikingSpace):
    """Spiking CNN (SpikingJelly 2.0 conv-BN-LIF blocks): T, depth, widths; bits, scheme, v_bits."""

    name = "spiking_cnn"
    export_format = "nir"
    tiny_options = {"time_steps": [2], "depth": [1], "widths": [4]}

    def __init__(  # the spiking spaces' knobs, with CNN widths in place of the transformer's
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        time_steps: Sequence[int] = (2, 4),
        depth: Sequence[int] = (1, 2, 3),
        widths: Sequence[int] = (8, 16, 32),
        w_bits: Sequence[int] = (1, 2, 3, 4, 6, 8),
        a_bits: Sequence[int] = (8,),
        quantizers: Sequence[str] = ("uniform", "pot"),
        v_bits: Sequence[int] = (FLOAT_BITS,),
        encoding: str = "direct",
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        SearchSpace.__init__(self, input_shape=input_shape, num_classes=num_classes,
                             quantizer_options=quantizer_options)
        self._time_steps(time_steps)
        self.depth = choice_list(depth, "space.depth", minimum=1)
        self.widths = choice_list(widths, "space.widths", minimum=1)
        self._precision(w_bits, a_bits, quantizers, group_w_bits, v_bits, encoding)

    def group_names(self, depth: int) -> list[str]:
        return ["stem", *(f"block{i}" for i in range(depth)), "head"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        steps = choose(trial, "time_steps", self.time_steps)
        depth = choose(trial, "depth", self.depth)
        widths = [choose(trial, f"width{i}", self.widths) for i in range(depth + 1)]
        return self._candidate(trial, {"time_steps": steps, "depth": depth, "widths": widths})

    def _build_net(self, arch: Mapping[str, Any]) -> nn.Module:
        from spikingjelly.activation_based import layer

        widths = [int(w) for w in arch["widths"]]
        depth = int(arch["depth"])
        if len(widths) != depth + 1:
            raise BitnasError(f"space {self.name}: arch has {len(widths)} widths for depth {depth}; "
                              f"it needs {depth + 1} (the stem's and one per block)")
        channels, height, width = self.input_shape[-3:]
        stem = nn.Sequential(conv_bn_lif(channels, widths[0]))
        blocks = []
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            parts = conv_bn_lif(c_in, c_out)
            if min(height, width) >= 2:  # never pool a map below 1x1
                # before the neuron (pooling is linear: it commutes with the BN), so that every
                # layer after the stem takes binary spikes, exact at any activation width
                parts["pool"] = layer.AvgPool2d(2, step_mode="m")
                parts.move_to_end("lif")
                height, width = height // 2, width // 2
            blocks.append(nn.Sequential(parts))
        return nn.Sequential(OrderedDict(
            stem=stem, blocks=nn.Sequential(*blocks), flatten=layer.Flatten(step_mode="m"),
            head=layer.Linear(widths[-1] * height * width, self.num_classes, step_mode="m")))

    def _groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = {"stem": ["net.stem.conv"]}
        groups.update({f"block{i}": [f"net.blocks.{i}.conv"] for i in range(self._depth(model))})
        groups["head"] = ["net.head"]
        return groups

    def _neurons(self, depth: int) -> dict[str, list[str]]:
        groups = {"stem": ["net.stem.lif"]}
        groups.update({f"block{i}": [f"net.blocks.{i}.lif"] for i in range(depth)})
        groups["head"] = []
        return groups
