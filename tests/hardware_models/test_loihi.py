"""loihi: hand-computed figures for a 2-layer spiking net with known spike counts."""

import pytest

from bitnas.hardware_models import LayerWorkload, Loihi
from bitnas.plan import LayerQuant, QuantPlan

# layer 1: 10 inputs spiking at 0.1, 10x10 fully connected (fan-in 10), T = 4
L1 = LayerWorkload("l1", "linear", macs=100, params=100, in_elems=10, out_elems=10,
                   group="l1", timesteps=4, in_spike_rate=0.1)
L2 = LayerWorkload("l2", "linear", macs=50, params=50, in_elems=10, out_elems=5,
                   group="l2", timesteps=4, in_spike_rate=0.5)
PLAN = QuantPlan({"l1": LayerQuant(8), "l2": LayerQuant(4)})


def test_two_layer_net_hand_computed():
    cost = Loihi().cost([L1, L2], PLAN)
    l1, l2 = cost.per_layer["l1"], cost.per_layer["l2"]
    # synaptic ops = rate * T * MACs: 0.1*4*100 = 40 and 0.5*4*50 = 100, at 23.6 pJ
    assert l1["synops"] == pytest.approx(40) and l2["synops"] == pytest.approx(100)
    assert l1["synop_energy_j"] == pytest.approx(40 * 23.6e-12)
    # neuron updates: T * outputs; active share 1 - (1 - r)^fan_in with fan-in 10
    a1, a2 = 1 - 0.9**10, 1 - 0.5**10
    assert l1["neuron_energy_j"] == pytest.approx(40 * (a1 * 81 + (1 - a1) * 52) * 1e-12)
    assert l2["neuron_energy_j"] == pytest.approx(20 * (a2 * 81 + (1 - a2) * 52) * 1e-12)
    # routing: input spikes r*T*inputs = 4 and 20, each 1.7 pJ in tile + one 3.0 pJ hop
    assert l1["routing_energy_j"] == pytest.approx(4 * 4.7e-12)
    assert l2["routing_energy_j"] == pytest.approx(20 * 4.7e-12)
    # one core each; per step, the slower core: l2 = (100*3.5 + 20*(a2*8.4+(1-a2)*5.3) + 20*2.1)/4 ns
    step2 = (100 * 3.5 + 20 * (a2 * 8.4 + (1 - a2) * 5.3) + 20 * 2.1) / 4
    step1 = (40 * 3.5 + 40 * (a1 * 8.4 + (1 - a1) * 5.3) + 4 * 2.1) / 4
    latency = 4 * (max(step1, step2) + 113) * 1e-9
    assert cost.latency_s == pytest.approx(latency)
    static = 0.0008 * 2 * latency
    dynamic = sum(p["synop_energy_j"] + p["neuron_energy_j"] + p["routing_energy_j"]
                  for p in (l1, l2))
    assert cost.energy_j == pytest.approx(dynamic + static)
    assert cost.feasible


def test_cores_grow_when_bits_outgrow_a_cores_memory():
    # 200,000 weights (and 500 32-bit scales): at 4 bits 102,000 bytes fit one 128 KB core;
    # at 8 bits they need two
    big = LayerWorkload("big", "linear", macs=200_000, params=200_000, in_elems=400,
                        out_elems=500, group="big", weight_shape=(500, 400), timesteps=2,
                        in_spike_rate=0.1)
    model = Loihi()
    c4 = model.cost([big], QuantPlan({"big": LayerQuant(4)}))
    c8 = model.cost([big], QuantPlan({"big": LayerQuant(8)}))
    assert c4.per_layer["big"]["cores"] == 1 and c8.per_layer["big"]["cores"] == 2
    assert c8.energy_j > c4.energy_j  # the extra core's static power
    # and a chip's 128 cores bound the plan: 2,000 x 1,024 outputs need 2,000 cores
    wide = LayerWorkload("wide", "linear", macs=10, params=10, in_elems=1,
                         out_elems=2_000 * 1024, group="wide", timesteps=1, in_spike_rate=0.1)
    over = model.cost([wide], QuantPlan({"wide": LayerQuant(4)}))
    assert over.violations["loihi_cores"] > 0 and not over.feasible


@pytest.mark.parametrize("bits,feasible", [(1, True), (9, True), (10, False), (16, False), (32, False)])
def test_weight_bits_outside_one_to_nine_are_infeasible(bits, feasible):
    cost = Loihi().cost([L1], QuantPlan({"l1": LayerQuant(bits)}))
    assert cost.feasible is feasible


def test_spec_with_bits_loihi_cannot_hold_is_a_clear_error(tmp_path):
    from bitnas.errors import SpecError
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    path = write_spec(tmp_path / "s.toml")
    path.write_text(path.read_text().replace('name = "generic45nm"', 'name = "loihi"')
                    .replace("w_bits = [2, 4, 8]", "w_bits = [2, 4, 16]"))
    expected = r"hardware loihi runs 1, 2, .*, 9-bit weights, but space.w_bits offers \[16\]"
    with pytest.raises(SpecError, match=expected):
        load_spec(path)


