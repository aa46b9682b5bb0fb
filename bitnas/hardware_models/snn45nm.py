"""The `snn45nm` model: the Spikformer energy convention, scaled with bit-widths.

Per op, with w, a and v the group's weight, activation and membrane bits and T the
steps the op runs (kinds: see ``OP_KINDS``):
- a weighted layer with dense input (``in_spike_rate`` None) does T * MACs
  multiply-accumulates at E_MAC(w, a): E_mul8 * w*a/64 + E_add32 * acc/32 with acc =
  min(32, w + a + ceil(log2 fan_in)), a shift instead of the multiply for power-of-two
  weights, and 4.6 pJ when w or a is 32 (float);
- a weighted layer with spike input does SOP = rate * T * MACs accumulates at E_AC(w) =
  E_add32 * acc/32 with acc = min(32, w + ceil(log2 fan_in)), or 0.9 pJ at 32 bits;
- a product of two activations ("matmul": attention) is priced the same way with a in
  place of w: spike-times-spike (or spike-times-activation) products are synaptic ops at
  E_AC(a), charged with the rate SpikingJelly measures, dense products MACs at E_MAC(a, a);
- "eltwise" adds (residuals) are the adds SpikingJelly counts (one per spike where both
  operands are spikes, else one per element) and "pool" ops their window's compares or
  adds, each at E_add(a) = E_add32 * a/32, or 0.9 pJ at 32 bits;
- a table-lookup scheme (``nonuniform``, ``codebook``) multiplies or adds the looked-up
  value (its ``operand_bits``) and reads it from its table whenever the weights are read
  (priced as generic45nm prices it: a small table in registers, a codebook as an SRAM); a series expansion
  repeats each op once per pass and holds dense activations as k_a terms of a bits;
  shared structures are ``rom_bytes``, not ``weight_bytes``;
- "scan" (a Mamba selective scan): its multiply-adds at v x a bits every step, its state
  read and written every step like a membrane; "param" (the scan's A and D): weights;
- "norm": a BatchNorm that folds into the preceding layer (``folded``) does no work (the
  bias it leaves on a layer that had none is stored and read with the weights);
  any other norm a multiply-add per element at E_MAC(a, a);
- "act" (an element-wise function: an exp, SiLU, softplus, softmax): a multiply-add per
  evaluation at E_MAC(a, a), an estimate (SpikingJelly's counters do not count them).
Without measured rates (the static pass before evaluation) every product is costed as
dense multiply-accumulates and every add as done on every element: an upper bound,
used only to check the bounds that do not depend on activity.

At 32 bits the compute energy is E = 4.6 pJ * MACs + 0.9 pJ * ACs, the convention of
SpikingJelly 2.0.0's SimpleEnergy (``estimate_simple_energy``), and it counts what
SimpleEnergy's MACCounter and ACCounter count in the network: the layers' dense MACs and
synaptic ops, the attention products, the residual adds, the average pools and means
(tests/hardware_models/test_snn45nm.py checks this to 1e-9; ``estimate_simple_energy``
itself adds, as ACs, a reduction its own memory counter runs inside the profiled pass,
0.1-0.3 % on the small transformers). What differs, exactly:
- max-pooling: SimpleEnergy has no rule for it (counts nothing); snn45nm charges a
  compare per window element;
- BatchNorm: SimpleEnergy counts its multiply-adds unless told to ignore BatchNorm; here
  it folds into the layer before it and does no work;
- the spiking neurons' arithmetic: SimpleEnergy's ACCounter counts the element-wise adds
  and subtracts of SpikingJelly's neuron code (charge, fire, reset: about six per neuron
  and step, some counted per spike) unless BaseNode is ignored; snn45nm charges a neuron
  by its state traffic only (below), as SimpleEnergy also does;
- ops outside the network: bitnas's wrapper integrates event bins into T frames and
  averages the outputs over T (adds SimpleEnergy counts when given the whole wrapper).
Memory is a different convention. SimpleEnergy charges a flat 24.96 pJ per byte at the
runtime dtype (4 bytes for float): one weight (and bias) read per MAC or synaptic op
that uses it, and each neuron's state read and written once per step; it charges no
activation traffic. snn45nm charges per bit at the SRAM energy of a memory the size of
what it holds (Horowitz's 8 KB / 32 KB / 1 MB points, log-interpolated; DRAM above 1 MB):
all of a layer's stored weight bits read once per step (not once per use); each neuron's
membrane (``state_elems``, on the op that feeds it) read and written once per step at v
bits; an op's inputs read per step, spikes at 1 bit and dense inputs at a bits (adds,
pools and norms read a-bit inputs). Weightless ops hold and read no weights.
The activation memory is sized by ``peak_act_bytes``, the live set (see
:func:`~bitnas.hardware_models.base.live_peak_bytes`): the largest op's input and output
(the output at the width the next op reads it) plus every membrane of the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
from bitnas.hardware_models.generic45nm import MULTIPLY, int_mac_energy_pj, sram_pj_per_bit, table_pj_per_bit
from bitnas.plan import FLOAT_BITS, LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

PJ = 1e-12


@HARDWARE.register("snn45nm")
class SNN45nm(HardwareModel):
    """Spikformer convention at 45 nm: E_MAC per dense MAC + E_AC per synaptic op, bit-scaled."""

    constants_file = "snn45nm.toml"
    name = "snn45nm"
    compute_kinds = frozenset({ComputeKind.MULTIPLY, ComputeKind.SHIFT, ComputeKind.LOOKUP})
    needs_activity = True
    activity_fields = ("energy_j", "latency_s", "peak_act_bytes")  # inputs: 1-bit spikes or a-bit

    def mac_pj(self, w_bits: int, a_bits: int, fan_in: int, compute: Compute) -> float:
        """One dense multiply-accumulate, all of its passes."""
        if compute.operand(w_bits) >= FLOAT_BITS or a_bits >= FLOAT_BITS:
            return compute.passes * self.c["fp32_mac_pj"]
        return sum(int_mac_energy_pj(self.c, w_bits, a_bits, fan_in, compute))

    def ac_pj(self, w_bits: int, fan_in: int, compute: Compute) -> float:
        """One synaptic op (a spike adds a weight), all of its passes; a shift or a
        multiply needs no arithmetic on a 1-bit spike, only the add (of the looked-up value's
        width after a table lookup)."""
        w_bits = compute.operand(w_bits)
        if w_bits >= FLOAT_BITS:
            return compute.passes * self.c["fp32_ac_pj"]
        return compute.passes * self.c["int32_add_pj"] * min(32, w_bits + math.ceil(math.log2(fan_in))) / 32

    def add_pj(self, bits: int) -> float:
        """One add or compare of ``bits``-bit values (an element-wise add, a pool's compare)."""
        return self.c["fp32_ac_pj"] if bits >= FLOAT_BITS else self.c["int32_add_pj"] * min(32, bits) / 32

    def ops_pj(self, w: LayerWorkload, lq: LayerQuant) -> tuple[float, float, int]:
        """(ops in one inference, pJ per op, passes per op) of one op, by kind."""
        steps, a = w.timesteps, lq.a_bits
        dense = steps * w.macs
        measured = dense if w.in_spike_rate is None else w.in_spike_rate * dense
        if w.weighted:
            compute = self.compute_of(lq)
            if w.in_spike_rate is None:
                return dense, self.mac_pj(lq.w_bits, a, w.fan_in, compute), compute.passes
            spikes = compute.on_spikes()
            return measured, self.ac_pj(lq.w_bits, w.fan_in, spikes), spikes.passes
        if w.kind == "matmul":  # the other operand is an activation: a bits stand in for w
            if w.in_spike_rate is None:
                return dense, self.mac_pj(a, a, w.fan_in, MULTIPLY), 1
            return measured, self.ac_pj(a, w.fan_in, MULTIPLY), 1
        if w.kind == "eltwise":
            return measured, self.add_pj(a), 1
        if w.kind == "pool":
            return dense, self.add_pj(a), 1
        if w.kind == "norm":
            return (0.0, 0.0, 1) if w.folded else (dense, self.mac_pj(a, a, 1, MULTIPLY), 1)
        if w.kind == "act":
            return dense, self.mac_pj(a, a, 1, MULTIPLY), 1
        if w.kind == "scan":  # the state (v bits) times the step's inputs (a bits); its traffic below
            return dense, self.mac_pj(min(lq.v_bits, FLOAT_BITS), a, w.fan_in, MULTIPLY), 1
        raise refuse_kind(self, w, OP_KINDS)

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        lqs = layer_quants(workload, plan)
        wbits = weight_bits_per_layer(workload, lqs)
        state_bits = [w.state_elems * lq.v_bits for w, lq in zip(workload, lqs, strict=True)]
        # spikes are read at 1 bit by the ops that take them as synaptic input
        width = [1 if w.in_spike_rate is not None and (w.weighted or w.kind == "matmul") else act_width(lq)
                 for w, lq in zip(workload, lqs, strict=True)]
        in_bits = [0 if w.folded else w.in_elems * b for w, b in zip(workload, width, strict=True)]
        weight_bytes = math.ceil(sum(wbits) / 8)
        peak_act_bytes = live_peak_bytes(act_bits_per_layer(workload, width), state_bits)
        w_pj_bit = sram_pj_per_bit(weight_bytes, c)
        a_pj_bit = sram_pj_per_bit(peak_act_bytes, c)

        per_layer: dict[str, dict[str, float]] = {}
        for w, lq, wb, sb, ib in zip(workload, lqs, wbits, state_bits, in_bits, strict=True):
            steps = w.timesteps
            ops, op_pj, passes = self.ops_pj(w, lq)
            compute_j = ops * op_pj * PJ
            looked_up, table_bytes = lookups(w, lq, self.compute_of(lq)) if w.weighted else (0, 0)
            weight_j = steps * (wb * w_pj_bit + looked_up * table_pj_per_bit(table_bytes, c)) * PJ
            state_j = steps * 2 * sb * a_pj_bit * PJ
            act_j = steps * ib * a_pj_bit * PJ
            per_layer[w.name] = {
                "compute_energy_j": compute_j,
                "weight_energy_j": weight_j,
                "state_energy_j": state_j,
                "act_energy_j": act_j,
                "energy_j": compute_j + weight_j + state_j + act_j,
                "ops": float(ops),
                "dense": 1.0 if w.in_spike_rate is None else 0.0,
                "latency_s": math.ceil(passes * ops / c["ops_per_cycle"]) / c["clock_hz"],
                "weight_bytes": wb / 8,
            }
        return Cost.from_layers(per_layer, weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes,
                                rom_bytes=rom_bytes(workload, lqs))
