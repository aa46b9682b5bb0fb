"""Workload extraction: one forward pass with hooks gives each counted op's work and sizes.

What an op costs is told by a *counter* registered for its module type (:func:`counter`):
from the module, its inputs and its output it returns the op's work per sample and per
time step (MACs or adds, weights, input and output elements) and its kind (see
``OP_KINDS``). Convolutions and linear layers are two registrations among others: pools,
norms, SpikingJelly's attention modules (whose activation-times-activation products
happen inside ``forward`` and are counted from the shapes), and the residual adds of the
spiking transformers' blocks. :func:`extract_workload` records every module that has a
counter, in execution order.

Execution order is the order in which modules *finish* their forward: a container's own
ops (an attention's products, a block's residual adds) count after its children. An op
of a module in a layer group keeps that group; any other op goes to the group of the
closest preceding grouped layer (the first ops, before any grouped layer, to the first
group), whose LayerQuant then prices it.

Element-wise functions that cost work of their own (SiLU, softplus, sigmoid, tanh, GELU as
modules; softmax inside an attention; a selective scan's decay) are "act" ops, one function
evaluation per element. Left out: ReLU (a clamp fused into the layer before it on every
target; the spiking neurons are charged by their state, see ``LayerWorkload.state_elems``),
reshapes, and the ops of modules without a counter,
such as bitnas's own SpikingClassifier wrapper (it integrates event bins into T frames and
averages the outputs over T: input encoding and read-out, outside the network).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.hardware_models.base import LayerWorkload
from bitnas.plan import split_member

#: where SpikingJelly 2.0 defines the modules counted below (by name: no import needed)
_SJ_ATTENTION = "spikingjelly.activation_based.layer.attention"
_SJ_SPIKFORMER = "spikingjelly.activation_based.model.spikformer"
_SJ_SDT = "spikingjelly.activation_based.model.spike_driven_transformer"


@dataclass(frozen=True)
class Op:
    """One op's work per sample and per time step, as a counter reports it."""

    kind: str  # one of OP_KINDS
    macs: int  # products, or adds / compares (pool, eltwise), or multiply-adds (norm)
    in_elems: int
    out_elems: int
    timesteps: int = 1
    params: int = 0
    weight_shape: tuple[int, ...] = ()
    bias_params: int = 0  # kept at 32 bits
    #: a BatchNorm: it folds into the preceding layer if it reads that layer's output
    foldable: bool = False
    #: a foldable op's shift: folded into a layer that has no bias, it becomes that layer's
    #: bias (this many values at 32 bits); into one that has, it merges with it
    fold_bias: int = 0
    #: tells several ops of one module apart: the record is named "module:label"
    label: str = ""
    #: recurrent state this op holds per sample (a selective scan's h), read and written at
    #: every one of its ``timesteps``
    state_elems: int = 0
    #: geometry (see LayerWorkload): shapes of one sample and step; window ops' kernel,
    #: stride and padding per spatial axis, and channel groups
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    channel_groups: int = 1
    #: time steps whose inputs and outputs are live at once (see LayerWorkload.live_steps)
    live_steps: int = 1


#: (module, inputs, output) -> the ops its forward ran
Counter = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], list[Op]]
_COUNTERS: dict[type | str, Counter] = {}


def counter(*types: type[nn.Module] | str) -> Callable[[Counter], Counter]:
    """Register the decorated function as the counter of modules of ``types`` (and their
    subclasses). A type may be named "package.module.Class", so that registering it does
    not import an optional library (SpikingJelly)."""
    def register(fn: Counter) -> Counter:
        for t in types:
            _COUNTERS[t] = fn
        return fn

    return register


def counter_for(module: nn.Module) -> Counter | None:
    """The counter registered for the module's type or its nearest registered base."""
    for cls in type(module).__mro__:
        fn = _COUNTERS.get(cls) or _COUNTERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if fn is not None:
            return fn
    return None


def _steps(t: torch.Tensor) -> int:
    """Time steps of a [T, 1, ...] (or [T*1, ...]) tensor; 1 for a [1, features] one."""
    return t.shape[0] if t.dim() > 1 else 1


