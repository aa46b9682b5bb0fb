"""Tasks (data + metric) and evaluators (how a model is scored)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class TaskData:
    train: Split
    val: Split
    test: Split


class Task(ABC):
    """A dataset with a fixed split and its metrics (registered in ``TASKS``).

    ``metrics`` maps each metric the task reports to its natural direction; the
    search's objective ``accuracy`` is measured on the validation split, and
    ``test_accuracy`` is reported beside it but never optimised.
    """

    input_shape: Sequence[int] = ()
    num_classes: int = 0
    metrics: dict[str, str] = {"accuracy": "maximize"}

    @abstractmethod
    def load(self, seed: int) -> TaskData:
        """The data, split deterministically by ``seed``."""

    def identity(self) -> dict:
        """What makes two task instances the same (used in cache keys)."""
        return {"task": type(self).__name__, **getattr(self, "options", {})}


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``split``."""
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        logits = model(split.x[i : i + batch_size])
        correct += int((logits.argmax(dim=1) == split.y[i : i + batch_size]).sum())
    return correct / len(split)


class Evaluator(ABC):
    """Scores a (quantized) model: returns metric name -> value."""

    @abstractmethod
    def evaluate(self, model: nn.Module, *, splits: tuple[str, ...] = ("val", "test")
                 ) -> dict[str, float]: ...


class ClassificationEvaluator(Evaluator):
    """Validation accuracy (the objective) and test accuracy (reported only)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def evaluate(self, model: nn.Module, *, splits: tuple[str, ...] = ("val", "test")
                 ) -> dict[str, float]:
        """The metrics of the given splits only (the test split is skipped for a model
        about to be fine-tuned)."""
        metrics = {}
        if "val" in splits:
            metrics["accuracy"] = accuracy(model, self.data.val)
        if "test" in splits:
            metrics["test_accuracy"] = accuracy(model, self.data.test)
        return metrics
