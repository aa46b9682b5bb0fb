"""Tasks (data + metrics) and evaluators (how a model is scored).

A task declares its metrics (name -> natural direction) in ``metrics``; its
evaluator returns every one of them on the validation split (the search's
objectives and metric bounds may name any) and the same with a ``test_`` prefix
on the test split (reported, never optimised). The contract suite checks that an
evaluator returns what its task declares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from bitnas.errors import BitnasError


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


#: the metrics of a classification task and their natural directions
CLASSIFICATION_METRICS: Mapping[str, str] = {"accuracy": "maximize", "macro_f1": "maximize"}


def int_option(value: object, field: str, minimum: int, maximum: int | None = None) -> int:
    """A task's integer option, checked (one clear line when it is not an integer in range)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise BitnasError(f"{field} must be an integer {bound}, got {value!r}")
    return value


class Task(ABC):
    """A dataset with a fixed split and its metrics (registered in ``TASKS``).

    ``metrics`` maps each metric the task reports to its natural direction;
    ``evaluator`` scores a model on the task's data and returns them all.
    """

    input_shape: Sequence[int] = ()
    num_classes: int = 0
    #: 0: inputs are features; n > 0: inputs are token ids 0..n-1 (held as floats), which only
    #: a space with ``takes_tokens`` reads (it is given ``input_vocab=n``)
    input_vocab: int = 0
    metrics: ClassVar[Mapping[str, str]] = CLASSIFICATION_METRICS
    #: the metrics that count things (>= 0, no upper bound); every other one is a fraction in [0, 1]
    #: or, if its direction is "minimize", an error of any size
    counts: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def load(self, seed: int) -> TaskData:
        """The data, split deterministically by ``seed``."""

    def evaluator(self, data: TaskData) -> Evaluator:
        """How a model is scored on ``data`` (classification by default)."""
        return ClassificationEvaluator(data)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Top-1 class of each input (a fake-quantized model quantizes its weights once)."""
    from bitnas.quantizers.fakequant import weights_fixed

    model.eval()
    with weights_fixed(model):
        return torch.cat([model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, split: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``split``."""
    return int((predict(model, split.x, batch_size) == split.y).sum()) / len(split)


def macro_f1(pred: Tensor, target: Tensor, num_classes: int | None = None) -> float:
    """The unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class that
    is neither present nor predicted is left out (scikit-learn's ``f1_score(average=
    "macro")`` over the labels seen)."""
    n = int(max(int(pred.max()), int(target.max())) + 1) if num_classes is None else num_classes
    confusion = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n).double()
    tp = confusion.diag()
    support = 2 * tp + (confusion.sum(0) - tp) + (confusion.sum(1) - tp)
    seen = support > 0
    return float((2 * tp[seen] / support[seen]).mean()) if bool(seen.any()) else 0.0


class Evaluator(ABC):
    """Scores a (quantized) model: returns metric name -> value."""

    @abstractmethod
    def evaluate(self, model: nn.Module, *, splits: tuple[str, ...] = ("val", "test")
                 ) -> dict[str, float]: ...


class ClassificationEvaluator(Evaluator):
    """Accuracy and macro-F1 on the validation split (objectives) and on the test split
    (``test_accuracy``, ``test_macro_f1``: reported only)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def evaluate(self, model: nn.Module, *, splits: tuple[str, ...] = ("val", "test")
                 ) -> dict[str, float]:
        """The metrics of the given splits only (the test split is skipped for a model
        about to be fine-tuned)."""
        metrics = {}
        for split, prefix in (("val", ""), ("test", "test_")):
            if split in splits:
                data = getattr(self.data, split)
                pred = predict(model, data.x)
                metrics[f"{prefix}accuracy"] = int((pred == data.y).sum()) / len(data)
                metrics[f"{prefix}macro_f1"] = macro_f1(pred, data.y)
        return metrics
