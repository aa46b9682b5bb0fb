"""The `max78000` and `max78002` models: Analog Devices' tiny CNN accelerators, mapped
layer by layer the way their network compiler (ai8x-synthesis's "izer") maps them.

One model, two data files (``data/max78000.toml``, ``data/max78002.toml``). From the
workload alone, before any training, it finds how each layer sits on the chip and
whether it fits:

- **Layers.** Each convolution or linear layer is one hardware layer; a pool right
  before it is fused into it (pooling runs before the conv on this hardware), a pool
  with no layer after it is a pooling-only ("passthrough") layer, and so is an
  element-wise add. A BatchNorm folded into its layer does nothing. Anything else (an
  attention product, a norm that cannot fold) cannot run and is refused with one line.
- **Processors and passes.** 64 processors; a layer with C_in channels runs
  ``passes = ceil(C_in / 64)`` passes on ``ceil(C_in / passes)`` processors, rounded up
  to a multiple of 4 above 64 channels (100 channels: 2 passes on 52). Its outputs
  spread the same way (``out_expand``). Maps are packed from processor 0. The first
  layer reads HWC (4 channels per 32-bit word) when its input fits, else CHW (one byte
  per pixel, one processor of each group of 4, at most 16 channels).
- **Kernel memory**, per processor: words of 72 bits, 768 per processor on MAX78000.
  A layer needs ``floor((kc * ksize * b + (kc mod q) * ksize * (q - 1) + 71) / 72)``
  words in each of its input processors, with b its weight bits, q = 8 / b, ksize the
  kernel's taps (9 for 3x3, 1 for 1x1 and linear) and kc = output processors per pass
  x out_expand x passes (a flattening linear layer: C_out x H x W x passes): one 3x3
  8-bit kernel per word, two at 4 bits, four at 2, eight at 1; 1x1 kernels nine per word
  at 8 bits. Layers are placed as the izer's greedy allocator places them: layers on
  all 64 processors first, then the others in order, each at the lowest column that is
  a multiple of 4 and free in every processor it uses. The limit is per processor, not
  the 432 KiB total.
- **Data memory**: 16 instances (32 KiB each on MAX78000), each shared by 4 processors.
  A layer's input channel takes H x W x passes x 4 bytes of its instance (HWC; 1 byte a
  pixel for a CHW first layer) and its output OH x OW x out_expand x 4 (x 4 again for
  the 32-bit output of the last layer). Input and output sit at opposite ends of the
  instance (ping-pong offsets 0 and instance size - output), so they must fit together.
  A first layer too large for either format would need streaming, which is not mapped.
- **Bias memory**: one 8-bit value per output channel, a layer's in one quadrant (512
  bytes each on MAX78000), placed largest first into the least-used quadrant.
- **Limits**: layers, channels, rows and columns, stride 1, kernel 3x3 or 1x1 (Conv1d:
  1 to 9), padding 0 to 2, pooling 1 to 16 per axis, no depthwise convolution on the
  MAX78000, flatten of at most 16,384 values and 256 pixels.

Every broken limit is a violation of its own (``max78000_kernel_memory``,
``max78000_data_memory``, ...) with a reason in words; the mapping is reported in the
cost: processors, passes, kernel words (peak column and total over processors), data
bytes per instance, per layer and in total.

**Latency** is the izer's cycle estimate (ai8x-synthesis izer/latency.py), reproduced
term for term: about OH x OW x passes x (C_out + pool area + 1) cycles per layer, plus
the padding rows and columns, where C_out counts the output processors' span (100
outputs count as 104); one start-up cycle per network (charged to its first layer).
Streaming (which the izer estimates at 1.5x) is not mapped. Kernel size and weight bits
do not enter; a layer over T time steps, or under a weight scheme of k passes, runs T
(k) times. At the CNN clock (50 MHz on MAX78000) this is the SDK examples' "inference
time", which starts when the CNN starts: loading the input is **not** included. It is
reported apart, as ``input_load_s`` (the CPU copying the input words into data memory;
an estimate) and ``input_energy_j``.

**Energy** = active power x latency: the chip's average power while the CNN runs, from a
published measurement of one network (0.09 mJ in 1.4 ms, Giordano et al.). No published
source splits it into compute, weight and data movement, so all of it is reported as
``compute_energy_j``. This is the model's weakest part: see the calibration table in the
README.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bitnas.accounting import ComputeKind
from bitnas.errors import BitnasError
from bitnas.hardware_models.base import (
    ENERGY_FIELDS,
    Cost,
    HardwareModel,
    LayerWorkload,
    layer_quants,
    refuse_kind,
    rom_bytes,
    weight_storage,
)
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE

#: flatten limits of a linear layer (ai8x-synthesis README, YAML "flatten")
FLATTEN_VALUES, FLATTEN_PIXELS = 16384, 256
#: the limits each model reports as a violation of its own (prefixed by the model's name)
LIMITS = ("layers", "channels", "dims", "operators", "kernel_memory", "data_memory",
          "bias_memory", "first_layer", "flatten")


@dataclass
class HwLayer:
    """One hardware layer as the model maps it."""

    name: str
    op: str  # conv2d, conv1d, linear, passthrough
    c_in: int
    in_hw: tuple[int, int]  # before pooling
    pooled_hw: tuple[int, int]
    pool: tuple[int, int]  # window (1, 1) for none
    kernel: tuple[int, int]
    pad: tuple[int, int]
    c_out: int
    out_hw: tuple[int, int]
    params: int = 0
    bias: int = 0
    bits: int = 8
    macs: int = 0
    operands: int = 1
    flatten: bool = False
    stride: tuple[int, ...] = (1,)
    pool_stride: tuple[int, ...] = (1,)
    #: the pooling module fused into the layer ("" for none): an exporter reads its kind
    pool_module: str = ""
    channel_groups: int = 1
    #: how often the layer runs in one inference: T times over T time steps, k times for a
    #: weight scheme of k passes
    steps: int = 1
    # filled by the mapping
    chw: bool = False
    passes: int = 1
    processors: list[int] = field(default_factory=list)
    out_expand: int = 1
    out_processors: int = 0
    kernel_words: int = 0
    kernel_start: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    in_offset: int = 0
    out_offset: int = 0
    output_width: int = 8
    cycles: int = 0

    @property
    def out_span(self) -> int:
        """Output channels as the processors hold them: the output map's width times its passes
        (100 outputs count as 2 x 52 = 104; above 64 channels the map is a multiple of 4)."""
        return self.out_processors * self.out_expand


def _spread(channels: int) -> tuple[int, int]:
    """(passes, processors per pass) for ``channels``: the multiple-of-4 rule above 64."""
    passes = max(1, math.ceil(channels / 64))
    per_pass = math.ceil(channels / passes)
    if channels > 64:
        per_pass = min(64, 4 * math.ceil(per_pass / 4))
    return passes, per_pass


def kernel_words(layer: HwLayer) -> int:
    """72-bit kernel words the layer needs in each of its input processors (kernels.py)."""
    if layer.op == "passthrough":
        return 0
    bits = layer.bits
    q = 8 // bits
    if layer.op == "linear":
        ksize = 1
        kc = layer.c_out * layer.pooled_hw[0] * layer.pooled_hw[1] * layer.passes
    elif layer.channel_groups > 1:  # depthwise (MAX78002): one kernel a processor a pass
        ksize = layer.kernel[0] * layer.kernel[1]
        kc = layer.passes
    else:
        ksize = layer.kernel[0] * layer.kernel[1]
        kc = layer.out_span * layer.passes
    return (kc * ksize * bits + (kc % q) * ksize * (q - 1) + 71) // 72


def layer_cycles(layer: HwLayer) -> int:
    """The izer's cycle estimate for one layer (start-up cycle not included)."""
    m, e = layer.passes, layer.operands
    pr, pc = layer.pool
    ph, pw = layer.pooled_hw
    in_pad = 2 * m * e
    in_dat = m * e * (pr * pc + 1)
    if layer.op == "passthrough":
        slots = math.ceil(min(16, len(layer.processors)) / 4)
        return ph * pw * (in_dat + m * slots)
    kr, kc = layer.kernel
    rp, cp = layer.pad
    ow = layer.out_hw[1]
    if layer.op == "linear":
        c_out = layer.c_out
        ow = pw
    elif layer.channel_groups > 1:  # depthwise: each processor writes its own channel
        c_out = 1
    else:
        c_out = layer.out_span
    first_row_pad = 2 * cp * (in_pad + 1) + pw * (in_pad + 1)
    row_no_conv = 2 * cp * (in_pad + 1) + pw * (in_dat + 1)
    row_conv = cp * (in_pad + 1) + (kc - 1 - cp) * (in_dat + 1) + (ow - cp) * in_dat + in_pad * cp
    bottom_pad_row = cp * (in_pad + 1) + (kc - 1 - cp) * (in_pad + 1) + (ow - cp) * in_pad + in_pad * cp
    out_dat = m * ow * c_out + (c_out if c_out == 1 and m == 1 else 0)
    flat = 1 if layer.flatten and m * ph * pw > 16 else 0
    return (flat + rp * first_row_pad + (kr - 1 - rp) * row_no_conv
            + (row_conv + out_dat) * (ph - (kr - 1 - rp)) + rp * (bottom_pad_row + out_dat))


