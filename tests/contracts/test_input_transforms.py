"""Contract suite for every registered input transform (built-in or plugin)."""

import pytest
import torch

from bitnas.registry import INPUT_TRANSFORMS

IN_SHAPE = (3, 12, 10)


@pytest.mark.parametrize("name", INPUT_TRANSFORMS.names())
def test_an_input_transform_is_a_fixed_map_to_its_declared_shape(name):
    cls = INPUT_TRANSFORMS.get(name)
    size = IN_SHAPE[1:] if name == "full" else (4, 5)
    channels = 9 if cls.takes_channels else None
    m = INPUT_TRANSFORMS.create(name, in_shape=IN_SHAPE, size=size, channels=channels)
    x = torch.rand(2, *IN_SHAPE)
    y = m(x)
    assert y.shape == (2, *m.out_shape) and y.dtype == x.dtype
    assert m.out_shape[1:] == tuple(size)
    if cls.takes_channels:
        assert m.out_shape[0] == channels
    assert not list(m.parameters())  # nothing trained, nothing stored on the chip
    assert torch.equal(m(x), y)
    assert torch.equal(m(x[1:]), y[1:])  # sample by sample
