"""The 45 nm model against hand-computed figures, plus the properties every model must keep."""

import math
import random

import pytest
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.hardware_models import COST_FIELDS, LayerWorkload, extract_workload, load_constants
from bitnas.hardware_models.base import ENERGY_FIELDS
from bitnas.hardware_models.generic45nm import Generic45nm
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE, QUANTIZERS, load_all

load_all()

# A 2-layer net: conv 1->4 channels, 3x3, on 8x8 (same padding), then linear 256 -> 10.
CONV = LayerWorkload("conv", "conv2d", macs=4 * 8 * 8 * 9, params=36, in_elems=64,
                     out_elems=256, group="conv", weight_shape=(4, 1, 3, 3), bias_params=4,
                     in_shape=(1, 8, 8), out_shape=(4, 8, 8), kernel=(3, 3), stride=(1, 1),
                     padding=(1, 1))
FC = LayerWorkload("fc", "linear", macs=2560, params=2560, in_elems=256, out_elems=10,
                   group="fc", weight_shape=(10, 256), bias_params=10, in_shape=(256,), out_shape=(10,))
TWO_LAYERS = [CONV, FC]


def test_two_layer_net_hand_computed():
    plan = QuantPlan({"conv": LayerQuant(4, 8), "fc": LayerQuant(2, 8)})
    cost = Generic45nm().cost(TWO_LAYERS, plan)

    # conv: 2304 MACs; multiply 0.2 pJ * 4*8/64 = 0.1 pJ; accumulator 4+8+ceil(log2 9)=16 bits
    # -> add 0.1 pJ * 16/32 = 0.05 pJ. Compute = 2304 * 0.15 pJ = 345.6 pJ.
    # fc: 2560 MACs; multiply 0.2 * 2*8/64 = 0.05 pJ; acc 2+8+8 = 18 -> 0.05625 pJ
    # compute = 2560 * 0.10625 = 272 pJ.
    assert cost.per_layer["conv"]["compute_energy_j"] == pytest.approx(345.6e-12)
    assert cost.per_layer["fc"]["compute_energy_j"] == pytest.approx(272e-12)

    # weights (uniform: one 32-bit scale per output channel, which the figures here left out
    # before the workload carried weight shapes): conv 36*4 + 4*32 + 4*32 (biases) = 400 bits,
    # fc 2560*2 + 10*32 + 10*32 = 5760 bits; 6160 bits = 770 bytes <= 8 KB: 10 pJ / 64 bits
    assert cost.weight_bytes == 770
    assert cost.per_layer["conv"]["weight_energy_j"] == pytest.approx(400 * 0.15625e-12)
    assert cost.per_layer["fc"]["weight_energy_j"] == pytest.approx(5760 * 0.15625e-12)

    # activations: conv reads 64*8, writes 256*8 (fc's a_bits) = 2560 bits;
    # fc reads 256*8, writes 10*32 = 2368 bits. Peak 2560 bits = 320 bytes.
    assert cost.peak_act_bytes == 320
    assert cost.per_layer["conv"]["act_energy_j"] == pytest.approx(2560 * 0.15625e-12)
    assert cost.per_layer["fc"]["act_energy_j"] == pytest.approx(2368 * 0.15625e-12)

    total_pj = 345.6 + 272 + (400 + 5760 + 2560 + 2368) * 0.15625
    assert cost.energy_j == pytest.approx(total_pj * 1e-12)

    # latency: ceil(2304/64)=36 and 2560/64=40 cycles at 500 MHz
    assert cost.latency_s == pytest.approx((36 + 40) / 500e6)


def test_float_layers_cost_fp32_ops():
    plan = QuantPlan({"conv": LayerQuant(32, 32), "fc": LayerQuant(32, 32)})
    cost = Generic45nm().cost(TWO_LAYERS, plan)
    assert cost.per_layer["conv"]["compute_energy_j"] == pytest.approx(2304 * (3.7 + 0.9) * 1e-12)