def _window(kernel: int | tuple[int, ...], dims: int) -> int:
    return math.prod(kernel) if isinstance(kernel, tuple) else kernel ** dims


def _per_axis(value: int | str | tuple[int, ...], dims: int,
              kernel: tuple[int, ...] = ()) -> tuple[int, ...]:
    """A window setting as one int per spatial axis; "same" padding as (k - 1) // 2 of the
    ``kernel`` (stride 1: what keeps the size), "valid" as 0."""
    if isinstance(value, str):
        return tuple((k - 1) // 2 for k in kernel) if value == "same" else (0,) * dims
    return tuple(value) if isinstance(value, tuple | list) else (int(value),) * dims


# --- layers with weights -------------------------------------------------------------------

@counter(nn.Conv1d, nn.Conv2d)
def _conv(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    out_elems = out[0].numel()  # batch 1 (and one step of a [T*1, ...] sequence)
    fan_in = (m.in_channels // m.groups) * math.prod(m.kernel_size)
    dims = len(m.kernel_size)
    return [Op("conv1d" if isinstance(m, nn.Conv1d) else "conv2d", macs=out_elems * fan_in,
               in_elems=inputs[0][0].numel(), out_elems=out_elems, timesteps=_steps(out),
               params=m.weight.numel(), weight_shape=tuple(m.weight.shape),
               bias_params=0 if m.bias is None else m.bias.numel(),
               kernel=tuple(m.kernel_size), stride=_per_axis(m.stride, dims),
               padding=_per_axis(m.padding, dims, tuple(m.kernel_size)), channel_groups=m.groups,
               **_conv_geometry(inputs, out, dims))]


def _conv_geometry(inputs: tuple[torch.Tensor, ...], out: torch.Tensor, dims: int) -> dict:
    """Shapes of one sample: the last 1 + dims axes are (C, spatial...)."""
    return {"in_shape": tuple(inputs[0].shape[-1 - dims:]), "out_shape": tuple(out.shape[-1 - dims:])}


@counter(nn.Linear)
def _linear(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    out_elems = out[0].numel()
    return [Op("linear", macs=out_elems * m.in_features, in_elems=inputs[0][0].numel(),
               out_elems=out_elems, timesteps=_steps(out), params=m.weight.numel(),
               weight_shape=tuple(m.weight.shape),
               bias_params=0 if m.bias is None else m.bias.numel(),
               in_shape=(m.in_features,), out_shape=(m.out_features,))]


# --- pools and norms -----------------------------------------------------------------------

@counter(nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
def _pool(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """window - 1 compares (max) or adds (average) per output."""
    dims = 1 if isinstance(m, nn.MaxPool1d | nn.AvgPool1d) else 2
    out_elems = out[0].numel()
    return [Op("pool", macs=out_elems * (_window(m.kernel_size, dims) - 1),
               in_elems=inputs[0][0].numel(), out_elems=out_elems, timesteps=_steps(out),
               kernel=_per_axis(m.kernel_size, dims), stride=_per_axis(m.stride, dims),
               padding=_per_axis(m.padding, dims),
               **_conv_geometry(inputs, out, dims))]


@counter(nn.BatchNorm1d, nn.BatchNorm2d)
def _batch_norm(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """A multiply-add per element. At inference a BatchNorm that reads a convolution's or
    linear layer's output folds into that layer (``LayerWorkload.folded``): its scale into
    the weights, its shift into the bias. Every model then charges it no work; what it
    leaves is a bias of one 32-bit value per channel where the layer had none (the
    layer's bias absorbs it otherwise). One that cannot fold stores a scale and a shift
    per channel (32 bits each) and is priced as its multiply-adds."""
    out_elems = out[0].numel()
    return [Op("norm", macs=out_elems, in_elems=inputs[0][0].numel(), out_elems=out_elems,
               timesteps=_steps(out), bias_params=2 * m.num_features, foldable=True,
               fold_bias=m.num_features)]


@counter(nn.LayerNorm)
def _layer_norm(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """A multiply-add per element (the normalisation's scale and shift); the mean and
    variance (about two more adds and a multiply per element) are left out. Its affine
    weights are stored at 32 bits."""
    out_elems = out[0].numel()
    affine = 0 if m.weight is None else m.weight.numel() + (0 if m.bias is None else m.bias.numel())
    return [Op("norm", macs=out_elems, in_elems=inputs[0][0].numel(), out_elems=out_elems,
               timesteps=_steps(out), bias_params=affine)]


@counter(nn.SiLU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.GELU)
def _activation(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """One function evaluation per element (an exp and a divide or a table lookup, by target)."""
    out_elems = out[0].numel()
    return [Op("act", macs=out_elems, in_elems=inputs[0][0].numel(), out_elems=out_elems,
               timesteps=_steps(out))]


# --- SpikingJelly 2.0's spiking transformers ------------------------------------------------

@counter(f"{_SJ_ATTENTION}.SpikingSelfAttention")
def _spiking_self_attention(m: nn.Module, inputs: tuple[torch.Tensor, ...],
                            out: torch.Tensor) -> list[Op]:
    """Spikformer's attention on [T, 1, C, L] tokens: per head (d = C / heads), v·kᵀ (d x d,
    L products each) then (v·kᵀ)·q (d x L, d products each); both have a spike operand.
    Its convolutions, norms and neurons are counted on their own."""
    steps, channels, tokens = inputs[0].shape[0], inputs[0].shape[2], inputs[0].shape[3]
    head_dim = channels // m.num_heads
    return [Op("matmul", macs=2 * m.num_heads * head_dim * head_dim * tokens,
               in_elems=3 * channels * tokens, out_elems=channels * tokens, timesteps=steps)]


@counter(f"{_SJ_ATTENTION}.SpikeDrivenSelfAttention")
def _spike_driven_attention(m: nn.Module, inputs: tuple[torch.Tensor, ...],
                            out: torch.Tensor) -> list[Op]:
    """The Spike-driven Transformer's linear attention on [T, 1, C, H, W]: k ⊙ v summed over
    the L tokens (C * L products) and q ⊙ that sum (C * L), then the residual add."""
    steps, per_step = inputs[0].shape[0], inputs[0][0].numel()  # C * L
    return [Op("matmul", macs=2 * per_step, in_elems=3 * per_step, out_elems=per_step,
               timesteps=steps),
            Op("eltwise", macs=per_step, in_elems=2 * per_step, out_elems=per_step,
               timesteps=steps, label="add")]


def _residual_adds(adds: int) -> Counter:
    """A block whose own forward adds ``adds`` residuals the size of its output."""
    def count(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
        per_step = out[0].numel()
        return [Op("eltwise", macs=adds * per_step, in_elems=2 * adds * per_step,
                   out_elems=per_step, timesteps=_steps(out))]

    return count


counter(f"{_SJ_SPIKFORMER}.SpikformerPatchStem", f"{_SJ_SDT}._PatchEmbed")(_residual_adds(1))
counter(f"{_SJ_SPIKFORMER}.SpikformerBlock")(_residual_adds(2))  # attention's, then the MLP's


@counter(f"{_SJ_SDT}._MLP")
def _sdt_mlp(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """The residual add, and a second one after fc1 when hidden and model widths match."""
    return _residual_adds(2 if m.residual else 1)(m, inputs, out)


def _token_mean(steps: int, channels: int, tokens: int) -> Op:
    """The mean over tokens before the head: L - 1 adds per channel and step."""
    return Op("pool", macs=channels * (tokens - 1), in_elems=channels * tokens,
              out_elems=channels, timesteps=steps)


@counter(f"{_SJ_SPIKFORMER}.Spikformer")
def _spikformer(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """Spikformer's own forward: the mean over tokens that feeds the head."""
    steps = inputs[0].shape[0] if inputs[0].dim() == 5 else m.T
    return [_token_mean(steps, m.embed_dims, m.patch_embed.num_patches)]


@counter(f"{_SJ_SDT}.SpikeDrivenTransformer")
def _spike_driven_transformer(m: nn.Module, inputs: tuple[torch.Tensor, ...],
                              out: torch.Tensor) -> list[Op]:
    """The Spike-driven Transformer's own forward: the mean over tokens, and the mean over
    the T steps (once per inference) that feeds its head."""
    x = inputs[0]
    steps = x.shape[0] if x.dim() == 5 else m.T
    height, width = x.shape[-2:]
    for pool in m.patch_embed.modules():  # the stem's pools set the token grid
        if isinstance(pool, nn.MaxPool2d):
            height, width = _pooled(height, pool), _pooled(width, pool)
    channels = m.head.in_features
    return [_token_mean(steps, channels, height * width),
            Op("pool", macs=(steps - 1) * channels, in_elems=steps * channels,
               out_elems=channels, label="time_mean")]


# --- bitnas's tiny_transformer (named: hardware_models never imports spaces) --------------

_TT = "bitnas.spaces.transformer"


@counter(f"{_TT}.SelfAttention")
def _self_attention(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """Per head (d = C / heads, L tokens): q·kᵀ (the L x L scores, d products each), their
    softmax (an exp and a scale per score: "act"), and the softmax times v (L x d, L
    products each). The scores of every head are live between the two products. Its
    projections are counted on their own."""
    tokens, channels = inputs[0].shape[-2], inputs[0].shape[-1]
    scores = m.heads * tokens * tokens
    return [Op("matmul", macs=tokens * tokens * channels, in_elems=2 * tokens * channels,
               out_elems=scores, label="qk"),
            Op("act", macs=scores, in_elems=scores, out_elems=scores, label="softmax"),
            Op("matmul", macs=tokens * tokens * channels, in_elems=scores + tokens * channels,
               out_elems=tokens * channels, label="av")]


counter(f"{_TT}.EncoderBlock")(_residual_adds(2))  # attention's, then the MLP's


@counter("bitnas.spaces.recall.LastQueryAttention")
def _last_query_attention(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """The last position's query against all T keys (H x T scores, d_h products each), their
    softmax, and the scores times the T values. Its projections are counted on their own."""
    tokens = inputs[0].shape[-2]
    inner = m.heads * m.head_dim
    scores = m.heads * tokens
    return [Op("matmul", macs=tokens * inner, in_elems=inner + tokens * inner, out_elems=scores, label="qk"),
            Op("act", macs=scores, in_elems=scores, out_elems=scores, label="softmax"),
            Op("matmul", macs=tokens * inner, in_elems=scores + tokens * inner, out_elems=inner, label="av")]


@counter(f"{_TT}.PositionTable")
def _position_table(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """An add per element; the table is stored (32 bits) and read with the weights."""
    per_sample = out[0].numel()
    return [Op("eltwise", macs=per_sample, in_elems=2 * per_sample, out_elems=per_sample,
               bias_params=m.table.numel())]


@counter(f"{_TT}.TokenMean")
def _tokens_mean(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    tokens, channels = inputs[0].shape[-2], inputs[0].shape[-1]
    return [_token_mean(1, channels, tokens)]


# --- bitnas's mamba space --------------------------------------------------------------------

_MB = "bitnas.spaces.mamba"


@counter(f"{_MB}.ScanParam")
def _scan_param(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """A selective scan's A (log) or D: stored at its group's bits, read by the scan."""
    return [Op("param", macs=0, in_elems=0, out_elems=0, params=m.weight.numel(),
               weight_shape=tuple(m.weight.shape))]


@counter(f"{_MB}.SelectiveScan")
def _selective_scan(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """Per step (token) and per state element (d_inner x d_state): the decay exp(dt A) (an
    "act" op, one exp each), then that decay times h, dt B x added, C h accumulated into y:
    4 multiply-adds; per channel the skip D x: 1 more. Inputs x, dt (d_inner each), B and C
    (d_state each) and output y (d_inner) of every step are live at once (the projections
    before it made the whole sequence; ``live_steps``); the state h (d_inner x d_state) is
    read and written every step."""
    x, _, _, b = inputs[0], inputs[1], inputs[2], inputs[3]
    steps, d_inner, d_state = x.shape[1], x.shape[2], b.shape[2]
    return [Op("act", macs=d_inner * d_state, in_elems=d_inner * d_state, out_elems=d_inner * d_state,
               timesteps=steps, label="decay"),
            Op("scan", macs=4 * d_inner * d_state + d_inner, in_elems=2 * d_inner + 2 * d_state,
               out_elems=d_inner, timesteps=steps, state_elems=d_inner * d_state,
               in_shape=(d_inner,), out_shape=(d_inner,), live_steps=steps)]


@counter(f"{_MB}.Gate")
def _gate(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> list[Op]:
    """y times SiLU(z): a function evaluation and a product per element."""
    per_sample = out[0].numel()
    return [Op("act", macs=2 * per_sample, in_elems=2 * per_sample, out_elems=per_sample)]


def _pooled(size: int, pool: nn.MaxPool2d) -> int:
    """Output size of one spatial dimension of a max-pool (PyTorch's formula)."""
    def first(v: int | tuple[int, ...]) -> int:
        return v[0] if isinstance(v, tuple) else v

    span = first(pool.dilation) * (first(pool.kernel_size) - 1) + 1
    rounding = math.ceil if pool.ceil_mode else math.floor
    return rounding((size + 2 * first(pool.padding) - span) / first(pool.stride)) + 1


# --- extraction ----------------------------------------------------------------------------

def _part(total: int, rows: slice, n_rows: int) -> int:
    """Rows a..b's share of ``total``, rounded so that the shares of slices that cover all
    rows add up to ``total`` exactly."""
    return round(total * rows.stop / n_rows) - round(total * rows.start / n_rows)


def _sliced(op: Op, rows: slice) -> Op:
    """The share of a fused layer's op that output rows a..b own; its input is shared out
    the same way, so that the fused layer's input is counted once across its slices."""
    n = op.weight_shape[0]
    return dataclasses.replace(
        op, macs=_part(op.macs, rows, n), params=_part(op.params, rows, n),
        in_elems=_part(op.in_elems, rows, n), out_elems=_part(op.out_elems, rows, n),
        bias_params=_part(op.bias_params, rows, n),
        weight_shape=(rows.stop - rows.start, *op.weight_shape[1:]),
        out_shape=(rows.stop - rows.start, *op.out_shape[1:]) if op.out_shape else ())


@torch.no_grad()
def neuron_state_elems(model: nn.Module, example: torch.Tensor,
                       neurons: Mapping[str, list[str]]) -> dict[str, int]:
    """Group -> membrane potentials its spiking neurons hold (per sample, per step)."""
    counts = {g: 0 for g in neurons}
    modules = dict(model.named_modules())
    handles = []

    def hook(group: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            counts[group] += out[0].numel()  # [T, 1, ...] -> one step of one sample

        return fn

    for g, names in neurons.items():
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(g)))
    try:
        model.eval()
        model(example)
    finally:
        for h in handles:
            h.remove()
    return counts


@torch.no_grad()
def extract_workload(model: nn.Module, example: torch.Tensor, groups: Mapping[str, list[str]],
                     neurons: Mapping[str, list[str]] | None = None) -> list[LayerWorkload]:
    """Every counted op, in execution order: its kind, MACs, weights, input and output elements.

    ``example`` is one input with a batch dimension of 1. Figures are per sample and per
    time step; ``timesteps`` is how often the op runs in one inference (the leading
    dimension of its output, which multi-step spiking layers give as T). A group member
    ``name[a:b]`` owns output rows a..b of a fused layer and gets that share of its work
    and of its input. Ops outside every group join the group of the closest preceding
    grouped layer (see the module docstring).

    ``neurons`` (group -> spiking neurons) places each neuron's membranes (per sample)
    where they live: on the closest preceding op of the neuron's own group, in execution
    order, that is not folded away; a neuron that runs before every op of its group (one
    that feeds the group's first layer) goes to the group's first such op.
    """
    members: dict[str, list[tuple[str, slice | None]]] = {}
    for g, names in groups.items():
        for member in names:
            name, rows = split_member(member)
            members.setdefault(name, []).append((g, rows))
    modules = dict(model.named_modules())
    for name, owners in members.items():
        if name not in modules or counter_for(modules[name]) is None:
            what = ("no module" if name not in modules
                    else f"a {type(modules[name]).__name__}, which has no counter")
            raise BitnasError(f"layer group {owners[0][0]} names {name}: {what}; "
                              "register a counter for it in bitnas.hardware_models.workload")
    owner = {n: g for g, names in (neurons or {}).items() for n in names}
    for n in owner:
        if n not in modules:
            raise BitnasError(f"neuron group {owner[n]} names {n}: no module")

    records: list[LayerWorkload] = []
    uses: dict[str, int] = {}
    placed: list[tuple[int, str, str, int]] = []  # (ops recorded before it, group, neuron, elems)
    # (data_ptr, numel) of the last weighted op's output, what a BatchNorm may fold into,
    # and whether that op has a bias of its own
    last_weighted_out: tuple[int, int] | None = None
    last_has_bias = False

    def record(name: str, fn: Counter):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal last_weighted_out, last_has_bias
            uses[name] = uses.get(name, 0) + 1
            call = name if uses[name] == 1 else f"{name}#{uses[name]}"  # a module run twice
            x = inputs[0] if inputs else None
            for op in fn(module, inputs, out):
                base = call if not op.label else f"{call}:{op.label}"
                folded = (op.foldable and x is not None
                          and last_weighted_out == (x.data_ptr(), x.numel()))
                for group, rows in members.get(name, [("", None)]):
                    part = op if rows is None else _sliced(op, rows)
                    records.append(LayerWorkload(
                        name=base if rows is None else f"{base}[{rows.start}:{rows.stop}]",
                        kind=part.kind, macs=part.macs, params=part.params,
                        in_elems=part.in_elems, out_elems=part.out_elems, group=group,
                        weight_shape=part.weight_shape,
                        bias_params=(0 if last_has_bias else part.fold_bias) if folded else part.bias_params,
                        timesteps=part.timesteps, folded=folded, module=name,
                        in_shape=part.in_shape, out_shape=part.out_shape, kernel=part.kernel,
                        stride=part.stride, padding=part.padding,
                        channel_groups=part.channel_groups, state_elems=part.state_elems,
                        live_steps=part.live_steps))
                if op.weight_shape:
                    last_weighted_out, last_has_bias = (out.data_ptr(), out.numel()), op.bias_params > 0

        return hook

    def neuron(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            placed.append((len(records), owner[name], name, out[0].numel()))

        return hook

    handles = []
    for name, module in model.named_modules():
        fn = counter_for(module)
        if fn is not None:
            handles.append(module.register_forward_hook(record(name, fn)))
        if name in owner:
            handles.append(module.register_forward_hook(neuron(name)))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return _with_state(_grouped(records, groups), placed)


def _grouped(records: list[LayerWorkload], groups: Mapping[str, list[str]]) -> list[LayerWorkload]:
    """Each ungrouped op in the group of the closest preceding grouped layer."""
    first = next((r.group for r in records if r.group), next(iter(groups), ""))
    current, out = first, []
    for r in records:
        current = r.group or current
        out.append(r if r.group else dataclasses.replace(r, group=current))
    return out


def _with_state(records: list[LayerWorkload],
                placed: list[tuple[int, str, str, int]]) -> list[LayerWorkload]:
    """Each neuron's membranes on the op that feeds it (see extract_workload)."""
    state = [0] * len(records)
    for before, group, name, elems in placed:
        candidates = [i for i, r in enumerate(records) if r.group == group and not r.folded]
        if not candidates:
            raise BitnasError(f"neuron {name} of group {group} feeds no counted op of its group")
        preceding = [i for i in candidates if i < before]
        state[preceding[-1] if preceding else candidates[0]] += elems
    return [dataclasses.replace(r, state_elems=r.state_elems + s) if s else r
            for r, s in zip(records, state, strict=True)]
