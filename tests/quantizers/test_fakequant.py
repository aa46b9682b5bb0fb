import pytest
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.evaluators import accuracy, calibration_batches, ptq
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.quantizers import FakeQuantLayer, fake_quantize


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def test_fake_quantize_swaps_layers_and_leaves_original():
    model = _model()
    groups = {"c": ["0"], "fc": ["3"]}
    q = fake_quantize(model, QuantPlan.uniform(["c", "fc"], 4), groups)
    assert isinstance(q[0], FakeQuantLayer) and isinstance(q[3], FakeQuantLayer)
    assert isinstance(model[0], nn.Conv2d)


def test_plan_groups_must_match_model_groups():
    with pytest.raises(BitnasError, match="do not match"):
        fake_quantize(_model(), QuantPlan.uniform(["c"], 4), {"c": ["0"], "fc": ["3"]})


def test_integer_arithmetic_is_exact():
    """The fake-quant conv equals an integer conv rescaled: inputs and weights on their grids."""
    model = _model()
    groups = {"c": ["0"], "fc": ["3"]}
    x = torch.rand(5, 1, 8, 8)
    q = ptq(model, QuantPlan.uniform(["c", "fc"], 4, 8), groups, [x])
    layer = q[0]
    s_a, zp = layer.act.qparams()
    x_int = torch.clamp(torch.round(x / s_a) + zp, 0, 255) - zp
    w = layer.quantized_weight().detach()
    s_w = layer.weight_quantizer.scale(layer.layer.weight, 4)
    w_int = torch.round(w / s_w)
    assert w_int.abs().max() <= 7
    acc = torch.nn.functional.conv2d(x_int.double(), w_int.double(), padding=1)
    expected = acc * (s_a * s_w.view(1, -1, 1, 1)).double() + layer.layer.bias.double().view(1, -1, 1, 1)
    assert torch.allclose(layer(x).double(), expected, atol=1e-5)


def test_ptq_eight_bits_matches_float_accuracy(trained_digits_model):
    model, groups, data = trained_digits_model
    fp = accuracy(model, data.val)
    calib = calibration_batches(data.train.x, 4, 64, 0)
    q8 = accuracy(ptq(model, QuantPlan.uniform(list(groups), 8, 8), groups, calib), data.val)
    q2 = accuracy(ptq(model, QuantPlan.uniform(list(groups), 2, 8), groups, calib), data.val)
    assert fp > 0.9
    assert abs(q8 - fp) <= 0.01
    assert q2 <= q8


def test_weights_are_quantized_once_inside_weights_fixed_and_always_outside():
    from bitnas.quantizers.fakequant import weights_fixed

    layer = FakeQuantLayer(torch.nn.Linear(6, 4), [(None, LayerQuant(3, 8, "nonuniform"))])
    calls = []
    inner = layer.weight_quantizers[0].quantize_layer
    layer.weight_quantizers[0].quantize_layer = lambda *a: calls.append(1) or inner(*a)
    with torch.no_grad():
        layer.quantized()
        layer.layer.weight.data.mul_(10)  # outside the scope a change is always seen
        assert torch.allclose(layer.quantized()[0].abs().max(), layer.layer.weight.abs().max(), rtol=0.2)
        n = len(calls)
        with weights_fixed(layer):
            first = layer.quantized()[0]
            for _ in range(5):
                assert layer.quantized()[0] is first
        assert len(calls) == n + 1
        layer.quantized()
        assert len(calls) == n + 2 and not layer._cache  # dropped on exit