def test_routing_and_activity_use_the_share_of_inputs_that_spike():
    import dataclasses

    padded = dataclasses.replace(L1, in_spike_fraction=0.2)  # padding halved the synaptic rate
    cost = Loihi().cost([padded], QuantPlan({"l1": LayerQuant(8)}))
    p = cost.per_layer["l1"]
    assert p["synops"] == pytest.approx(0.1 * 4 * 100)  # synaptic ops follow the rate
    assert p["routing_energy_j"] == pytest.approx(0.2 * 4 * 10 * 4.7e-12)  # spikes, the share
    active = 1 - 0.8**10
    assert p["neuron_energy_j"] == pytest.approx(40 * (active * 81 + (1 - active) * 52) * 1e-12)


def test_pool_matmul_and_add_hand_computed_and_a_norm_that_cannot_fold_refused():
    from bitnas.errors import BitnasError
    from bitnas.hardware_models.base import ENERGY_FIELDS
    from tests.hardware_models.workloads import ADD, FOLDED, MATMUL, NORM, PLAN, POOL

    cost = Loihi().cost([POOL, FOLDED, MATMUL, ADD], PLAN)
    p = cost.per_layer
    # pool: every one of its 2 * 30 compares as a synaptic op; the residual: the 16 measured adds;
    # neither has compartments, cores or routing of its own; the folded BatchNorm costs nothing
    assert p["pool"]["synop_energy_j"] == pytest.approx(60 * 23.6e-12) and p["pool"]["cores"] == 0
    assert p["add"]["energy_j"] == pytest.approx(16 * 23.6e-12) and p["add"]["cores"] == 0
    assert all(v == 0 for v in p["bn"].values())
    # the products: 0.25 * 2 * 64 = 32 synaptic ops; 2 * 8 output compartments, active with
    # 1 - 0.75^8 (fan-in 8, no share measured: the rate stands in); 0.25 * 2 * 24 = 12 spikes
    active = 1 - 0.75**8
    assert p["attn"]["synops"] == pytest.approx(32)
    assert p["attn"]["neuron_energy_j"] == pytest.approx(16 * (active * 81 + (1 - active) * 52) * 1e-12)
    assert p["attn"]["routing_energy_j"] == pytest.approx(12 * 4.7e-12)
    step_ns = (32 * 3.5 + 16 * (active * 8.4 + (1 - active) * 5.3) + 12 * 2.1) / 2
    assert cost.latency_s == pytest.approx(2 * (step_ns + 113) * 1e-9)
    assert cost.value("cores") == 1 and p["attn"]["static_energy_j"] == pytest.approx(
        0.0008 * cost.latency_s)
    # the live set: the pool's 40 + 10 spike bits, plus the 5 membranes at 24 bits
    assert cost.peak_act_bytes == (50 + 120 + 7) // 8
    for f in ("energy_j", *ENERGY_FIELDS):
        assert cost.value(f) == pytest.approx(sum(q[f] for q in p.values()))
    with pytest.raises(BitnasError, match=r"hardware loihi cannot price 'norm' ops \(op ln: a "
                       r"normalization that does not fold into weights\)"):
        Loihi().cost([NORM, MATMUL], PLAN)


def test_a_layer_s_compartments_are_the_neurons_it_feeds():
    """A conv whose 2x2 pool comes before its LIF feeds a quarter of its outputs: those are the
    compartments (cores, neuron updates); a layer with no pool after it keeps its outputs."""
    conv = LayerWorkload("conv", "conv2d", macs=2048 * 36, params=288, in_elems=1024, out_elems=2048,
                         group="b", timesteps=2, in_spike_rate=0.2)
    pool = LayerWorkload("pool", "pool", macs=512 * 3, params=0, in_elems=2048, out_elems=512,
                         group="b", timesteps=2, state_elems=512)
    head = LayerWorkload("head", "linear", macs=5120, params=5120, in_elems=512, out_elems=10,
                         group="h", timesteps=2, in_spike_rate=0.2)
    assert Loihi.compartments([conv, pool, head]) == [512, 0, 10]
    assert Loihi.compartments([conv, head]) == [2048, 10]
    plan = QuantPlan({"b": LayerQuant(4), "h": LayerQuant(4)})
    pooled, unpooled = Loihi().cost([conv, pool, head], plan), Loihi().cost([conv, head], plan)
    # neuron updates: T x 512 against T x 2048, at the same active share
    assert pooled.per_layer["conv"]["neuron_energy_j"] == pytest.approx(
        unpooled.per_layer["conv"]["neuron_energy_j"] / 4)
    wide = LayerWorkload("conv", "conv2d", macs=4096 * 36, params=288, in_elems=1024, out_elems=4096,
                         group="b", timesteps=2, in_spike_rate=0.2)
    assert Loihi().cost([wide, head], plan).per_layer["conv"]["cores"] == 4  # 4,096 outputs
    assert Loihi().cost([wide, pool, head], plan).per_layer["conv"]["cores"] == 1  # 512 neurons
