"""The `mamba` space: a small Mamba (selective state-space) sequence classifier that runs on CPU.

Written in bitnas rather than taken from ``mambapy``: quantizing the scan state means
rounding h after every step of the recurrence, and mambapy computes the states with a
parallel (Blelloch) scan, or inside one function, where no per-step state is exposed; its
A_log and D are bare parameters that bitnas's fake-quant path could not take over either.
Here every part is its own module, so each takes its own bits.

A sample (..., C) is read as L tokens of C features (as ``tiny_transformer`` does). The
network: a linear token embedding to ``d_model``; ``layers`` residual blocks, each
LayerNorm then Mamba's mixer (Gu and Dao, 2023):

    x, z = in_proj(u)                              (d_inner = expand x d_model each)
    x = silu(causal depthwise conv1d(x))           (kernel 4)
    dt, B, C = x_proj(x)                           (dt_rank, d_state, d_state)
    dt = softplus(dt_proj(dt))
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,  y_t = C_t h_t + D x_t     (A = -exp(A_log))
    out = out_proj(y * silu(z))

then a LayerNorm, the mean over tokens and a linear head.

Layer groups, per layer ``layer<i>.``: ``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A``
(A_log, d_inner x d_state), ``D`` (d_inner), ``out_proj`` (weights at the group's bits and
scheme), and ``h``, the scan state, whose bits are the group's ``v_bits`` (``space.state_bits``,
searched; 32 = float). Plus ``embed`` and ``head``. The scan's operands are priced at the
``h`` group's activation bits, which the space fixes at its widest: the fake-quant path
quantizes the linear and convolution inputs, not the scan's. A quantized state is rounded
after every step to a symmetric grid of ``state_bits``, one step per channel, calibrated
from the largest |h| seen on the calibration batches (``QuantSelectiveScan``).

Counted for the cost models: the linear layers, the depthwise conv1d, the scan (its state
h live throughout, and every step's inputs and outputs at once: the projections make the
whole sequence before it runs), the exp of its decay, the SiLUs, the softplus and the gate
(element-wise "act" ops), A and D (stored "param"s), the LayerNorms and residual adds.

Searched (arch knobs): ``d_model``, ``d_state``, ``expand``, ``layers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, Candidate, LayerQuant, QuantPlan, check_bits
from bitnas.registry import SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose, precision_knob
from bitnas.spaces.transformer import TokenMean, Tokens

#: the mixer's quantizable parts, in execution order (``h`` is the state, not a weight)
PARTS = ("in_proj", "conv1d", "x_proj", "dt_proj", "A", "D", "h", "out_proj")
D_CONV = 4


class ScanParam(nn.Module):
    """A parameter the scan reads (A_log or D), as a module whose weight the fake-quant path
    can take over: ``forward_with(weight, bias)`` gives A = -exp(A_log), or D itself."""

    def __init__(self, weight: Tensor, negative_exp: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None
        self.negative_exp = negative_exp

    def forward_with(self, weight: Tensor, bias: Tensor | None) -> Tensor:
        return -torch.exp(weight) if self.negative_exp else weight

    def forward(self) -> Tensor:
        return self.forward_with(self.weight, None)


def scan_reference(x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor,
                   quantize=None) -> Tensor:
    """The recurrence element by element (slow; for tests): x, dt [B, L, di], a [di, ds],
    b, c [B, L, ds], d [1, di]; ``quantize(h, channel)`` rounds each new state value."""
    batch, steps, di = x.shape
    ds = a.shape[1]
    y = torch.zeros(batch, steps, di, dtype=x.dtype)
    for n in range(batch):
        for i in range(di):
            h = [0.0] * ds
            for t in range(steps):
                acc = 0.0
                for s in range(ds):
                    v = math.exp(float(dt[n, t, i]) * float(a[i, s])) * h[s] \
                        + float(dt[n, t, i]) * float(b[n, t, s]) * float(x[n, t, i])
                    h[s] = v if quantize is None else quantize(v, i)
                    acc += float(c[n, t, s]) * h[s]
                y[n, t, i] = acc + float(d[0, i]) * float(x[n, t, i])
    return y


class SelectiveScan(nn.Module):
    """The selective scan over ``channels`` (d_inner), step by step over the tokens."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def step_state(self, h: Tensor) -> Tensor:
        """The new state as stored (float here; rounded in :class:`QuantSelectiveScan`)."""
        return h

    def forward(self, x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
        batch, steps, di = x.shape
        h = x.new_zeros(batch, di, a.shape[1])
        ys = []
        for t in range(steps):
            dt_t = dt[:, t].unsqueeze(-1)  # [B, di, 1]
            h = self.step_state(torch.exp(dt_t * a) * h + dt_t * b[:, t].unsqueeze(1) * x[:, t].unsqueeze(-1))
            ys.append((h * c[:, t].unsqueeze(1)).sum(-1))
        return torch.stack(ys, dim=1) + x * d

    def with_state_bits(self, bits: int) -> QuantSelectiveScan:
        return QuantSelectiveScan(self.channels, bits)


class QuantSelectiveScan(SelectiveScan):
    """The scan with its state rounded after every step to ``bits`` (symmetric, one step per
    channel from the largest |h| seen while ``observing``), straight-through for QAT."""

    def __init__(self, channels: int, bits: int) -> None:
        super().__init__(channels)
        self.bits = bits
        self.observing = False
        #: the largest |h| seen per channel while observing; ``calibrated`` once any was seen
        #: (fixed shapes, so a calibrated model's state dict loads into a fresh copy)
        self.register_buffer("top", torch.zeros(channels))
        self.register_buffer("calibrated", torch.tensor(False))

    def step_state(self, h: Tensor) -> Tensor:
        if self.observing:
            self.top = torch.maximum(self.top, h.detach().abs().amax(dim=(0, 2)))
            self.calibrated = torch.tensor(True)
            return h
        if not bool(self.calibrated):
            raise RuntimeError("QuantSelectiveScan used before calibration (bitnas.evaluators.ptq.calibrate)")
        qmax = 2 ** (self.bits - 1) - 1
        step = (self.top / qmax).clamp_min(1e-12).view(1, -1, 1)
        hq = torch.clamp(torch.round(h / step), -qmax, qmax) * step
        return h + (hq - h).detach()

    def with_state_bits(self, bits: int) -> QuantSelectiveScan:
        return QuantSelectiveScan(self.channels, bits)


class Gate(nn.Module):
    """y * silu(z): the mixer's output gate (its own module, so the cost models count it)."""

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        return y * F.silu(z)


class Mixer(nn.Module):
    """Mamba's selective-state-space mixer (see the module docstring)."""

    def __init__(self, d_model: int, d_state: int, expand: int) -> None:
        super().__init__()
        di = expand * d_model
        self.dt_rank = max(1, math.ceil(d_model / 16))
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, D_CONV, groups=di)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di)
        with torch.no_grad():  # dt starts in [1e-3, 1e-1] (log-uniform), as Mamba initialises it
            dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A = ScanParam(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1),
                           negative_exp=True)
        self.D = ScanParam(torch.ones(1, di), negative_exp=False)
        self.scan = SelectiveScan(di)
        self.out_proj = nn.Linear(di, d_model, bias=False)
        # element-wise functions as modules: each is counted (an "act" op) where it runs
        self.conv_act, self.dt_act, self.gate = nn.SiLU(), nn.Softplus(), Gate()

    def forward(self, u: Tensor) -> Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = self.conv_act(self.conv1d(F.pad(x.transpose(1, 2), (D_CONV - 1, 0))).transpose(1, 2))
        dt, b, c = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_act(self.dt_proj(dt))
        y = self.scan(x, dt, self.A(), b, c, self.D())
        return self.out_proj(self.gate(y, z))


