"""The Cortex-M models: a 2-layer net costed by hand, what sub-byte weights cost, RAM and
flash limits with reasons, every op kind, and the calibration against MLPerf Tiny."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torch import nn

import bitnas.hardware_models.mcu  # noqa: F401  (registers cortex_m4/m7/m33)
from bitnas.errors import BitnasError
from bitnas.experiments.mcu_calibration import (
    NETWORKS,
    PUBLISHED,
    TOLERANCE,
    calibration_rows,
    fitted_cpi,
    format_rows,
    network_cost,
    network_workload,
)
from bitnas.hardware_models import extract_workload
from bitnas.hardware_models.base import CONSTANT_KINDS, LayerWorkload, load_constants
from bitnas.hardware_models.mcu import FIELDS_FALLING_AT_NATIVE_BITS, CortexM
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE, QUANTIZERS
from bitnas.spec import StudySpec

BOARDS = ("cortex_m4", "cortex_m7", "cortex_m33")
KWS, RESNET = NETWORKS


def _two_layers():
    """3x8x8 -> conv 3x3 pad 1 to 8 channels -> flatten -> fc 512 -> 10."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))
    return extract_workload(model, torch.zeros(1, 3, 8, 8), {"conv": ["0"], "fc": ["3"]})


def _plan(conv=8, fc=8, a=8, quantizer="uniform", v=32):
    return QuantPlan({"conv": LayerQuant(conv, a, quantizer, v), "fc": LayerQuant(fc, a, quantizer, v)})


def test_two_layers_costed_by_hand():
    hw = HARDWARE.create("cortex_m4")
    cost = hw.cost(_two_layers(), _plan())
    conv, fc = cost.per_layer["0"], cost.per_layer["3"]
    # conv: 8x8 pixels x 8 channels x 27 = 13,824 MACs, K = 27, 64 pixels, 9 taps
    #   mac 13,824 x 0.875 = 12,096; unpack 13,824 / 2 weight reads x 0.75 = 5,184;
    #   out 512 x 20 = 10,240; im2col 64 x 27 x 2.5 + 64 x 9 x 12 = 4,320 + 6,912 = 11,232;
    #   call 300: 39,052 instructions
    assert conv["mac_instructions"] == 12096 and conv["unpack_instructions"] == 5184
    assert conv["out_instructions"] == 10240 and conv["im2col_instructions"] == 11232
    assert conv["instructions"] == 39052
    # fc: 5,120 MACs x 1.125 = 5,760; a weight read a MAC x 0.75 = 3,840; 10 x 20; call 300
    assert fc["instructions"] == 5760 + 3840 + 200 + 300 == 10100
    cpi, clock, power = hw.c["cpi"], hw.c["clock_hz"], hw.c["active_power_w"]
    assert cost.value("cycles") == pytest.approx(49152 * cpi)
    assert cost.latency_s == pytest.approx(49152 * cpi / clock)
    assert cost.energy_j == pytest.approx(power * 49152 * cpi / clock)
    assert cost.value("compute_energy_j") == pytest.approx(cost.energy_j)  # no state here
    assert cost.value("macs") == 13824 + 5120
    # RAM: conv input 192 B + output 512 B (int8) + im2col 2 columns x ceil4(27) x int16 = 112;
    # fc 512 + 10; the largest: 816. peak_act_bytes leaves the buffer out
    assert conv["im2col_bytes"] == 112 and conv["ram_bytes"] == 816 and fc["ram_bytes"] == 522
    assert cost.value("ram_bytes") == 816 and cost.peak_act_bytes == 704
    # flash: conv 216 B of codes + 8 float scales + 8 biases = 280; fc 5,120 + 40 + 40 = 5,200;
    # code 32 KiB
    assert (conv["weight_bytes"], fc["weight_bytes"]) == (280, 5200)
    assert cost.weight_bytes == 5480 and cost.value("flash_bytes") == 5480 + 32768
    assert cost.feasible and cost.violations["cortex_m4_ram"] == pytest.approx(816 / 655360 - 1)
    # int4 conv: codes packed two a byte (108 B); each weight read unpacked with 3.25 instructions
    four = hw.cost(_two_layers(), _plan(conv=4))
    assert four.per_layer["0"]["weight_bytes"] == 108 + 32 + 32
    assert four.per_layer["0"]["unpack_instructions"] == 6912 * 3.25
    # 2-bit fc: 1,280 B of codes; per read 3 + 2/32 word loads
    two = hw.cost(_two_layers(), _plan(fc=2))
    assert two.per_layer["3"]["weight_bytes"] == 1280 + 40 + 40
    assert two.per_layer["3"]["unpack_instructions"] == pytest.approx(5120 * (3 + 2 / 32))


