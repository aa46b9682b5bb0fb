"""The NIR export, read back by snnTorch's ``import_from_nir`` (the real client): its output,
stepped over the same T frames and averaged, against bitnas's quantized spiking CNN on the
validation batch; the bits and scheme in the graph's metadata; the one-line refusals.

Agreement is exact (max |difference| 0.0 on every validation sample, measured on digits and
event_digits): the quantized weights are written as their float values, the BatchNorm is
folded in float64, and snnTorch's ``Leaky`` (beta = 1 - dt/tau = 1/2, zero reset, threshold
scaled by its 1/2 input weight) steps the same membranes as SpikingJelly's LIF up to float
rounding, which moves no spike here. Two client-side adjustments, both snnTorch's conventions
and not the file's: its ``Flatten`` keeps NIR's per-sample ``start_dim`` 0, which on a batch
must be 1; and it is stepped one frame at a time. A membrane within float rounding of the
threshold could still spike in one and not the other; the tests would show it."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.exporters import ExportItem
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import EXPORTERS, SPACES
from bitnas.search.context import SearchContext
from bitnas.spec import StudySpec

nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")


def _spec(space, task=None, name="nir", hardware="loihi"):
    return StudySpec.from_dict({
        "study": {"name": name, "trials": 2, "seed": 0, "strategy": "random"},
        "space": space, "task": task or {"name": "digits", "epochs": 12},
        "hardware": {"name": hardware},
        "objectives": [{"name": "accuracy"}, {"name": "energy_j"}]})


def _snntorch(graph):
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note on the scaled threshold
        net = import_from_nir(graph)
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten):  # NIR's per-sample dims, on a batch
            m.start_dim += 1
    return net


def _on_grid(x, graph):
    """The frames as bitnas's first layer sees them (its input grid, from the metadata)."""
    grid = json.loads(graph.metadata["bitnas.input_grid"] or "null")
    if grid is None:
        return x
    s, z, b = grid["scale"], grid["zero_point"], grid["bits"]
    return (torch.clamp(torch.round(x / s) + z, 0, 2**b - 1) - z) * s


def _compare(model, path, x):
    """(bitnas's logits, snnTorch's logits, spikes bitnas's neurons fired) on ``x``."""
    graph = nir.read(str(path))
    net = _snntorch(graph)
    x = _on_grid(x, graph)
    spikes = []
    hooks = [m.register_forward_hook(lambda m, i, o: spikes.append(float(o.sum())))
             for m in model.modules() if type(m).__name__ == "LIFNode"]
    model.eval()
    with torch.no_grad():
        ours = model(x)
        for h in hooks:
            h.remove()
        seq = model.encode(x)
        assert seq.shape[0] == graph.metadata["bitnas.time_steps"]
        for m in net.modules():
            if isinstance(m, snn.Leaky):
                m.reset_mem()
        state, outs = None, []
        for t in range(seq.shape[0]):
            out, state = net(seq[t], state)
            outs.append(out)
    return ours, torch.stack(outs).mean(0), spikes


def test_a_searched_spiking_cnn_exported_by_the_cli_runs_in_snntorch_exactly(tmp_path, capsys):
    from bitnas.cli import main
    from bitnas.search.pareto import front_trials
    from bitnas.search.rebuild import rebuild_candidate
    from bitnas.search.study import run_search

    spec = _spec({"name": "spiking_cnn", "time_steps": [4], "depth": [2], "widths": [8],
                  "w_bits": [2, 4], "a_bits": [8], "quantizers": ["uniform", "pot"]})
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    member = front_trials(result.study)[0]
    assert main(["export", str(tmp_path / "run"), "--trial", str(member.number), "--format", "nir"]) == 0
    path = tmp_path / "run" / "export_nir" / f"trial{member.number}.nir"
    assert f"{path} ({path.stat().st_size:,} B)" in capsys.readouterr().out

    ctx = SearchContext(spec, cache_dir=tmp_path / "run" / "fp_cache")
    cand = rebuild_candidate(ctx, member.params)
    model, metrics, _, _ = ctx.prepared(cand, qat=None)
    ours, theirs, spikes = _compare(model, path, ctx.data.val.x)
    assert all(s > 0 for s in spikes), spikes  # every layer of neurons fires: a real comparison
    assert metrics["accuracy"] > 0.5  # and the network classifies
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()

    graph = nir.read(str(path))
    assert json.loads(graph.metadata["bitnas.candidate"]) == json.loads(cand.to_json())
    assert graph.metadata["bitnas.trial"] == str(member.number)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d | nir.Affine):
            lq = cand.plan[node.metadata["group"]]
            assert node.metadata["w_bits"] == str(lq.w_bits) and node.metadata["scheme"] == lq.quantizer, name
    assert {n.metadata["group"] for n in graph.nodes.values() if isinstance(n, nir.Conv2d | nir.Affine)} \
        == set(cand.plan.layers)
    assert sum(isinstance(n, nir.LIF) for n in graph.nodes.values()) == 3  # stem, two blocks


