"""The mamba space: the selective scan against a slow reference loop (float and quantized
state), its groups, the state bits that change what it computes, and its workload."""

from __future__ import annotations

import math

import pytest
import torch

from bitnas.errors import BitnasError
from bitnas.hardware_models import extract_workload
from bitnas.plan import FLOAT_BITS, LayerQuant, QuantPlan
from bitnas.registry import HARDWARE, SPACES
from bitnas.spaces.mamba import QuantSelectiveScan, SelectiveScan, scan_reference

ARCH = {"d_model": 8, "d_state": 4, "expand": 2, "layers": 1}


def _inputs(seed=0, batch=2, steps=5, di=3, ds=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, di, generator=g)
    dt = torch.rand(batch, steps, di, generator=g) * 0.5
    a = -torch.rand(di, ds, generator=g) * 2
    b, c = torch.randn(batch, steps, ds, generator=g), torch.randn(batch, steps, ds, generator=g)
    return x, dt, a, b, c, torch.randn(1, di, generator=g)


def test_the_scan_matches_the_reference_loop_in_float():
    args = _inputs()
    assert torch.allclose(SelectiveScan(3)(*args), scan_reference(*args), atol=1e-5)


def _calibrated(scan, args):
    """The scan after one observing pass over ``args`` (what calibration does)."""
    scan.observing = True
    scan(*args)
    scan.observing = False
    return scan


def test_the_quantized_state_matches_the_reference_loop_rounding_every_step():
    args = _inputs(1)
    q = _calibrated(QuantSelectiveScan(3, 4), args)
    step = (q.top / 7).clamp_min(1e-12)

    def round_state(v, channel):
        s = float(step[channel])
        return max(-7, min(7, round(v / s))) * s

    expect = scan_reference(*args, quantize=round_state)
    assert torch.allclose(q(*args), expect, atol=1e-4)
    assert not torch.allclose(q(*args), SelectiveScan(3)(*args), atol=1e-3)  # the state bits matter


def test_a_calibrated_state_loads_into_a_fresh_copy():
    args = _inputs(2)
    q = _calibrated(QuantSelectiveScan(3, 6), args)
    fresh = SelectiveScan(3).with_state_bits(6)
    with pytest.raises(RuntimeError, match="before calibration"):
        fresh(*args)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh(*args), q(*args))


def _space(**options):
    return SPACES.create("mamba", input_shape=(1, 8, 8), num_classes=10, **options)


def test_groups_follow_the_mixer_and_the_state_bits_change_the_network():
    space = _space(state_bits=[4, FLOAT_BITS])
    torch.manual_seed(0)
    model = space.build(ARCH)
    groups = space.layer_groups(model)
    assert list(groups) == space.group_names(1) and set(groups) <= set(space.all_groups())
    assert groups["layer0.h"] == ["2.0.mixer.scan"] and groups["layer0.A"] == ["2.0.mixer.A"]
    from bitnas.evaluators.ptq import ptq

    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    outs = {}
    for v in (FLOAT_BITS, 4):
        plan = QuantPlan({g: LayerQuant(FLOAT_BITS, FLOAT_BITS, "uniform", v_bits=v if g.endswith(".h") else
                                        FLOAT_BITS) for g in groups})
        qmodel = ptq(model, plan, groups, [x])
        with torch.no_grad():
            outs[v] = qmodel(x)
    with torch.no_grad():
        assert torch.allclose(outs[FLOAT_BITS], model(x), atol=1e-5)  # float everywhere: unchanged
    # rounding the state every step reaches the logits (small on an untrained model: 3e-4 here)
    assert (outs[4] - outs[FLOAT_BITS]).abs().max() > 2e-5
    # A (A_log) and D take the group's weight bits through the fake-quant path too
    plan = QuantPlan({g: LayerQuant(2 if g.endswith((".A", ".D")) else FLOAT_BITS, FLOAT_BITS, "uniform")
                      for g in groups})
    with torch.no_grad():  # (small on an untrained model: its dt is 1e-3..1e-1, so exp(dt A) ~ 1)
        assert (ptq(model, plan, groups, [x])(x) - outs[FLOAT_BITS]).abs().max() > 1e-5