def test_sram_energy_follows_memory_size():
    from bitnas.hardware_models.generic45nm import sram_pj_per_bit

    c = Generic45nm().c
    assert sram_pj_per_bit(1000, c) == pytest.approx(10 / 64)
    assert sram_pj_per_bit(32 * 1024, c) == pytest.approx(20 / 64)
    assert sram_pj_per_bit(16 * 1024, c) == pytest.approx(15 / 64)  # halfway in log size
    assert sram_pj_per_bit(1024 * 1024, c) == pytest.approx(100 / 64)
    assert sram_pj_per_bit(2 * 1024 * 1024, c) == pytest.approx(1300 / 64)


def test_overrides_and_bad_overrides():
    from bitnas.errors import BitnasError

    fast = Generic45nm(clock_hz=1e9)
    plan = QuantPlan.uniform(["conv", "fc"], 8)
    assert fast.cost(TWO_LAYERS, plan).latency_s == pytest.approx(76 / 1e9)
    with pytest.raises(BitnasError, match="not a constant"):
        Generic45nm(clock_mhz=5)
    with pytest.raises(BitnasError, match="positive"):
        Generic45nm(clock_hz=-1)


def test_constants_have_units_and_sources():
    for name, c in load_constants("generic45nm.toml").items():
        assert c.unit and c.source and c.value > 0, name


# --- properties every registered hardware model must keep ------------------------------

BITS = [1, 2, 3, 4, 6, 8, 16, 32]


def _accepted(model):
    """The bits and quantizers a model runs (an accelerator refuses the others in one line)."""
    w_bits = [b for b in BITS if model.supported_weight_bits is None or b in model.supported_weight_bits]
    a_bits = [b for b in BITS if model.supported_act_bits is None or b in model.supported_act_bits]
    quantizers = []
    for q in QUANTIZERS.names():
        try:
            plan = QuantPlan({g: LayerQuant(_runs(q, w_bits)[-1], a_bits[0], q) for g in ("conv", "fc")})
            if model.cost(TWO_LAYERS, plan).feasible:
                quantizers.append(q)
        except BitnasError:
            pass
    return w_bits, a_bits, quantizers


def _runs(quantizer, w_bits):
    """The bits of ``w_bits`` the quantizer runs."""
    runs = QUANTIZERS.create(quantizer).supported_bits()
    return [b for b in w_bits if runs is None or b in runs]


def _random_plan(rng, groups, model):
    w_bits, a_bits, quantizers = _accepted(model)
    plan = {}
    for g in groups:
        q = rng.choice(quantizers)
        plan[g] = LayerQuant(rng.choice(_runs(q, w_bits)), rng.choice(a_bits), q)
    return QuantPlan(plan)


@pytest.mark.parametrize("name", HARDWARE.names())
def test_more_bits_never_cost_less(name):
    model = HARDWARE.create(name)
    rng = random.Random(0)
    for _ in range(200):
        plan = _random_plan(rng, ["conv", "fc"], model)
        group = rng.choice(["conv", "fc"])
        lq = plan[group]
        field = rng.choice(["w_bits", "a_bits"])
        w_bits, a_bits, _ = _accepted(model)
        offered = _runs(lq.quantizer, w_bits) if field == "w_bits" else a_bits
        higher = [b for b in offered if b > getattr(lq, field)]
        if not higher:
            continue
        bumped = dict(plan.layers)
        bumped[group] = LayerQuant(**{**lq.to_dict(), field: rng.choice(higher)})
        a = model.cost(TWO_LAYERS, plan)
        b = model.cost(TWO_LAYERS, QuantPlan(bumped))
        for f in COST_FIELDS:
            if field == "w_bits" and f in model.fields_falling_as_weight_bits_grow:
                continue  # declared by the model (an MCU unpacks sub-byte weights)
            assert b.value(f) >= a.value(f) - 1e-18, (f, plan.to_dict(), bumped)


