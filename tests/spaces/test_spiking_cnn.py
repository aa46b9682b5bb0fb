"""The spiking_cnn space: groups, a hand-counted workload, membrane bits, Loihi's fit checks, a search."""

import optuna
import pytest
import torch
from optuna.trial import TrialState
from spikingjelly.activation_based import neuron

from bitnas.errors import BitnasError
from bitnas.evaluators import EventDigitsTask, calibrate
from bitnas.hardware_models import extract_workload
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.quantizers import fake_quantize
from bitnas.quantizers.neuron import QuantLIFNode
from bitnas.registry import HARDWARE, SPACES, load_all

load_all()
EVENTS = EventDigitsTask(bins=4, size=16).input_shape  # (4, 2, 16, 16)


def _space(input_shape=EVENTS, **kw):
    return SPACES.create("spiking_cnn", input_shape=input_shape, num_classes=10, **kw)


def _workload(space, arch):
    model = space.build(arch)
    return model, extract_workload(model, space.example_input(), space.layer_groups(model),
                                   space.neuron_groups(model))


def test_groups_name_real_modules_and_only_neuron_owners_search_v_bits():
    space = _space(depth=[2], widths=[4, 8], v_bits=[4, 32])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    cand = space.suggest(trial)
    assert {"time_steps", "width0", "width1", "width2"} <= set(trial.params)
    assert "width3" not in trial.params  # depth 2: the stem's width and one per block
    model = space.build(cand.arch_dict())
    groups, neurons = space.layer_groups(model), space.neuron_groups(model)
    assert list(groups) == ["stem", "block0", "block1", "head"] == list(cand.plan.layers)
    modules = dict(model.named_modules())
    assert all(isinstance(modules[m], torch.nn.Conv2d | torch.nn.Linear)
               for members in groups.values() for m in members)
    assert all(isinstance(modules[n], neuron.LIFNode) for names in neurons.values() for n in names)
    assert neurons["head"] == [] and all(neurons[g] for g in ("stem", "block0", "block1"))
    searched = {k.rsplit(".", 1)[0] for k in trial.params if k.endswith(".v_bits")}
    assert searched == {"stem", "block0", "block1"}
    assert cand.plan["head"].v_bits == 32
    with pytest.raises(BitnasError, match="exceeds the task's 4 event bins"):
        _space(time_steps=[8])
    with pytest.raises(BitnasError, match="unknown group"):
        _space(depth=[1], group_w_bits={"block1": [8]})


