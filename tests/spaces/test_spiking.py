"""The spiking spaces: event input, state reset, membrane quantization, bad knobs."""

import pytest
import torch
from spikingjelly.activation_based import neuron

from bitnas.errors import BitnasError
from bitnas.evaluators import EventDigitsTask, calibrate
from bitnas.hardware_models import extract_workload
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.quantizers import fake_quantize
from bitnas.quantizers.neuron import QuantLIFNode, quantize_membrane
from bitnas.registry import SPACES, load_all
from bitnas.spaces.spiking import rebin

load_all()
SPIKING = ["spikformer", "spike_driven_transformer"]
EVENTS = EventDigitsTask(bins=8).input_shape


def _space(name, **kw):
    return SPACES.create(name, input_shape=EVENTS, num_classes=10, **kw)


def _cap_arch(space):
    """The largest configuration the space's default knobs allow."""
    return {"time_steps": max(space.time_steps), "embed_dims": max(space.embed_dims),
            "depth": max(space.depth), "heads": max(space.heads), "mlp_ratio": max(space.mlp_ratio)}


@pytest.mark.parametrize("name", SPIKING)
def test_event_input_at_the_size_cap_forward_backward(name):
    space = _space(name)
    torch.manual_seed(0)
    model = space.build(_cap_arch(space))
    x = torch.poisson(torch.full((3, *EVENTS), 0.3))
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", SPIKING)
def test_state_is_reset_between_batches(name):
    space = _space(name)
    model = space.build(_cap_arch(space)).eval()
    x = torch.poisson(torch.full((2, *EVENTS), 0.5))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", SPIKING)
def test_groups_cover_every_layer_once_and_workload_counts_steps(name):
    space = _space(name)
    arch = {**_cap_arch(space), "time_steps": 4}
    model = space.build(arch)
    groups = space.layer_groups(model)
    assert list(groups) == space.group_names(arch["depth"])
    wl = extract_workload(model, space.example_input(), groups)
    assert {w.group for w in wl} == set(groups)
    assert {w.timesteps for w in wl if w.group != "head"} == {4}
    weights = {n: m.weight.numel() for n, m in model.named_modules()
               if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear)}
    assert sum(w.params for w in wl) == sum(weights.values())  # every weight in exactly one group


def test_rebin_is_frame_integration():
    x = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)
    y = rebin(x, 3)
    assert y.shape == (2, 3, 3)
    assert torch.equal(y.sum(1), x.sum(1))
    assert torch.equal(y[:, 0], x[:, 0:3].sum(1))


def test_membrane_grid():
    v = torch.linspace(-3, 3, 101)
    q = quantize_membrane(v, 4, v_threshold=1.0)
    assert torch.allclose(q / 0.25, torch.round(q / 0.25))  # step = v_th / 2^(4-2)
    assert q.min() >= -2.0 and q.max() <= 1.75
    assert quantize_membrane(v, 32, 1.0) is v


def test_quantized_membrane_changes_the_spikes_and_float_does_not():
    torch.manual_seed(0)
    x = torch.rand(6, 4, 50) * 1.6  # some neurons reach the threshold, some do not
    lif = neuron.LIFNode(step_mode="m")
    ref = lif(x)
    assert 0 < ref.mean() < 1
    lif.reset()
    same = QuantLIFNode.from_lif(lif, 32)
    assert torch.equal(same(x), ref)
    coarse = QuantLIFNode.from_lif(lif, 2)
    assert not torch.equal(coarse(x), ref)


@pytest.mark.parametrize("name", SPIKING)
def test_plan_v_bits_reach_the_neurons(name):
    space = _space(name, v_bits=[4, 32])
    model = space.build(_cap_arch(space))
    groups, neurons = space.layer_groups(model), space.neuron_groups(model)
    plan = QuantPlan({g: LayerQuant(4, 8, "pot", 4) for g in groups})
    q = fake_quantize(model, plan, groups, neurons)
    swapped = [m for m in q.modules() if isinstance(m, QuantLIFNode)]
    assert len(swapped) == sum(len(v) for v in neurons.values()) > 0
    x = torch.poisson(torch.full((2, *EVENTS), 0.3))
    calibrate(q, [x])
    assert q(x).shape == (2, 10)


@pytest.mark.parametrize("kw,message", [
    ({"time_steps": [0]}, "space.time_steps values must be >= 1"),
    ({"time_steps": [16]}, "exceeds the task's 8 event bins"),
    ({"embed_dims": [20]}, "multiples of 8"),
    ({"embed_dims": [24], "heads": [5]}, "not divisible by space.heads"),
    ({"v_bits": [1]}, "v_bits must be 2..16 or 32"),
    ({"encoding": "latency"}, "space.encoding = 'latency'"),
])
def test_bad_knobs(kw, message):
    with pytest.raises(BitnasError, match=message):
        _space("spikformer", **kw)


def test_v_bits_are_searched_only_where_a_group_owns_neurons():
    import optuna

    space = _space("spikformer", v_bits=[4, 8])
    trial = optuna.create_study().ask()
    cand = space.suggest(trial)
    searched = {k.rsplit(".", 1)[0] for k in trial.params if k.endswith(".v_bits")}
    assert {"block0.q", "block0.proj", "block0.mlp1", "stem0"} <= searched
    assert not searched & {"block0.k", "block0.v", "head"}  # the fused qkv neuron follows q
    assert cand.plan["block0.k"].v_bits == 32 and cand.plan["head"].v_bits == 32


@pytest.mark.parametrize("name", SPIKING)
def test_membrane_state_is_what_the_groups_neurons_hold(name):
    from bitnas.hardware_models.workload import neuron_state_elems

    space = _space(name)
    model = space.build({**_cap_arch(space), "depth": 1})
    neurons = space.neuron_groups(model)
    state = neuron_state_elems(model, space.example_input(), neurons)
    for group, names in neurons.items():
        expected = 0
        for n in names:  # measured by hand: one step of one sample through each neuron
            seen: list[int] = []
            h = model.get_submodule(n).register_forward_hook(
                lambda m, i, o, seen=seen: seen.append(o[0].numel()))
            model(space.example_input())
            h.remove()
            expected += seen[0]
        assert state[group] == expected
    assert all(v > 0 for g, v in state.items() if neurons[g])