def test_the_workload_counts_the_scan_its_state_and_its_parameters():
    space = _space()
    model = space.build(ARCH)
    ops = {w.name: w for w in extract_workload(model, torch.zeros(1, 1, 8, 8), space.layer_groups(model))}
    scan = ops["2.0.mixer.scan"]
    # d_inner 16, d_state 4, 8 tokens: 4 multiply-adds a state element and the skip, per step
    assert (scan.kind, scan.group, scan.timesteps) == ("scan", "layer0.h", 8)
    assert scan.macs == 4 * 16 * 4 + 16 and scan.state_elems == 16 * 4
    # every step's x, dt (16 each), B, C (4 each) and y (16) are live at once: the
    # projections before it made the whole sequence
    assert scan.live_steps == 8 and (scan.in_elems, scan.out_elems) == (2 * 16 + 2 * 4, 16)
    decay = ops["2.0.mixer.scan:decay"]  # exp(dt A), per state element and step
    assert (decay.kind, decay.macs, decay.timesteps, decay.group) == ("act", 16 * 4, 8, "layer0.h")
    # the element-wise functions, each where it runs: SiLU after the conv, softplus after dt_proj,
    # the gate y * silu(z) (an evaluation and a product per element)
    assert [(w.name, w.macs) for w in ops.values() if w.kind == "act" and "scan" not in w.name] == [
        ("2.0.mixer.conv_act", 8 * 16), ("2.0.mixer.dt_act", 8 * 16), ("2.0.mixer.gate", 2 * 8 * 16)]
    assert ops["2.0.mixer.conv_act"].group == "layer0.conv1d" and ops["2.0.mixer.gate"].group == "layer0.h"
    assert (ops["2.0.mixer.A"].kind, ops["2.0.mixer.A"].params) == ("param", 16 * 4)
    assert ops["2.0.mixer.D"].params == 16
    assert ops["2.0.mixer.conv1d"].macs == 8 * 16 * 4  # depthwise, kernel 4, causal
    assert ops["2.0.mixer.x_proj"].macs == 8 * 16 * (1 + 2 * 4)  # dt_rank 1, B and C


def test_state_bits_are_priced_by_the_45nm_model():
    space = _space()
    model = space.build(ARCH)
    groups = space.layer_groups(model)
    workload = extract_workload(model, torch.zeros(1, 1, 8, 8), groups)
    hw = HARDWARE.create("generic45nm")

    def cost(v):
        return hw.cost(workload, QuantPlan({g: LayerQuant(8, 8, "uniform", v_bits=v) for g in groups}))

    lo, hi = cost(8), cost(FLOAT_BITS)
    # state: 8 steps x 2 (read, write) x 64 values, at 8 or 32 bits, at the activation memory's energy
    ratio = hi.value("state_energy_j") / lo.value("state_energy_j")
    assert math.isclose(ratio, 4 * hi_pj(hi) / hi_pj(lo), rel_tol=1e-9)
    assert hi.value("compute_energy_j") > lo.value("compute_energy_j")
    assert hi.peak_act_bytes - lo.peak_act_bytes == 64 * (32 - 8) // 8  # the state is live throughout
    with pytest.raises(BitnasError, match="loihi cannot price"):
        HARDWARE.create("loihi").cost(workload, QuantPlan({g: LayerQuant(8, 8, "uniform") for g in groups}))


def hi_pj(cost):
    """The activation memory's per-bit energy of a cost (from its peak size)."""
    from bitnas.hardware_models.generic45nm import sram_pj_per_bit

    return sram_pj_per_bit(cost.peak_act_bytes, HARDWARE.create("generic45nm").c)


def test_the_state_takes_state_bits_not_group_w_bits():
    with pytest.raises(BitnasError, match="sets layer0.h, the scan state, which has no weights; its bits "
                                          "are space.state_bits") as e:
        _space(group_w_bits={"layer0.h": [4]})
    assert "\n" not in str(e.value)