def _hw(shape: Sequence[int]) -> tuple[int, int]:
    """(rows, columns) of a (C, H, W) or (C, L) shape; a 1-D signal is L x 1."""
    if len(shape) >= 3:
        return int(shape[1]), int(shape[2])
    return (int(shape[1]), 1) if len(shape) == 2 else (1, 1)


def _pair(v: Sequence[int], fill: int) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if len(v) >= 2 else (int(v[0]) if v else fill, fill)


def to_layers(model: MAX7800x, workload: Sequence[LayerWorkload], plan: QuantPlan) -> list[HwLayer]:
    """The hardware layers of a workload: pools fused into the layer after them, folded
    BatchNorms dropped; ops the accelerator cannot run are refused (one line)."""
    lqs = layer_quants(workload, plan)
    layers: list[HwLayer] = []
    pending: LayerWorkload | None = None
    last_shape: tuple[int, ...] = ()

    def passthrough(pool: LayerWorkload | None, op: LayerWorkload, operands: int = 1) -> HwLayer:
        src = pool or op
        c = int(src.in_shape[0]) if src.in_shape else 1
        hw = _hw(src.in_shape) if src.in_shape else (1, 1)
        pooled = _hw(pool.out_shape) if pool is not None else hw
        return HwLayer(name=op.name, op="passthrough", c_in=c, in_hw=hw, pooled_hw=pooled,
                       pool=_pair(pool.kernel, 1) if pool is not None else (1, 1), kernel=(1, 1),
                       pad=(0, 0), c_out=c, out_hw=pooled, operands=operands,
                       pool_stride=pool.stride if pool is not None else (1,))

    for w, lq in zip(workload, lqs, strict=True):
        if w.folded:
            continue
        if (w.weighted or w.kind in ("pool", "eltwise")) and not (w.in_shape and w.out_shape):
            raise BitnasError(f"hardware {model.name} maps layers by their shapes, and op {w.name} has "
                              "none: build the workload with extract_workload")
        if w.kind == "pool":
            if pending is not None:
                layers.append(passthrough(pending, pending))
            pending = w
            last_shape = w.out_shape
            continue
        if w.kind == "eltwise":
            layers.append(passthrough(pending, w, operands=2))
            pending = None
            continue
        if not w.weighted or w.kind == "param":
            raise refuse_kind(model, w, ("conv1d", "conv2d", "linear", "pool", "eltwise", "folded BatchNorm"),
                              ": the accelerator runs convolutions, linear layers, pooling and "
                              "element-wise adds only")
        depthwise = w.channel_groups == w.in_shape[0] == w.out_shape[0]
        if w.channel_groups != 1 and not (model.depthwise and depthwise):
            raise BitnasError(f"hardware {model.name} cannot run grouped convolution {w.name} "
                              f"({w.channel_groups} groups)"
                              + ("" if model.depthwise else "; depthwise convolution needs the max78002"))
        compute = model.compute_of(lq)
        if lq.a_bits not in model.supported_act_bits:
            raise BitnasError(f"hardware {model.name} runs 8-bit activations; group {w.group} asks "
                              f"for {lq.a_bits}: set space.a_bits = [8]")
        pool = pending
        pending = None
        pooled = _hw(w.in_shape) if w.kind != "linear" else (1, 1)
        c_in = int(w.in_shape[0])
        flatten = False
        if w.kind == "linear":
            src = pool.out_shape if pool is not None else last_shape
            if len(src) >= 2 and math.prod(src) == w.in_shape[0]:
                c_in, pooled, flatten = int(src[0]), _hw(src), True
        in_hw = _hw(pool.in_shape) if pool is not None else pooled
        kernel = (1, 1) if w.kind == "linear" else _pair(w.kernel, 1)
        pad = (0, 0) if w.kind == "linear" else _pair(w.padding, 0)
        out_hw = pooled if w.kind == "linear" else _hw(w.out_shape)
        layers.append(HwLayer(
            name=w.name, op=w.kind, c_in=c_in, in_hw=in_hw, pooled_hw=pooled,
            pool=_pair(pool.kernel, 1) if pool is not None else (1, 1), kernel=kernel, pad=pad,
            c_out=int(w.weight_shape[0]), out_hw=out_hw, params=w.params, bias=w.bias_params,
            bits=lq.w_bits, macs=w.macs, flatten=flatten and pooled != (1, 1), stride=w.stride or (1,),
            pool_stride=pool.stride if pool is not None else (1,), channel_groups=w.channel_groups,
            pool_module=pool.module if pool is not None else "",
            steps=w.timesteps * compute.passes))
        last_shape = w.out_shape
    if pending is not None:
        layers.append(passthrough(pending, pending))
    if layers and layers[-1].op != "passthrough":
        layers[-1].output_width = 32  # the logits leave at full accumulator width
    return layers


