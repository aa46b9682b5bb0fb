"""Model families and their search dimensions (registered in ``bitnas.registry.SPACES``)."""

from bitnas.spaces.base import PrecisionChoices, SearchSpace
from bitnas.spaces.cnn import CNNSpace

__all__ = ["CNNSpace", "PrecisionChoices", "SearchSpace"]

from bitnas.spaces.spiking import (  # noqa: E402
    SpikeDrivenTransformerSpace,
    SpikformerSpace,
    SpikingClassifier,
)
from bitnas.spaces.spiking_cnn import SpikingCNNSpace  # noqa: E402

__all__ += ["SpikeDrivenTransformerSpace", "SpikformerSpace", "SpikingCNNSpace", "SpikingClassifier"]
