"""Storage models of "Understanding Factual Recall in Transformers via Associative Memories"
(Nichani, Lee, Bietti, ICLR 2025): they read token ids (``takes_tokens``), through random
embeddings that are frozen (buffers: not trained, not counted, not quantized).

``recall_transformer``: one layer. The last position (the end token) queries every position
through ``heads`` heads of ``head_dim`` (q, k, v: d -> H*d_h, no bias; softmax of q.k /
sqrt(d_h)), the heads' values are joined by o (H*d_h -> d), and a residual ReLU MLP of
``width`` m follows (mlp_in: d -> m with bias, mlp_out: m -> d without): h = a + mlp(a). The
logits are h against the frozen answer embeddings. Counted parameters, as the paper's:
4*H*d_h*d + 2*m*d (plus mlp_in's m biases, which the cost models store at 32 bits). Layer
groups ``q``, ``k``, ``v``, ``o``, ``mlp_in``, ``mlp_out``, each with its own bits and
scheme. Arch knobs: ``dim`` (d), ``heads`` (H), ``head_dim`` (d_h), ``width`` (m), each from
the space option of the plural name (``dims``, ``heads``, ``head_dims``, ``widths``).
Embeddings: N(0, 1/d) entries, the paper's.

``assoc_memory``: the associative memories, on one token: the ``linear`` memory
W (d x d, group ``W``) predicts argmax_y u_y . W e_x; the ``mlp`` memory (width m, groups
``mlp_in``, ``mlp_out``) argmax_y u_y . V relu(W1 e_x + b). e_x and u_y are random unit
vectors. Arch knobs: ``memory`` (from ``memories``), ``dim`` (from ``dims``) and, for the MLP,
``width`` (from ``widths``).

The embeddings come from a generator of their own (seed 0), so that a model's frozen part
depends only on its sizes. Activations default to float (``a_bits = [32]``): the question
these spaces serve is how many weight bits storage needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, Candidate, QuantPlan
from bitnas.registry import SPACES
from bitnas.spaces.base import PrecisionChoices, SearchSpace, choice_list, choose

#: the recall transformer's layer groups, and the module each names
RECALL_GROUPS = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "o": "attn.o",
                 "mlp_in": "mlp_in", "mlp_out": "mlp_out"}
MEMORIES = ("linear", "mlp")


def frozen_embeddings(rows: int, dim: int, *, unit: bool, gen: torch.Generator) -> Tensor:
    """[rows, dim] random embeddings: N(0, 1/dim) entries, or unit rows."""
    e = torch.randn(rows, dim, generator=gen) / math.sqrt(dim)
    return e / e.norm(dim=1, keepdim=True) if unit else e


class LastQueryAttention(nn.Module):
    """Attention from the last position: [B, T, d] -> [B, d]."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q = nn.Linear(dim, inner, bias=False)
        self.k = nn.Linear(dim, inner, bias=False)
        self.v = nn.Linear(dim, inner, bias=False)
        self.o = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        h, hd = self.heads, self.head_dim
        q = self.q(x[:, -1]).reshape(b, h, 1, hd)
        k = self.k(x).reshape(b, t, h, hd).transpose(1, 2)
        v = self.v(x).reshape(b, t, h, hd).transpose(1, 2)
        p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)  # [B, H, 1, T]
        return self.o((p @ v).reshape(b, h * hd))


