"""The quantizer contract, for every registered quantizer (built-in or plugin)."""

from __future__ import annotations

import pytest
import torch

from bitnas.accounting import Compute, Storage
from bitnas.registry import QUANTIZERS

NAMES = QUANTIZERS.names()
BITS = (1, 2, 3, 4, 6, 8)


def _weights(shape=(8, 4, 3, 3), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_error_does_not_grow_with_more_bits(name):
    q = QUANTIZERS.create(name)
    w = _weights()
    errors = [float(((q.quantize(w, b) - w) ** 2).mean()) for b in BITS]
    for lo, hi, e_lo, e_hi in zip(BITS, BITS[1:], errors, errors[1:], strict=False):
        assert e_hi <= e_lo * (1 + 1e-6) + 1e-12, f"{name}: {hi} bits err {e_hi} > {lo} bits err {e_lo}"
    assert torch.equal(q.quantize(w, 32), w)


@pytest.mark.parametrize("name", NAMES)
def test_storage_is_exact_and_scales_with_the_tensor(name):
    q = QUANTIZERS.create(name)
    for bits in (*BITS, 32):
        small, big = q.storage((4, 3), bits), q.storage((8, 3), bits)
        assert isinstance(small, Storage)
        passes = q.compute(bits).passes
        # codes: every element at its bits (x passes for a series of terms) unless the scheme
        # codes sub-vectors; either way exactly proportional to the element count
        assert big.element_bits == 2 * small.element_bits > 0
        assert small.element_bits in (12 * bits * passes, small.element_bits)
        assert big.scale_bits in (small.scale_bits, 2 * small.scale_bits)  # per tensor or per row
        assert big.table_bits == small.table_bits and dict(big.shared) == dict(small.shared)
        assert q.storage((4, 3), bits) == small  # deterministic
    assert q.storage((4, 3), 8).layer_bits >= q.storage((4, 3), 2).layer_bits


@pytest.mark.parametrize("name", NAMES)
def test_compute_is_declared(name):
    q = QUANTIZERS.create(name)
    for bits in (*BITS, 32):
        assert isinstance(q.compute(bits), Compute)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    q = QUANTIZERS.create(name)
    w = _weights()
    for b in BITS:
        assert torch.equal(q.quantize(w, b), QUANTIZERS.create(name).quantize(w.clone(), b))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["zeros", "constant", "one_element", "one_row"])
def test_degenerate_tensors(name, kind):
    q = QUANTIZERS.create(name)
    w = {"zeros": torch.zeros(4, 3), "constant": torch.full((4, 3), 0.37),
         "one_element": torch.tensor([[0.5]]), "one_row": torch.tensor([[0.1, -0.2, 0.3]])}[kind]
    for b in BITS:
        out = q.quantize(w, b)
        assert out.shape == w.shape and out.dtype == w.dtype
        assert torch.isfinite(out).all(), f"{name} at {b} bits gives non-finite values on {kind}"
    if kind == "zeros":
        assert all(torch.equal(q.quantize(w, b), w) for b in BITS[1:])  # 0 stays exact (b >= 2)


@pytest.mark.parametrize("name", NAMES)
def test_bad_option_is_one_line(name):
    from bitnas.errors import BitnasError

    with pytest.raises(BitnasError, match="unknown option"):
        QUANTIZERS.create(name, no_such_option=1)
