"""Model families and their search dimensions (registered in ``bitnas.registry.SPACES``)."""

from bitnas.spaces.base import PrecisionChoices, SearchSpace
from bitnas.spaces.cnn import CNNSpace

__all__ = ["CNNSpace", "PrecisionChoices", "SearchSpace"]
