"""The tiny_transformer space: groups, shapes and the workload it is costed by."""

from __future__ import annotations

import pytest
import torch

from bitnas.errors import BitnasError
from bitnas.hardware_models import extract_workload
from bitnas.registry import SPACES

ARCH = {"d_model": 8, "depth": 1, "heads": 2, "mlp_ratio": 2}


def _space(shape=(1, 8, 8), classes=10, **options):
    return SPACES.create("tiny_transformer", input_shape=shape, num_classes=classes, **options)


def test_rssi_windows_are_tokens_and_every_group_is_one_linear_layer():
    space = _space((20, 11), 4, d_model=[16], heads=[2], depth=[2])
    model = space.build({**ARCH, "d_model": 16, "depth": 2})
    assert model(torch.rand(3, 20, 11)).shape == (3, 4)
    groups = space.layer_groups(model)
    assert list(groups) == space.group_names(2) == space.all_groups()
    for members in groups.values():
        assert len(members) == 1 and isinstance(model.get_submodule(members[0]), torch.nn.Linear)


def test_the_workload_counts_attention_norms_adds_and_the_token_mean():
    # 8 tokens of 8 features (a digit's rows), d = 8, 2 heads, MLP 16, 10 classes
    space = _space()
    model = space.build(ARCH)
    ops = {w.name: w for w in extract_workload(model, torch.zeros(1, 1, 8, 8), space.layer_groups(model))}
    macs = {name: w.macs for name, w in ops.items()}
    assert macs["1"] == 8 * 8 * 8  # token embedding: 8 tokens x 8 in x 8 out
    for name in ("3.0.attn.q", "3.0.attn.k", "3.0.attn.v", "3.0.attn.proj"):
        assert macs[name] == 8 * 8 * 8
    assert macs["3.0.mlp1"] == macs["3.0.mlp2"] == 8 * 8 * 16
    # per head (2 heads of 4): q.kT, 8 x 8 scores of 4 products; their softmax; the scores times v
    qk, softmax, av = ops["3.0.attn:qk"], ops["3.0.attn:softmax"], ops["3.0.attn:av"]
    assert (qk.kind, qk.macs, qk.out_elems) == ("matmul", 2 * 8 * 8 * 4, 2 * 8 * 8) and qk.fan_in == 4
    assert (softmax.kind, softmax.macs, softmax.in_elems) == ("act", 2 * 8 * 8, 2 * 8 * 8)
    assert (av.kind, av.macs, av.out_elems) == ("matmul", 2 * 8 * 8 * 4, 8 * 8)
    assert av.in_elems == 2 * 8 * 8 + 8 * 8  # the scores and v
    assert av.fan_in == 8  # a sum over the 8 tokens
    assert macs["3.0"] == 2 * 8 * 8 and ops["3.0"].kind == "eltwise"  # two residual adds
    assert macs["2"] == 8 * 8 and ops["2"].bias_params == 8 * 8  # the position table, stored
    assert macs["5"] == 8 * 7 and ops["5"].kind == "pool"  # mean over 8 tokens
    assert macs["6"] == 8 * 10
    assert sum(w.kind == "norm" for w in ops.values()) == 3
    assert {w.group for w in ops.values()} <= set(space.layer_groups(model))


def test_every_d_model_must_split_into_every_head_count():
    with pytest.raises(BitnasError, match="d_model 10 is not divisible by space.heads 4"):
        _space(d_model=[8, 10], heads=[2, 4])
