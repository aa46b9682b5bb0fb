"""snn45nm: hand-computed figures for a 2-layer spiking net, and agreement with
SpikingJelly's own SimpleEnergy estimate at 32 bits."""

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import SimpleEnergyConfig, estimate_simple_energy
from torch import nn

from bitnas.evaluators import EventDigitsTask
from bitnas.hardware_models import LayerWorkload, SNN45nm, extract_workload, measure_activity
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import SPACES, load_all
from bitnas.spaces.spiking import SpikingClassifier

load_all()

# layer 1 sees dense input (events), layer 2 sees spikes at a known rate of 0.25
DENSE = LayerWorkload("l1", "conv2d", macs=100, params=50, in_elems=20, out_elems=10,
                      group="l1", timesteps=4, in_spike_rate=None, state_elems=10)
SPIKING = LayerWorkload("l2", "linear", macs=200, params=200, in_elems=10, out_elems=20,
                        group="l2", timesteps=4, in_spike_rate=0.25, state_elems=20)


def test_two_layer_spiking_net_hand_computed():
    plan = QuantPlan({"l1": LayerQuant(4, 8, v_bits=8), "l2": LayerQuant(2, 8, v_bits=16)})
    cost = SNN45nm().cost([DENSE, SPIKING], plan)
    l1, l2 = cost.per_layer["l1"], cost.per_layer["l2"]
    # l1: fan-in 100/10 = 10 -> acc = 4+8+4 = 16 bits; MAC = 0.2*32/64 + 0.1*16/32 = 0.15 pJ
    # 4 steps * 100 MACs = 400 ops
    assert l1["ops"] == 400 and l1["dense"] == 1.0
    assert l1["compute_energy_j"] == pytest.approx(400 * 0.15e-12)
    # l2: SOP = 0.25 * 4 * 200 = 200; fan-in 10 -> acc = 2+4 = 6 bits; AC = 0.1*6/32 pJ
    assert l2["ops"] == 200 and l2["dense"] == 0.0
    assert l2["compute_energy_j"] == pytest.approx(200 * 0.1 * 6 / 32 * 1e-12)
    # memory: weights 50*4 + 200*2 = 600 bits = 75 bytes; membranes 10*8 and 20*16 bits;
    # inputs 20*8 bits (dense) and 10*1 (spikes); everything is under 8 KB: 10/64 pJ per bit
    assert cost.weight_bytes == 75
    e_bit = 10 / 64 * 1e-12
    assert l1["weight_energy_j"] == pytest.approx(4 * 200 * e_bit)
    assert l2["state_energy_j"] == pytest.approx(4 * 2 * 320 * e_bit)
    assert l1["act_energy_j"] == pytest.approx(4 * 160 * e_bit)
    assert l2["act_energy_j"] == pytest.approx(4 * 10 * e_bit)
    assert cost.peak_act_bytes == (10 + 320 + 7) // 8  # l2: 10 spike bits + 320 state bits
    assert cost.energy_j == pytest.approx(sum(p["energy_j"] for p in cost.per_layer.values()))


def test_float_reduces_to_the_spikformer_convention():
    plan = QuantPlan({"l1": LayerQuant(32, 32), "l2": LayerQuant(32, 32)})
    cost = SNN45nm().cost([DENSE, SPIKING], plan)
    compute = sum(p["compute_energy_j"] for p in cost.per_layer.values())
    assert compute == pytest.approx((4.6 * 400 + 0.9 * 200) * 1e-12)


def test_fewer_spikes_cost_less():
    plan = QuantPlan({"l1": LayerQuant(4), "l2": LayerQuant(4)})
    quiet = LayerWorkload(**{**SPIKING.__dict__, "in_spike_rate": 0.05})
    model = SNN45nm()
    assert model.cost([DENSE, quiet], plan).energy_j < model.cost([DENSE, SPIKING], plan).energy_j


def _sj_compute_pj(model, x, ignore):
    with torch.no_grad():
        rep = estimate_simple_energy(model, x, config=SimpleEnergyConfig(extra_ignore_modules=ignore))
    return rep.energy_mac_pj + rep.energy_ac_pj, rep