def _prepared(space, task, params):
    ctx = SearchContext(_spec(space, task))
    cand = ctx.space.suggest(FixedTrial(params))
    model, metrics, _, _ = ctx.prepared(cand)
    groups, workload = ctx.structure(cand)
    item = ExportItem(candidate=cand, model=model, groups=groups, workload=workload, hardware=ctx.hardware,
                      space=ctx.space, task=task["name"], trial=7, metrics=metrics)
    return ctx, model, item


def test_mixed_plan_on_events_agrees_and_weights_are_the_quantized_values(tmp_path):
    task = {"name": "event_digits", "bins": 4, "size": 16, "epochs": 12}
    params = {"time_steps": 4, "depth": 2, "width0": 8, "width1": 8, "width2": 8,
              "stem.w_bits": 4, "stem.a_bits": 8, "stem.quantizer": "uniform",
              "block0.w_bits": 2, "block0.a_bits": 8, "block0.quantizer": "pot",
              "block1.w_bits": 3, "block1.a_bits": 8, "block1.quantizer": "uniform",
              "head.w_bits": 2, "head.a_bits": 8, "head.quantizer": "uniform"}
    ctx, model, item = _prepared({"name": "spiking_cnn", "time_steps": [4], "depth": [2], "widths": [8],
                                  "w_bits": [2, 3, 4], "quantizers": ["uniform", "pot"]}, task, params)
    path = EXPORTERS.create("nir").export(item, tmp_path)[0]
    assert path.name == "trial7.nir"
    ours, theirs, spikes = _compare(model, path, ctx.data.val.x)
    assert all(s > 0 for s in spikes), spikes
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    graph = nir.read(str(path))
    assert graph.metadata["bitnas.encoding"] == "events"
    # the head's weights in the file are its 2-bit grid: 3 levels per output row (-s, 0, s)
    head = graph.nodes["head"].weight
    assert all(len(set(row.tolist()) - {0.0}) <= 2 for row in head)
    assert torch.equal(torch.from_numpy(head), model.net.head.quantized(0)[0].detach())
    lif = graph.nodes["stem.lif"]
    assert float(lif.tau.flat[0]) == pytest.approx(2e-4) and float(lif.v_threshold.flat[0]) == 1.0


def test_spikformer_attention_is_refused_in_one_line(tmp_path):
    space = SPACES.create("spikformer", input_shape=(1, 8, 8), num_classes=10,
                          **{k: v for k, v in SPACES.get("spikformer").tiny_options.items()})
    arch = {"time_steps": 2, "embed_dims": 16, "depth": 1, "heads": 1, "mlp_ratio": 2}
    item = ExportItem(candidate=None, model=space.build(arch), groups={}, workload=[], hardware=None,
                      space=space, task="digits")
    with pytest.raises(BitnasError, match=r"spike-times-spike attention has no NIR primitive") as err:
        EXPORTERS.create("nir").export(item, tmp_path)
    assert "\n" not in str(err.value) and "--format torch" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_quantized_membranes_and_non_spiking_models_are_refused(tmp_path):
    from bitnas.quantizers.fakequant import fake_quantize

    space = SPACES.create("spiking_cnn", input_shape=(1, 8, 8), num_classes=10, v_bits=[8, 32])
    model = space.build({"time_steps": 2, "depth": 1, "widths": [4, 4]})
    groups, neurons = space.layer_groups(model), space.neuron_groups(model)
    plan = QuantPlan({g: LayerQuant(4, 32, "uniform", 8) for g in groups})
    q = fake_quantize(model, plan, groups, neurons)
    item = ExportItem(candidate=None, model=q, groups=groups, workload=[], hardware=None, space=space,
                      task="digits")
    with pytest.raises(BitnasError, match=r"op net\.stem\.lif: .*membrane.*v_bits = 32"):
        EXPORTERS.create("nir").export(item, tmp_path)

    cnn = SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10)
    item = ExportItem(candidate=None, model=torch.nn.Linear(2, 2), groups={}, workload=[], hardware=None,
                      space=cnn, task="digits")
    with pytest.raises(BitnasError, match=r"space cnn is not a spiking network.*--format onnx"):
        EXPORTERS.create("nir").export(item, tmp_path)


def test_the_cli_refuses_a_quantized_membrane_in_one_line_and_exit_2(tmp_path, capsys):
    from bitnas.cli import main
    from bitnas.search.study import run_search

    spec = _spec({"name": "spiking_cnn", "time_steps": [2], "depth": [1], "widths": [4], "w_bits": [4],
                  "v_bits": [8]}, task={"name": "digits", "epochs": 1})
    run_search(spec, tmp_path / "run", log=lambda m: None)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--trial", "0", "--format", "nir"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "op net.stem.lif" in err and "v_bits = 32" in err
    out = tmp_path / "run" / "export_nir"
    assert not out.exists() or not any(out.iterdir())
