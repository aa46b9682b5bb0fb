"""The `digits` task: 8x8 handwritten digits, offline.

By default it uses scikit-learn's bundled copy (1,797 images). Given ``path``, it
reads the full UCI "optdigits" files the user already has (``optdigits.tra`` and
``optdigits.tes``: one image per line, 64 pixel counts 0..16 then the label);
the .tes file is then the test split, and ``test_fraction`` is not used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split, Task, TaskData
from bitnas.registry import TASKS


def read_optdigits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one UCI optdigits file into (images [N, 8, 8] in 0..16, labels [N])."""
    if not path.is_file():
        raise BitnasError(f"digits file {path} not found; task.path needs optdigits.tra and .tes")
    not_text = BitnasError(f"{path} is not an optdigits text file (binary, or not UTF-8 text); task.path "
                           "needs the UCI optdigits.tra and optdigits.tes text files")
    data = path.read_bytes()
    if b"\0" in data:  # NUL bytes decode as text, then fail as numbers: name the real cause
        raise not_text
    try:
        text = data.decode()
    except UnicodeDecodeError:  # else it would reach load()'s ValueError handler and blame the split
        raise not_text from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [int(v) for v in line.split(",")]
        except ValueError:
            raise BitnasError(f"{path}:{lineno}: expected 65 comma-separated integers") from None
        if len(values) != 65 or not all(0 <= v <= 16 for v in values[:64]) or not (
            0 <= values[64] <= 9
        ):
            raise BitnasError(
                f"{path}:{lineno}: expected 64 pixel counts in 0..16 and a label in 0..9"
            )
        rows.append(values)
    if not rows:
        raise BitnasError(f"{path} holds no images")
    arr = np.asarray(rows, dtype=np.int64)
    return arr[:, :64].reshape(-1, 8, 8), arr[:, 64]


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))


#: generated splits by (task class, options, seed): see DigitsTask.load
_GENERATED: dict[tuple[str, str, int], TaskData] = {}


@TASKS.register("digits")
class DigitsTask(Task):
    """Handwritten digits 8x8, 10 classes (scikit-learn's copy, or UCI optdigits files)."""

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(
        self, *, val_fraction: float = 0.2, test_fraction: float = 0.2, path: str | None = None
    ) -> None:
        for field, value in (("task.val_fraction", val_fraction), ("task.test_fraction", test_fraction)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 0.5:
                raise BitnasError(f"{field} must be a fraction in (0, 0.5), got {value!r}")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise BitnasError(f"task.path must be a directory path, got {path!r}")
        self.options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "path": path}

    def load(self, seed: int) -> TaskData:
        """The splits for ``seed``. Generated data (no ``path``) is made once per process and
        options: event frames of the same digits take seconds, and an experiment builds
        several contexts on the same task (the tensors are shared: never modify them)."""
        if self.options["path"] is None:
            key = (type(self).__qualname__, json.dumps(self.options, sort_keys=True), seed)
            if key not in _GENERATED:
                _GENERATED[key] = self._checked_load(seed)
            return _GENERATED[key]
        return self._checked_load(seed)

    def _checked_load(self, seed: int) -> TaskData:
        try:
            return self._load(seed)
        except ValueError as e:  # scikit-learn's split refuses too few images per class
            raise BitnasError(
                f"task digits: cannot split the images with val_fraction = "
                f"{self.options['val_fraction']} and test_fraction = "
                f"{self.options['test_fraction']}: {str(e).splitlines()[0]}"
            ) from None

    def _load(self, seed: int) -> TaskData:
        val_fraction = self.options["val_fraction"]
        if self.options["path"] is not None and not Path(self.options["path"]).expanduser().is_dir():
            raise BitnasError(
                f"task.path {self.options['path']} is not a directory; it must hold optdigits.tra"
            )
        if self.options["path"] is None:
            from sklearn.datasets import load_digits

            bunch = load_digits()
            images, labels = bunch.images, bunch.target
            rest_x, test_x, rest_y, test_y = train_test_split(
                images, labels, test_size=self.options["test_fraction"],
                random_state=seed, stratify=labels,
            )
        else:
            root = Path(self.options["path"]).expanduser()
            rest_x, rest_y = read_optdigits(root / "optdigits.tra")
            test_x, test_y = read_optdigits(root / "optdigits.tes")
        train_x, val_x, train_y, val_y = train_test_split(
            rest_x, rest_y, test_size=val_fraction, random_state=seed, stratify=rest_y
        )
        return TaskData(
            train=self.make_split(train_x, train_y, seed),
            val=self.make_split(val_x, val_y, seed + 1),
            test=self.make_split(test_x, test_y, seed + 2),
        )

    def make_split(self, images: np.ndarray, labels: np.ndarray, seed: int) -> Split:
        """Tensors of one split from raw images (0..16); subclasses change the encoding."""
        return _split(images, labels)
