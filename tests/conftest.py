"""Shared fixtures: a tiny study spec that trains in well under a second per arch."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_SPEC = """
[study]
name = "tiny"
trials = {trials}
seed = 0
sampler = "{sampler}"

[space]
name = "cnn"
depth = [1, 2]
widths = [4, 8]
kernel_size = [3]
w_bits = [2, 4, 8]
a_bits = [8]

[task]
name = "digits"
epochs = {epochs}

[hardware]
name = "generic45nm"

[[objectives]]
name = "accuracy"

[[objectives]]
name = "energy_j"

[constraints]
weight_bytes = {weight_bytes}
"""


def write_spec(path: Path, *, trials: int = 6, epochs: int = 3, sampler: str = "random",
               weight_bytes: int = 100000, extra: str = "") -> Path:
    path.write_text(TINY_SPEC.format(trials=trials, epochs=epochs, sampler=sampler,
                                     weight_bytes=weight_bytes) + extra)
    return path


# the end-of-search report.html (matplotlib figures, about 0.4 s a run) is left out of the
# many searches the suite runs, in this process and in the CLI subprocesses it starts;
# tests/search/test_report.py turns it back on and tests it
os.environ.setdefault("BITNAS_NO_REPORT", "1")


@contextlib.contextmanager
def reports_on() -> Iterator[None]:
    """Within: searches write report.html (outside a test's own monkeypatch)."""
    before = os.environ.pop("BITNAS_NO_REPORT", None)
    try:
        yield
    finally:
        if before is not None:
            os.environ["BITNAS_NO_REPORT"] = before


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "tiny.toml")


def run_bitnas(*args: str, cwd: Path | None = None, timeout: float = 240
               ) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "bitnas", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_digits_model():
    """A depth-2 CNN trained on digits (about a second), with its groups and data."""
    import torch

    from bitnas.evaluators import DigitsTask, TrainConfig, train_fp
    from bitnas.spaces import CNNSpace

    task = DigitsTask()
    data = task.load(0)
    space = CNNSpace(input_shape=task.input_shape, num_classes=task.num_classes)
    torch.manual_seed(0)
    model = space.build({"depth": 2, "widths": [8, 8], "kernel_size": 3})
    train_fp(model, data.train, TrainConfig(epochs=10), 0)
    return model, space.layer_groups(model), data


def run_study(run_dir: Path, name: str = "tiny"):
    """The study of a run directory, where bitnas keeps it (its journal, study.log)."""
    import optuna

    from bitnas.search.storage import open_storage, run_dir_url

    return optuna.load_study(study_name=name, storage=open_storage(run_dir_url(run_dir)))


def count_finished(run_dir: Path) -> int:
    """Finished trials of a run that another process is writing (0 before its journal
    holds a study), read as an outside observer would."""
    import optuna
    from optuna.trial import TrialState

    path = run_dir / "study.log"
    if not path.is_file() or path.stat().st_size == 0:
        return 0  # not created yet (opening it would create it, racing the search)
    try:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        studies = storage.get_all_studies()
        if not studies:
            return 0
        study = optuna.load_study(study_name=studies[0].study_name, storage=storage)
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    except ValueError:  # a record being written right now
        return 0
