"""The non-uniform (Lloyd-Max) and series-expansion (FP=xINT) quantizers."""

from __future__ import annotations

import pytest
import torch

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.quantizers.nonuniform import lloyd_max
from bitnas.quantizers.series import SeriesActivation, expand
from bitnas.registry import QUANTIZERS


def _mse(a, b):
    return float(((a - b) ** 2).mean())


def test_lloyd_max_finds_the_gaussian_levels():
    # Max (1960): the 4-level quantizer of a unit Gaussian has levels +-0.4528 and +-1.510
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    levels = lloyd_max(x, 4)
    assert torch.allclose(levels, torch.tensor([-1.510, -0.4528, 0.4528, 1.510], dtype=torch.float64),
                          atol=0.01)


@pytest.mark.parametrize("dist", ["gaussian", "laplace"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_nonuniform_beats_uniform_on_bell_shaped_weights(dist, bits):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(64, 256, generator=gen)
    if dist == "laplace":
        w = torch.distributions.Laplace(0.0, 1.0).sample((64, 256))
    nu = QUANTIZERS.create("nonuniform", level_bits=32)
    # the same comparison a per-tensor scheme should win: one table against one scale
    uni = QUANTIZERS.create("uniform")
    flat = w.reshape(1, -1)
    assert _mse(nu.quantize(w, bits), w) < _mse(uni.quantize(flat, bits), flat)
    # and the levels are the centroids of their cells (Lloyd's condition)
    q = nu.quantize(w, bits)
    for level in torch.unique(q):
        assert torch.isclose(w[q == level].mean(), level, atol=1e-3)


def test_nonuniform_table_storage_and_lookup():
    q = QUANTIZERS.create("nonuniform")
    assert q.storage((4, 3), 3) == Storage(36, scale_bits=32, table_bits=8 * 8)
    assert q.compute(3) == Compute(ComputeKind.LOOKUP, operand_bits=8)
    assert q.compute(32).kind is ComputeKind.MULTIPLY
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    assert len(torch.unique(q.quantize(w, 3))) <= 8
    with pytest.raises(BitnasError, match="level_bits"):
        QUANTIZERS.create("nonuniform", level_bits=1)
    assert 16 not in q.supported_bits()


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_each_series_term_cuts_the_error_by_about_2_to_the_minus_b(bits):
    w = torch.randn(32, 72, generator=torch.Generator().manual_seed(3))
    rms = []
    for k in (2, 3, 4):
        approx = torch.stack(expand(w, bits, k)).sum(0)
        rms.append(_mse(approx, w) ** 0.5)
    for before, after in zip(rms, rms[1:], strict=False):
        ratio = after / before
        # the bound is 1/(2^b - 1); rounding makes it about that, never much worse
        assert ratio <= 1.15 / (2 ** bits - 1), (bits, rms)


def test_series_storage_compute_and_one_term_equals_uniform():
    q = QUANTIZERS.create("series", terms=3, act_terms=2)
    # one scale a channel: the later terms' steps are fixed fractions of the first's
    assert q.storage((4, 3), 4) == Storage(12 * 4 * 3, scale_bits=4 * 32)
    assert q.storage((4, 3), 1) == Storage(12 * 1 * 3, scale_bits=4 * 32)  # binary: s, s/2, s/4
    assert q.compute(4) == Compute(ComputeKind.MULTIPLY, passes=6, act_terms=2)
    w = torch.randn(8, 9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(QUANTIZERS.create("series", terms=1).quantize(w, 3),
                       QUANTIZERS.create("uniform").quantize(w, 3))
    with pytest.raises(BitnasError, match="terms must be 1..8"):
        QUANTIZERS.create("series", terms=0)


def test_series_steps_are_one_scale_a_channel_times_fixed_fractions():
    w = torch.randn(5, 12, generator=torch.Generator().manual_seed(6))
    terms = expand(w, 3, 3)
    for c in range(5):
        steps = []
        for t in terms:
            nonzero = t[c][t[c] != 0].abs()
            # each term's values are integer multiples of its step: the smallest is one or more
            steps.append(float(nonzero.min()) if len(nonzero) else None)
        step1 = float((terms[0][c] / torch.round(terms[0][c] / steps[0])).nan_to_num().abs().max())
        for i, t in enumerate(terms):
            q = t[c] / (step1 / 7 ** i)
            assert torch.allclose(q, torch.round(q), atol=1e-4)  # on the grid s / (2^b - 1)^i


@pytest.mark.parametrize("bits", [7, 8])
def test_series_of_an_all_zero_channel_is_finite_at_every_width(bits):
    w = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
    w[1] = 0
    out = QUANTIZERS.create("series", terms=8).quantize(w, bits)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(8))
    scalar = QUANTIZERS.create("series").quantize(torch.tensor(0.7), 4)
    assert scalar.shape == () and abs(float(scalar) - 0.7) < 0.05


def test_nonuniform_offers_no_more_index_bits_than_its_levels_hold():
    assert QUANTIZERS.create("nonuniform", level_bits=4).supported_bits() == frozenset({1, 2, 3, 4})
    assert QUANTIZERS.create("nonuniform").supported_bits() == frozenset(range(1, 9))


def test_series_activation_terms_cut_the_input_error():
    x = torch.rand(2000, generator=torch.Generator().manual_seed(5)) * 3 - 0.5
    errors = []
    for k in (1, 2, 3):
        act = SeriesActivation(4, k)
        act.observing = True
        act(x)
        act.observing = False
        errors.append(_mse(act(x), x) ** 0.5)
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 10
    spikes = (x > 1).float()
    act = SeriesActivation(4, 2)
    act.observing = True
    act(spikes)
    act.observing = False
    assert torch.equal(act(spikes), spikes)  # spikes pass unchanged, as with one term
    assert QUANTIZERS.create("series", act_terms=2).activation(8) is not None
    assert QUANTIZERS.create("series").activation(8) is None