@pytest.mark.parametrize("board", BOARDS)
def test_int4_saves_flash_not_cycles_and_1_2_bit_cost_more_cycles(board):
    workload, plan8 = network_workload(KWS)
    hw = HARDWARE.create(board)

    def at(bits):
        return hw.cost(workload, QuantPlan({g: LayerQuant(bits, 8) for g in plan8.layers}))

    c8, c4, c2, c1 = at(8), at(4), at(2), at(1)
    assert c4.value("flash_bytes") < c8.value("flash_bytes")
    assert c8.weight_bytes - c4.weight_bytes == 22016 // 2  # half the 22,016 int8 weights
    assert c4.value("cycles") > c8.value("cycles") and c4.latency_s > c8.latency_s
    for sub in (c2, c1):
        assert sub.value("cycles") > c8.value("cycles") and sub.energy_j > c8.energy_j
        assert sub.value("flash_bytes") < c4.value("flash_bytes")
    assert c1.value("cycles") < c2.value("cycles")  # fewer code words to load
    # float weights: the FPU path, slower than any integer plan, four bytes a weight
    c32 = at(32)
    assert c32.value("cycles") > max(c.value("cycles") for c in (c8, c4, c2, c1))
    assert c32.weight_bytes > c8.weight_bytes


def test_a_candidate_over_a_32_kib_ram_budget_is_rejected_naming_the_layer():
    hw = HARDWARE.create("cortex_m4", sram_bytes=32768)
    kws = network_cost(KWS, "cortex_m4", sram_bytes=32768)  # 16,000 B: fits
    assert kws.feasible and kws.violations["cortex_m4_ram"] < 0
    workload, plan = network_workload(RESNET)
    cost = hw.cost(workload, plan)
    # the first residual add holds both 16x32x32 inputs and its output: 49,152 B
    assert cost.value("ram_bytes") == 49152
    assert cost.violations["cortex_m4_ram"] == pytest.approx(49152 / 32768 - 1)
    assert not cost.feasible
    reason = cost.reasons["cortex_m4_ram"]
    assert "layer stages.0.add" in reason and "32.0 KiB of SRAM" in reason and "\n" not in reason
    assert cost.why_infeasible() == [reason]
    # 16-bit activations double the live set
    wide = hw.cost(workload, QuantPlan({g: LayerQuant(8, 16) for g in plan.layers}))
    assert wide.value("ram_bytes") == 2 * 49152
    # a spec may bound the field itself
    raw = {"study": {"name": "s", "trials": 1}, "space": {"name": "cnn", "w_bits": [2, 4, 8], "a_bits": [8]},
           "task": {"name": "digits"}, "hardware": {"name": "cortex_m4"},
           "objectives": [{"name": "accuracy"}, {"name": "latency_s"}],
           "constraints": {"ram_bytes": 32768, "flash_bytes": 65536}}
    assert StudySpec.from_dict(raw).constraints["ram_bytes"] == 32768


