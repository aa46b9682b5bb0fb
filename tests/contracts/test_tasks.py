"""The task contract, for every registered task that runs without files of the user's:
it loads deterministically, and its evaluator returns every metric it declares."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.registry import TASKS

NAMES = TASKS.names()


@pytest.mark.parametrize("name", NAMES)
def test_task_declares_and_returns_its_metrics(name):
    try:
        task = TASKS.create(name)
        data = task.load(0)
    except BitnasError as e:
        assert "path" in str(e)  # a task over the user's files: tested on small files elsewhere
        pytest.skip(f"{name} reads the user's files: {e}")
    assert task.metrics and set(task.metrics.values()) <= {"maximize", "minimize"}
    again = task.load(0)
    assert torch.equal(data.val.x, again.val.x) and torch.equal(data.val.y, again.val.y)
    model = nn.Sequential(nn.Flatten(), nn.LazyLinear(task.num_classes))
    model(data.val.x[:2])
    metrics = task.evaluator(data).evaluate(model)
    for m in task.metrics:
        assert m in metrics and f"test_{m}" in metrics
        if m in task.counts:
            assert metrics[m] >= 0.0 and metrics[f"test_{m}"] >= 0.0, m
        else:
            assert 0.0 <= metrics[m] <= 1.0 or task.metrics[m] == "minimize"
    assert set(task.counts) <= set(task.metrics)
