"""The `tiny_transformer` space: a small encoder classifier for sequences (and small images as
sequences of rows), sized for microcontrollers.

A sample of shape (..., C) is read as L tokens of C features (L the product of the leading
axes: an RSSI window of 20 samples x 11 access points is 20 tokens; an 8x8 digit is 8 rows
of 8). The network: a linear token embedding to ``d_model``, a learned position table
added to it, ``depth`` pre-norm encoder blocks (LayerNorm, multi-head self-attention with
separate q, k, v and output projections, residual; LayerNorm, a ReLU MLP of
``mlp_ratio`` x d_model, residual), a final LayerNorm, the mean over tokens, and a linear
head.

Layer groups, each with its own bits and scheme: ``embed``, per block ``block<i>.q``,
``.k``, ``.v``, ``.proj``, ``.mlp1``, ``.mlp2``, and ``head``. Searched (arch knobs, each
from the ``space`` option of the same name): ``d_model``, ``depth``, ``heads``,
``mlp_ratio``. Every ``d_model`` must split evenly into every head count (checked when
the space is made).

Counted for the cost models (``bitnas.hardware_models.workload``): the linear layers, the
LayerNorms, the attention's two activation products per head (q·kᵀ and its softmax times
v: "matmul" ops) and the softmax between them (an "act" op; every head's L x L scores are
live there), the position table's add and the residual adds ("eltwise"; the table
stored at 32 bits), and the mean over tokens ("pool"). Not counted: the ReLUs (fused into
the layer's output clamp), and the 1/sqrt(d) scaling (folded into q's weights on deployment).
The fake-quant path quantizes every linear layer's input and weights; the attention's
products take the q, k and v projections' outputs as they are (the cost models price them
at the group's activation bits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import Candidate, QuantPlan
from bitnas.registry import SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose

#: each encoder block's layer groups
PARTS = ("q", "k", "v", "proj", "mlp1", "mlp2")


class Tokens(nn.Module):
    """[B, ..., C] -> [B, L, C]: every leading axis of a sample becomes the token axis."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1, x.shape[-1])


class PositionTable(nn.Module):
    """A learned [L, d] table added to the tokens (stored at 32 bits)."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(tokens, dim))
        nn.init.normal_(self.table, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q, k, v and output projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h, hd = self.heads, d // self.heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(b, n, h, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp1, self.mlp2 = nn.Linear(dim, dim * mlp_ratio), nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp2(torch.relu(self.mlp1(self.norm2(x))))


class TokenMean(nn.Module):
    """The mean over tokens: [B, L, d] -> [B, d]."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)


@SPACES.register("tiny_transformer")
class TinyTransformerSpace(SearchSpace):
    """Small encoder classifier for sequences: d_model, depth, heads, mlp_ratio; bits per
    embedding, q, k, v, projection, MLP layer and head."""

    name = "tiny_transformer"
    tiny_options = {"d_model": [8], "depth": [1], "heads": [1, 2], "mlp_ratio": [2], "w_bits": [4, 8]}

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        d_model: Sequence[int] = (16, 32),
        depth: Sequence[int] = (1, 2),
        heads: Sequence[int] = (1, 2),
        mlp_ratio: Sequence[int] = (2,),
        w_bits: Sequence[int] = (2, 4, 8),
        a_bits: Sequence[int] = (8,),
        quantizers: Sequence[str] = ("uniform",),
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options)
        if len(self.input_shape) < 1:
            raise BitnasError("the tiny_transformer space needs inputs with a feature axis")
        self.d_model = choice_list(d_model, "space.d_model", minimum=1)
        self.depth = choice_list(depth, "space.depth", minimum=1)
        self.heads = choice_list(heads, "space.heads", minimum=1)
        self.mlp_ratio = choice_list(mlp_ratio, "space.mlp_ratio", minimum=1)
        bad = [(d, h) for d in self.d_model for h in self.heads if d % h]
        if bad:
            raise BitnasError(f"space.d_model {bad[0][0]} is not divisible by space.heads {bad[0][1]}; "
                              "every d_model must split evenly into every head count")
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        self.precision.check_groups(set(self.all_groups()))

    @property
    def tokens(self) -> int:
        return math.prod(self.input_shape[:-1]) if len(self.input_shape) > 1 else 1

    def all_groups(self) -> list[str]:
        return self.group_names(max(self.depth))

    @staticmethod
    def group_names(depth: int) -> list[str]:
        blocks = [f"block{i}.{part}" for i in range(depth) for part in PARTS]
        return ["embed", *blocks, "head"]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch = {"d_model": choose(trial, "d_model", self.d_model),
                "depth": choose(trial, "depth", self.depth), "heads": choose(trial, "heads", self.heads),
                "mlp_ratio": choose(trial, "mlp_ratio", self.mlp_ratio)}
        plan = QuantPlan({g: self.precision.suggest(trial, g) for g in self.group_names(arch["depth"])})
        return Candidate(arch=arch, plan=plan, space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        d, depth = int(arch["d_model"]), int(arch["depth"])
        heads, ratio = int(arch["heads"]), int(arch["mlp_ratio"])
        if d % heads:
            raise BitnasError(f"d_model {d} is not divisible by heads {heads}")
        return nn.Sequential(
            Tokens(), nn.Linear(self.input_shape[-1], d), PositionTable(self.tokens, d),
            nn.Sequential(*(EncoderBlock(d, heads, ratio) for _ in range(depth))),
            nn.LayerNorm(d), TokenMean(), nn.Linear(d, self.num_classes))

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        groups = {"embed": ["1"]}
        for i, _ in enumerate(model[3]):
            for part, name in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("proj", "attn.proj"),
                               ("mlp1", "mlp1"), ("mlp2", "mlp2")):
                groups[f"block{i}.{part}"] = [f"3.{i}.{name}"]
        groups["head"] = ["6"]
        return groups
