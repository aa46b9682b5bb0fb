"""The ai8x export: the YAML's keys and processor maps, the checkpoint's integers, and the
round trip (the checkpoint, reloaded into bitnas's model, computes what the candidate did)."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.exporters import ExportItem
from bitnas.exporters.ai8x import LAYER_KEYS, TOP_KEYS, load_checkpoint
from bitnas.registry import EXPORTERS
from bitnas.search.context import SearchContext
from bitnas.spec import StudySpec


def _item(quantizer="ai8x", bits=(2, 8, 4), widths=(8, 16), channels=18, pools=(0, 2)):
    spec = StudySpec.from_dict({
        "study": {"name": "x", "trials": 1},
        "space": {"name": "ai8x", "depth": [2], "widths": sorted(set(widths)), "pools": [0, 2],
                  "dex_channels": [channels], "input_size": 8, "w_bits": [1, 2, 4, 8],
                  "quantizers": [quantizer]},
        "task": {"name": "textures", "size": 16, "per_class": 8, "epochs": 2},
        "hardware": {"name": "max78000"},
        "objectives": [{"name": "accuracy"}, {"name": "latency_s"}]})
    ctx = SearchContext(spec, cache_dir=None)
    params = {"conv0.w_bits": bits[0], "conv1.w_bits": bits[1], "fc.w_bits": bits[2],
              "width0": widths[0], "width1": widths[1], "pool1": pools[1]}
    cand = ctx.space.suggest(FixedTrial(params))
    model, metrics, _, _ = ctx.prepared(cand)
    groups, workload = ctx.structure(cand)
    item = ExportItem(candidate=cand, model=model, groups=groups, workload=workload,
                      hardware=ctx.hardware, space=ctx.space, task="textures", trial=7, metrics=metrics)
    return item, ctx


def _rule(channels: int) -> int:
    passes = math.ceil(channels / 64)
    per = math.ceil(channels / passes)
    return min(64, 4 * math.ceil(per / 4)) if channels > 64 else per


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    item, ctx = _item()
    out = tmp_path_factory.mktemp("ai8x")
    paths = EXPORTERS.create("ai8x").export(item, out)
    return item, ctx, paths


def test_the_yaml_holds_known_keys_and_the_pass_rule(exported):
    item, _, paths = exported
    net = yaml.safe_load(paths[1].read_text())
    assert set(net) <= TOP_KEYS and {"arch", "dataset", "layers"} <= set(net)
    convs = [m for n, m in item.model.named_modules() if n in ("conv0", "conv1", "fc")]
    assert [x["name"] for x in net["layers"]] == ["conv0", "conv1", "fc"]
    for i, layer in enumerate(net["layers"]):
        assert set(layer) <= LAYER_KEYS and "processors" in layer
        inner = convs[i].layer
        c_in = inner.in_channels if hasattr(inner, "in_channels") else 16  # fc flattens conv1's 16
        c_out = inner.out_channels if hasattr(inner, "out_channels") else inner.out_features
        assert int(layer["processors"], 16).bit_count() == _rule(c_in)
        assert int(layer["output_processors"], 16).bit_count() == _rule(c_out)
        if i + 1 < len(net["layers"]):  # a layer writes where the next one reads
            assert layer["output_processors"] == net["layers"][i + 1]["processors"]
            assert layer["out_offset"] == net["layers"][i + 1]["in_offset"]
    first, mid, last = net["layers"]
    assert first["data_format"] == "HWC" and first["op"] == "Conv2d" and first["kernel_size"] == "3x3"
    assert mid["max_pool"] == 2 and mid["pool_stride"] == 2
    assert last["op"] == "MLP" and last["flatten"] is True and last["output_width"] == 32
    assert last["activate"] == "None" and first["activate"] == "ReLU"
    assert [x["quantization"] for x in net["layers"]] == [2, 8, 4]  # bits stated, never guessed


def test_the_checkpoint_holds_integers_in_range(exported):
    item, _, paths = exported
    ck = torch.load(paths[0], weights_only=True)
    assert set(ck) == {"state_dict", "arch", "epoch", "extras"} and ck["arch"] == "bitnas_ai8x"
    sd = ck["state_dict"]
    for name, bits in (("conv0", 2), ("conv1", 8), ("fc", 4)):
        assert int(sd[f"{name}.weight_bits"].item()) == bits
        w = sd[f"{name}.op.weight"]
        assert torch.equal(w, w.round()) and w.min() >= -2 ** (bits - 1) and w.max() <= 2 ** (bits - 1) - 1
        q = sd[f"{name}.op.bias"] / 2 ** (bits - 1)
        assert torch.equal(q, q.round()) and q.min() >= -2 ** (bits - 1) and q.max() <= 2 ** (bits - 1) - 1
        assert -15 <= sd[f"{name}.output_shift"].item() + 8 - bits <= 15
        for key in ("bias_bits", "quantize_activation", "adjust_output_shift", "shift_quantile"):
            assert f"{name}.{key}" in sd


def test_the_checkpoint_reloads_to_the_same_outputs(exported):
    item, ctx, paths = exported
    model, cand = load_checkpoint(paths[0], item.space)
    assert cand == item.candidate
    x = ctx.data.val.x
    item.model.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), item.model(x))


def test_a_candidate_the_format_cannot_express_is_one_line(tmp_path):
    item, _ = _item(quantizer="uniform")
    with pytest.raises(BitnasError, match=r"scheme: layer conv0: quantizer uniform needs .*ai8x") as e:
        EXPORTERS.create("ai8x").export(item, tmp_path)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_a_bitnas_export_is_refused_in_one_line(tmp_path, exported):
    item = exported[0]
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BitnasError, match="cannot read checkpoint"):
        load_checkpoint(junk, item.space)
    foreign = tmp_path / "foreign.pth.tar"
    torch.save({"state_dict": {}, "arch": "ai85net5", "epoch": 3, "extras": {}}, foreign)
    with pytest.raises(BitnasError, match="not written by `bitnas export"):
        load_checkpoint(foreign, item.space)
