"""Workload extraction: counters per module type, execution order and groups, row slices,
where membranes sit, and SpikingJelly's attention products, against hand-computed counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.hardware_models import extract_workload
from bitnas.hardware_models import workload as wl_mod
from bitnas.hardware_models.base import weight_bits_per_layer
from bitnas.hardware_models.workload import Op, counter, counter_for, neuron_state_elems
from bitnas.plan import LayerQuant
from bitnas.registry import SPACES, load_all

load_all()


class ConvNet(nn.Module):
    """input BN -> conv -> BN -> ReLU -> max-pool -> linear -> LayerNorm, on 1 x 8 x 8."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.BatchNorm2d(1)  # reads the input, not a layer's output: cannot fold
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 10)
        self.norm = nn.LayerNorm(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(self.pre(x)))))
        return self.norm(self.fc(x.flatten(1)))


def test_a_folded_batchnorm_leaves_a_bias_where_the_layer_had_none():
    # conv without a bias -> BN: the BN's shift becomes the conv's bias, 4 values at 32 bits
    # (its scale multiplies into the weights); with a bias, the two biases merge into one
    for conv_bias, left in ((False, 4), (True, 0)):
        net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=conv_bias), nn.BatchNorm2d(4))
        wl = extract_workload(net, torch.zeros(1, 1, 8, 8), {"c": ["0"]})
        assert wl[1].folded and wl[1].bias_params == left
        assert wl[0].bias_params == (4 if conv_bias else 0)
        lqs = [LayerQuant(4)] * 2
        assert weight_bits_per_layer(wl, lqs)[1] == 32 * left  # so weight memory holds it


def test_every_counted_op_in_execution_order_with_its_group():
    wl = extract_workload(ConvNet(), torch.zeros(1, 1, 8, 8), {"c": ["conv"], "f": ["fc"]})
    by = {w.name: w for w in wl}
    assert [w.name for w in wl] == ["pre", "conv", "bn", "pool", "fc", "norm"]
    assert [w.kind for w in wl] == ["norm", "conv2d", "norm", "pool", "linear", "norm"]
    # ops outside every group join the closest preceding grouped layer; the first, the first group
    assert [w.group for w in wl] == ["c", "c", "c", "c", "f", "f"]
    # the BatchNorm after the convolution folds into it; the one on the input cannot (it keeps
    # a scale and a shift per channel at 32 bits)
    assert (by["bn"].folded, by["bn"].bias_params) == (True, 0)
    assert (by["pre"].folded, by["pre"].bias_params) == (False, 2)
    # a multiply-add per element; 2x2 max-pool: 3 compares per output on 4 x 4 x 4 outputs
    assert (by["bn"].macs, by["pre"].macs) == (256, 64)
    assert (by["pool"].macs, by["pool"].in_elems, by["pool"].out_elems) == (64 * 3, 256, 64)
    # LayerNorm: a multiply-add per element, its affine weight and bias stored at 32 bits
    assert (by["norm"].macs, by["norm"].bias_params, by["norm"].params) == (10, 20, 0)
    assert (by["conv"].macs, by["conv"].params, by["fc"].macs) == (256 * 9, 36, 640)
    assert all(w.params == 0 and not w.weighted for w in wl if w.kind in ("norm", "pool"))


def test_a_fused_layer_counts_its_input_once_across_its_row_slices():
    """Regression: every slice of a fused layer used to be charged the whole input."""
    model = nn.Sequential(nn.Conv1d(5, 9, 1))
    groups = {"q": ["0[0:3]"], "k": ["0[3:6]"], "v": ["0[6:9]"]}
    wl = extract_workload(model, torch.zeros(1, 5, 7), groups)
    assert [w.group for w in wl] == ["q", "k", "v"]
    assert sum(w.in_elems for w in wl) == 5 * 7  # 35 inputs, shared 12 + 11 + 12
    assert [w.in_elems for w in wl] == [12, 11, 12]
    assert [w.macs for w in wl] == [3 * 7 * 5] * 3 and [w.params for w in wl] == [15] * 3
    assert [w.weight_shape for w in wl] == [(3, 5, 1)] * 3


class Spiking(nn.Module):
    """Two layer groups; ReLUs stand in for spiking neurons (only their output size counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.n_a = nn.Conv2d(1, 2, 1), nn.ReLU()
        self.conv_b, self.bn_b, self.n_b = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU()
        self.n_early = nn.ReLU()  # runs before every layer of its group
        self.fc, self.n_fc = nn.Linear(3 * 16, 5), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.n_a(self.conv_a(x))
        x = self.n_b(self.bn_b(self.conv_b(x)))
        return self.n_fc(self.fc(self.n_early(x).flatten(1)))


def test_membranes_sit_on_the_layer_that_feeds_them():
    """Regression: a group's membranes all used to sit on its first layer."""
    model = Spiking()
    groups = {"g0": ["conv_a", "conv_b"], "g1": ["fc"]}
    neurons = {"g0": ["n_a", "n_b"], "g1": ["n_early", "n_fc"]}
    wl = extract_workload(model, torch.zeros(1, 1, 4, 4), groups, neurons)
    state = {w.name: w.state_elems for w in wl}
    # n_a (2 x 4 x 4) on conv_a; n_b (3 x 4 x 4) on conv_b, not on the folded BatchNorm between;
    # n_early (48) runs before fc, the first layer of its group, and goes to it with n_fc's 5
    assert state == {"conv_a": 32, "conv_b": 48, "bn_b": 0, "fc": 48 + 5}
    totals = neuron_state_elems(model, torch.zeros(1, 1, 4, 4), neurons)
    assert sum(state.values()) == sum(totals.values())