def test_the_im2col_buffer_counts_in_ram():
    """A 3x3 conv on 64 channels: 2 columns x 576 int16 values = 2,304 B beside 1 + 1 KiB."""
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(), nn.Linear(64 * 16, 2))
    workload = extract_workload(model, torch.zeros(1, 64, 4, 4), {"c": ["0"], "f": ["2"]})
    cost = HARDWARE.create("cortex_m7").cost(workload, QuantPlan({"c": LayerQuant(8), "f": LayerQuant(8)}))
    assert cost.per_layer["0"]["im2col_bytes"] == 2304
    assert cost.value("ram_bytes") == 1024 + 1024 + 2304


def test_depthwise_and_pointwise_paths_have_no_im2col_and_their_own_mac_cost():
    hw = HARDWARE.create("cortex_m4")
    cost = network_cost(KWS, "cortex_m4")
    dw, pw = cost.per_layer["features.3"], cost.per_layer["features.6"]
    assert dw["im2col_bytes"] == 0 and pw["im2col_bytes"] == 0  # 3x3 pad 1, and 1x1
    # depthwise: 72,000 MACs x 2.0833 + one weight read a MAC x 0.75 + 8,000 outputs x 20 + call
    assert dw["instructions"] == pytest.approx(72000 * hw.c["dw_mac_instr"] + 72000 * 0.75 + 8000 * 20 + 300)
    # pointwise: 512,000 x 0.875 + 256,000 reads x 0.75 + 8,000 x 20 + call
    assert pw["instructions"] == pytest.approx(512000 * 0.875 + 256000 * 0.75 + 8000 * 20 + 300)
    assert dw["instructions"] / dw["macs"] > pw["instructions"] / pw["macs"]


def test_a_flash_overflow_is_reported_with_the_largest_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(1024, 2048), nn.Linear(2048, 10))
    workload = extract_workload(model, torch.zeros(1, 1024), {"a": ["1"], "b": ["2"]})
    hw = HARDWARE.create("cortex_m4")
    ok = hw.cost(workload, QuantPlan({"a": LayerQuant(4), "b": LayerQuant(8)}))
    assert ok.feasible and ok.violations["cortex_m4_flash"] < 0
    big = hw.cost(workload, QuantPlan({"a": LayerQuant(32), "b": LayerQuant(8)}))  # 8 MiB of floats
    assert big.violations["cortex_m4_flash"] > 0 and not big.feasible
    reason = big.reasons["cortex_m4_flash"]
    assert "largest: layer 1" in reason and "2,048.0 KiB of flash" in reason


def test_shift_is_priced_as_a_multiply_and_lookups_read_a_table():
    hw = HARDWARE.create("cortex_m4")
    w = _two_layers()
    uniform = hw.cost(w, _plan(conv=4, fc=4))
    pot = hw.cost(w, _plan(conv=4, fc=4, quantizer="pot"))
    assert pot.value("cycles") == uniform.value("cycles")  # a shift is no faster than a multiply
    nonuniform = hw.cost(w, _plan(conv=4, fc=4, quantizer="nonuniform"))
    # a table read per weight read (3 + 4/32 word loads) instead of the s4 unpack (3.25)
    reads = 13824 / 2 + 5120
    assert nonuniform.value("cycles") - uniform.value("cycles") == pytest.approx(
        hw.c["cpi"] * reads * (3 + 4 / 32 - 3.25))
    codebook = hw.cost(w, _plan(conv=4, fc=4, quantizer="codebook"))
    assert codebook.value("rom_bytes") > 0  # the codebook lives in flash, counted once
    assert codebook.value("flash_bytes") == codebook.weight_bytes + codebook.value("rom_bytes") + 32768


def test_passes_and_time_steps_multiply_the_op():
    hw = HARDWARE.create("cortex_m7")
    w = _two_layers()
    one = hw.cost(w, _plan(conv=2, fc=2))
    series = hw.cost(w, _plan(conv=2, fc=2, quantizer="series"))  # 2 terms: 2 passes
    assert series.value("cycles") == pytest.approx(2 * one.value("cycles"))
    stepped = [dataclasses.replace(x, timesteps=3) for x in w]
    assert hw.cost(stepped, _plan()).value("cycles") == pytest.approx(3 * hw.cost(w, _plan()).value("cycles"))