def test_workload_by_hand():
    space = _space()
    model, wl = _workload(space, {"time_steps": 3, "depth": 1, "widths": [4, 8]})
    rows = [(w.name, w.kind, w.group, w.macs, w.params, w.folded, w.bias_params, w.state_elems)
            for w in wl]
    assert rows == [
        # 4 x 16 x 16 outputs, 2 x 3 x 3 products each; the LIF after it holds 1,024 membranes
        ("net.stem.conv", "conv2d", "stem", 1024 * 18, 4 * 2 * 9, False, 0, 1024),
        # the BN folds into the bias-free conv: its shift becomes that conv's 4 biases
        ("net.stem.bn", "norm", "stem", 1024, 0, True, 4, 0),
        ("net.blocks.0.conv", "conv2d", "block0", 2048 * 36, 8 * 4 * 9, False, 0, 0),
        ("net.blocks.0.bn", "norm", "block0", 2048, 0, True, 8, 0),
        # 2x2 average: 3 adds per output, 8 x 8 x 8 outputs; it feeds the LIF (512 membranes)
        ("net.blocks.0.pool", "pool", "block0", 512 * 3, 0, False, 0, 512),
        ("net.head", "linear", "head", 512 * 10, 5120, False, 10, 0),
    ]
    assert {w.timesteps for w in wl} == {3}
    # an 8x8 digit pools three times at most: a fourth block keeps its 1x1 map
    digits = _space(input_shape=(1, 8, 8))
    net = digits.build({"time_steps": 2, "depth": 4, "widths": [4, 4, 4, 4, 6]}).net
    assert [hasattr(b, "pool") for b in net.blocks] == [True, True, True, False]
    assert net.head.in_features == 6
    out = digits.build({"time_steps": 2, "depth": 4, "widths": [4, 4, 4, 4, 6]})(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_membrane_bits_change_what_the_network_computes():
    space = _space(v_bits=[2, 32])
    torch.manual_seed(0)
    model = space.build({"time_steps": 4, "depth": 1, "widths": [8, 8]}).eval()
    with torch.no_grad():  # untrained, at unit BN scale, hardly a membrane reaches the threshold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(6.0)
    groups, neurons = space.layer_groups(model), space.neuron_groups(model)
    x = torch.poisson(torch.full((4, *EVENTS), 0.5))

    def run(v_bits):
        plan = QuantPlan({g: LayerQuant(8, 8, "uniform", v_bits) for g in groups})
        q = fake_quantize(model, plan, groups, neurons)
        calibrate(q, [x])
        with torch.no_grad():
            return q, q(x)

    q32, ref = run(32)
    q2, coarse = run(2)
    assert not any(isinstance(m, QuantLIFNode) for m in q32.modules())
    assert sum(isinstance(m, QuantLIFNode) for m in q2.modules()) == 2  # stem and block0
    assert torch.isfinite(coarse).all() and not torch.allclose(coarse, ref)


def test_loihi_snn45nm_and_generic45nm_cost_it():
    space = _space()
    _, wl = _workload(space, {"time_steps": 2, "depth": 1, "widths": [4, 8]})
    plan = QuantPlan({g: LayerQuant(4, v_bits=8) for g in ("stem", "block0", "head")})
    for name in ("loihi", "snn45nm", "generic45nm"):
        cost = HARDWARE.create(name).cost(wl, plan)
        assert cost.feasible and cost.energy_j > 0 and cost.latency_s > 0, name
    cost = HARDWARE.create("loihi").cost(wl, plan)
    # compartments: 1,024 (stem), 512 (block0: the LIF after its 2x2 pool, not the conv's 2,048
    # outputs), 10 (head); pools and folded BNs none
    assert cost.fields["cores"] == 3
    assert cost.per_layer["net.blocks.0.conv"]["cores"] == 1
    assert cost.per_layer["net.blocks.0.pool"]["cores"] == 0


@pytest.mark.parametrize("bits,held", [(16, "16-bit"), (32, "float")])
def test_loihi_refuses_weights_wider_than_nine_bits_naming_the_layer(bits, held):
    space = _space()
    _, wl = _workload(space, {"time_steps": 2, "depth": 1, "widths": [4, 8]})
    plan = QuantPlan({"stem": LayerQuant(8), "block0": LayerQuant(bits), "head": LayerQuant(8)})
    cost = HARDWARE.create("loihi").cost(wl, plan)
    assert not cost.feasible and cost.violations["loihi_weight_bits"] > 0
    assert cost.reasons["loihi_weight_bits"].startswith(f"layer net.blocks.0.conv: {held} weights")
    assert "1..9-bit" in cost.reasons["loihi_weight_bits"]
    assert "loihi_cores" not in cost.reasons  # a limit that holds has no reason


def test_loihi_refuses_a_network_with_more_cores_than_the_chip():
    # 64x64 frames at width 32: the stem's 131,072 compartments take 128 cores, block0's 32,768
    # (its LIF after the 2x2 pool) 32; the head's 32 x 32 x 32 x 10 4-bit weights (160 KiB) need
    # two cores of 128 KiB synaptic memory
    space = _space(input_shape=(1, 64, 64))
    _, wl = _workload(space, {"time_steps": 1, "depth": 1, "widths": [32, 32]})
    plan = QuantPlan({g: LayerQuant(4) for g in ("stem", "block0", "head")})
    cost = HARDWARE.create("loihi").cost(wl, plan)
    assert cost.per_layer["net.head"]["cores"] == 2
    assert cost.fields["cores"] == 128 + 32 + 2
    assert cost.violations["loihi_cores"] == pytest.approx(162 / 128 - 1)
    assert not cost.feasible
    reason = cost.reasons["loihi_cores"]
    assert "162 cores" in reason and "has 128" in reason and "layer net.stem.conv" in reason


def test_a_two_trial_search_on_event_digits(tmp_path):
    from bitnas.search.study import run_search
    from bitnas.spec import StudySpec

    spec = StudySpec.from_dict({
        "study": {"name": "scnn", "trials": 2, "seed": 0, "sampler": "random"},
        "space": {"name": "spiking_cnn", "time_steps": [2], "depth": [1], "widths": [4],
                  "w_bits": [2, 4, 8], "quantizers": ["uniform", "pot"], "v_bits": [4, 32]},
        "task": {"name": "event_digits", "bins": 2, "size": 8, "epochs": 1, "calib_batches": 1,
                 "batch_size": 512},
        "hardware": {"name": "loihi"},
        "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
    })
    result = run_search(spec, tmp_path / "run", log=lambda m: None, export=False)
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        assert set(t.user_attrs["candidate"]["plan"]) == {"stem", "block0", "head"}
        assert 0.0 <= t.user_attrs["metrics"]["accuracy"] <= 1.0
        assert t.user_attrs["cost"]["fields"]["cores"] >= 3