class RecallTransformer(nn.Module):
    """One attention layer (last position) and a residual ReLU MLP over frozen embeddings."""

    def __init__(self, vocab: int, classes: int, dim: int, heads: int, head_dim: int, width: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("embed", frozen_embeddings(vocab, dim, unit=False, gen=gen))
        self.register_buffer("unembed", frozen_embeddings(classes, dim, unit=False, gen=gen))
        self.attn = LastQueryAttention(dim, heads, head_dim)
        self.mlp_in = nn.Linear(dim, width)
        self.mlp_out = nn.Linear(width, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.attn(self.embed[x.long()])
        h = a + self.mlp_out(torch.relu(self.mlp_in(a)))
        return h @ self.unembed.T


class AssocMemory(nn.Module):
    """A linear (W) or ReLU MLP associative memory between frozen unit embeddings."""

    def __init__(self, vocab: int, classes: int, memory: str, dim: int, width: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("embed", frozen_embeddings(vocab, dim, unit=True, gen=gen))
        self.register_buffer("unembed", frozen_embeddings(classes, dim, unit=True, gen=gen))
        self.memory = memory
        if memory == "linear":
            self.W = nn.Linear(dim, dim, bias=False)
        else:
            self.mlp_in = nn.Linear(dim, width)
            self.mlp_out = nn.Linear(width, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed[x.reshape(x.shape[0], -1)[:, 0].long()]
        h = self.W(e) if self.memory == "linear" else self.mlp_out(torch.relu(self.mlp_in(e)))
        return h @ self.unembed.T


class _TokenSpace(SearchSpace):
    """Shared: token input, float activations by default, one precision choice per group."""

    takes_tokens = True
    export_format = "torch"  # frozen-embedding lookups: the state dict carries them

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, input_vocab: int = 0,
                 w_bits: Sequence[int], a_bits: Sequence[int], quantizers: Sequence[str],
                 group_w_bits: Mapping[str, Sequence[int]] | None,
                 quantizer_options: Mapping[str, Mapping[str, Any]] | None) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         quantizer_options=quantizer_options, input_vocab=input_vocab)
        if input_vocab < 1:
            raise BitnasError(f"space {self.name} reads token ids: pair it with a token task "
                              "(factual_recall, associations)")
        self.precision = PrecisionChoices(w_bits, a_bits, quantizers, group_w_bits, self.quantizer_options)
        self.precision.check_groups(set(self.all_groups()))

    def _plan(self, trial: optuna.trial.BaseTrial, groups: Sequence[str]) -> QuantPlan:
        return QuantPlan({g: self.precision.suggest(trial, g) for g in groups})


@SPACES.register("recall_transformer")
class RecallTransformerSpace(_TokenSpace):
    """One-layer transformer for factual recall: d, H, d_h, m; bits per q, k, v, o, mlp_in, mlp_out."""

    name = "recall_transformer"
    example_task = {"name": "factual_recall", "subjects": 4, "length": 8, "contexts": 4}
    tiny_options = {"dims": [8], "heads": [1], "head_dims": [4], "widths": [8], "w_bits": [4, 8]}

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, input_vocab: int = 0,
                 dims: Sequence[int] = (16, 32), heads: Sequence[int] = (1, 2, 4),
                 head_dims: Sequence[int] = (8,), widths: Sequence[int] = (16, 32, 64),
                 w_bits: Sequence[int] = (2, 3, 4, 6, 8), a_bits: Sequence[int] = (FLOAT_BITS,),
                 quantizers: Sequence[str] = ("uniform",),
                 group_w_bits: Mapping[str, Sequence[int]] | None = None,
                 quantizer_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.dims = choice_list(dims, "space.dims", minimum=1)
        self.heads = choice_list(heads, "space.heads", minimum=1)
        self.head_dims = choice_list(head_dims, "space.head_dims", minimum=1)
        self.widths = choice_list(widths, "space.widths", minimum=1)
        super().__init__(input_shape=input_shape, num_classes=num_classes, input_vocab=input_vocab,
                         w_bits=w_bits, a_bits=a_bits, quantizers=quantizers, group_w_bits=group_w_bits,
                         quantizer_options=quantizer_options)
        if len(self.input_shape) != 1 or self.input_shape[0] < 2:
            raise BitnasError(f"space {self.name} reads sequences of at least 2 tokens, got inputs of "
                              f"shape {self.input_shape}")

    def all_groups(self) -> list[str]:
        return list(RECALL_GROUPS)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        arch = {"dim": choose(trial, "dim", self.dims), "heads": choose(trial, "heads", self.heads),
                "head_dim": choose(trial, "head_dim", self.head_dims),
                "width": choose(trial, "width", self.widths)}
        return Candidate(arch=arch, plan=self._plan(trial, list(RECALL_GROUPS)), space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        return RecallTransformer(self.input_vocab, self.num_classes, int(arch["dim"]), int(arch["heads"]),
                                 int(arch["head_dim"]), int(arch["width"]))

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        return {g: [name] for g, name in RECALL_GROUPS.items()}

    @staticmethod
    def parameters(arch: Mapping[str, Any]) -> int:
        """The paper's counted parameters: 4*H*d_h*d + 2*m*d."""
        d, h, hd, m = (int(arch[k]) for k in ("dim", "heads", "head_dim", "width"))
        return 4 * h * hd * d + 2 * m * d


@SPACES.register("assoc_memory")
class AssocMemorySpace(_TokenSpace):
    """Linear (d x d) or MLP (width m) associative memory: memory, d, m; bits per matrix."""

    name = "assoc_memory"
    example_task = {"name": "associations", "inputs": 16}
    tiny_options = {"dims": [8], "widths": [8], "w_bits": [4, 8]}

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, input_vocab: int = 0,
                 memories: Sequence[str] = MEMORIES, dims: Sequence[int] = (16, 32),
                 widths: Sequence[int] = (16, 32, 64), w_bits: Sequence[int] = (2, 3, 4, 6, 8),
                 a_bits: Sequence[int] = (FLOAT_BITS,), quantizers: Sequence[str] = ("uniform",),
                 group_w_bits: Mapping[str, Sequence[int]] | None = None,
                 quantizer_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.memories = choice_list(memories, "space.memories", kind=str)
        unknown = sorted(set(self.memories) - set(MEMORIES))
        if unknown:
            raise BitnasError(f"space.memories: unknown memory {unknown[0]!r}; use {' or '.join(MEMORIES)}")
        self.dims = choice_list(dims, "space.dims", minimum=1)
        self.widths = choice_list(widths, "space.widths", minimum=1)
        super().__init__(input_shape=input_shape, num_classes=num_classes, input_vocab=input_vocab,
                         w_bits=w_bits, a_bits=a_bits, quantizers=quantizers, group_w_bits=group_w_bits,
                         quantizer_options=quantizer_options)

    @staticmethod
    def group_names(memory: str) -> list[str]:
        return ["W"] if memory == "linear" else ["mlp_in", "mlp_out"]

    def all_groups(self) -> list[str]:
        return [g for memory in self.memories for g in self.group_names(memory)]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        memory = choose(trial, "memory", self.memories)
        arch = {"memory": memory, "dim": choose(trial, "dim", self.dims)}
        if memory == "mlp":
            arch["width"] = choose(trial, "width", self.widths)
        return Candidate(arch=arch, plan=self._plan(trial, self.group_names(memory)), space=self.name)

    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        memory = str(arch["memory"])
        if memory not in MEMORIES:
            raise BitnasError(f"assoc_memory: unknown memory {memory!r}; use {' or '.join(MEMORIES)}")
        return AssocMemory(self.input_vocab, self.num_classes, memory, int(arch["dim"]),
                           int(arch.get("width", 0)))

    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        return {g: [g] for g in self.group_names(model.memory)}

    @staticmethod
    def parameters(arch: Mapping[str, Any]) -> int:
        """Trained weights: d^2 (linear) or 2*m*d (MLP: W1 and V; its m biases left out). The paper's
        capacity law for the MLP is in m*d, half of these."""
        d = int(arch["dim"])
        return d * d if arch["memory"] == "linear" else 2 * int(arch["width"]) * d