def test_a_scan_is_priced_with_its_state_at_v_bits():
    hw = HARDWARE.create("cortex_m4")
    scan = LayerWorkload("ssm", "scan", macs=4096, params=0, in_elems=256, out_elems=256, group="g",
                         state_elems=1024, timesteps=16)
    cost = hw.cost([scan], QuantPlan({"g": LayerQuant(8, 8, "uniform", 16)}))
    p = cost.per_layer["ssm"]
    # per step: 4,096 x 3 + 300 instructions; state 1,024 x 16 bits = 512 words x 2
    assert p["instructions"] == 16 * (4096 * 3 + 300 + 512 * 2)
    assert p["state_energy_j"] == pytest.approx(
        hw.c["active_power_w"] * 16 * 1024 * hw.c["cpi"] / hw.c["clock_hz"])
    # the state is live the whole inference: 2 KiB beside the op's 256 + 256 B
    assert cost.value("ram_bytes") == 512 + 2048
    wider = hw.cost([scan], QuantPlan({"g": LayerQuant(8, 8, "uniform", 32)}))
    assert wider.value("state_energy_j") == pytest.approx(2 * cost.value("state_energy_j"))
    assert wider.per_layer["ssm"]["mac_instructions"] == 16 * 4096 * 4  # a float state: the FPU
    # its A (64 x 16) stored at the group's bits: 8-bit codes and a 32-bit scale a row; no work
    a_log = LayerWorkload("A", "param", macs=0, params=1024, in_elems=0, out_elems=0, group="g",
                          weight_shape=(64, 16))
    both = hw.cost([a_log, scan], QuantPlan({"g": LayerQuant(8, 8, "uniform", 16)}))
    assert both.per_layer["A"]["cycles"] == 0 and both.per_layer["A"]["weight_bytes"] == 1024 + 256
    assert both.value("cycles") == cost.value("cycles") and both.weight_bytes == 1280
    # a scan that reads the whole sequence its projections made holds every step's input and output
    plan = QuantPlan({"g": LayerQuant(8, 8, "uniform", 16)})
    whole = hw.cost([dataclasses.replace(scan, live_steps=16)], plan)
    assert whole.value("ram_bytes") == 16 * 512 + 2048 and whole.value("cycles") == cost.value("cycles")


def test_an_element_wise_function_is_a_table_lookup_or_libm():
    hw = HARDWARE.create("cortex_m4")
    act = LayerWorkload("silu", "act", macs=500, params=0, in_elems=500, out_elems=500, group="g")
    fixed = hw.cost([act], QuantPlan({"g": LayerQuant(8)})).per_layer["silu"]
    floating = hw.cost([act], QuantPlan({"g": LayerQuant(8, 32)})).per_layer["silu"]
    assert fixed["instructions"] == 500 * 8 + 300 and floating["instructions"] == 500 * 40 + 300
    assert fixed["ram_bytes"] == 1000 and fixed["macs"] == 0  # evaluations are not MACs