def test_agrees_with_spikingjelly_simple_energy_on_a_small_net():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1, bias=False), neuron.LIFNode(),
                        layer.Flatten(), layer.Linear(8 * 8 * 8, 10, bias=False), neuron.LIFNode())
    functional.set_step_mode(net, "m")
    with torch.no_grad():
        net[0].weight.mul_(3)  # make layer 1 fire
    model = SpikingClassifier(net, steps=4, events=False, encoding="direct")
    x = torch.rand(5, 2, 8, 8)
    groups = {"l1": ["net.0"], "l2": ["net.3"]}
    wl = measure_activity(model, x, extract_workload(model, torch.zeros(1, 2, 8, 8), groups))
    assert wl[0].in_spike_rate is None and 0 < wl[1].in_spike_rate < 1
    cost = SNN45nm().cost(wl, QuantPlan({g: LayerQuant(32, 32) for g in groups}))
    ours_pj = sum(p["compute_energy_j"] for p in cost.per_layer.values()) * len(x) * 1e12
    sj_pj, rep = _sj_compute_pj(model, x, [neuron.BaseNode])
    # The one difference: SimpleEnergy also counts, as ACs, the adds of the mean over
    # T of the outputs: (T-1) * B * 10 of them, its AC count beyond its SynOps.
    extra_ac = rep.counts["ac"] - rep.counts["synop"]
    assert extra_ac == 3 * 5 * 10
    assert ours_pj + 0.9 * extra_ac == pytest.approx(sj_pj, rel=1e-9)
    assert ours_pj == pytest.approx(sj_pj, rel=1e-3)


def _firing_model(name):
    """A small untrained transformer whose BatchNorm statistics come from the batch, so
    that it fires in eval mode (fresh statistics leave an untrained net nearly silent)."""
    task = EventDigitsTask(bins=8)
    x = task.load(0).val.x[:8]
    space = SPACES.create(name, input_shape=task.input_shape, num_classes=10)
    torch.manual_seed(0)
    model = space.build({"time_steps": 4, "embed_dims": 16, "depth": 1, "heads": 1,
                         "mlp_ratio": 2})
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one pass sets the batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    groups = space.layer_groups(model)
    workload = extract_workload(model, space.example_input(), groups)
    return model, x, groups, measure_activity(model, x, workload)


@pytest.mark.parametrize("name,tolerance", [("spikformer", 0.05), ("spike_driven_transformer", 0.07)])
def test_agrees_with_simple_energy_on_the_spiking_transformers(name, tolerance):
    """Within a few percent (measured: 1.2 % and 3.4 %). SimpleEnergy also charges, as
    ACs, the residual adds, the spike-times-spike attention products and the pooling and
    mean ops, which snn45nm does not; BatchNorm is excluded on both sides (it folds into
    weights and thresholds)."""
    model, x, groups, wl = _firing_model(name)
    assert sum(1 for w in wl if w.in_spike_rate) >= 3  # synaptic ops are really exercised
    cost = SNN45nm().cost(wl, QuantPlan({g: LayerQuant(32, 32) for g in groups}))
    ours_pj = sum(p["compute_energy_j"] for p in cost.per_layer.values()) * len(x) * 1e12
    sj_pj, _ = _sj_compute_pj(model, x, [neuron.BaseNode, nn.modules.batchnorm._BatchNorm])
    assert ours_pj <= sj_pj
    assert ours_pj == pytest.approx(sj_pj, rel=tolerance)


def test_spike_share_equals_the_rate_for_1x1_and_exceeds_it_where_padding_drops_products():
    _, _, _, wl = _firing_model("spike_driven_transformer")
    by_name = {w.name: w for w in wl}
    one_by_one = by_name["net.blocks.0.attn.q_conv"]  # 1x1: every product is real
    assert one_by_one.in_spike_rate > 0
    assert one_by_one.in_spike_fraction == pytest.approx(one_by_one.in_spike_rate, rel=1e-6)
    padded = by_name["net.patch_embed.rpe_conv"]  # 3x3 with padding on a 4x4 grid
    assert padded.in_spike_fraction > padded.in_spike_rate > 0
