"""The quantizer contract: how a weight tensor becomes low-bit, what storing it takes, and
which operation the hardware then runs per weight.

A quantizer is registered by name in ``QUANTIZERS``. Its options are a frozen
dataclass, ``Config``, validated when the quantizer is made: the spec's
``[quantizers.NAME]`` table, or a layer group's own ``options``, become that
config, and a wrong key, type or value is one line naming the option.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor
from torch.nn import Module

from bitnas.accounting import Compute, Storage
from bitnas.errors import BitnasError


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The config of a quantizer that takes no options."""


def make_config(config_cls: type, options: Mapping[str, Any], where: str) -> Any:
    """``config_cls(**options)`` with one-line errors: unknown keys, wrong types, and
    whatever the config's ``__post_init__`` refuses. ``where`` names the owner in
    messages (``quantizer uniform``)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise BitnasError(f"unknown option(s) {unknown} of {where}; accepted: "
                          f"{', '.join(sorted(fields)) or '(none)'}")
    hints = typing.get_type_hints(config_cls)
    values = {}
    for key, value in options.items():
        want = hints.get(key)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = (want is None or (want is float and number)
              or (want is int and number and isinstance(value, int))
              or (want in (bool, str) and isinstance(value, want)))
        if not ok:
            kind = want.__name__ if isinstance(want, type) else str(want)
            raise BitnasError(f"{where} option {key} must be {kind}, got {value!r}")
        values[key] = float(value) if want is float else value
    try:
        return config_cls(**values)
    except BitnasError as e:
        raise BitnasError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise BitnasError(f"{where}: {e}") from None


class Quantizer(ABC):
    """A weight quantization scheme.

    Subclasses set ``Config`` (a frozen dataclass of typed options with defaults)
    and implement :meth:`quantize`, :meth:`storage` and :meth:`compute`. None of
    them has a default: a scheme that says nothing about its storage or compute
    would be costed as plain b-bit multiplies, which is what this contract forbids.
    """

    #: the typed options; NoOptions for a quantizer without any
    Config: ClassVar[type] = NoOptions
    #: the registered name, set by subclasses (for messages)
    name: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.config = make_config(self.Config, options, f"quantizer {self.name or type(self).__name__}")

    @abstractmethod
    def quantize(self, w: Tensor, bits: int) -> Tensor:
        """The fake-quantized (dequantized) tensor: same shape and dtype as ``w``; ``bits``
        32 returns ``w`` unchanged. Row 0 of ``w`` is the output-channel axis."""

    @abstractmethod
    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """What the hardware holds for a weight tensor of ``shape`` at ``bits``."""

    @abstractmethod
    def compute(self, bits: int) -> Compute:
        """The operation the hardware runs per weight use at ``bits``."""

    def supported_bits(self) -> frozenset[int] | None:
        """The integer weight bits this quantizer (with its options) can run; None: any of
        1..16. Float (32: the weights left unquantized) is always accepted. The spec refuses
        a space that offers the quantizer other bits (a codebook of 2^12 codewords has at
        most 12-bit indices)."""
        return None

    def quantize_layer(self, w: Tensor, bias: Tensor | None, bits: int) -> tuple[Tensor, Tensor | None]:
        """The layer's fake-quantized weight and bias. By default the bias stays in float (32
        bits, as the cost models store it); a scheme whose hardware quantizes the bias with
        the weights (one shift for both) overrides this."""
        return self.quantize(w, bits), bias

    def trainable(self, w: Tensor, bits: int) -> Module | None:
        """Learnable state of the layer's quantized weight for fine-tuning (QAT), made from the
        trained float ``w``; None (the default): QAT fine-tunes the float weights through a
        straight-through estimator. The module's ``forward()`` returns the weight to use (in
        ``eval`` mode: the deployable one, on the scheme's grid); if it has
        ``anneal(progress)``, the fine-tuning loop calls it after each epoch with the share
        of epochs done (a schedule, such as progressive freezing); if it has ``lr_scale``, its
        parameters learn at that multiple of the fine-tuning rate."""
        return None

    def activation(self, bits: int) -> Module | None:
        """The fake-quant of the layer's input at ``bits`` when the scheme's hardware fixes its
        format (an accelerator's fixed-point activations); None: the calibrated asymmetric
        grid every other scheme uses (:class:`~bitnas.quantizers.uniform.ActivationQuantizer`).
        A module returned here must accept ``observing`` (set during calibration) and ignore it."""
        return None


def channels(shape: Sequence[int]) -> int:
    """Output channels of a weight of ``shape`` (its first axis; 1 for a scalar)."""
    return int(shape[0]) if len(shape) else 1


def numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