def test_ops_without_weights_and_refusals():
    hw = HARDWARE.create("cortex_m4")
    cost = network_cost(RESNET, "cortex_m4")
    add = cost.per_layer["stages.0.add"]
    assert add["instructions"] == 16384 * 36 + 300 and add["macs"] == 0  # adds are not MACs
    assert cost.per_layer["stem.1"]["cycles"] == 0  # a folded BatchNorm
    norm = LayerWorkload("n", "norm", macs=100, params=0, in_elems=100, out_elems=100, group="g")
    mm = LayerWorkload("m", "matmul", macs=1000, params=0, in_elems=200, out_elems=100, group="g")
    p = hw.cost([norm, mm], QuantPlan({"g": LayerQuant(8)})).per_layer
    assert p["n"]["instructions"] == 100 * 20 + 300
    assert p["m"]["instructions"] == 1000 * 0.875 + 500 * 0.75 + 100 * 20 + 300
    odd = LayerWorkload("x", "fft", macs=1, params=0, in_elems=1, out_elems=1, group="g")
    with pytest.raises(BitnasError, match="cannot price 'fft' ops") as e:
        hw.cost([odd], QuantPlan({"g": LayerQuant(8)}))
    assert "\n" not in str(e.value)
    with pytest.raises(BitnasError, match="8-, 16-bit or float activations"):
        hw.cost(_two_layers(), _plan(a=4))
    with pytest.raises(BitnasError, match="1- to 8-bit or float weights"):
        hw.cost(_two_layers(), _plan(conv=12))


def test_declared_bits():
    assert CortexM.supported_weight_bits == frozenset({1, 2, 3, 4, 5, 6, 7, 8, 32})
    assert CortexM.supported_act_bits == frozenset({8, 16, 32})


PLANS = [(8, 8), (4, 8), (2, 4), (1, 32), (8, 32), (3, 6)]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("quantizer", ["uniform", "pot", "nonuniform", "series", "codebook", "ai8x"])
def test_contract_no_field_falls_as_bits_grow_except_compute_into_a_native_kernel(board, quantizer):
    """The cost contract's monotonicity, for the contract's workload and the DS-CNN: memory
    never falls as any bits grow; nothing falls as activation or state bits grow, or as
    weights grow from one width to another of the same kernel (sub-byte to sub-byte within
    1-3 and 5-7, 8 to 32). Cycles, latency and energy may fall when sub-byte weights grow
    into a width with its own kernel (4 or 8): the one stated exception."""
    from tests.contracts.test_hardware import WORKLOAD

    hw = HARDWARE.create(board)
    fields = hw.cost_fields()
    kws, _ = network_workload(KWS)
    runs = QUANTIZERS.create(quantizer).supported_bits()  # 32 is a scheme's own width only if None
    bits = [b for b in (1, 2, 3, 4, 6, 8, 32) if runs is None or b in runs]

    def plan_for(workload, w0, w1, a=8, v=16):
        groups = list(dict.fromkeys(x.group for x in workload))
        return QuantPlan({g: LayerQuant(w0 if i % 2 == 0 else w1, a, quantizer, v)
                          for i, g in enumerate(groups)})

    def same_kernel(lo, hi):
        return (lo < 4 and hi < 4) or (4 < lo < 8 and 4 < hi < 8) or (lo >= 8 and hi >= 8)

    for workload in (WORKLOAD, kws):
        for w0, w1 in PLANS:
            if w0 not in bits or w1 not in bits:
                continue
            base = hw.cost(workload, plan_for(workload, w0, w1)).values()
            assert set(base) == set(fields)
            grown = [("a_bits", plan_for(workload, w0, w1, a=16), True),
                     ("v_bits", plan_for(workload, w0, w1, v=32), True)]
            for i in (0, 1):
                lo = (w0, w1)[i]
                if lo == bits[-1]:
                    continue
                hi = bits[bits.index(lo) + 1]
                pair = (hi, w1) if i == 0 else (w0, hi)
                grown.append((f"w{i} {lo}->{hi}", plan_for(workload, *pair), same_kernel(lo, hi)))
            for what, plan, strict in grown:
                after = hw.cost(workload, plan).values()
                for f in fields:
                    if not strict and f in FIELDS_FALLING_AT_NATIVE_BITS:
                        continue
                    assert after[f] >= base[f] * (1 - 1e-9), f"{board}: {f} falls when {what} grows"


