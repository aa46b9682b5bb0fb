"""How long each registered cost model takes per candidate, as a ratio to a baseline
measured in the same run: generic45nm on the same workload (the simplest model), and
the workload extraction every new architecture pays once.

The workloads are the MAX78000 SDK examples (kws20_v3, cifar-10, mnist) rebuilt in the
ai8x space, at 8-bit ai8x weights; a model that refuses a workload is left out.

    .venv/bin/python benchmarks/bench_cost_models.py [--repeat 200]
"""

from __future__ import annotations

import argparse

import torch
from bench_search import per_call  # the same timer (a sibling script)

from bitnas.errors import BitnasError
from bitnas.experiments.max7800x_calibration import EXAMPLES
from bitnas.hardware_models import extract_workload
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import HARDWARE, SPACES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {name: HARDWARE.create(name) for name in HARDWARE.names()}
    print(f"{'workload':10s} {'model':12s} {'per call':>10s} {'vs generic45nm':>15s} {'vs extraction':>14s}")
    for ex in EXAMPLES:
        space = SPACES.create("ai8x", input_shape=ex.input_shape, num_classes=ex.classes)
        net = space.build(ex.arch)
        groups = space.layer_groups(net)
        example = torch.zeros(1, *ex.input_shape)
        extract_s = per_call(lambda net=net, example=example, groups=groups:
                          extract_workload(net, example, groups), max(5, args.repeat // 20))
        workload = extract_workload(net, example, groups)
        plan = QuantPlan({g: LayerQuant(8, 8, "ai8x") for g in groups})
        base = per_call(lambda w=workload, p=plan: models["generic45nm"].cost(w, p), args.repeat)
        for name, model in models.items():
            try:
                model.cost(workload, plan)
            except BitnasError:
                continue
            t = per_call(lambda m=model, w=workload, p=plan: m.cost(w, p), args.repeat)
            print(f"{ex.name:10s} {name:12s} {t * 1e3:8.3f}ms {t / base:14.2f}x {t / extract_s:13.3f}x")


if __name__ == "__main__":
    main()
