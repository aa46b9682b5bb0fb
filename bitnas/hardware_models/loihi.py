"""The `loihi` model: Intel Loihi-class neuromorphic cores (Davies et al., IEEE Micro 2018).

Per weighted layer or attention product ("matmul"), with T the steps it runs, r its
measured synaptic rate (SynOps per possible product) and f the measured share of its
inputs that spike (they differ where padding drops border products; without a
measurement f = r, and a dense-input layer is taken to receive a spike on every input
each step, an upper bound: Loihi only takes spikes):
- synaptic ops: SOP = r * T * MACs (times the passes of a multi-pass weight scheme), at
  E_synop each;
- neuron updates: every compartment every step; a compartment is active when at least
  one input spike reaches it, P = 1 - (1 - f)^fan_in. A layer's compartments are its
  outputs, or, where a pool sits between it and its neurons, those neurons' membranes (the
  pool's ``state_elems``: a 2x2 pool before a LIF leaves a quarter of the conv's outputs);
- spike routing: input spikes = f * T * inputs, each delivered in its tile plus
  ``hops_per_spike`` hops;
- cores: the larger of synaptic memory (weight bits against 128 KB) and
  compartments (against 1,024), at least one; layers do not share cores;
- latency: T steps, each the slowest core's work plus a barrier; a layer's
  synaptic ops, neuron updates and spike deliveries are shared by the cores its
  compartments occupy (cores added only to hold weights store, but do not compute);
- static energy: static power per used core times latency.
Loihi has no primitive for a product of two activations (spike times spike): an
attention's products are charged as synaptic ops at the measured rate, with its outputs
as compartments. This is an estimate. So are element-wise adds ("eltwise", residuals)
and pools: they are charged as synaptic ops only (the adds SpikingJelly counts, or every
compare of a pool), taken to run in the dendrites of the compartments they feed, with no
compartments, cores, routing or step time of their own. A BatchNorm folded into the
layer before it (``folded``) does no work (its shift is that layer's bias, stored with the
weights); any other norm cannot run on Loihi and is refused.
Infeasible (``violations`` > 0): more cores than the chip has, weights wider than
9 bits (float included), or a scheme that looks weights up in a table (``nonuniform``,
``codebook``): a synapse holds its weight itself. ``reasons`` name the layer (the first one
too wide, the one that needs the most cores). Compartment state is Loihi's 24-bit membrane, or v_bits
if narrower. ``peak_act_bytes`` is the live set (see
:func:`~bitnas.hardware_models.base.live_peak_bytes`): the largest op's input and output
spikes (1 bit each) plus every compartment's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bitnas.accounting import ComputeKind
from bitnas.hardware_models.base import (
    ENERGY_FIELDS,
    OP_KINDS,
    Cost,
    HardwareModel,
    LayerWorkload,
    act_bits_per_layer,
    layer_quants,
    live_peak_bytes,
    refuse_kind,
    rom_bytes,
    weight_bits_per_layer,
)
from bitnas.plan import FLOAT_BITS, QuantPlan
from bitnas.registry import HARDWARE

PJ, NS = 1e-12, 1e-9
MEMBRANE_BITS = 24  # Loihi's compartment voltage register


@HARDWARE.register("loihi")
class Loihi(HardwareModel):
    """Loihi-class neuromorphic cores: synaptic ops, neuron updates, routing, cores, static power."""

    constants_file = "loihi.toml"
    name = "loihi"
    infeasible_kinds = frozenset({ComputeKind.LOOKUP})
    needs_activity = True
    activity_fields = ("energy_j", "latency_s", "compute_energy_j", "act_energy_j",
                       "state_energy_j", "static_energy_j")
    #: static power over the run, and the cores the plan occupies
    extra_cost_fields = ("static_energy_j", "cores")

    @property
    def supported_weight_bits(self) -> frozenset[int]:  # type: ignore[override]
        """Loihi's synapses hold 1..max_weight_bits-bit integer weights (no float)."""
        return frozenset(range(1, int(self.c["max_weight_bits"]) + 1))

    def compute_cores(self, compartments: int) -> int:
        """Cores a layer's compartments occupy: they share its work."""
        return max(1, math.ceil(compartments / self.c["compartments_per_core"]))

    def layer_cores(self, compartments: int, weight_bits: int) -> int:
        """Cores a layer needs: for its compartments, or to hold its weights."""
        by_memory = math.ceil(weight_bits / 8 / self.c["synaptic_memory_bytes"])
        return max(self.compute_cores(compartments), by_memory)

    @staticmethod
    def compartments(workload: Sequence[LayerWorkload]) -> list[int]:
        """Each op's compartments: a layer's (or attention product's) outputs, or, where a pool
        sits between it and its neurons (a conv - BN - pool - LIF block), the membranes of those
        neurons (the pool's ``state_elems``: a 2x2 pool leaves a quarter); other ops none."""
        pooled = [0] * len(workload)
        owner = None
        for i, w in enumerate(workload):
            if w.weighted or w.kind == "matmul":
                owner = i
            elif w.kind == "pool" and owner is not None:
                pooled[owner] += w.state_elems
            elif not w.folded:
                owner = None  # an add or an unfolded op: the neurons after it are not the layer's
        return [p or w.out_elems if (w.weighted or w.kind == "matmul") else 0
                for p, w in zip(pooled, workload, strict=True)]

    def _fit_reasons(self, total_cores: int, largest: tuple[int, LayerWorkload, int, int] | None,
                     too_wide: list[tuple[LayerWorkload, int]]) -> dict[str, str]:
        """Why a plan does not fit the chip, in words, naming the layer (violations > 0 only)."""
        c, reasons = self.c, {}
        if too_wide:
            w, bits = too_wide[0]
            n = len(too_wide) - 1
            more = f" (and {n} more layer{'s' if n > 1 else ''})" if n else ""
            held = "float" if bits >= FLOAT_BITS else f"{bits}-bit"
            reasons["loihi_weight_bits"] = (f"layer {w.name}: {held} weights{more}; a Loihi synapse "
                                            f"holds 1..{int(c['max_weight_bits'])}-bit integer weights")
        if total_cores > c["cores"] and largest is not None:
            cores, w, wbits, comps = largest
            reasons["loihi_cores"] = (
                f"the plan needs {total_cores} cores and the chip has {int(c['cores'])}; layer {w.name} "
                f"needs the most, {cores}: {comps} compartments ({int(c['compartments_per_core'])} "
                f"a core) and {wbits / 8 / 1024:.1f} KiB of weights "
                f"({int(c['synaptic_memory_bytes']) // 1024} KiB a core)")
        return reasons

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        per_layer: dict[str, dict[str, float]] = {}
        step_s = 0.0
        total_cores = 0
        max_w_bits = 0
        weight_bits_all = 0
        steps = max(w.timesteps for w in workload)
        lqs = layer_quants(workload, plan)
        hi = max(self.supported_weight_bits)
        too_wide: list[tuple[LayerWorkload, int]] = []  # layers whose weights no synapse holds
        largest: tuple[int, LayerWorkload, int, int] | None = None  # the layer that needs the most cores
        held = self.compartments(workload)
        wbits_all = weight_bits_per_layer(workload, lqs)
        for w, lq, wbits, comps in zip(workload, lqs, wbits_all, held, strict=True):
            passes = 1
            unpriced = {"scan", "param", "act"}
            if w.kind == "param":
                raise refuse_kind(self, w, OP_KINDS - unpriced, ": a scan's parameter")
            if w.weighted:
                # a synaptic op adds an integer weight, multiply and shift alike; each pass of a
                # multi-pass scheme delivers the spike again (a spike is its own activation terms)
                passes = self.compute_of(lq).on_spikes().passes
                max_w_bits = max(max_w_bits, lq.w_bits)
                if lq.w_bits > hi:
                    too_wide.append((w, lq.w_bits))
            elif w.kind == "norm" and not w.folded:
                raise refuse_kind(self, w, OP_KINDS - unpriced - {"norm"},
                                  ": a normalization that does not fold into weights")
            elif w.kind not in OP_KINDS or w.kind in unpriced:
                why = {"scan": ": a selective scan is not a spiking op",
                       "act": ": a neuromorphic core has no element-wise function units"}
                raise refuse_kind(self, w, OP_KINDS - unpriced, why.get(w.kind, ""))
            weight_bits_all += wbits
            rate = 1.0 if w.in_spike_rate is None else w.in_spike_rate
            synops = 0.0 if w.folded else passes * rate * w.timesteps * w.macs
            if not (w.weighted or w.kind == "matmul"):  # dendritic adds: no compartments of their own
                synop_j = synops * c["synop_pj"] * PJ
                per_layer[w.name] = {
                    "synop_energy_j": synop_j, "neuron_energy_j": 0.0, "routing_energy_j": 0.0,
                    "compute_energy_j": synop_j, "weight_energy_j": 0.0, "act_energy_j": 0.0,
                    "state_energy_j": 0.0, "synops": synops, "cores": 0.0,
                    "weight_bytes": wbits / 8, "core_step_s": 0.0,
                }
                continue
            cores = self.layer_cores(comps, wbits)
            total_cores += cores
            if largest is None or cores > largest[0]:
                largest = (cores, w, wbits, comps)
            fraction = rate if w.in_spike_fraction is None else w.in_spike_fraction
            active = 1.0 - (1.0 - fraction) ** w.fan_in
            updates = w.timesteps * comps
            spikes = fraction * w.timesteps * w.in_elems
            synop_j = synops * c["synop_pj"] * PJ
            neuron_j = updates * (active * c["neuron_active_pj"]
                                  + (1 - active) * c["neuron_inactive_pj"]) * PJ
            route_j = spikes * (c["spike_in_tile_pj"] + c["hops_per_spike"] * c["hop_pj"]) * PJ
            core_step_s = (synops * c["synop_ns"] + updates * (
                active * c["neuron_active_ns"] + (1 - active) * c["neuron_inactive_ns"])
                + spikes * c["spike_in_tile_ns"]) * NS / (w.timesteps * self.compute_cores(comps))
            step_s = max(step_s, core_step_s)
            per_layer[w.name] = {
                "synop_energy_j": synop_j,
                "neuron_energy_j": neuron_j,
                "routing_energy_j": route_j,
                # the common breakdown: a synaptic op reads its weight, so weights cost nothing apart
                "compute_energy_j": synop_j,
                "weight_energy_j": 0.0,
                "act_energy_j": route_j,
                "state_energy_j": neuron_j,
                "synops": synops,
                "cores": float(cores),
                "weight_bytes": wbits / 8,
                "core_step_s": core_step_s,
            }
        latency_s = steps * (step_s + c["barrier_ns"] * NS)
        static_j = c["static_w_per_core"] * total_cores * latency_s
        for p in per_layer.values():
            p["static_energy_j"] = static_j * p["cores"] / max(1, total_cores)
            p["energy_j"] = (p["synop_energy_j"] + p["neuron_energy_j"] + p["routing_energy_j"]
                             + p["static_energy_j"])
            # the chip's time is shared; each layer is charged its cores' share of it
            p["latency_s"] = latency_s * p["cores"] / max(1, total_cores)
        violations, reasons = self.scheme_violations(workload, plan)
        violations.update({
            "loihi_cores": total_cores / c["cores"] - 1.0,
            "loihi_weight_bits": (max_w_bits - hi) / hi,  # > 0 past 9 bits
        })
        reasons.update(self._fit_reasons(total_cores, largest, too_wide))
        parts = {f: sum(p[f] for p in per_layer.values())
                 for f in (*ENERGY_FIELDS, "static_energy_j")}
        return Cost(
            energy_j=sum(p["energy_j"] for p in per_layer.values()),
            latency_s=latency_s,
            weight_bytes=math.ceil(weight_bits_all / 8),
            peak_act_bytes=live_peak_bytes(
                act_bits_per_layer(workload, [1] * len(workload), last_out_bits=1),
                [w.state_elems * min(MEMBRANE_BITS, lq.v_bits) for w, lq in zip(workload, lqs, strict=True)]),
            per_layer=per_layer,
            violations=violations,
            reasons=reasons,
            fields={**parts, "rom_bytes": float(rom_bytes(workload, lqs)), "cores": float(total_cores)},
        )
