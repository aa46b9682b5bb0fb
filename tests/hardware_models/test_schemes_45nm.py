"""Each weight scheme's cost on a 2-layer net under generic45nm, checked by hand.

The net: fc1 (64 -> 32, 2,048 weights, fan-in 64) and fc2 (32 -> 10, 320 weights, fan-in
32), no biases, 4-bit weights and 8-bit activations. Horowitz 45 nm: 8-bit multiply
0.2 pJ (scaled by w*a/64), 32-bit add 0.1 pJ (scaled by the accumulator width / 32),
SRAM up to 8 KB 10 pJ per 64 bits = 0.15625 pJ/bit; a small table 0.00375 pJ/bit (an
estimate); 64 MACs a cycle at 500 MHz. Every figure below is worked out in its comment.
"""

from __future__ import annotations

import math

import pytest

from bitnas.hardware_models.base import LayerWorkload
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

NET = [
    LayerWorkload("fc1", "linear", macs=2048, params=2048, in_elems=64, out_elems=32, group="g1",
                  weight_shape=(32, 64), in_shape=(64,), out_shape=(32,)),
    LayerWorkload("fc2", "linear", macs=320, params=320, in_elems=32, out_elems=10, group="g2",
                  weight_shape=(10, 32), in_shape=(32,), out_shape=(10,)),
]

# activation traffic at 8 bits: fc1 reads 64 x 8 and writes 32 x 8 (768 bits), fc2 reads
# 32 x 8 and writes its 10 logits at 32 bits (576 bits): 1,344 bits x 0.15625 = 210 pJ
ACT_PJ = 210.0

CASES = {
    # multiply 0.2 x 4 x 8 / 64 = 0.1; adds: fc1 acc 4+8+6 = 18 bits -> 0.05625, fc2 17 -> 0.053125
    # compute 2048 x 0.15625 + 320 x 0.153125 = 320 + 49 = 369 pJ
    # weights 2048 x 4 + 32 scales x 32 = 9216 bits, 320 x 4 + 10 x 32 = 1600: 10816 bits
    #   = 1352 bytes, x 0.15625 = 1690 pJ;  latency (32 + 5) cycles / 500 MHz = 74 ns
    "uniform": ({}, 369.0, 1690.0, 1352, 74e-9, 0),
    # a shift costs an 8-bit add 0.1 x 8/32 = 0.025: 2048 x 0.08125 + 320 x 0.078125 = 191.4
    # weights 8192 + 32 exponents x 8 = 8448, 1280 + 80 = 1360: 9808 bits = 1226 bytes,
    #   x 0.15625 = 1532.5 pJ
    "pot": ({}, 191.4, 1532.5, 1226, 74e-9, 0),
    # lookup, then an 8-bit level times 8 bits: 0.2; adds 8+8+6 = 22 -> 0.06875, 21 -> 0.065625
    # compute 2048 x 0.26875 + 320 x 0.265625 = 550.4 + 85 = 635.4 pJ
    # weights 8192 + a 16-level table of 8 bits (128) + one 32-bit scale = 8352; 1280 + 160
    #   = 1440: 9792 bits = 1224 bytes, x 0.15625 = 1530 pJ; plus the lookups: one 8-bit level
    #   per weight read, (2048 + 320) x 8 bits x 0.00375 = 71.04 pJ
    "nonuniform": ({}, 635.4, 1530.0 + 71.04, 1224, 74e-9, 0),
    # k = 2 weight terms x 2 activation terms = 4 passes of the 4x8-bit MAC:
    # 4 x (2048 x 0.15625 + 320 x 0.153125) = 1476 pJ; weights 2 x 4 bits each and one scale a
    # channel: 16384 + 1024 = 17408, 2560 + 320 = 2880: 20288 bits = 2536 bytes -> 3170 pJ
    # activations held as 2 x 8 bits: fc1 64 x 16 + 32 x 16 = 1536, fc2 32 x 16 + 10 x 32 = 832
    #   -> 2368 x 0.15625 = 370 pJ (not ACT_PJ); latency 4 x 37 cycles = 296 ns
    "series": ({"terms": 2, "act_terms": 2}, 1476.0, 3170.0, 2536, 296e-9, 370.0 - ACT_PJ),
    # the built-in codebook (4,096 codewords of d = 4, float16): 4-bit indices, one per 4 weights
    # lookup, then a 16-bit value times 8 bits: 0.2 x 16 x 8 / 64 = 0.4; adds 16+8+6 = 30 ->
    #   0.09375, 29 -> 0.090625: 2048 x 0.49375 + 320 x 0.490625 = 1011.2 + 157 = 1168.2 pJ
    # weights: 32 rows x 16 sub-vectors x 4 bits + 32 scales x 32 = 3072; 10 x 8 x 4 + 320 = 640:
    #   3712 bits = 464 bytes, x 0.15625 = 580 pJ; the codebook is 4096 x 4 x 16 bits = 32 KiB
    #   of ROM (not weight bytes), each weight's 16-bit value read from it at the 32 KB SRAM
    #   point, 20 pJ / 64 bits: 2368 x 16 x 0.3125 = 11840 pJ
    "codebook": ({}, 1168.2, 580.0 + 11840.0, 464, 74e-9, 0),
}
ROM = {"codebook": 32768}


@pytest.mark.parametrize("scheme", sorted(CASES))
def test_each_scheme_costed_by_hand(scheme):
    options, compute_pj, weight_pj, weight_bytes, latency, act_extra = CASES[scheme]
    lq = LayerQuant(4, 8, scheme, options=options)
    cost = HARDWARE.create("generic45nm").cost(NET, QuantPlan({"g1": lq, "g2": lq}))
    assert math.isclose(cost.value("compute_energy_j"), compute_pj * 1e-12, rel_tol=1e-9)
    assert math.isclose(cost.value("weight_energy_j"), weight_pj * 1e-12, rel_tol=1e-9)
    assert math.isclose(cost.value("act_energy_j"), (ACT_PJ + act_extra) * 1e-12, rel_tol=1e-9)
    assert cost.weight_bytes == weight_bytes
    assert math.isclose(cost.latency_s, latency, rel_tol=1e-9)
    assert cost.value("rom_bytes") == ROM.get(scheme, 0)


def test_activation_terms_of_a_spike_input_cost_no_passes():
    # a spike is 0 or 1: its expansion into k_a terms is itself, so snn45nm charges k passes
    spiking = [NET[0], LayerWorkload(**{**NET[1].__dict__, "in_spike_rate": 0.25})]
    model = HARDWARE.create("snn45nm")

    def fc(act_terms):
        lq = LayerQuant(4, 8, "series", options={"terms": 2, "act_terms": act_terms})
        return model.cost(spiking, QuantPlan({"g1": lq, "g2": lq})).per_layer["fc2"]

    assert fc(1)["compute_energy_j"] == fc(4)["compute_energy_j"] > 0
    assert fc(1)["latency_s"] == fc(4)["latency_s"]
    dense = [LayerWorkload(**{**NET[1].__dict__})]
    one, four = (model.cost(dense, QuantPlan({"g2": LayerQuant(4, 8, "series", options={
        "terms": 2, "act_terms": k})})).value("compute_energy_j") for k in (1, 4))
    assert math.isclose(four, 4 * one)  # a dense input's terms are real passes