@pytest.mark.parametrize("name", HARDWARE.names())
def test_per_layer_costs_are_never_negative(name):
    model = HARDWARE.create(name)
    rng = random.Random(1)
    for _ in range(50):
        cost = model.cost(TWO_LAYERS, _random_plan(rng, ["conv", "fc"], model))
        assert all(v >= 0 for p in cost.per_layer.values() for v in p.values())
        assert math.isfinite(cost.energy_j) and cost.weight_bytes > 0


def test_workload_extraction_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(256, 10))
    wl = extract_workload(model, torch.zeros(1, 1, 8, 8), {"conv": ["0"], "fc": ["3"]})
    assert [w.name for w in wl] == ["0", "3"]
    assert (wl[0].macs, wl[0].params, wl[0].in_elems, wl[0].out_elems, wl[0].bias_params) == (
        2304, 36, 64, 256, 4)
    assert (wl[1].macs, wl[1].params, wl[1].in_elems, wl[1].out_elems) == (2560, 2560, 256, 10)
    assert wl[0].fan_in == 9 and wl[1].fan_in == 256
    assert [w.group for w in wl] == ["conv", "fc"]


# --- ops without weights ----------------------------------------------------------------

def test_pool_norm_matmul_and_add_hand_computed():
    from tests.hardware_models.workloads import KINDS, PLAN

    cost = Generic45nm().cost(KINDS, PLAN)
    p = cost.per_layer
    add8 = 0.1 * 8 / 32  # an 8-bit add or compare, pJ
    # pool: 2 steps * 30 compares; LayerNorm: 2 * 20 multiply-adds at 8 x 8 bits, fan-in 1:
    # 0.2 + 0.1 * 16/32 pJ; the folded BatchNorm: nothing
    assert p["pool"]["compute_energy_j"] == pytest.approx(60 * add8 * 1e-12)
    assert p["ln"]["compute_energy_j"] == pytest.approx(40 * 0.25e-12)
    assert all(v == 0 for v in p["bn"].values())
    # products of activations: 2 * 64 MACs at 8 x 8 bits, accumulator 8 + 8 + 3 = 19 bits
    # (generic45nm treats every input as dense: the measured rate does not enter)
    assert p["attn"]["compute_energy_j"] == pytest.approx(128 * (0.2 + 0.1 * 19 / 32) * 1e-12)
    assert p["add"]["compute_energy_j"] == pytest.approx(32 * add8 * 1e-12)
    # no weights, no weight traffic; the LayerNorm's 8 affine parameters at 32 bits
    assert cost.weight_bytes == 32 and p["ln"]["weight_energy_j"] == pytest.approx(256 * 10 / 64 * 1e-12)
    assert p["pool"]["weight_energy_j"] == p["attn"]["weight_energy_j"] == 0
    # activations (input at 8 bits, output at the next op's 8, the last's at 32; the folded
    # BatchNorm holds nothing): pool 40*8 + 10*8 = 400, ln 320, attn 24*8 + 8*8 = 256,
    # add 32*8 + 16*32 = 768 bits: the peak, 96 bytes
    assert cost.peak_act_bytes == 96
    assert p["attn"]["act_energy_j"] == pytest.approx(2 * 256 * 10 / 64 * 1e-12)
    for f in ("energy_j", *ENERGY_FIELDS):
        assert cost.value(f) == pytest.approx(sum(q[f] for q in p.values()))


@pytest.mark.parametrize("name", ["generic45nm", "snn45nm", "loihi"])
def test_a_kind_the_model_does_not_know_is_refused(name):
    from bitnas.errors import BitnasError
    from tests.hardware_models.workloads import PLAN

    fft = LayerWorkload("spectrum", "fft", macs=10, params=0, in_elems=4, out_elems=4, group="g")
    with pytest.raises(BitnasError, match=f"hardware {name} cannot price 'fft' ops \\(op spectrum\\)"):
        HARDWARE.create(name).cost([fft], PLAN)
