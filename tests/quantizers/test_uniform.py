import pytest
import torch

from bitnas.quantizers import ActivationQuantizer
from bitnas.registry import QUANTIZERS, load_all

load_all()


def sqnr_db(w, wq):
    return float(10 * torch.log10(w.pow(2).sum() / (wq - w).pow(2).sum()))


@pytest.fixture
def weights():
    torch.manual_seed(0)
    return torch.randn(16, 8, 3, 3) * torch.linspace(0.1, 2.0, 16).view(-1, 1, 1, 1)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_sqnr_never_falls_with_bits(name, weights):
    """Every scheme: more bits never hurt, and the first bits clearly help."""
    q = QUANTIZERS.create(name)
    runs = q.supported_bits()
    sqnrs = [sqnr_db(weights, q.quantize(weights, b)) for b in (1, 2, 3, 4, 6, 8, 16)
             if runs is None or b in runs]
    assert all(b >= a - 1e-6 for a, b in zip(sqnrs, sqnrs[1:], strict=False)), sqnrs
    assert sqnrs[0] < sqnrs[1] < sqnrs[2], sqnrs


def test_uniform_sqnr_grows_with_every_bit_and_eight_bits_is_close_to_float(weights):
    q = QUANTIZERS.create("uniform")
    sqnrs = [sqnr_db(weights, q.quantize(weights, b)) for b in (1, 2, 3, 4, 6, 8)]
    assert all(b > a for a, b in zip(sqnrs, sqnrs[1:], strict=False)), sqnrs
    assert sqnrs[-1] > 40


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_shape_dtype_and_32_is_float(name, weights):
    q = QUANTIZERS.create(name)
    assert torch.equal(q.quantize(weights, 32), weights)
    out = q.quantize(weights, 4)
    assert out.shape == weights.shape and out.dtype == weights.dtype


def test_storage_counts_codes_and_scales_by_hand():
    # a 4 x 3 weight at 3 bits: 12 codes of 3 bits, and one scale per output row
    uniform, pot = QUANTIZERS.create("uniform"), QUANTIZERS.create("pot")
    assert uniform.storage((4, 3), 3).layer_bits == 12 * 3 + 4 * 32  # float scales
    assert QUANTIZERS.create("uniform", scale_bits=16).storage((4, 3), 3).layer_bits == 36 + 4 * 16
    assert pot.storage((4, 3), 3).layer_bits == 36 + 4 * 8  # each row's 8-bit top exponent
    assert uniform.storage((4, 3), 32).layer_bits == pot.storage((4, 3), 32).layer_bits == 12 * 32


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_uniform_levels_per_channel(bits, weights):
    wq = QUANTIZERS.create("uniform").quantize(weights, bits)
    max_levels = 2 if bits == 1 else 2**bits - 1
    for c in range(weights.shape[0]):
        assert len(torch.unique(wq[c])) <= max_levels
    if bits > 1:  # integers in the restricted symmetric range, times the channel step
        q = QUANTIZERS.create("uniform")
        ints = wq / q.scale(weights, bits)
        assert torch.allclose(ints, torch.round(ints), atol=1e-4)
        assert ints.abs().max() <= 2 ** (bits - 1) - 1 + 1e-4


def test_activation_quantizer_grid_and_zero():
    aq = ActivationQuantizer(4)
    x = torch.linspace(0, 3, 1000)
    aq.observing = True
    aq(x)
    aq.observing = False
    y = aq(x)
    assert len(torch.unique(y)) <= 16
    assert aq(torch.zeros(3)).abs().max() == 0  # zero is exactly representable
    assert (y - x).abs().max() <= 3 / 15 / 2 + 1e-6  # at most half a step off


def test_activation_quantizer_needs_calibration():
    with pytest.raises(RuntimeError, match="calibration"):
        ActivationQuantizer(8)(torch.ones(2))


def test_straight_through_gradient():
    aq = ActivationQuantizer(2)
    aq.observing = True
    aq(torch.tensor([0.0, 1.0]))
    aq.observing = False
    x = torch.tensor([0.3, 0.6], requires_grad=True)
    aq(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(2))


def test_spike_inputs_pass_exactly_even_if_calibration_saw_no_spike():
    silent = ActivationQuantizer(8)
    silent.observing = True
    silent(torch.zeros(10))  # a layer that did not fire on the calibration batches
    silent.observing = False
    spikes = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert torch.equal(silent(spikes), spikes)
    # a value that is not a spike after all is quantized on the calibrated [0, 1] grid
    assert torch.equal(silent(torch.tensor([0.3, 2.0])), torch.tensor([0.0, 0.0]))
    spiking = ActivationQuantizer(2)
    spiking.observing = True
    spiking(torch.tensor([0.0, 1.0]))
    spiking.observing = False
    assert torch.equal(spiking(spikes), spikes)
    dense = ActivationQuantizer(2)
    dense.observing = True
    dense(torch.tensor([0.0, 0.5, 3.0]))
    dense.observing = False
    assert not torch.equal(dense(torch.tensor([0.4, 1.3])), torch.tensor([0.4, 1.3]))
