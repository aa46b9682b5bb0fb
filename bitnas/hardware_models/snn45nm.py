"""The `snn45nm` model: the Spikformer energy convention, scaled with bit-widths.

Per layer, with w, a and v the group's weight, activation and membrane bits and T
the steps the layer runs:
- a dense-input layer (``in_spike_rate`` None) does T * MACs multiply-accumulates
  at E_MAC(w, a): E_mul8 * w*a/64 + E_add32 * acc/32 with acc = min(32, w + a +
  ceil(log2 fan_in)), a shift instead of the multiply for power-of-two weights,
  and 4.6 pJ when w or a is 32 (float);
- a spike-input layer does SOP = rate * T * MACs accumulates at E_AC(w) =
  E_add32 * acc/32 with acc = min(32, w + ceil(log2 fan_in)), or 0.9 pJ at 32 bits.
At 32 bits this is E = 4.6 pJ * MACs(dense) + 0.9 pJ * sum SOP over the
convolution and linear layers, the convention SpikingJelly's SimpleEnergy
implements. Left out, as SimpleEnergy does not: BatchNorm (it folds into weights
and thresholds) and the neuron updates; left out although SimpleEnergy counts
them: residual adds, pooling and means, and the spike-times-spike attention
products, which belong to no layer group (about 1-5 % of the compute energy of
the small transformers tested).
Memory, per bit at the SRAM energy of a memory the size of what it holds
(Horowitz's 8 KB / 32 KB / 1 MB points, log-interpolated; DRAM above 1 MB):
weights read once per time step; each spiking neuron's membrane that the group
owns (``state_elems``) read and written once per step at v bits; input spikes
(1 bit) or dense inputs (a bits) read per step.
Without measured rates (the static pass before evaluation) every layer is costed
as dense multiply-accumulates on a_bits inputs: an upper bound, used only to
check the bounds that do not depend on activity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bitnas.accounting import Compute
from bitnas.hardware_models.base import (
    Cost,
    HardwareModel,
    LayerWorkload,
    layer_quants,
    weight_bits_per_layer,
)
from bitnas.hardware_models.generic45nm import int_mac_energy_pj, sram_pj_per_bit
from bitnas.plan import FLOAT_BITS, QuantPlan
from bitnas.registry import HARDWARE

PJ = 1e-12


@HARDWARE.register("snn45nm")
class SNN45nm(HardwareModel):
    """Spikformer convention at 45 nm: E_MAC per dense MAC + E_AC per synaptic op, bit-scaled."""

    constants_file = "snn45nm.toml"
    name = "snn45nm"
    needs_activity = True
    activity_fields = ("energy_j", "latency_s", "peak_act_bytes")  # inputs: 1-bit spikes or a-bit

    def mac_pj(self, w_bits: int, a_bits: int, fan_in: int, compute: Compute) -> float:
        """One dense multiply-accumulate, all of its passes."""
        if w_bits >= FLOAT_BITS or a_bits >= FLOAT_BITS:
            return compute.passes * self.c["fp32_mac_pj"]
        return sum(int_mac_energy_pj(self.c, w_bits, a_bits, fan_in, compute))

    def ac_pj(self, w_bits: int, fan_in: int, compute: Compute) -> float:
        """One synaptic op (a spike adds a weight), all of its passes; a shift or a
        multiply needs no arithmetic on a 1-bit spike, only the add."""
        if w_bits >= FLOAT_BITS:
            return compute.passes * self.c["fp32_ac_pj"]
        return compute.passes * self.c["int32_add_pj"] * min(32, w_bits + math.ceil(math.log2(fan_in))) / 32

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        lqs = layer_quants(workload, plan)
        wbits = weight_bits_per_layer(workload, lqs)
        state_bits = [w.state_elems * lq.v_bits for w, lq in zip(workload, lqs, strict=True)]
        in_bits = [w.in_elems * (lq.a_bits if w.in_spike_rate is None else 1)
                   for w, lq in zip(workload, lqs, strict=True)]
        weight_bytes = math.ceil(sum(wbits) / 8)
        peak_act_bytes = math.ceil(max(i + s for i, s in zip(in_bits, state_bits, strict=True)) / 8)
        w_pj_bit = sram_pj_per_bit(weight_bytes, c)
        a_pj_bit = sram_pj_per_bit(peak_act_bytes, c)

        per_layer: dict[str, dict[str, float]] = {}
        for w, lq, wb, sb, ib in zip(workload, lqs, wbits, state_bits, in_bits, strict=True):
            steps = w.timesteps
            compute = self.compute_of(lq)
            if w.in_spike_rate is None:
                ops = steps * w.macs
                op_pj = self.mac_pj(lq.w_bits, lq.a_bits, w.fan_in, compute)
            else:
                ops = w.in_spike_rate * steps * w.macs
                op_pj = self.ac_pj(lq.w_bits, w.fan_in, compute)
            compute_j = ops * op_pj * PJ
            weight_j = steps * wb * w_pj_bit * PJ
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
                "latency_s": math.ceil(compute.passes * ops / c["ops_per_cycle"]) / c["clock_hz"],
                "weight_bytes": wb / 8,
            }
        return Cost.from_layers(per_layer, weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes)
