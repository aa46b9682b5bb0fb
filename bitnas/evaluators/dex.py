"""Input transforms: how a task's stored high-resolution images become a network's input.

A tiny AI accelerator takes small inputs (a MAX78000 data-memory instance holds one
32 KiB channel), so images are shrunk before the first layer. Each transform here is
registered in ``INPUT_TRANSFORMS`` and made by a space by name, as the first module
of its network: ``make(name, in_shape=(C, H, W), size=(H_t, W_t), channels=C_t)``.
Every transform maps a float batch [N, C, H, W] to [N, out_channels, H_t, W_t] and is
fixed (no trainable weights, nothing stored on the chip: it runs where the image is
captured).

- ``dex``: data channel extension (Gong, Kawsar, Min, NeurIPS 2024). For each output
  pixel (i, j) the matching patch of the original, rows floor(i*H/H_t) up to (not
  including) floor((i+1)*H/H_t) and the same for columns, gives K = min(patch pixels,
  ceil(C_t/C)) pixels picked evenly over the flattened (row-major) patch, at positions
  floor(linspace(0, n - 1, K)); they are stacked channel-wise, [s0c0, s0c1, s0c2, s1c0,
  ...], truncated to C_t channels and zero-padded when short. With C_t = C it is a
  strided subsample (the first pixel of each patch).
- ``downsample``: the patch's mean (area resampling), C channels: the plain baseline.
- ``coordconv``: the downsampled image plus two coordinate channels, rows and columns
  from 0 to 1, the range of the image's own values (Liu et al., 2018), C + 2 channels.
- ``repeat``: the downsampled image's channels repeated up to C_t (truncated): as many
  input channels as DEX, with no new information.
- ``full``: the image as stored (its size must equal the target): the reference at full
  resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.registry import INPUT_TRANSFORMS


def patch_bounds(size: int, target: int) -> list[tuple[int, int]]:
    """[start, stop) of each of ``target`` patches along an axis of ``size`` pixels."""
    return [(i * size // target, (i + 1) * size // target) for i in range(target)]


def dex_index(in_shape: Sequence[int], size: Sequence[int], channels: int) -> np.ndarray:
    """For each output element (C_t, H_t, W_t), the flat index into one (C, H, W) input it
    copies, or -1 for a zero (padding): the DEX sampling of the module docstring."""
    c_in, height, width = (int(v) for v in in_shape)
    out_h, out_w = (int(v) for v in size)
    per_pixel = math.ceil(channels / c_in)
    index = np.full((channels, out_h, out_w), -1, dtype=np.int64)
    for i, (r0, r1) in enumerate(patch_bounds(height, out_h)):
        for j, (c0, c1) in enumerate(patch_bounds(width, out_w)):
            patch_w = c1 - c0
            n = (r1 - r0) * patch_w
            k = min(n, per_pixel)
            picks = np.floor(np.linspace(0, n - 1, k)).astype(np.int64)
            stacked = [(ch * height + r0 + p // patch_w) * width + c0 + p % patch_w
                       for p in picks for ch in range(c_in)][:channels]
            index[:len(stacked), i, j] = stacked
    return index


def _check(name: str, in_shape: Sequence[int], size: Sequence[int]) -> tuple[int, int, int, int, int]:
    if len(in_shape) != 3:
        raise BitnasError(f"input transform {name} needs images (C, H, W), got input shape {tuple(in_shape)}")
    c, h, w = (int(v) for v in in_shape)
    out_h, out_w = (int(v) for v in size)
    if out_h < 1 or out_w < 1 or out_h > h or out_w > w:
        raise BitnasError(f"input transform {name}: target size {out_h}x{out_w} must be between 1x1 "
                          f"and the stored images' {h}x{w}; set space.input_size to at most {min(h, w)}")
    return c, h, w, out_h, out_w


class InputTransform(nn.Module):
    """A fixed map from stored images to the network's input; ``out_shape`` is (C', H_t, W_t)."""

    out_shape: tuple[int, int, int]
    #: whether the output channels C_t are a choice (``channels``); the others fix theirs
    takes_channels: ClassVar[bool] = False

    def extra_repr(self) -> str:
        return f"out_shape={self.out_shape}"


@INPUT_TRANSFORMS.register("dex", "DEX: patch-wise even sampling stacked into C_t channels")
class DEX(InputTransform):
    takes_channels = True

    def __init__(self, *, in_shape: Sequence[int], size: Sequence[int], channels: int) -> None:
        super().__init__()
        c, h, w, out_h, out_w = _check("dex", in_shape, size)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise BitnasError(f"DEX channels (C_t) must be a positive integer, got {channels!r}")
        index = dex_index((c, h, w), (out_h, out_w), channels)
        # -1 (padding) points at a zero appended after the flattened image
        index[index < 0] = c * h * w
        self.register_buffer("index", torch.from_numpy(index.reshape(-1)), persistent=False)
        self.out_shape = (channels, out_h, out_w)

    def forward(self, x: Tensor) -> Tensor:
        flat = torch.cat([x.flatten(1), x.new_zeros(x.shape[0], 1)], dim=1)
        return flat[:, self.index].view(x.shape[0], *self.out_shape)


class _Downsampled(InputTransform):
    def __init__(self, name: str, in_shape: Sequence[int], size: Sequence[int]) -> None:
        super().__init__()
        self.c, _, _, self.out_h, self.out_w = _check(name, in_shape, size)

    def shrink(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, (self.out_h, self.out_w))


@INPUT_TRANSFORMS.register("downsample", "area downsampling to the target size (the plain baseline)")
class Downsample(_Downsampled):
    def __init__(self, *, in_shape: Sequence[int], size: Sequence[int], channels: int | None = None) -> None:
        super().__init__("downsample", in_shape, size)
        self.out_shape = (self.c, self.out_h, self.out_w)

    def forward(self, x: Tensor) -> Tensor:
        return self.shrink(x)


@INPUT_TRANSFORMS.register("coordconv", "downsampling plus two coordinate channels (CoordConv)")
class CoordConv(_Downsampled):
    def __init__(self, *, in_shape: Sequence[int], size: Sequence[int], channels: int | None = None) -> None:
        super().__init__("coordconv", in_shape, size)
        rows = torch.linspace(0, 1, self.out_h).view(-1, 1).expand(self.out_h, self.out_w)
        cols = torch.linspace(0, 1, self.out_w).view(1, -1).expand(self.out_h, self.out_w)
        self.register_buffer("coords", torch.stack([rows, cols]), persistent=False)
        self.out_shape = (self.c + 2, self.out_h, self.out_w)

    def forward(self, x: Tensor) -> Tensor:
        coords = self.coords.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return torch.cat([self.shrink(x), coords], dim=1)


@INPUT_TRANSFORMS.register("repeat", "downsampling with its channels repeated up to C_t")
class Repeat(_Downsampled):
    takes_channels = True

    def __init__(self, *, in_shape: Sequence[int], size: Sequence[int], channels: int) -> None:
        super().__init__("repeat", in_shape, size)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise BitnasError(f"repeat channels (C_t) must be a positive integer, got {channels!r}")
        self.register_buffer("order", torch.arange(channels) % self.c, persistent=False)
        self.out_shape = (channels, self.out_h, self.out_w)

    def forward(self, x: Tensor) -> Tensor:
        return self.shrink(x)[:, self.order]


@INPUT_TRANSFORMS.register("full", "the stored image unchanged (the full-resolution reference)")
class Full(InputTransform):
    def __init__(self, *, in_shape: Sequence[int], size: Sequence[int], channels: int | None = None) -> None:
        super().__init__()
        c, h, w, out_h, out_w = _check("full", in_shape, size)
        if (out_h, out_w) != (h, w):
            raise BitnasError(f"input transform full keeps the stored {h}x{w} images; set "
                              f"space.input_size = {h} or choose dex, downsample, coordconv or repeat")
        self.out_shape = (c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return x
