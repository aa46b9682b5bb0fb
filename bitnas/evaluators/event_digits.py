"""The `event_digits` task: scikit-learn digits turned into DVS-style event frames.

Recorded the way N-MNIST was: the static image moves along three small saccades
(a closed triangle) in front of a simulated dynamic vision sensor. Each pixel keeps
a reference log-intensity; whenever the current log-intensity moves a contrast
threshold C above (below) it, the pixel emits an ON (OFF) event and the reference
steps by C. Thresholds vary from pixel to pixel (sensor mismatch, drawn anew for each
sample, like recordings on slightly different sensors) and a little background
activity is added. Events are summed into ``bins`` frames of shape
[2, size, size] (ON, OFF), so a sample is [bins, 2, size, size]; a spiking model
integrates them into its own T frames. Everything is seeded and vectorised: the
whole data set takes about a second.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split
from bitnas.evaluators.digits import DigitsTask
from bitnas.registry import TASKS

STEPS_PER_BIN = 4  # sensor updates per frame


def _positive_int(value: object, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BitnasError(f"{field} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def saccade_offsets(n_steps: int, amplitude: float) -> np.ndarray:
    """(dy, dx) in pixels along a closed triangle of three saccades, [n_steps, 2]."""
    corners = np.array([[0.0, 0.0], [-1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]) * amplitude
    t = np.linspace(0.0, 3.0, n_steps, endpoint=False)
    seg = np.minimum(t.astype(int), 2)
    frac = (t - seg)[:, None]
    return corners[seg] * (1 - frac) + corners[seg + 1] * frac


def events_from_images(images: np.ndarray, *, bins: int, size: int, seed: int,
                       threshold: float = 0.25, mismatch: float = 0.1,
                       noise_rate: float = 0.002, amplitude: float = 1.5) -> torch.Tensor:
    """Event frames [N, bins, 2, size, size] (float counts) from images [N, 8, 8] in 0..16."""
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    digit = int(round(size * 0.75))
    x = F.interpolate(x, size=(digit, digit), mode="bilinear", align_corners=False)
    pad = size - digit
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    n_steps = bins * STEPS_PER_BIN
    offsets = torch.from_numpy(saccade_offsets(n_steps + 1, amplitude)).float()
    jitter = (torch.rand(n, 1, 2, generator=gen) - 0.5) * 0.6  # each sample's own path
    thresholds = threshold * (1 + mismatch * torch.randn(n, 1, size, size, generator=gen))
    thresholds = thresholds.clamp_min(threshold * 0.5)
    base = torch.stack(torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                                      indexing="ij"), dim=-1)  # (y, x) in [-1, 1]

    def view(step: int) -> torch.Tensor:
        shift = (offsets[step] + jitter[:, 0]) * (2.0 / (size - 1))  # pixels -> grid units
        grid = (base.unsqueeze(0) - shift.view(n, 1, 1, 2)).flip(-1)  # grid_sample wants (x, y)
        img = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return torch.log(img + 0.05)

    frames = torch.zeros(n, bins, 2, size, size)
    reference = view(0)
    for step in range(1, n_steps + 1):
        diff = view(step) - reference
        crossings = torch.floor(diff.abs() / thresholds)
        reference = reference + torch.sign(diff) * crossings * thresholds
        b = (step - 1) // STEPS_PER_BIN
        frames[:, b, 0] += (crossings * (diff > 0)).squeeze(1)
        frames[:, b, 1] += (crossings * (diff < 0)).squeeze(1)
    noise = torch.rand(frames.shape, generator=gen) < noise_rate
    return frames + noise.float()


@TASKS.register("event_digits")
class EventDigitsTask(DigitsTask):
    """Digits as DVS event frames [bins, 2, H, W] from simulated saccades (generated, seeded)."""

    num_classes = 10

    def __init__(self, *, bins: int = 16, size: int = 16, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, path: str | None = None) -> None:
        super().__init__(val_fraction=val_fraction, test_fraction=test_fraction, path=path)
        self.bins = _positive_int(bins, "task.bins", 1, 64)
        self.size = _positive_int(size, "task.size", 8, 64)
        self.options = {**self.options, "bins": self.bins, "size": self.size}
        self.input_shape = (self.bins, 2, self.size, self.size)

    def make_split(self, images: np.ndarray, labels: np.ndarray, seed: int) -> Split:
        x = events_from_images(images, bins=self.bins, size=self.size, seed=seed)
        return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))

