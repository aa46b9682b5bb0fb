"""DEX and its baselines on hand-made tiny images: the exact pixels each output holds."""

import math

import numpy as np
import pytest
import torch

from bitnas.errors import BitnasError
from bitnas.evaluators.dex import dex_index, patch_bounds
from bitnas.registry import INPUT_TRANSFORMS


def _image(c, h, w):
    """Every value names its own (channel, row, column): 100 * ch + 10 * row + col."""
    ch, row, col = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return torch.from_numpy((100 * ch + 10 * row + col).astype(np.float32)).unsqueeze(0)


def _value(ch, row, col):
    return 100 * ch + 10 * row + col


def _dex(x, size, channels):
    m = INPUT_TRANSFORMS.create("dex", in_shape=tuple(x.shape[1:]), size=size, channels=channels)
    return m(x)[0]


def test_c_t_3_is_the_first_pixel_of_each_patch():
    out = _dex(_image(3, 8, 8), (4, 4), 3)
    for i in range(4):
        for j in range(4):
            assert out[:, i, j].tolist() == [_value(c, 2 * i, 2 * j) for c in range(3)]


def test_c_t_6_on_a_2x2_patch_takes_its_first_and_last_pixels():
    # n = 4 pixels, K = min(4, ceil(6/3)) = 2: linspace(0, 3, 2) = [0, 3] -> (0,0) and (1,1)
    out = _dex(_image(3, 8, 8), (4, 4), 6)
    assert out[:, 1, 2].tolist() == [_value(0, 2, 4), _value(1, 2, 4), _value(2, 2, 4),
                                     _value(0, 3, 5), _value(1, 3, 5), _value(2, 3, 5)]


def test_c_t_7_truncates_the_stack_and_floors_the_linspace():
    # K = ceil(7/3) = 3: linspace(0, 3, 3) = [0, 1.5, 3] -> flat 0, 1, 3 of the 2x2 patch
    out = _dex(_image(3, 8, 8), (4, 4), 7)
    assert out[:, 0, 0].tolist() == [0, 100, 200, 1, 101, 201, 11]


def test_c_t_beyond_the_patch_is_zero_padded():
    # a 2x2 patch has 4 pixels: 12 channels of samples, then 6 zeros
    out = _dex(_image(3, 4, 4), (2, 2), 18)
    assert out[:12, 1, 1].tolist() == [_value(c, r, k) for r, k in ((2, 2), (2, 3), (3, 2), (3, 3))
                                       for c in range(3)]
    assert out[12:, :, :].abs().sum() == 0


def test_ratio_4_patch_samples_evenly():
    # 16x16 -> 4x4: 4x4 patches of 16 pixels; C_t = 12 -> K = 4: linspace(0, 15, 4) = 0, 5, 10, 15
    out = _dex(_image(3, 16, 16), (4, 4), 12)
    picks = [(0, 0), (1, 1), (2, 2), (3, 3)]  # flat 0, 5, 10, 15 of a 4-wide patch
    assert out[:, 2, 1].tolist() == [_value(c, 8 + r, 4 + k) for r, k in picks for c in range(3)]


def test_a_non_divisible_size_uses_floor_bounds():
    # 7 -> 3: rows [0, 2), [2, 4), [4, 7): the last patch is 3 rows tall
    assert patch_bounds(7, 3) == [(0, 2), (2, 4), (4, 7)]
    out = _dex(_image(3, 7, 5), (3, 2), 9)
    # output (2, 1): rows 4..6, columns 2..4 (5 -> 2: [0, 2), [2, 5)) -> 9 pixels, K = 3:
    # linspace(0, 8, 3) = 0, 4, 8 -> (4, 2), (5, 3), (6, 4)
    assert out[:, 2, 1].tolist() == [_value(c, r, k) for r, k in ((4, 2), (5, 3), (6, 4)) for c in range(3)]
    # output (0, 0): rows 0..1, columns 0..1 -> 4 pixels, K = 3: 0, 1.5, 3 -> 0, 1, 3
    assert out[:, 0, 0].tolist() == [_value(c, r, k) for r, k in ((0, 0), (0, 1), (1, 1)) for c in range(3)]


def test_one_channel_images_stack_pixel_by_pixel():
    out = _dex(_image(1, 4, 4), (2, 2), 4)
    assert out[:, 0, 1].tolist() == [_value(0, 0, 2), _value(0, 0, 3), _value(0, 1, 2), _value(0, 1, 3)]


def test_the_index_matches_a_slow_reference():
    rng = np.random.default_rng(0)
    for h, w, th, tw, ct in ((9, 11, 4, 3, 10), (32, 32, 8, 8, 64), (5, 5, 5, 5, 6)):
        index = dex_index((3, h, w), (th, tw), ct)
        x = rng.standard_normal((3, h, w))
        for i in range(th):
            for j in range(tw):
                rows = range(i * h // th, (i + 1) * h // th)
                cols = range(j * w // tw, (j + 1) * w // tw)
                pixels = [(r, c) for r in rows for c in cols]
                k = min(len(pixels), math.ceil(ct / 3))
                chosen = [pixels[int(p)] for p in np.floor(np.linspace(0, len(pixels) - 1, k))]
                want = [x[ch, r, c] for r, c in chosen for ch in range(3)][:ct]
                want += [0.0] * (ct - len(want))
                got = [0.0 if v < 0 else x.reshape(-1)[v] for v in index[:, i, j]]
                assert got == want


def test_baselines():
    x = _image(3, 8, 8)
    down = INPUT_TRANSFORMS.create("downsample", in_shape=(3, 8, 8), size=(4, 4))(x)[0]
    assert down[1, 0, 0] == np.mean([_value(1, r, c) for r in (0, 1) for c in (0, 1)])
    coord = INPUT_TRANSFORMS.create("coordconv", in_shape=(3, 8, 8), size=(4, 4))(x)[0]
    assert coord.shape == (5, 4, 4) and torch.equal(coord[:3], down)
    assert coord[3, :, 0].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])  # rows, in the images' range
    assert coord[4, 0, :].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])  # columns
    rep = INPUT_TRANSFORMS.create("repeat", in_shape=(3, 8, 8), size=(4, 4), channels=8)(x)[0]
    assert torch.equal(rep, down[[0, 1, 2, 0, 1, 2, 0, 1]])
    full = INPUT_TRANSFORMS.create("full", in_shape=(3, 8, 8), size=(8, 8))
    assert torch.equal(full(x), x)


@pytest.mark.parametrize("name, kwargs, match", [
    ("dex", {"in_shape": (3, 8, 8), "size": (16, 16), "channels": 6}, "stored images' 8x8"),
    ("dex", {"in_shape": (3, 8, 8), "size": (4, 4), "channels": 0}, "positive integer"),
    ("full", {"in_shape": (3, 8, 8), "size": (4, 4)}, "keeps the stored 8x8"),
    ("dex", {"in_shape": (64,), "size": (4, 4), "channels": 6}, "needs images"),
])
def test_bad_settings_are_one_line(name, kwargs, match):
    with pytest.raises(BitnasError, match=match):
        INPUT_TRANSFORMS.create(name, **kwargs)
