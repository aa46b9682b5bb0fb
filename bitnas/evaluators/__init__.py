"""Tasks (data + metric) and how a candidate is scored: FP training, PTQ, evaluation."""

from bitnas.evaluators.base import (
    ClassificationEvaluator,
    Evaluator,
    Split,
    Task,
    TaskData,
    accuracy,
    macro_f1,
    predict,
)
from bitnas.evaluators.digits import DigitsTask, read_optdigits
from bitnas.evaluators.ptq import calibrate, calibration_batches, ptq
from bitnas.evaluators.training import FPModelCache, TrainConfig, train_fp

__all__ = [
    "ClassificationEvaluator",
    "DigitsTask",
    "Evaluator",
    "FPModelCache",
    "Split",
    "Task",
    "TaskData",
    "TrainConfig",
    "accuracy",
    "macro_f1",
    "predict",
    "calibrate",
    "calibration_batches",
    "ptq",
    "read_optdigits",
    "train_fp",
]

from bitnas.evaluators.event_digits import EventDigitsTask, events_from_images  # noqa: E402

__all__ += ["EventDigitsTask", "events_from_images"]
