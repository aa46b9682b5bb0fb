"""The ONNX export, read back by onnxruntime: its outputs against bitnas's fake-quant model on
the validation batch, for a searched CNN's front member (through the CLI) and for hand-made
mixed-precision plans; the weights stored as int4/int8 codes; the one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.exporters import ExportItem
from bitnas.registry import EXPORTERS, SPACES
from bitnas.search.context import SearchContext
from bitnas.spec import StudySpec

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

#: onnxruntime against torch on the same QDQ arithmetic: float rounding only (measured: at
#: most 2e-6 on these logits) ...
TOLERANCE = 1e-4
#: ... except where x / scale is an exact half step, a tie that onnxruntime's float32 division
#: and torch's may break differently (a digit's pixel of 0.5 at 8 bits: 127.5). Measured: 2 of
#: 288 validation samples in the mixed plan below, their logits 0.006 apart
AGREE = 0.98


def _agree(ours, theirs):
    """Share of samples whose logits all agree within TOLERANCE, and the largest difference."""
    diff = np.abs(ours - theirs).max(axis=1)
    return float((diff < TOLERANCE).mean()), float(diff.max())


def _spec(space, task=None, name="onnx"):
    return StudySpec.from_dict({
        "study": {"name": name, "trials": 4, "seed": 0, "strategy": "random"},
        "space": space, "task": task or {"name": "digits", "epochs": 2},
        "hardware": {"name": "generic45nm"},
        "objectives": [{"name": "accuracy"}, {"name": "energy_j"}]})


def _run(path, x):
    sess = ort.InferenceSession(str(path))
    return sess.run(None, {"input": x.numpy()})[0]


def _metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _export(ctx, params, tmp_path):
    cand = ctx.space.suggest(FixedTrial(params))
    model, metrics, _, _ = ctx.prepared(cand)
    groups, workload = ctx.structure(cand)
    item = ExportItem(candidate=cand, model=model, groups=groups, workload=workload, hardware=ctx.hardware,
                      space=ctx.space, task="digits", trial=5, metrics=metrics)
    return model, EXPORTERS.create("onnx").export(item, tmp_path)[0]


def test_a_front_member_exported_by_the_cli_runs_in_onnxruntime_as_bitnas_computed_it(tmp_path, capsys):
    from bitnas.cli import main
    from bitnas.search.pareto import front_trials
    from bitnas.search.study import run_search

    spec = _spec({"name": "cnn", "depth": [1], "widths": [8], "kernel_size": [3], "w_bits": [2, 4, 8],
                  "a_bits": [4, 8]})
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    member = front_trials(result.study)[0]
    assert main(["export", str(tmp_path / "run"), "--trial", str(member.number), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "run" / "export_onnx" / f"trial{member.number}.onnx"
    assert f"{path} ({path.stat().st_size:,} B)" in printed and "weight_bytes" in printed
    ctx = SearchContext(spec, cache_dir=tmp_path / "run" / "fp_cache")
    from bitnas.search.rebuild import rebuild_candidate

    cand = rebuild_candidate(ctx, member.params)
    model, _, _, _ = ctx.prepared(cand, qat=None)
    x = ctx.data.val.x
    share, worst = _agree(_run(path, x), model(x).detach().numpy())
    assert share >= AGREE and worst < 0.05, (share, worst)
    meta = _metadata(path)
    assert json.loads(meta["bitnas.candidate"]) == json.loads(cand.to_json())
    layers = json.loads(meta["bitnas.layers"])
    assert {v["group"] for v in layers.values()} == set(cand.plan.layers)
    assert all(v["w_bits"] == cand.plan[v["group"]].w_bits for v in layers.values())


def test_mixed_precision_and_schemes_agree_and_store_integer_codes(tmp_path):
    ctx = SearchContext(_spec({"name": "cnn", "depth": [2], "widths": [8], "kernel_size": [3],
                               "w_bits": [2, 4, 8], "a_bits": [4, 8], "quantizers": ["uniform", "pot"]}),
                        cache_dir=None)
    params = {"depth": 2, "width0": 8, "width1": 8, "kernel_size": 3,
              "conv0.w_bits": 2, "conv0.a_bits": 8, "conv0.quantizer": "uniform",
              "conv1.w_bits": 8, "conv1.a_bits": 4, "conv1.quantizer": "uniform",
              "fc.w_bits": 4, "fc.a_bits": 8, "fc.quantizer": "pot"}
    model, path = _export(ctx, params, tmp_path)
    x = ctx.data.val.x
    ours, theirs = _run(path, x), model(x).detach().numpy()
    share, worst = _agree(ours, theirs)
    assert share >= AGREE and worst < 0.05, (share, worst)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= AGREE
    proto = onnx.load(str(path))
    layers = json.loads(_metadata(path)["bitnas.layers"])
    storage = {v["group"]: v["weights"] for v in layers.values()}
    assert storage == {"conv0": "int4", "conv1": "int8", "fc": "dequantized"}
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    codes = [n for n in kinds if n.endswith("_codes")]
    assert sorted(kinds[n] for n in codes) == sorted([onnx.TensorProto.INT4, onnx.TensorProto.INT8])
    assert max(e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")) == 21
    # the 2-bit layer's codes are in -1..1 (the 2-bit symmetric range), the 8-bit one's in -127..127
    values = {n: onnx.numpy_helper.to_array(t) for n, t in
              ((t.name, t) for t in proto.graph.initializer) if n in codes}
    assert {int(v.min()) for n, v in values.items() if kinds[n] == onnx.TensorProto.INT4} >= {-1}
    two_bit = [v for n, v in values.items() if kinds[n] == onnx.TensorProto.INT4]
    assert all(np.abs(v).max() <= 1 for v in two_bit) and all(np.abs(v).max() <= 127 for v in values.values())
    # every quantized input is clipped to its b-bit range and passed through QDQ
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") == 3 and ops.count("Clip") == 3


def test_a_transformer_exports_too(tmp_path):
    ctx = SearchContext(_spec({"name": "tiny_transformer", "d_model": [8], "depth": [1], "heads": [2],
                               "w_bits": [4, 8], "a_bits": [8]}), cache_dir=None)
    params = {"d_model": 8, "depth": 1, "heads": 2, "mlp_ratio": 2,
              **{f"{g}.w_bits": 4 for g in ctx.space.group_names(1)}}
    model, path = _export(ctx, params, tmp_path)
    x = ctx.data.val.x
    share, worst = _agree(_run(path, x), model(x).detach().numpy())
    assert share >= AGREE and worst < 0.05, (share, worst)


def test_what_onnx_cannot_express_is_one_line():
    space = SPACES.create("spikformer", input_shape=(1, 8, 8), num_classes=10,
                          **SPACES.get("spikformer").tiny_options)
    model = space.build({"time_steps": 2, "embed_dims": 16, "depth": 1, "heads": 1, "mlp_ratio": 2})
    item = ExportItem(candidate=None, model=model, groups={}, workload=[], hardware=None, space=space,
                      task="digits")
    with pytest.raises(BitnasError, match="export spiking networks with --format torch") as e:
        EXPORTERS.create("onnx").export(item, None)
    assert "\n" not in str(e.value)


def test_an_unknown_format_is_one_line_and_exit_2(tmp_path, capsys):
    from bitnas.cli import main

    assert main(["export", str(tmp_path), "--trial", "0", "--format", "onix"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'onix'" in err and "onnx" in err  # checked before the run


def test_weights_on_a_b_bit_grid_give_codes_and_others_none():
    from bitnas.exporters.onnx import _weight_codes

    scale, codes = _weight_codes(torch.tensor([[0.5, -0.5, 0.0], [0.1, 0.1, -0.1]]), 2)
    assert torch.allclose(scale, torch.tensor([0.5, 0.1]))
    assert torch.equal(codes, torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -1.0]]))
    assert _weight_codes(torch.tensor([[0.5, -0.25, 0.0]]), 2) is None  # -0.25 is between levels
    scale, codes = _weight_codes(torch.tensor([[0.7, -0.2, 0.1]]), 4)
    assert torch.equal(codes, torch.tensor([[7.0, -2.0, 1.0]]))
    assert _weight_codes(torch.tensor([[0.3, -0.1, 0.2]]), 4) is None


class _Stub:
    """What the exporter asks of a space: an example input."""

    def example_input(self):
        return torch.zeros(1, 6)


def test_a_fused_layer_split_across_groups_float_and_wide_parts(tmp_path):
    """Rows 0..3 and 4..7 of one linear layer in two groups (listed in reverse), one at 1-bit
    weights, one at 12 bits (no QDQ form: stored dequantized) with float activations; a float
    head. The metadata names each part's own group, and onnxruntime agrees."""
    from bitnas.evaluators.ptq import ptq
    from bitnas.plan import Candidate, LayerQuant, QuantPlan

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    groups = {"high": ["0[4:8]"], "low": ["0[0:4]"], "head": ["2"]}
    plan = QuantPlan({"low": LayerQuant(1, 8), "high": LayerQuant(12, 32), "head": LayerQuant(32, 8)})
    x = torch.randn(64, 6)
    qmodel = ptq(model, plan, groups, [x])
    item = ExportItem(candidate=Candidate(arch={}, plan=plan, space="stub"), model=qmodel, groups=groups,
                      workload=[], hardware=None, space=_Stub(), task="none", trial=1)
    path = EXPORTERS.create("onnx").export(item, tmp_path)[0]
    layers = json.loads(_metadata(path)["bitnas.layers"])
    assert {(v["group"], v["weights"], v["a_bits"]) for v in layers.values()} == {
        ("low", "int4", 8), ("high", "dequantized", 32), ("head", "float", 8)}
    share, worst = _agree(_run(path, x), qmodel(x).detach().numpy())
    assert share == 1.0, worst
    # 12-bit activations have no QDQ form here: refused, naming the layer
    wide = ptq(model, QuantPlan({"low": LayerQuant(4, 12), "high": LayerQuant(4, 8), "head": LayerQuant(8)}),
               groups, [x])
    item = ExportItem(candidate=Candidate(arch={}, plan=plan, space="stub"), model=wide, groups=groups,
                      workload=[], hardware=None, space=_Stub(), task="none")
    with pytest.raises(BitnasError, match="layer 0: 12-bit activations"):
        EXPORTERS.create("onnx").export(item, tmp_path)
