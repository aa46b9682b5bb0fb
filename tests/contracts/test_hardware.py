"""The cost-model contract, for every registered hardware model (built-in or plugin)."""

from __future__ import annotations

import itertools
import math

import pytest

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.hardware_models import base as hw_base
from bitnas.hardware_models.base import ENERGY_FIELDS, Cost, LayerWorkload, load_constants
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE, QUANTIZERS

NAMES = HARDWARE.names()

#: a small network of two groups, activity held fixed: a dense-input convolution and a
#: spike-input linear layer, run over 4 time steps, with neuron state
WORKLOAD = [
    LayerWorkload("conv", "conv2d", macs=8 * 8 * 8 * 27, params=8 * 27, in_elems=3 * 8 * 8,
                  out_elems=8 * 8 * 8, group="g0", weight_shape=(8, 3, 3, 3), bias_params=8,
                  timesteps=4, state_elems=512, in_shape=(3, 8, 8), out_shape=(8, 8, 8),
                  kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
    LayerWorkload("fc", "linear", macs=10 * 512, params=10 * 512, in_elems=512, out_elems=10,
                  group="g1", weight_shape=(10, 512), timesteps=4, in_spike_rate=0.2,
                  in_spike_fraction=0.25, state_elems=10, in_shape=(512,), out_shape=(10,)),
]


def _model(name):
    return HARDWARE.create(name)


def _bits(model, quantizer="uniform"):
    supported = model.supported_weight_bits or frozenset({1, 2, 3, 4, 6, 8, 16, 32})
    runs = QUANTIZERS.create(quantizer).supported_bits()
    return sorted(b for b in supported if b in (1, 2, 3, 4, 6, 8, 16, 32) and (runs is None or b in runs))


def _plan(w0, w1, a=8, v=32, quantizer=None):
    return QuantPlan({"g0": LayerQuant(w0, a, quantizer or "uniform", v),
                      "g1": LayerQuant(w1, a, quantizer or "uniform", v)})


def _accepts(model, quantizer):
    """Whether the model costs the quantizer's weights: it prices the compute kind and can
    hold the storage (an accelerator may refuse per-channel scales, in one line)."""
    if QUANTIZERS.create(quantizer).compute(4).kind not in model.compute_kinds:
        return False
    try:
        cost = model.cost(WORKLOAD, _plan(8, 8, quantizer=quantizer))
    except BitnasError as e:
        assert "\n" not in str(e)
        return False
    return not cost.violations.get(f"{model.name}_scheme", 0.0)


def _default_quantizer(model):
    """The first registered quantizer the model accepts (every model accepts one)."""
    ok = [q for q in QUANTIZERS.names() if _accepts(model, q)]
    assert ok, f"{model.name} accepts no registered quantizer"
    return "uniform" if "uniform" in ok else ok[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("quantizer", QUANTIZERS.names())
def test_no_cost_field_decreases_when_a_bit_grows(name, quantizer):
    model = _model(name)
    if not _accepts(model, quantizer):
        pytest.skip(f"{name} does not cost {quantizer} weights")
    bits = _bits(model, quantizer)
    fields = model.cost_fields()

    def values(plan):
        return model.cost(WORKLOAD, plan).values()

    for w0, w1 in itertools.product(bits, repeat=2):
        base = values(_plan(w0, w1, quantizer=quantizer))
        assert set(base) == set(fields), f"{name} reports {sorted(base)}, declares {sorted(fields)}"
        grown = []
        i0, i1 = bits.index(w0), bits.index(w1)
        if i0 + 1 < len(bits):
            grown.append(("g0 w_bits", _plan(bits[i0 + 1], w1, quantizer=quantizer)))
        if i1 + 1 < len(bits):
            grown.append(("g1 w_bits", _plan(w0, bits[i1 + 1], quantizer=quantizer)))
        if model.supported_act_bits is None or 16 in model.supported_act_bits:
            grown.append(("a_bits", _plan(w0, w1, a=16, quantizer=quantizer)))
        for what, plan in grown:
            after = values(plan)
            for f in fields:
                if "w_bits" in what and f in model.fields_falling_as_weight_bits_grow:
                    continue  # declared: the target is faster at its native weight width
                assert after[f] >= base[f] * (1 - 1e-9), (
                    f"{name}: {f} falls from {base[f]} to {after[f]} when {what} grows "
                    f"(w0={w0}, w1={w1}, {quantizer})")
    for v_lo, v_hi in ((8, 16), (16, 32)):
        lo = values(_plan(bits[0], bits[0], v=v_lo, quantizer=quantizer))
        hi = values(_plan(bits[0], bits[0], v=v_hi, quantizer=quantizer))
        assert all(hi[f] >= lo[f] * (1 - 1e-9) for f in fields), f"{name}: a field falls as v_bits grows"


@pytest.mark.parametrize("name", NAMES)
def test_per_layer_parts_add_up_to_the_totals(name):
    model = _model(name)
    bits = _bits(model)
    cost = model.cost(WORKLOAD, _plan(bits[0], bits[-1], quantizer=_default_quantizer(model)))
    assert isinstance(cost, Cost)
    assert set(cost.per_layer) == {w.name for w in WORKLOAD}
    for f in ("energy_j", *ENERGY_FIELDS):
        total = sum(p[f] for p in cost.per_layer.values())
        assert math.isclose(total, cost.value(f), rel_tol=1e-9), f"{name}: per-layer {f} {total}"
    parts = sum(cost.value(f) for f in ENERGY_FIELDS)
    assert parts <= cost.energy_j * (1 + 1e-9)
    assert all(v >= 0 for v in cost.values().values())
    assert math.isclose(sum(p["weight_bytes"] for p in cost.per_layer.values()), cost.weight_bytes,
                        abs_tol=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_every_constant_has_a_unit_and_a_source(name):
    model = _model(name)
    if model.constants_file is None:
        pytest.skip(f"{name} has no constants file")
    constants = load_constants(model.constants_file)
    assert constants
    for key, c in constants.items():
        assert c.unit.strip() and c.source.strip(), f"{name}: constant {key} lacks a unit or a source"


@pytest.mark.parametrize("name", NAMES)
def test_a_compute_kind_it_does_not_price_is_refused(name, monkeypatch):
    model = _model(name)
    unpriced = [k for k in ComputeKind if k not in model.compute_kinds | model.infeasible_kinds]
    if not unpriced:
        pytest.skip(f"{name} prices every compute kind")

    class Unpriced:
        def storage(self, shape, bits):
            return Storage(math.prod(shape) * bits)

        def compute(self, bits):
            return Compute(unpriced[0])

    monkeypatch.setattr(hw_base, "quantizer_of", lambda lq: Unpriced())
    bits = _bits(model)
    with pytest.raises(BitnasError, match=f"cannot price compute kind '{unpriced[0].value}'"):
        model.cost(WORKLOAD, _plan(bits[0], bits[0]))


@pytest.mark.parametrize("name", NAMES)
def test_a_compute_kind_its_target_cannot_run_makes_the_plan_infeasible(name, monkeypatch):
    model = _model(name)
    if not model.infeasible_kinds:
        pytest.skip(f"{name} runs every kind it knows")
    kind = sorted(model.infeasible_kinds, key=lambda k: k.value)[0]

    class CannotRun:
        def storage(self, shape, bits):
            return Storage(math.prod(shape) * bits)

        def compute(self, bits):
            return Compute(kind)

    monkeypatch.setattr(hw_base, "quantizer_of", lambda lq: CannotRun())
    bits = _bits(model)
    cost = model.cost(WORKLOAD, _plan(bits[0], bits[0]))
    key = f"{model.name}_scheme"
    assert cost.violations[key] == 1.0 and not cost.feasible  # both layers
    assert kind.value in cost.reasons[key] and "\n" not in cost.reasons[key]


@pytest.mark.parametrize("name", NAMES)
def test_passes_multiply_the_compute(name, monkeypatch):
    """A scheme of k independent passes is never costed as one pass."""
    model = _model(name)
    bits = _bits(model)
    q = _default_quantizer(model)
    one = model.cost(WORKLOAD, _plan(bits[1], bits[1], quantizer=q)).value("compute_energy_j")
    real = hw_base.quantizer_of

    class TwoPasses:
        def __init__(self, q):
            self.q = q

        def storage(self, shape, b):
            return self.q.storage(shape, b)

        def compute(self, b):
            return Compute(self.q.compute(b).kind, passes=2)

    monkeypatch.setattr(hw_base, "quantizer_of", lambda lq: TwoPasses(real(lq)))
    two = model.cost(WORKLOAD, _plan(bits[1], bits[1], quantizer=q)).value("compute_energy_j")
    assert two > one * 1.5, f"{name}: 2 passes cost {two}, 1 pass {one}"


#: one op of every kind a workload may hold (OP_KINDS), with its geometry
ONE_OP = {
    "conv1d": dict(macs=4 * 8 * 12, params=48, in_elems=32, out_elems=32, weight_shape=(4, 4, 3),
                   in_shape=(4, 8), out_shape=(4, 8), kernel=(3,), stride=(1,), padding=(1,)),
    "conv2d": dict(macs=8 * 8 * 8 * 27, params=8 * 27, in_elems=3 * 8 * 8, out_elems=8 * 8 * 8,
                   weight_shape=(8, 3, 3, 3), in_shape=(3, 8, 8), out_shape=(8, 8, 8), kernel=(3, 3),
                   stride=(1, 1), padding=(1, 1)),
    "linear": dict(macs=160, params=160, in_elems=16, out_elems=10, weight_shape=(10, 16),
                   in_shape=(16,), out_shape=(10,)),
    "param": dict(macs=0, params=64, in_elems=0, out_elems=0, weight_shape=(16, 4)),
    "matmul": dict(macs=8 * 8 * 4, params=0, in_elems=64, out_elems=64),
    "pool": dict(macs=64 * 3, params=0, in_elems=4 * 64, out_elems=64, in_shape=(4, 8, 8),
                 out_shape=(4, 4, 4), kernel=(2, 2), stride=(2, 2), padding=(0, 0)),
    "norm": dict(macs=64, params=0, in_elems=64, out_elems=64),
    "eltwise": dict(macs=64, params=0, in_elems=128, out_elems=64, in_shape=(4, 4, 4), out_shape=(4, 4, 4)),
    "scan": dict(macs=4 * 16 * 4 + 16, params=0, in_elems=40, out_elems=16, timesteps=8, live_steps=8,
                 state_elems=64, in_shape=(16,), out_shape=(16,)),
    "act": dict(macs=64, params=0, in_elems=64, out_elems=64),
}
#: what a general-purpose model must price (the reference models and the microcontrollers)
GENERAL = ("generic45nm", "snn45nm", "cortex_m4", "cortex_m7", "cortex_m33")


def test_every_op_kind_has_an_example():
    assert set(ONE_OP) == hw_base.OP_KINDS


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", sorted(hw_base.OP_KINDS))
def test_every_op_kind_is_priced_or_refused_in_one_line(name, kind):
    """Priced: finite, non-negative fields that do not fall as the activation or state bits
    grow; refused: one line. The general-purpose models price every kind."""
    model = _model(name)
    op = LayerWorkload(f"one_{kind}", kind, group="g0", **ONE_OP[kind])

    def cost(a=8, v=16):
        return model.cost([op], QuantPlan({"g0": LayerQuant(8, a, _default_quantizer(model), v)})).values()

    try:
        base = cost()
    except BitnasError as e:
        assert "\n" not in str(e)
        assert name not in GENERAL, f"{name} refuses {kind} ops: {e}"
        return
    assert all(math.isfinite(v) and v >= 0 for v in base.values()), base
    grown = [cost(v=32)]
    if model.supported_act_bits is None or 16 in model.supported_act_bits:
        grown.append(cost(a=16))
    for after in grown:
        assert all(after[f] >= base[f] * (1 - 1e-9) for f in base), (kind, base, after)
