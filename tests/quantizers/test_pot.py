import pytest
import torch

from bitnas.quantizers import PowerOfTwoQuantizer


@pytest.fixture
def weights():
    torch.manual_seed(1)
    return torch.randn(8, 4, 3, 3) * torch.logspace(-2, 1, 8).view(-1, 1, 1, 1)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8])
def test_only_signed_powers_of_two_or_zero(bits, weights):
    wq = PowerOfTwoQuantizer().quantize(weights, bits)
    nonzero = wq[wq != 0].abs()
    assert torch.equal(torch.exp2(torch.round(torch.log2(nonzero))), nonzero)
    assert torch.all((wq == 0) | (torch.sign(wq) == torch.sign(weights)))
    if bits == 1:
        assert torch.all(wq != 0)
    for c in range(weights.shape[0]):  # a b-bit code: sign + at most 2^(b-1)-1 magnitudes or zero
        mags = torch.unique(wq[c].abs())
        assert len(mags[mags > 0]) <= max(1, 2 ** (bits - 1) - 1)


def test_rounds_to_the_nearest_level():
    w = torch.tensor([[1.0, 0.74, 0.76, 0.3, 0.1, -0.55, 0.0]])
    # 3 bits: levels 0, 1/4, 1/2, 1 (top exponent from max |w| = 1)
    wq = PowerOfTwoQuantizer().quantize(w, 3)
    assert wq.tolist() == [[1.0, 0.5, 1.0, 0.25, 0.0, -0.5, 0.0]]


def test_multiply_becomes_shift_in_the_cost_model():
    from bitnas.hardware_models.generic45nm import Generic45nm
    from bitnas.plan import LayerQuant, QuantPlan
    from tests.hardware_models.test_generic45nm import TWO_LAYERS

    hw = Generic45nm()
    uni = hw.cost(TWO_LAYERS, QuantPlan({"conv": LayerQuant(4, 8), "fc": LayerQuant(4, 8)}))
    pot = hw.cost(TWO_LAYERS, QuantPlan({"conv": LayerQuant(4, 8, "pot"),
                                         "fc": LayerQuant(4, 8, "pot")}))
    assert pot.energy_j < uni.energy_j
    # the same codes; each of the 14 output channels keeps an 8-bit exponent, not a 32-bit scale
    assert uni.weight_bytes - pot.weight_bytes == 14 * (32 - 8) // 8
    # conv: 2304 shifts charged as 8-bit adds (0.1 pJ * 8/32) + the same 16-bit accumulate
    assert pot.per_layer["conv"]["compute_energy_j"] == pytest.approx(2304 * (0.025 + 0.05) * 1e-12)
