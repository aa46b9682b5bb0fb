"""The `cortex_m4`, `cortex_m7` and `cortex_m33` models: int8 inference on a Cortex-M
microcontroller the way CMSIS-NN runs it, calibrated against MLPerf Tiny v1.0.

One model, three data files (``data/cortex_m4.toml``: STM32L4R5, NUCLEO-L4R5ZI, 120 MHz;
``data/cortex_m7.toml``: STM32H7A3, NUCLEO-H7A3ZI-Q, 280 MHz; ``data/cortex_m33.toml``:
STM32U575, NUCLEO-U575ZI-Q, 160 MHz). Kernel structure: ``ARM-software/CMSIS-NN`` at
99f736a (the DSP-extension paths, which all three cores take), read for instruction
counts, never copied.

**Cycles.** Each op is counted in instructions of the CMSIS-NN kernel that would run it;
the board's cycles per instruction (``cpi``) turn them into cycles. The instruction
counts come from the kernels' inner loops (kind ``derived``) or are estimates (kind
``estimate``); ``cpi`` is the one fitted constant per board (see *Calibration*). Per
weighted op (convolution, linear layer), per time step and per weight pass:

    instr = call + MACs x mac[path] + weight reads x unpack(w) + outputs x out(a)
            + im2col values x im2col_value + im2col taps x im2col_tap

- ``path``: a convolution builds an im2col buffer of int16 values (two output pixels at a
  time) and multiplies it in ``arm_nn_mat_mult_kernel_s8_s16``: 8 SMLAD (2 MACs each),
  4 loads of activation pairs and 2 loop instructions per 16 MACs (``mat_mac_instr``
  0.875), each weight read serving 2 output pixels. A 1x1 convolution without padding
  (any stride) skips the im2col (``arm_convolve_1x1_s8_fast`` / ``arm_convolve_1x1_s8``,
  ``arm_nn_mat_mult_nt_t_s8``: the same count). A depthwise convolution (groups = input channels) runs
  ``arm_depthwise_conv_3x3_s8``: 4 SMLAxy, a load and 2 sign extensions per tap and 4
  channels, plus the kernel-row loop (``dw_mac_instr`` 2.08), a weight read per MAC. A
  linear layer runs ``arm_nn_vec_mat_mult_t_s8``: 4 SMLAD, a load and 2 extensions of
  the input, 2 loop instructions per 8 MACs (``fc_mac_instr`` 1.125), a weight read per
  MAC. A grouped convolution that is not depthwise takes the im2col path.
- ``unpack(w)``, per weight read: int8 weights are read 4 at a time and sign-extended to
  16 bit (LDR + 2 SXTB16: ``s8_weight_instr`` 0.75); int4 weights by CMSIS-NN's s4
  kernels, which unpack 4 weights (2 bytes) with 13 instructions (``read_and_pad_s4_ordered``:
  ``s4_weight_instr`` 3.25), so **int4 halves the weights' flash and costs more cycles,
  never fewer**. 1-3 and 5-7-bit weights have no CMSIS-NN kernel: each is extracted and
  mapped to its level (``subbyte_weight_instr``, an estimate) plus one word load per 32
  bits of codes, so **1-2-bit weights cost more cycles than int8**. A power-of-two
  weight (quantizer ``pot``: compute kind SHIFT) is priced as a multiply of its bits: a
  Cortex-M multiplies in one cycle, so a shift saves nothing. A table-lookup scheme
  (``nonuniform``, ``codebook``: LOOKUP) reads each weight's value from its table per
  weight read (``lookup_weight_instr`` plus the index words) and multiplies that value
  (its ``operand_bits``; 16-bit values go into SMLAD as they are, 32 is float).
- float (32-bit) weights or activations: the FPU path, ``fp32_mac_instr`` per MAC
  (VLDR, VLDR, VFMA and a loop share; an estimate), no unpacking.
- ``out(a)``: per output, bias initialisation, requantization (``arm_nn_requantize``),
  output offset, clamp and store (``requant_instr``); 16-bit activations (CMSIS-NN's s16
  kernels, int64 accumulators) add ``s16_requant_extra_instr``, and so does float (an
  estimate that keeps float no cheaper).
- im2col (im2col path only): per value copied, ``arm_memcpy_s8`` and the widening to
  int16 with the input offset (``arm_s8_to_s16_unordered_with_offset``:
  ``im2col_value_instr``); per kernel tap and output pixel, the bounds check and the copy
  call (``im2col_tap_instr``, an estimate). This is what makes a first layer on one input
  channel (KWS's 10x4 convolution) slow per MAC.
- ``call``: the kernel call and its set-up, once per op (``op_call_instr``, an estimate).

Ops without weights: an activation-times-activation product (``matmul``,
``arm_batch_matmul_s8``) costs the convolution's MAC and a weight-like sign extension of
the second operand per 2 MACs, plus ``out(a)`` per output; a pool
(``arm_avgpool_s8``/``arm_max_pool_s8``) ``pool_instr`` per add or compare and
``pool_out_instr`` per output; an element-wise add (``arm_elementwise_add_s8``: three
requantizations per element) ``eltwise_instr`` per add; a norm that folds into the layer
before it (``folded``) costs nothing (its shift is that layer's bias), any other norm
``norm_instr`` per element; an element-wise function (``"act"``: an exp, SiLU, softplus,
softmax) ``act_fn_instr`` per evaluation (a lookup table) or ``act_fn_float_instr`` in float
(libm), both estimates; a selective scan (kind ``"scan"``, Mamba) ``scan_mac_instr``
per multiply-add of its state (the group's v bits) with its inputs (a bits), the FPU's
``fp32_mac_instr`` where either is 32 (float); a scan's parameters (kind ``"param"``, its
A and D) are stored like weights and do no work of their own (the scan's multiply-adds
read them). Every op with state (``state_elems``: a scan's recurrent state, a spiking neuron's
membrane) reads and writes it every step at the group's ``v_bits``:
``state_word_instr`` per 32-bit word. A kind missing from :attr:`CortexM.op_instructions` is
refused in one line. Pools, adds and norms are charged the same at every activation width
(float included: an estimate that keeps a wider plan no cheaper).

An op over T time steps runs T times; a weight scheme of k passes (``series``) runs the
whole weighted op k times (k kernel calls, each with its im2col and requantization).

**Latency** = cycles / clock. **Energy** = active power x latency, the only energy term:
MLPerf Tiny's energy figures are whole-board (core, memories, regulators), so no part of
it can be told apart from a published source. It is reported as ``compute_energy_j``,
except the cycles spent reading and writing state, reported as ``state_energy_j``;
``weight_energy_j`` and ``act_energy_j`` are 0 (weight and activation traffic are inside
the kernels' instruction counts).

**Memory.** ``flash_bytes`` = the weights packed at their bits (each layer's codes in one
byte-aligned array: two 4-bit codes a byte, eight 1-bit; the quantizer's scales and level
tables beside them; biases at 32 bits: ``weight_bytes``) + the shared structures (a
universal codebook, ``rom_bytes``, which lives in flash too) + ``code_bytes`` (runtime and
kernels: an estimate). ``ram_bytes`` = the largest live set over the ops in execution
order: an op's input and output at their activation widths (``act_width``), plus the
im2col buffer CMSIS-NN asks for (convolution: 2 columns of the int16 patch,
``arm_convolve_s8_get_buffer_size``; depthwise other than 3x3 with padding <= 1: the
patch of every channel, ``arm_depthwise_conv_s8_opt_get_buffer_size``; 1x1 and linear:
none), plus every state element of every op at its ``v_bits`` (state persists across
steps). A skip connection held across several ops is counted only where an op reads it
(the add). ``peak_act_bytes`` is the same live set without the im2col buffers.
Violations ``<name>_ram`` and ``<name>_flash``: ram_bytes / ``sram_bytes`` - 1 and
flash_bytes / ``flash_size_bytes`` - 1 (> 0: over the part; the reason names the layer
with the largest live set, or the largest weights).

**Bits.** ``supported_weight_bits`` = 1..8 and 32 (CMSIS-NN's s8 and s4 kernels, the
unpacked sub-byte path above, float); 9-16-bit weights have no kernel. ``supported_act_bits``
= {8, 16, 32}: CMSIS-NN has s8 and s16 activation kernels and float ones; sub-byte
activations have none (they would be held and computed at 8 bits).

A consequence the project's cost contract does not expect: cycles, latency and energy
**fall** when sub-byte weights grow to 8 bits (the native kernel needs no unpacking), and
from 4 to 5-7 bits (generic unpacking is estimated a little cheaper than the s4 kernel's).
Memory fields never fall as bits grow, and nothing falls as activation or state bits grow.
See :data:`FIELDS_FALLING_AT_NATIVE_BITS`. (Likewise, outside the bits the contract tries: an
8-bit table-lookup scheme can run a linear layer slower than float weights, and a series
expansion's k passes slower than one float pass.)

**Calibration** (:mod:`bitnas.experiments.mcu_calibration`): MLPerf Tiny's DS-CNN KWS and
ResNet-8, rebuilt with the reference shapes, at int8. ``cpi`` is fitted per board on
ResNet-8's published latency (so that row's latency error is 0 by construction and tests
nothing); ``active_power_w`` is the published KWS energy / latency of the board (so the
KWS energy error equals its latency error). The one check of the model itself is KWS
latency: -20.0 % (L4R5), -14.4 % (H7A3), -16.3 % (U575). The instruction counts are the same
on every board, so these three are one model quantity (KWS instructions / ResNet-8
instructions = 0.265) set against three published ratios, and the model is 14-20 % fast
on all of them. ResNet-8 energy (-4.6 %, +1.0 %, -1.3 %) tests no model constant: it is
the published KWS power carried to the published ResNet-8 latency. Fitted
cpi: 1.36 (M4), 0.76 (M7, dual issue), 1.12 (M33). The published figures are ST's
X-CUBE-AI, not CMSIS-NN: the fitted cpi absorbs the difference between the two libraries
and the boards' flash wait states and caches. What the counts imply beyond the calibration
(no published measurement checks them): int4 weights run the DS-CNN 1.69x and ResNet-8
1.78x as long as int8 (the s4 unpacking), 1-2-bit weights 1.63-1.72x, float weights
2.3-2.7x.

Spike rates (``in_spike_rate``) are ignored: a microcontroller computes every product. The
``macs`` field counts multiply-accumulates (weighted layers, products of activations,
norms, scans), not the adds and compares of pools and element-wise adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bitnas.accounting import Compute, ComputeKind
from bitnas.errors import BitnasError
from bitnas.hardware_models.base import (
    Cost,
    HardwareModel,
    LayerWorkload,
    act_bits_per_layer,
    act_width,
    layer_quants,
    live_peak_bytes,
    refuse_kind,
    rom_bytes,
    weight_storage,
)
from bitnas.plan import FLOAT_BITS, LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

#: fields that may fall when weight bits grow to the native 8-bit kernel (see the docstring)
FIELDS_FALLING_AT_NATIVE_BITS = ("energy_j", "latency_s", "compute_energy_j", "cycles")
#: the weight bits with a CMSIS-NN kernel of their own
NATIVE_BITS = {8: "s8_weight_instr", 4: "s4_weight_instr"}
#: the paths whose ``macs`` are multiply-accumulates (the ``macs`` field; pools' and adds' are not)
MAC_PATHS = frozenset({"conv", "pointwise", "depthwise", "linear", "matmul", "norm", "scan"})


@dataclass(frozen=True)
class OpInstructions:
    """What one op executes, per time step: instructions of its kernel per pass, the
    passes, state instructions, and the im2col buffer it needs."""

    path: str  # conv, pointwise, depthwise, linear, matmul, pool, eltwise, norm, scan, folded
    instr: float  # per pass
    passes: int = 1
    state_instr: float = 0.0
    im2col_bytes: int = 0
    #: the parts of ``instr``, for reading a cost: mac, unpack, out, im2col, call
    parts: tuple[tuple[str, float], ...] = ()


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _ceil4(n: int) -> int:
    return -(-n // 4) * 4


class CortexM(HardwareModel):
    """Shared by the cortex_m4, cortex_m7 and cortex_m33 registrations (one model, three
    data files)."""

    supported_weight_bits = frozenset({*range(1, 9), FLOAT_BITS})
    supported_act_bits = frozenset({8, 16, FLOAT_BITS})
    compute_kinds = frozenset({ComputeKind.MULTIPLY, ComputeKind.SHIFT, ComputeKind.LOOKUP})
    extra_cost_fields = ("flash_bytes", "ram_bytes", "cycles", "macs")
    #: the cost fields that may fall when weight bits grow (sub-byte into a native kernel);
    #: every other field, and every field as activation or state bits grow, never falls
    fields_falling_as_weight_bits_grow: ClassVar[tuple[str, ...]] = FIELDS_FALLING_AT_NATIVE_BITS
    #: the part, for reasons ("the STM32L4R5 has 640 KiB of SRAM")
    part: ClassVar[str] = ""

    # --- instruction counts per op -----------------------------------------------------

    def _check_bits(self, layer: LayerWorkload, lq: LayerQuant) -> None:
        if lq.a_bits not in self.supported_act_bits:
            raise BitnasError(f"hardware {self.name} runs 8-, 16-bit or float activations; group "
                              f"{layer.group or layer.name} asks for {lq.a_bits}: set space.a_bits "
                              "to 8, 16 or 32")
        if layer.weighted and lq.w_bits not in self.supported_weight_bits:
            raise BitnasError(f"hardware {self.name} runs 1- to 8-bit or float weights; group "
                              f"{layer.group or layer.name} asks for {lq.w_bits}")

    def unpack_instr(self, w_bits: int, compute: Compute) -> float:
        """Instructions per weight read beyond the MAC: unpacking the code to int16, or
        looking its value up (see the module docstring)."""
        c = self.c
        words = w_bits / 32 * c["word_load_instr"]
        if compute.kind is ComputeKind.LOOKUP:
            return c["lookup_weight_instr"] + words
        if w_bits >= FLOAT_BITS:
            return 0.0
        if w_bits in NATIVE_BITS:
            return c[NATIVE_BITS[w_bits]]
        return c["subbyte_weight_instr"] + words

    def out_instr(self, a_bits: int) -> float:
        """Instructions per output: requantization (wider for 16-bit and float)."""
        c = self.c
        return c["requant_instr"] + (c["s16_requant_extra_instr"] if a_bits > 8 else 0.0)

    def _weighted(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        c = self.c
        compute = self.compute_of(lq)
        a = lq.a_bits
        fan_in = layer.fan_in
        c_in = int(layer.in_shape[0]) if layer.in_shape else 0
        c_out = int(layer.weight_shape[0]) if layer.weight_shape else (
            int(layer.out_shape[0]) if layer.out_shape else layer.out_elems)
        pixels = max(1, layer.out_elems // max(1, c_out))
        taps = math.prod(layer.kernel) if layer.kernel else 1
        value_bytes = 4 if a >= FLOAT_BITS else 2  # im2col holds int16 (or float) values
        im2col_values = im2col_taps = 0
        im2col_bytes = 0
        if layer.kind == "linear":
            path, mac, reuse = "linear", c["fc_mac_instr"], 1
        elif layer.channel_groups > 1 and layer.channel_groups == c_in:
            path, mac, reuse = "depthwise", c["dw_mac_instr"], 1
            pads = layer.padding or (0,)
            if not (layer.kernel == (3, 3) and max(pads) <= 1):  # the _opt kernel's patch buffer
                im2col_bytes = c_in * taps * value_bytes
        elif layer.kernel and all(k == 1 for k in layer.kernel) and not any(layer.padding):
            path, mac, reuse = "pointwise", c["mat_mac_instr"], 2
        else:
            path, mac, reuse = "conv", c["mat_mac_instr"], 2
            im2col_values, im2col_taps = pixels * fan_in, pixels * taps
            im2col_bytes = 2 * _ceil4(fan_in) * value_bytes
        operand = compute.operand(lq.w_bits) if compute.kind is ComputeKind.LOOKUP else lq.w_bits
        if operand >= FLOAT_BITS or a >= FLOAT_BITS:
            mac = c["fp32_mac_instr"]
        reads = layer.macs / reuse
        unpack = reads * (0.0 if lq.w_bits >= FLOAT_BITS else self.unpack_instr(lq.w_bits, compute))
        parts = (("mac", layer.macs * mac), ("unpack", unpack),
                 ("out", layer.out_elems * self.out_instr(a)),
                 ("im2col", im2col_values * c["im2col_value_instr"] + im2col_taps * c["im2col_tap_instr"]),
                 ("call", c["op_call_instr"]))
        return OpInstructions(path, sum(v for _, v in parts), compute.passes, im2col_bytes=im2col_bytes,
                              parts=parts)

    def _matmul(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        c = self.c
        if lq.a_bits >= FLOAT_BITS:
            mac, unpack = c["fp32_mac_instr"], 0.0
        else:  # both operands sign-extended from int8, as arm_nn_mat_mult_nt_t_s8 does
            mac, unpack = c["mat_mac_instr"], layer.macs / 2 * c["s8_weight_instr"]
        parts = (("mac", layer.macs * mac), ("unpack", unpack),
                 ("out", layer.out_elems * self.out_instr(lq.a_bits)), ("call", c["op_call_instr"]))
        return OpInstructions("matmul", sum(v for _, v in parts), parts=parts)

    def _elementwise(self, path: str, per_op: str, per_out: str | None = None
                     ) -> Callable[[LayerWorkload, LayerQuant], OpInstructions]:
        def count(layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
            c = self.c
            if layer.folded:
                return OpInstructions("folded", 0.0)
            parts = (("mac", layer.macs * c[per_op]),
                     ("out", layer.out_elems * c[per_out] if per_out else 0.0),
                     ("call", c["op_call_instr"]))
            return OpInstructions(path, sum(v for _, v in parts), parts=parts)

        return count

    def _scan(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        c = self.c
        float_ = lq.a_bits >= FLOAT_BITS or lq.v_bits >= FLOAT_BITS  # state (v) times inputs (a)
        mac = c["fp32_mac_instr"] if float_ else c["scan_mac_instr"]
        parts = (("mac", layer.macs * mac), ("call", c["op_call_instr"]))
        return OpInstructions("scan", sum(v for _, v in parts), parts=parts)

    def _act(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        """An element-wise function: a table lookup per evaluation at 8 or 16 bits, libm in float."""
        c = self.c
        per = c["act_fn_float_instr"] if lq.a_bits >= FLOAT_BITS else c["act_fn_instr"]
        parts = (("mac", layer.macs * per), ("call", c["op_call_instr"]))
        return OpInstructions("act", sum(v for _, v in parts), parts=parts)

    def _param(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        """A parameter another op reads (a scan's A and D): stored, no work of its own."""
        self.compute_of(lq)  # refuse a scheme this model cannot price
        return OpInstructions("param", 0.0)

    @property
    def op_instructions(self) -> dict[str, Callable[[LayerWorkload, LayerQuant], OpInstructions]]:
        """Op kind -> its instruction count (the kinds this model prices)."""
        return {
            "conv1d": self._weighted, "conv2d": self._weighted, "linear": self._weighted,
            "matmul": self._matmul,
            "pool": self._elementwise("pool", "pool_instr", "pool_out_instr"),
            "eltwise": self._elementwise("eltwise", "eltwise_instr"),
            "norm": self._elementwise("norm", "norm_instr"),
            "scan": self._scan, "param": self._param, "act": self._act,
        }

    def instructions(self, layer: LayerWorkload, lq: LayerQuant) -> OpInstructions:
        """The op's instructions per time step (state included), or a one-line refusal."""
        table = self.op_instructions
        if layer.kind not in table:
            raise refuse_kind(self, layer, table)
        self._check_bits(layer, lq)
        op = table[layer.kind](layer, lq)
        state_words = math.ceil(layer.state_elems * lq.v_bits / 32)
        return OpInstructions(op.path, op.instr, op.passes, state_words * self.c["state_word_instr"],
                              op.im2col_bytes, op.parts)

    # --- the cost ----------------------------------------------------------------------

    def layer_weight_bytes(self, layer: LayerWorkload, lq: LayerQuant) -> int:
        """Flash bytes of the layer's own arrays: codes packed at their bits, scales, level
        tables, each byte-aligned, and 32-bit biases (shared structures not included)."""
        if not layer.weighted:
            return 4 * layer.bias_params
        st = weight_storage(layer, lq)
        return sum(math.ceil(b / 8) for b in (st.element_bits, st.scale_bits, st.table_bits)) \
            + 4 * layer.bias_params

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        lqs = layer_quants(workload, plan)
        ops = [self.instructions(w, lq) for w, lq in zip(workload, lqs, strict=True)]
        widths = [act_width(lq) for lq in lqs]
        live = [i for i, w in enumerate(workload) if not w.folded]
        act_bits = act_bits_per_layer(workload, widths, widths[live[-1]] if live else 8)
        state_bits = [w.state_elems * lq.v_bits for w, lq in zip(workload, lqs, strict=True)]
        state_bytes = math.ceil(sum(state_bits) / 8)
        held = [math.ceil(ab / 8) + op.im2col_bytes for ab, op in zip(act_bits, ops, strict=True)]
        ram_bytes = max(held, default=0) + state_bytes
        peak_act_bytes = live_peak_bytes(act_bits, state_bits)
        wbytes = [self.layer_weight_bytes(w, lq) for w, lq in zip(workload, lqs, strict=True)]
        weight_bytes = sum(wbytes)
        rom = rom_bytes(workload, lqs)
        flash_bytes = weight_bytes + rom + int(c["code_bytes"])

        cpi, clock, power = c["cpi"], c["clock_hz"], c["active_power_w"]
        per_layer: dict[str, dict[str, float]] = {}
        for w, lq, op, wb, ab, h in zip(workload, lqs, ops, wbytes, act_bits, held, strict=True):
            steps = w.timesteps
            compute_cycles = cpi * op.instr * op.passes * steps
            state_cycles = cpi * op.state_instr * steps
            compute_j = power * compute_cycles / clock
            state_j = power * state_cycles / clock
            per_layer[w.name] = {
                "energy_j": compute_j + state_j,
                "latency_s": (compute_cycles + state_cycles) / clock,
                "compute_energy_j": compute_j, "weight_energy_j": 0.0, "act_energy_j": 0.0,
                "state_energy_j": state_j,
                "cycles": compute_cycles + state_cycles,
                "instructions": (op.instr * op.passes + op.state_instr) * steps,
                **{f"{k}_instructions": v * op.passes * steps for k, v in op.parts},
                "macs": float(w.macs * op.passes * steps) if op.path in MAC_PATHS else 0.0,
                "weight_bytes": float(wb),
                "act_bytes": float(math.ceil(ab / 8)),
                "im2col_bytes": float(op.im2col_bytes),
                "ram_bytes": float(h + state_bytes),
                "w_bits": float(lq.w_bits), "a_bits": float(lq.a_bits),
            }
        cycles = sum(p["cycles"] for p in per_layer.values())
        extra = {"flash_bytes": float(flash_bytes), "ram_bytes": float(ram_bytes), "cycles": float(cycles),
                 "macs": float(sum(p["macs"] for p in per_layer.values()))}
        cost = Cost.from_layers(per_layer, weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes,
                                extra=extra, rom_bytes=rom)
        violations, reasons = self._limits(workload, ops, act_bits, held, state_bytes, ram_bytes, wbytes,
                                           rom, flash_bytes)
        return cost.with_violations(violations, reasons)

    def _limits(self, workload: Sequence[LayerWorkload], ops: Sequence[OpInstructions],
                act_bits: Sequence[int], held: Sequence[int], state_bytes: int, ram_bytes: int,
                wbytes: Sequence[int], rom: int, flash_bytes: int
                ) -> tuple[dict[str, float], dict[str, str]]:
        """``<name>_ram`` and ``<name>_flash``: the relative excess over the part (< 0: room
        left), with a reason for each one over."""
        c = self.c
        sram, flash = c["sram_bytes"], c["flash_size_bytes"]
        ram_key, flash_key = f"{self.name}_ram", f"{self.name}_flash"
        violations = {ram_key: ram_bytes / sram - 1, flash_key: flash_bytes / flash - 1}
        reasons: dict[str, str] = {}
        if violations[ram_key] > 0 and workload:
            i = max(range(len(workload)), key=lambda k: held[k])
            w = workload[i]
            parts = [f"{_kib(math.ceil(act_bits[i] / 8))} of input and output activations"]
            if ops[i].im2col_bytes:
                parts.append(f"a {_kib(ops[i].im2col_bytes)} im2col buffer")
            if state_bytes:
                parts.append(f"{_kib(state_bytes)} of state")
            reasons[ram_key] = (f"layer {w.name} needs {_kib(ram_bytes)} of RAM ({' + '.join(parts)}); "
                                f"the {self.part or self.name} has {_kib(sram)} of SRAM")
        if violations[flash_key] > 0 and workload:
            i = max(range(len(workload)), key=lambda k: wbytes[k])
            reasons[flash_key] = (
                f"{_kib(flash_bytes)} of flash: weights {_kib(sum(wbytes))} (largest: layer "
                f"{workload[i].name}, {_kib(wbytes[i])}), shared tables {_kib(rom)}, code "
                f"{_kib(c['code_bytes'])}; the {self.part or self.name} has {_kib(flash)} of flash")
        return violations, reasons


@HARDWARE.register("cortex_m4", "Cortex-M4F (STM32L4R5, 120 MHz): CMSIS-NN int8 kernels, MLPerf Tiny "
                                "calibrated")
class CortexM4(CortexM):
    constants_file = "cortex_m4.toml"
    name = "cortex_m4"
    part = "STM32L4R5"


@HARDWARE.register("cortex_m7", "Cortex-M7 (STM32H7A3, 280 MHz): CMSIS-NN int8 kernels, MLPerf Tiny "
                                "calibrated")
class CortexM7(CortexM):
    constants_file = "cortex_m7.toml"
    name = "cortex_m7"
    part = "STM32H7A3"


@HARDWARE.register("cortex_m33", "Cortex-M33 (STM32U575, 160 MHz): CMSIS-NN int8 kernels, MLPerf "
                                 "Tiny calibrated")
class CortexM33(CortexM):
    constants_file = "cortex_m33.toml"
    name = "cortex_m33"
    part = "STM32U575"