def test_contract_exception_is_real():
    """The exception above is not vacuous: 4- and 2-bit weights are slower than 8."""
    workload, plan = network_workload(KWS)
    hw = HARDWARE.create("cortex_m4")
    at = {b: hw.cost(workload, QuantPlan({g: LayerQuant(b) for g in plan.layers})) for b in (2, 4, 8)}
    for f in FIELDS_FALLING_AT_NATIVE_BITS:
        assert at[8].value(f) < at[4].value(f) and at[8].value(f) < at[2].value(f)


@pytest.mark.parametrize("board", BOARDS)
def test_every_constant_has_unit_source_and_kind(board):
    hw = HARDWARE.create(board)
    constants = load_constants(hw.constants_file)
    assert set(constants) == set(load_constants("cortex_m4.toml"))
    for key, c in constants.items():
        assert c.unit.strip() and c.source.strip(), key
        assert c.kind in CONSTANT_KINDS, key
    assert constants["cpi"].kind == "derived" and "fitted" in constants["cpi"].source
    assert constants["active_power_w"].kind == "derived"
    # the instruction counts are the same on every core (the same CMSIS-NN DSP code)
    m4 = load_constants("cortex_m4.toml")
    for key in ("mat_mac_instr", "s4_weight_instr", "requant_instr", "code_bytes"):
        assert constants[key] == m4[key]


@pytest.mark.parametrize("board", BOARDS)
def test_the_data_file_holds_the_fitted_cpi_and_the_power_pair(board):
    hw = HARDWARE.create(board)
    assert hw.c["cpi"] == pytest.approx(fitted_cpi(board), rel=1e-4)
    kws = next(p for p in PUBLISHED if p.hardware == board and p.network == "kws")
    assert hw.c["active_power_w"] == pytest.approx(kws.energy_uj / kws.latency_ms * 1e-3, rel=1e-5)


def test_calibration_against_mlperf_tiny():
    """Every board and network within TOLERANCE in latency and energy; the held-out errors as
    the module docstring states them (so that a change to a constant shows up here)."""
    rows = calibration_rows()
    assert len(rows) == 6
    held_out = {}
    for r in rows:
        assert r["feasible"]
        assert r["macs"] == r["reference_macs"]
        assert abs(r["latency_error"]) <= TOLERANCE and abs(r["energy_error"]) <= TOLERANCE
        if r["latency_fitted"]:
            assert r["latency_error"] == pytest.approx(0, abs=1e-3)
        else:
            held_out[(r["hardware"], "latency")] = r["latency_error"]
        if r["energy_fitted"]:
            assert r["energy_error"] == pytest.approx(r["latency_error"], abs=1e-3)
        else:
            held_out[(r["hardware"], "energy")] = r["energy_error"]
    stated = {("cortex_m4", "latency"): -0.200, ("cortex_m7", "latency"): -0.144,
              ("cortex_m33", "latency"): -0.163, ("cortex_m4", "energy"): -0.046,
              ("cortex_m7", "energy"): 0.010, ("cortex_m33", "energy"): -0.013}
    assert held_out == pytest.approx(stated, abs=0.002)
    # the KWS network runs more cycles per MAC than ResNet-8 on every board, as published
    for board in BOARDS:
        kws, res = (next(r for r in rows if r["hardware"] == board and r["network"] == n)
                    for n in ("kws", "resnet8"))
        assert kws["cycles_per_mac"] > res["cycles_per_mac"]
    table = format_rows(rows)
    assert table.count("\n") == 7 and "(fit)" in table


def test_costs_are_additive_and_nonnegative():
    for board, (w0, w1) in itertools.product(BOARDS, PLANS):
        cost = HARDWARE.create(board).cost(_two_layers(), _plan(w0, w1))
        assert math.isclose(sum(p["energy_j"] for p in cost.per_layer.values()), cost.energy_j)
        assert sum(p["weight_bytes"] for p in cost.per_layer.values()) == cost.weight_bytes
        assert all(v >= 0 for v in cost.values().values())
