"""Hand-made workloads shared by the cost-model tests: one op of each weightless kind."""

from __future__ import annotations

from bitnas.hardware_models import LayerWorkload
from bitnas.plan import LayerQuant, QuantPlan

# one group "g", 2 time steps: a 2x2 pool (10 outputs, 3 compares each), a LayerNorm (20
# elements, 8 affine parameters), a BatchNorm folded into the layer before, an attention's
# products (64 of them, 8 outputs: fan-in 8; a quarter measured as synaptic ops) with the
# membranes of 5 neurons, and a residual add of 16 elements (8 adds measured per step)
POOL = LayerWorkload("pool", "pool", macs=30, params=0, in_elems=40, out_elems=10, group="g",
                     timesteps=2)
NORM = LayerWorkload("ln", "norm", macs=20, params=0, in_elems=20, out_elems=20, group="g",
                     timesteps=2, bias_params=8)
FOLDED = LayerWorkload("bn", "norm", macs=20, params=0, in_elems=20, out_elems=20, group="g",
                       timesteps=2, folded=True)
MATMUL = LayerWorkload("attn", "matmul", macs=64, params=0, in_elems=24, out_elems=8, group="g",
                       timesteps=2, in_spike_rate=0.25, state_elems=5)
ADD = LayerWorkload("add", "eltwise", macs=16, params=0, in_elems=32, out_elems=16, group="g",
                    timesteps=2, in_spike_rate=0.5)
KINDS = [POOL, NORM, FOLDED, MATMUL, ADD]
PLAN = QuantPlan({"g": LayerQuant(4, 8)})