def test_counters_are_registered_per_module_type(monkeypatch):
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    class SubGate(Gate):
        pass

    model = nn.Sequential(nn.Linear(4, 4), SubGate())
    with pytest.raises(BitnasError, match=r"layer group g names 1: a SubGate, which has no counter"):
        extract_workload(model, torch.zeros(1, 4), {"g": ["0", "1"]})
    assert [w.name for w in extract_workload(model, torch.zeros(1, 4), {"g": ["0"]})] == ["0"]

    monkeypatch.setattr(wl_mod, "_COUNTERS", dict(wl_mod._COUNTERS))
    counter(f"{Gate.__module__}.{Gate.__qualname__}")(  # by name, as SpikingJelly's are
        lambda m, i, o: [Op("eltwise", macs=o[0].numel(), in_elems=4, out_elems=4)])
    assert counter_for(SubGate()) is not None  # a subclass takes its base's counter
    wl = extract_workload(model, torch.zeros(1, 4), {"g": ["0"]})
    assert [(w.name, w.kind, w.macs, w.group) for w in wl] == [
        ("0", "linear", 16, "g"), ("1", "eltwise", 4, "g")]
    with pytest.raises(BitnasError, match="layer group g names nope: no module"):
        extract_workload(model, torch.zeros(1, 4), {"g": ["nope"]})


def test_spikformer_attention_products_are_counted_from_the_shapes():
    from spikingjelly.activation_based.layer.attention import SpikingSelfAttention

    attn = SpikingSelfAttention(dim=8, num_heads=2)
    groups = {"qkv": ["qkv_conv_bn.0"], "proj": ["proj_conv_bn.0"]}
    wl = extract_workload(attn, torch.zeros(3, 1, 8, 5), groups)  # T = 3, L = 5 tokens
    products = [w for w in wl if w.kind == "matmul"]
    assert [w.name for w in products] == [""] and wl[-1] is products[0]  # after its children
    p = products[0]
    # per head (d = 4): v kᵀ is 4 x 4 outputs of 5 products, (v kᵀ) q is 4 x 5 outputs of 4
    assert (p.macs, p.in_elems, p.out_elems, p.timesteps) == (2 * (16 * 5 + 20 * 4), 3 * 40, 40, 3)
    assert p.group == "proj" and p.params == 0


def test_spike_driven_attention_products_and_residual_are_counted():
    from spikingjelly.activation_based.layer.attention import SpikeDrivenSelfAttention

    attn = SpikeDrivenSelfAttention(dim=8, num_heads=2)
    groups = {g: [f"{g}_conv"] for g in ("q", "k", "v", "proj")}
    wl = extract_workload(attn, torch.zeros(2, 1, 8, 2, 3), groups)  # T = 2, L = 6 tokens
    ops = {w.name: w for w in wl if not w.weighted and w.kind != "norm"}
    # k ⊙ v summed over the tokens, then q ⊙ that: 8 x 6 products each; the residual: 48 adds
    assert (ops[""].kind, ops[""].macs, ops[""].timesteps) == ("matmul", 2 * 48, 2)
    assert (ops[":add"].kind, ops[":add"].macs, ops[":add"].in_elems) == ("eltwise", 48, 96)
    assert {w.group for w in ops.values()} == {"proj"}


@pytest.mark.parametrize("name", ["spikformer", "spike_driven_transformer"])
def test_the_spiking_transformers_count_every_op_once(name):
    space = SPACES.create(name, input_shape=(4, 2, 16, 16), num_classes=10)
    arch = {"time_steps": 2, "embed_dims": 16, "depth": 1, "heads": 2, "mlp_ratio": 2}
    model = space.build(arch)
    groups, neurons = space.layer_groups(model), space.neuron_groups(model)
    wl = extract_workload(model, space.example_input(), groups, neurons)
    assert len({w.name for w in wl}) == len(wl)
    assert {w.kind for w in wl} == {"conv2d", "conv1d", "linear", "norm", "pool", "eltwise", "matmul"} - (
        {"conv1d"} if name == "spike_driven_transformer" else set())
    assert all(w.folded for w in wl if w.kind == "norm")  # every BatchNorm follows a layer
    tokens, dims = 4 * 4, 16  # 16 x 16 input, patch size 4
    by = {w.name: w for w in wl}
    if name == "spikformer":
        qkv = [w for w in wl if w.module == "net.blocks.0.attn.qkv_conv_bn.0"]
        assert sum(w.in_elems for w in qkv) == dims * tokens  # the fused input, once
        assert by["net.blocks.0"].macs == 2 * dims * tokens  # two residual adds
        assert by["net.blocks.0.attn"].macs == 2 * dims * (dims // 2) * tokens
        # the attention neuron feeds the projection: its membranes sit there, not on q
        proj = by["net.blocks.0.attn.proj_conv_bn.0"]
        assert proj.state_elems == 2 * dims * tokens  # attn_lif and proj_lif
    assert by["net"].kind == "pool" and by["net"].macs == dims * (tokens - 1)
    state = neuron_state_elems(model, space.example_input(), neurons)
    for g in groups:
        assert sum(w.state_elems for w in wl if w.group == g) == state.get(g, 0), g
