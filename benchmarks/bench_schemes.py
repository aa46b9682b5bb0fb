"""What each weight scheme costs the search per candidate, as ratios to ``uniform`` measured
in the same run: the PTQ evaluation (fake-quantize, calibrate, score validation and test)
and the cost model. It also measures what the fake-quant weight cache saves: the same
evaluation with every batch quantizing its weights again, as before the cache.

The model is the digits CNN of ``bitnas reproduce nonuniform_ptq`` (3 conv layers of 32
channels; untrained weights: timing does not depend on them), every layer at 4 bits.

    .venv/bin/python benchmarks/bench_schemes.py [--repeat 5]
"""

from __future__ import annotations

import argparse

import torch
from bench_search import per_call  # the same timer (a sibling script)

from bitnas.evaluators.ptq import calibration_batches, ptq
from bitnas.hardware_models import extract_workload
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.quantizers.fakequant import FakeQuantLayer
from bitnas.registry import HARDWARE, SPACES, TASKS

SCHEMES = {"uniform": {}, "pot": {}, "nonuniform": {}, "series": {"terms": 2}, "codebook": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = TASKS.create("digits")
    data = task.load(0)
    space = SPACES.create("cnn", input_shape=task.input_shape, num_classes=task.num_classes)
    torch.manual_seed(0)
    model = space.build({"depth": 3, "widths": [32, 32, 32], "kernel_size": 3})
    groups = space.layer_groups(model)
    calib = calibration_batches(data.train.x, 4, 64, 0)
    evaluator = task.evaluator(data)
    workload = extract_workload(model, torch.zeros(1, *task.input_shape), groups)
    models = {name: HARDWARE.create(name) for name in ("generic45nm", "snn45nm")}

    def evaluate(plan):
        return evaluator.evaluate(ptq(model, plan, groups, calib))

    cached = FakeQuantLayer.quantized
    rows = {}
    for scheme, options in SCHEMES.items():
        plan = QuantPlan({g: LayerQuant(4, 8, scheme, options=options) for g in groups})
        with_cache = per_call(lambda p=plan: evaluate(p), args.repeat)
        FakeQuantLayer.quantized = FakeQuantLayer._quantized  # every batch quantizes again
        try:
            without = per_call(lambda p=plan: evaluate(p), args.repeat)
        finally:
            FakeQuantLayer.quantized = cached
        costs = {n: per_call(lambda m=m, p=plan: m.cost(workload, p), 50 * args.repeat)
                 for n, m in models.items()}
        rows[scheme] = (with_cache, without, costs)
    base = rows["uniform"]
    print(f"{'scheme':11s} {'PTQ eval':>9s} {'vs uniform':>11s} {'no cache':>9s} {'cache saves':>12s} "
          + " ".join(f"{n + ' vs uniform':>22s}" for n in models))
    for scheme, (t, nc, costs) in rows.items():
        print(f"{scheme:11s} {t * 1e3:7.1f}ms {t / base[0]:10.2f}x {nc * 1e3:7.1f}ms {nc / t:11.2f}x "
              + " ".join(f"{costs[n] * 1e3:9.3f}ms {costs[n] / base[2][n]:10.2f}x" for n in models))


if __name__ == "__main__":
    main()