class Block(nn.Module):
    def __init__(self, d_model: int, d_state: int, expand: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = Mixer(d_model, d_state, expand)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mixer(self.norm(x))


@SPACES.register("mamba")
class MambaSpace(SearchSpace):
    """Small Mamba classifier: d_model, d_state, expand, layers; bits per mixer part and
    the scan state."""

    name = "mamba"
    tiny_options = {"d_model": [8], "d_state": [4], "expand": [2], "layers": [1], "w_bits": [4, 8],
                    "state_bits": [8, 32]}

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        d_model: Sequence[int] = (16, 32),
        d_state: Sequence[int] = (4, 8, 16),
        expand: Sequence[int] = (2,),
        layers: Sequence[int] = (1, 2),
        w_bits: Sequence[int] = (2, 4, 8),
        a_bits: Sequence[int] = (8,),
        state_bits: Sequence[int] = (FLOAT_BITS,),
        quantizers: Sequence[str] = ("uniform",),
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        self.d_model = choice_list(d_model, "space.d_model", minimum=1)
        self.d_state = choice_list(d_state, "space.d_state", minimum=1)
        self.expand = choice_list(expand, "space.expand", minimum=1)
        self.layers = choice_list(layers, "space.layers", minimum=1)
        self.state_bits = tuple(check_bits(b, "space.state_bits")
                                for b in choice_list(state_bits, "space.state_bits"))
        if min(self.state_bits) < 2:
            raise BitnasError("space.state_bits must be 2..16 or 32 (a state needs a sign and a value)")
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        states = [g for g in self.precision.group_w_bits if g.endswith(".h")]
        if states:
            raise BitnasError(f"space.group_w_bits sets {states[0]}, the scan state, which has no weights; "
                              "its bits are space.state_bits")
        self.precision.check_groups(set(self.all_groups()))

    def all_groups(self) -> list[str]:
        return self.group_names(max(self.layers))

    @staticmethod
    def group_names(layers: int) -> list[str]:
        return ["embed", *(f"layer{i}.{p}" for i in range(layers) for p in PARTS), "head"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch = {"d_model": choose(trial, "d_model", self.d_model),
                "d_state": choose(trial, "d_state", self.d_state),
                "expand": choose(trial, "expand", self.expand),
                "layers": choose(trial, "layers", self.layers)}
        plan = {}
        for g in self.group_names(arch["layers"]):
            if g.endswith(".h"):  # the state: its bits only (no weights; operands at the widest a_bits)
                plan[g] = LayerQuant(FLOAT_BITS, max(self.precision.a_bits), self.precision.quantizers[0],
                                     v_bits=choose(trial, precision_knob(g, "v_bits"), self.state_bits))
            else:
                plan[g] = self.precision.suggest(trial, g)
        return Candidate(arch=arch, plan=QuantPlan(plan), space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        d, layers = int(arch["d_model"]), int(arch["layers"])
        return nn.Sequential(
            Tokens(), nn.Linear(self.input_shape[-1], d),
            nn.Sequential(*(Block(d, int(arch["d_state"]), int(arch["expand"])) for _ in range(layers))),
            nn.LayerNorm(d), TokenMean(), nn.Linear(d, self.num_classes))

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = {"embed": ["1"]}
        for i, _ in enumerate(model[2]):
            for p in PARTS:
                groups[f"layer{i}.{p}"] = [f"2.{i}.mixer.{'scan' if p == 'h' else p}"]
        groups["head"] = ["5"]
        return groups
