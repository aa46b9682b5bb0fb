"""The `generic45nm` reference model: Horowitz 45 nm energies, a stated MAC rate and clock.

Per op, with w and a the group's weight and activation bits (kinds: see ``OP_KINDS``):
- a weighted layer's MAC: multiply energy = E_mul8 * (w * a) / 64 (a multiplier grows
  with the product of operand widths); float (either side 32) costs a 32-bit float
  multiply; a power-of-two weight (quantizer "pot") needs only a shift, charged as an
  a-bit add; add energy = E_add32 * acc / 32 with acc = min(32, w + a + ceil(log2
  fan_in)), the narrowest accumulator that cannot overflow (an adder grows linearly);
- a product of two activations ("matmul": attention) is a MAC at a x a bits;
- a pool's compares or adds and an element-wise add ("eltwise") cost an a-bit add each,
  E_add32 * a / 32 (a 32-bit float add at 32 bits);
- a selective scan ("scan") costs its multiply-adds at v x a bits (its state at the
  group's v_bits, its inputs at a_bits) every step, and reads and writes its state every
  step (state energy, at the activation memory's per-bit energy; the state is live
  throughout, so it counts in ``peak_act_bytes``); a scan's parameters ("param") are
  weights read once, with no work of their own;
- an element-wise function ("act": an exp, SiLU, softplus, softmax's exp-and-scale, a gate)
  costs a multiply-add at a x a bits per evaluation (an estimate: a table lookup with a
  linear interpolation, no published per-function figure at 45 nm);
- a norm costs a multiply-add per element at a x a bits, except a BatchNorm that folds
  into the preceding layer at inference (``folded``): no work, only the bias it leaves on
  a layer that had none (stored and read with the weights);
- weight traffic: every stored weight bit (biases and other 32-bit parameters included)
  read once per inference, at the per-bit SRAM read energy of a memory the size of all
  weights; ops without weights read none; a table-lookup scheme (``nonuniform``,
  ``codebook``) also reads each weight's value from its table (the layer's level table,
  or the shared codebook in ROM; a table of at most ``lut_max_bytes`` is read at
  ``lut_pj_per_bit``, both estimates, a larger one as an SRAM of its size) and multiplies that
  value (its ``operand_bits``) instead of the index;
- a series expansion (``series``) repeats every MAC once per pass (k weight terms times
  k_a activation terms) and holds each activation as its k_a terms (k_a x a bits);
- shared structures (a universal codebook) are ``rom_bytes``, counted once and not in
  ``weight_bytes``;
- activation traffic: an op's input read at a bits and its output written at the next
  op's a bits (32 after the last), at the per-bit energy of a memory the size of the
  peak activation footprint (``peak_act_bytes``: the largest op's input plus output);
  writes cost as much as reads;
- latency = ceil(ops / macs_per_cycle) / clock, adds and compares at the MAC rate.
An op that runs over several time steps (``timesteps``, spiking models) repeats its
compute, activation traffic and latency every step; its weights are read once.
This treats every input as dense: an upper bound for a spiking net, whose
event-driven costs are the business of the ``snn45nm`` and ``loihi`` models.
SRAM energy per bit is interpolated log-linearly in size between Horowitz's 8 KB,
32 KB and 1 MB points; anything above 1 MB is charged at DRAM energy.
The model assumes a chain of ops run one after another (the CNN spaces); it has no
capacity limits of its own, so memory budgets come from the spec's [constraints].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bitnas.accounting import Compute, ComputeKind
from bitnas.hardware_models.base import (
    OP_KINDS,
    Cost,
    HardwareModel,
    LayerWorkload,
    act_bits_per_layer,
    act_width,
    layer_quants,
    live_peak_bytes,
    lookups,
    refuse_kind,
    rom_bytes,
    weight_bits_per_layer,
)
from bitnas.plan import FLOAT_BITS, LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

PJ = 1e-12
MULTIPLY = Compute(ComputeKind.MULTIPLY)


def sram_pj_per_bit(size_bytes: float, c: Mapping[str, float]) -> float:
    """Read energy per bit of an SRAM of ``size_bytes`` (DRAM above 1 MB)."""
    points = [
        (8 * 1024, c["sram_8kb_pj_per_64b"]),
        (32 * 1024, c["sram_32kb_pj_per_64b"]),
        (1024 * 1024, c["sram_1mb_pj_per_64b"]),
    ]
    if size_bytes <= points[0][0]:
        return points[0][1] / 64
    if size_bytes > points[-1][0]:
        return c["dram_pj_per_64b"] / 64
    for (s0, e0), (s1, e1) in zip(points, points[1:], strict=False):
        if size_bytes <= s1:
            t = math.log(size_bytes / s0) / math.log(s1 / s0)
            return (e0 + t * (e1 - e0)) / 64
    raise AssertionError("unreachable")


def table_pj_per_bit(table_bytes: float, c: Mapping[str, float]) -> float:
    """Read energy per bit of a lookup table: a small one (``lut_max_bytes``) sits in
    registers beside the MACs (``lut_pj_per_bit``, an estimate), a larger one (a codebook)
    is an SRAM or ROM of its size."""
    return c["lut_pj_per_bit"] if table_bytes <= c["lut_max_bytes"] else sram_pj_per_bit(table_bytes, c)


def int_mac_energy_pj(c: Mapping[str, float], w_bits: int, a_bits: int, fan_in: int,
                      compute: Compute) -> tuple[float, float]:
    """(multiply or shift, accumulate) energy in pJ of one integer MAC, from Horowitz's
    8-bit multiply and 32-bit add: the multiplier scales with w * a, a shift (power-of-two
    weights) costs an a-bit add, the add with the accumulator width w + a + log2 fan-in.
    After a table lookup the multiply and the add see the looked-up value's width
    (``compute.operand_bits``), not the index's; the lookup itself is a memory read, priced
    with the weight traffic (:func:`~bitnas.hardware_models.base.lookups`). Each of
    ``compute.passes`` passes repeats the whole MAC."""
    w_bits = compute.operand(w_bits)
    acc_bits = min(32, w_bits + a_bits + math.ceil(math.log2(fan_in)))
    add_pj = c["int32_add_pj"] * acc_bits / 32
    if compute.kind is ComputeKind.SHIFT:
        mul_pj = c["int32_add_pj"] * a_bits / 32
    elif compute.kind in (ComputeKind.MULTIPLY, ComputeKind.LOOKUP):
        mul_pj = c["int8_mult_pj"] * w_bits * a_bits / 64
    else:
        raise ValueError(f"int_mac_energy_pj prices multiply, shift and lookup, not {compute.kind.value}")
    return compute.passes * mul_pj, compute.passes * add_pj


@HARDWARE.register("generic45nm")
class Generic45nm(HardwareModel):
    """45 nm reference: Horowitz op and SRAM energies, bit-scaled MACs, a stated MAC rate."""

    constants_file = "generic45nm.toml"
    name = "generic45nm"
    compute_kinds = frozenset({ComputeKind.MULTIPLY, ComputeKind.SHIFT, ComputeKind.LOOKUP})

    def mac_energy_pj(self, w_bits: int, a_bits: int, fan_in: int,
                      compute: Compute = MULTIPLY) -> tuple[float, float]:
        """(multiply or shift, add) energy of one MAC in pJ, all passes included."""
        c = self.c
        if compute.operand(w_bits) >= FLOAT_BITS or a_bits >= FLOAT_BITS:
            return compute.passes * c["fp32_mult_pj"], compute.passes * c["fp32_add_pj"]
        return int_mac_energy_pj(c, w_bits, a_bits, fan_in, compute)

    def op_energy_pj(self, layer: LayerWorkload, lq: LayerQuant) -> tuple[float, int]:
        """(energy of one of the op's ``macs`` in pJ, passes per op), by kind."""
        c, a = self.c, lq.a_bits
        if layer.weighted:
            compute = self.compute_of(lq)
            return sum(self.mac_energy_pj(lq.w_bits, a, layer.fan_in, compute)), compute.passes
        if layer.kind == "matmul":
            return sum(self.mac_energy_pj(a, a, layer.fan_in)), 1
        if layer.kind in ("pool", "eltwise"):
            return (c["fp32_add_pj"] if a >= FLOAT_BITS else c["int32_add_pj"] * a / 32), 1
        if layer.kind == "norm":
            return (0.0 if layer.folded else sum(self.mac_energy_pj(a, a, 1))), 1
        if layer.kind == "act":
            return sum(self.mac_energy_pj(a, a, 1)), 1
        if layer.kind == "scan":  # the state (v bits) times the step's inputs (a bits)
            return sum(self.mac_energy_pj(min(lq.v_bits, FLOAT_BITS), a, layer.fan_in)), 1
        raise refuse_kind(self, layer, OP_KINDS)

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        lqs = layer_quants(workload, plan)
        wbits = weight_bits_per_layer(workload, lqs)
        act_bits = act_bits_per_layer(workload, [act_width(lq) for lq in lqs])
        weight_bytes = math.ceil(sum(wbits) / 8)
        # a selective scan's state (v bits) is read and written every step; it is live throughout
        state_bits = [w.state_elems * lq.v_bits if w.kind == "scan" else 0
                      for w, lq in zip(workload, lqs, strict=True)]
        peak_act_bytes = live_peak_bytes(act_bits, state_bits)
        w_pj_bit = sram_pj_per_bit(weight_bytes, c)
        a_pj_bit = sram_pj_per_bit(peak_act_bytes, c)

        per_layer: dict[str, dict[str, float]] = {}
        for layer, lq, wb, ab, sb in zip(workload, lqs, wbits, act_bits, state_bits, strict=True):
            op_pj, passes = self.op_energy_pj(layer, lq)
            steps = layer.timesteps
            ops = 0 if layer.folded else steps * layer.macs
            compute_j = ops * op_pj * PJ
            looked_up, table_bytes = lookups(layer, lq, self.compute_of(lq)) if layer.weighted else (0, 0)
            weight_j = (wb * w_pj_bit + looked_up * table_pj_per_bit(table_bytes, c)) * PJ
            act_j = steps * ab * a_pj_bit * PJ
            state_j = steps * 2 * sb * a_pj_bit * PJ
            per_layer[layer.name] = {
                "compute_energy_j": compute_j,
                "weight_energy_j": weight_j,
                "act_energy_j": act_j,
                "state_energy_j": state_j,
                "energy_j": compute_j + weight_j + act_j + state_j,
                "latency_s": 0.0 if layer.folded else steps * passes * math.ceil(
                    layer.macs / c["macs_per_cycle"]) / c["clock_hz"],
                "weight_bytes": wb / 8,
                "macs": float(ops),
            }
        return Cost.from_layers(per_layer, weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes,
                                rom_bytes=rom_bytes(workload, lqs))