@dataclass
class ChipMap:
    """Where a network sits on the chip, and every limit it breaks."""

    layers: list[HwLayer]
    #: limit -> (relative excess > 0, reason)
    broken: dict[str, tuple[float, str]] = field(default_factory=dict)
    kernel_peak: int = 0
    kernel_total: int = 0
    bias_bytes: int = 0

    def breaks(self, limit: str, excess: float, reason: str) -> None:
        """Record a broken limit (its largest excess; the first reason)."""
        old = self.broken.get(limit)
        if old is None or excess > old[0]:
            self.broken[limit] = (max(excess, 1e-9), old[1] if old else reason)


def _kib(n: float) -> str:
    return f"{n / 1024:.3g} KiB"


class MAX7800x(HardwareModel):
    """Shared by the max78000 and max78002 registrations (one model, two data files)."""

    supported_weight_bits = frozenset({1, 2, 4, 8})
    supported_act_bits = frozenset({8})
    compute_kinds = frozenset({ComputeKind.MULTIPLY})
    infeasible_kinds = frozenset({ComputeKind.SHIFT, ComputeKind.LOOKUP})
    extra_cost_fields = ("processors", "passes_max", "layers", "kernel_words_peak",
                         "kernel_words_total", "kernel_bytes", "bias_bytes", "data_bytes_peak",
                         "cycles", "macs", "input_load_s", "input_energy_j")
    #: whether the part runs depthwise convolutions (MAX78002 only)
    depthwise = False

    def scheme_issue(self, layer: LayerWorkload, lq: LayerQuant) -> str:
        """A shift or lookup per weight, several passes, or scales and tables: the chip
        multiplies 1/2/4/8-bit weights directly, with one power-of-two shift a layer."""
        issue = super().scheme_issue(layer, lq)
        compute = self.compute_of(lq)
        st = weight_storage(layer, lq)
        extra = st.scale_bits + st.table_bits + sum(st.shared.values())
        if not issue and compute.passes > 1:
            issue = f"quantizer {lq.quantizer} sums {compute.passes} passes a weight"
        if not issue and extra:
            issue = f"quantizer {lq.quantizer} needs {extra} bits of scales or tables"
        return (f"{issue}; the {self.name} multiplies {lq.w_bits}-bit weights with one power-of-two "
                "shift a layer: use quantizer ai8x") if issue else ""

    def map(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> ChipMap:
        """The mapping of the module docstring: processors, memories and cycles per layer."""
        c = self.c
        mp = ChipMap(to_layers(self, workload, plan))
        n = len(mp.layers)
        if n > c["max_layers"]:
            mp.breaks("layers", n / c["max_layers"] - 1,
                      f"{n} layers; the {self.name} runs at most {int(c['max_layers'])}")
        self._check_shapes(mp)
        self._place_processors(mp)
        self._place_kernels(mp)
        self._place_bias(mp)
        for layer in mp.layers:
            layer.cycles = layer.steps * layer_cycles(layer)
        if mp.layers:
            mp.layers[0].cycles += 1  # the network's start-up cycle, charged to its first layer
        return mp

    def _check_shapes(self, mp: ChipMap) -> None:
        c = self.c
        for layer in mp.layers:
            where = f"layer {layer.name}"
            for ch in (layer.c_in, layer.c_out):
                if ch > c["max_channels"]:
                    mp.breaks("channels", ch / c["max_channels"] - 1,
                              f"{where}: {ch} channels; at most {int(c['max_channels'])}")
            for d in (*layer.in_hw, *layer.out_hw):
                if d > c["max_dim"]:
                    mp.breaks("dims", d / c["max_dim"] - 1,
                              f"{where}: {d} rows or columns; at most {int(c['max_dim'])}")
            bad = []
            if any(s != 1 for s in layer.stride):
                bad.append(f"stride {layer.stride} (only 1)")
            if layer.op == "conv2d" and layer.kernel not in ((3, 3), (1, 1)):
                bad.append(f"kernel {layer.kernel[0]}x{layer.kernel[1]} (3x3 or 1x1)")
            if layer.op == "conv1d" and not 1 <= layer.kernel[0] <= 9:
                bad.append(f"Conv1d kernel {layer.kernel[0]} (1 to 9)")
            if any(not 0 <= p <= 2 for p in layer.pad):
                bad.append(f"padding {layer.pad} (0 to 2)")
            if any(p > c["max_pool"] for p in layer.pool):
                bad.append(f"pooling {layer.pool[0]}x{layer.pool[1]} (at most {int(c['max_pool'])})")
            if bad:
                mp.breaks("operators", 1.0, f"{where}: {', '.join(bad)} cannot run on the {self.name}")
            if layer.flatten:
                values = layer.c_in * layer.pooled_hw[0] * layer.pooled_hw[1]
                pixels = layer.pooled_hw[0] * layer.pooled_hw[1]
                if values > FLATTEN_VALUES or pixels > FLATTEN_PIXELS:
                    mp.breaks("flatten", max(values / FLATTEN_VALUES, pixels / FLATTEN_PIXELS) - 1,
                              f"{where}: flattens {layer.c_in}x{layer.pooled_hw[0]}x{layer.pooled_hw[1]}; "
                              f"at most {FLATTEN_VALUES} values and {FLATTEN_PIXELS} pixels")

    def _place_processors(self, mp: ChipMap) -> None:
        """Processors and passes per layer, the first layer's format, data memory."""
        c = self.c
        instance = int(c["data_instance_bytes"])
        at_bottom = True  # where this layer's input sits: offset 0, or the top of the instance
        prev_out = 0
        for i, layer in enumerate(mp.layers):
            layer.passes, per_pass = _spread(layer.c_in)
            layer.out_expand, layer.out_processors = _spread(layer.c_out)
            pixels = layer.in_hw[0] * layer.in_hw[1]
            hwc = pixels * layer.passes * layer.operands * 4
            if i == 0:
                if hwc <= instance:
                    layer.in_bytes = hwc
                elif layer.c_in <= 16 and pixels * layer.operands <= instance:
                    layer.chw, layer.in_bytes = True, pixels * layer.operands
                else:
                    hwc_px, chw_px = instance // 4, instance
                    least = min(hwc, pixels * layer.operands) if layer.c_in <= 16 else hwc
                    mp.breaks("first_layer", least / instance - 1,
                              f"layer {layer.name}: a {layer.c_in}x{layer.in_hw[0]}x{layer.in_hw[1]} input "
                              f"has {pixels} pixels a channel; one data-memory instance holds {hwc_px} (HWC)"
                              + (f" or {chw_px} (CHW)" if layer.c_in <= 16 else "")
                              + ": it needs streaming, which bitnas does not map; shrink the input")
                    layer.in_bytes = 0  # broken above; not counted again as data memory
            else:
                layer.in_bytes = hwc
            layer.processors = ([4 * k for k in range(layer.c_in)] if layer.chw
                                else list(range(per_pass)))
            out_px = layer.out_hw[0] * layer.out_hw[1]
            if layer.op == "linear":
                out_px = 1
            layer.out_bytes = out_px * layer.out_expand * 4 * (layer.output_width // 8)
            layer.in_offset = 0 if at_bottom else instance - prev_out
            layer.out_offset = instance - layer.out_bytes if at_bottom else 0
            layer.out_offset -= layer.out_offset % 4
            at_bottom = not at_bottom
            prev_out = layer.out_bytes
            used = layer.in_bytes + layer.out_bytes
            if used > instance:
                fmt = "CHW" if layer.chw else "HWC"
                mp.breaks("data_memory", used / instance - 1,
                          f"layer {layer.name}: {_kib(layer.in_bytes)} of input per channel "
                          f"({layer.in_hw[0]}x{layer.in_hw[1]}, {layer.passes} pass"
                          f"{'es' if layer.passes > 1 else ''}, {fmt}) and {_kib(layer.out_bytes)} of "
                          f"output; one data-memory instance holds {_kib(instance)}")

    def _place_kernels(self, mp: ChipMap) -> None:
        """The izer's greedy kernel allocator: full-width layers first, then in order; each at
        the lowest multiple-of-4 column free in all its processors. Processor sets are
        bitmasks, placed blocks (start, end, mask): a layer meets at most 32 of them."""
        c = self.c
        n_proc = int(c["processors"])
        depth = [int(c["kernel_words_large"] if p % 16 == 0 else c["kernel_words"]) for p in range(n_proc)]
        placed: list[tuple[int, int, int]] = []
        for layer in mp.layers:
            layer.kernel_words = kernel_words(layer)
        order = sorted(range(len(mp.layers)),
                       key=lambda i: (len(mp.layers[i].processors) != n_proc, i))
        for i in order:
            layer = mp.layers[i]
            size = layer.kernel_words
            if not size:
                continue
            mask = sum(1 << p for p in layer.processors)
            start = 0
            while True:
                clash = [e for s0, e, m in placed if m & mask and s0 < start + size and start < e]
                if not clash:
                    break
                start = -(-max(clash) // 4) * 4  # past the blocks in the way, at a multiple of 4
            placed.append((start, start + size, mask))
            layer.kernel_start = start
            end = start + size
            over = {p: (end - depth[p]) / depth[p] for p in layer.processors if end > depth[p]}
            if over:
                worst = max(over, key=over.get)
                mp.breaks("kernel_memory", over[worst],
                          f"layer {layer.name}: {size} kernel words a processor "
                          f"({layer.bits}-bit {layer.kernel[0]}x{layer.kernel[1]}, {layer.passes} pass"
                          f"{'es' if layer.passes > 1 else ''}) from column {start}; processor {worst} "
                          f"holds {depth[worst]}")
        mp.kernel_peak = max((e for _, e, _ in placed), default=0)
        mp.kernel_total = sum((e - s0) * bin(m).count("1") for s0, e, m in placed)

    def _place_bias(self, mp: ChipMap) -> None:
        """8-bit biases, a layer's in one quadrant; flattening layers first, then largest first,
        each into the least-used quadrant that holds it."""
        cap = int(self.c["bias_quadrant_bytes"])
        quadrants = [0, 0, 0, 0]
        biased = [ly for ly in mp.layers if ly.bias]
        for layer in sorted(biased, key=lambda ly: (not ly.flatten, -ly.c_out)):
            fits = [q for q in range(4) if quadrants[q] + layer.c_out <= cap]
            if not fits:
                mp.breaks("bias_memory", (min(quadrants) + layer.c_out) / cap - 1,
                          f"layer {layer.name}: {layer.c_out} biases do not fit in one quadrant's "
                          f"{cap} bytes of bias memory ({cap - min(quadrants)} free)")
                continue
            q = min(fits, key=lambda k: quadrants[k])
            quadrants[q] += layer.c_out
        mp.bias_bytes = sum(ly.c_out for ly in biased)

    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        c = self.c
        mp = self.map(workload, plan)
        clock = c["cnn_clock_hz"]
        power = c["active_power_w"]
        per_layer: dict[str, dict[str, float]] = {}
        for layer in mp.layers:
            latency = layer.cycles / clock
            energy = power * latency
            per_layer[layer.name] = {
                "energy_j": energy, "latency_s": latency, "compute_energy_j": energy,
                "weight_energy_j": 0.0, "act_energy_j": 0.0, "state_energy_j": 0.0,
                "cycles": float(layer.cycles), "macs": float(layer.steps * layer.macs),
                "weight_bytes": float(layer.params * layer.bits // 8 + layer.bias),
                "kernel_bytes": float(layer.params * layer.bits // 8), "bias_bytes": float(layer.bias),
                "processors": float(len(layer.processors)), "passes": float(layer.passes),
                "out_processors": float(layer.out_processors), "out_expand": float(layer.out_expand),
                "kernel_words": float(layer.kernel_words), "kernel_start": float(layer.kernel_start),
                "data_in_bytes": float(layer.in_bytes), "data_out_bytes": float(layer.out_bytes),
                "in_offset": float(layer.in_offset), "out_offset": float(layer.out_offset),
                "chw": float(layer.chw), "w_bits": float(layer.bits),
            }
        cycles = sum(layer.cycles for layer in mp.layers)  # the start-up cycle included
        first = mp.layers[0] if mp.layers else None
        words = 0
        if first is not None:
            px = first.in_hw[0] * first.in_hw[1]
            words = math.ceil(px / 4) * first.c_in if first.chw else px * math.ceil(first.c_in / 4)
        input_s = words * c["input_cycles_per_word"] / c["cpu_clock_hz"]
        kernel_bytes = sum(layer.params * layer.bits // 8 for layer in mp.layers)
        act = [layer.c_in * layer.in_hw[0] * layer.in_hw[1]
               + layer.c_out * (1 if layer.op == "linear" else layer.out_hw[0] * layer.out_hw[1])
               * layer.output_width // 8 for layer in mp.layers]
        violations, reasons = self.scheme_violations(workload, plan)
        violations.update({f"{self.name}_{k}": 0.0 for k in LIMITS})
        for limit, (excess, reason) in mp.broken.items():
            violations[f"{self.name}_{limit}"] = excess
            reasons[f"{self.name}_{limit}"] = reason
        latency = (cycles / clock)
        fields = {f: float(sum(p[f] for p in per_layer.values())) for f in ENERGY_FIELDS}
        fields.update({
            "processors": float(max((max(len(ly.processors), ly.out_processors) for ly in mp.layers),
                                    default=0)),
            "passes_max": float(max((ly.passes for ly in mp.layers), default=0)),
            "layers": float(len(mp.layers)),
            "kernel_words_peak": float(mp.kernel_peak),
            "kernel_words_total": float(mp.kernel_total),
            "kernel_bytes": float(kernel_bytes),
            "bias_bytes": float(mp.bias_bytes),
            "data_bytes_peak": float(max((ly.in_bytes + ly.out_bytes for ly in mp.layers), default=0)),
            "cycles": float(cycles),
            "macs": float(sum(ly.steps * ly.macs for ly in mp.layers)),
            "rom_bytes": float(rom_bytes(workload, layer_quants(workload, plan))),
            "input_load_s": input_s,
            "input_energy_j": input_s * c["cpu_active_power_w"],
        })
        return Cost(energy_j=power * latency, latency_s=latency,
                    weight_bytes=kernel_bytes + mp.bias_bytes, peak_act_bytes=max(act, default=0),
                    per_layer=per_layer, violations=violations, fields=fields, reasons=reasons)


@HARDWARE.register("max78000", "Analog Devices MAX78000: izer mapping, limits and cycle estimate")
class MAX78000(MAX7800x):
    constants_file = "max78000.toml"
    name = "max78000"


@HARDWARE.register("max78002", "Analog Devices MAX78002: the MAX78000 model with its larger memories")
class MAX78002(MAX7800x):
    constants_file = "max78002.toml"
    name = "max78002"
    depthwise = True
