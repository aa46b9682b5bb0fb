"""The factual-recall experiment's arithmetic: the bisection reports only measured successes,
the fits use measured points only, and the report sets them beside the paper's figures."""

from __future__ import annotations

import math

import pytest

from bitnas.experiments.factual_recall import (
    PAPER,
    _n_for,
    binary_search,
    fit_through_origin,
    format_report,
)


def test_bisection_finds_the_edge_and_never_reports_a_bracket():
    probes = []

    def ok(n):
        probes.append(n)
        return n <= 37

    best, order = binary_search(ok, 4, 100)
    assert order == probes and all(4 < n < 100 for n in probes)
    assert best is not None and best <= 37 and best in probes and ok(best)
    assert 37 - best <= max(1, best // 10)  # within the 10 % stopping rule of the edge
    # every probe fails: no capacity, although the lower bracket would "succeed"
    best, order = binary_search(lambda n: False, 4, 100)
    assert best is None and order and min(order) > 4
    # a measured success is kept even when a later, larger probe fails
    assert binary_search(lambda n: n in (52, 27), 4, 100)[0] == 52


def test_fit_through_the_origin_of_measured_points():
    assert fit_through_origin([1000, 2000], [50, 100]) == pytest.approx(0.05)
    assert fit_through_origin([], []) is None
    assert _n_for(50 * math.log(50)) == pytest.approx(50, abs=1)


def test_the_report_sets_the_figures_beside_the_paper_s():
    def cap(h, m, params, s, bits=32):
        facts = None if s is None else s * s
        return {"heads": h, "width": m, "params": params, "bits": bits, "subjects": s, "facts": facts,
                "probes": [s or 3], "facts_per_param": facts and facts / params,
                "facts_per_weight_bit": facts and facts / (params * bits),
                "fact_bits_per_param": facts and 3 * facts / params}

    report = {"quick": True, "this_run_wall_s": 30, "threshold": 0.99, "dim": 32, "length": 8,
              "head_dim": 8, "answers": 8,
              "samples": 1000, "paper": PAPER, "facts_per_param": 0.05,
              "float": [cap(1, 16, 2048, None), cap(2, 32, 4096, 13)],
              "memories": [{"memory": "linear", "dim": 8, "width": 0, "params": 64, "size": 64, "n": 20,
                            "c": 1.07, "probes": [20]}],
              "memory_fits": {"linear": 1.07, "mlp": None},
              "quantized": [cap(2, 32, 4096, 8, 2), cap(2, 32, 4096, 13, 4), cap(2, 32, 4096, None, 3)],
              "study": {"heads": 2, "width": 32, "facts": 169, "trials": 2, "ablation": {"all 8": 1.0},
                        "front": [{"trial": 0, "accuracy": 1.0, "weight_bytes": 900,
                                   "bits": dict.fromkeys(("q", "k", "v", "o", "mlp_in", "mlp_out"), 4)}]}}
    text = format_report(report)
    assert "**0.050 facts per parameter** (paper: 0.15)" in text
    assert "| 1 | 16 | 2,048 | - | - | - |" in text  # no success measured: no capacity
    assert "linear d^2 = **1.070** N ln N (paper 1.3); MLP m d = **-** N ln N (paper 0.35)" in text
    assert "peaks at **4 bits** for H 2 m 32" in text  # 169 / (4096 x 4) beats 64 / (4096 x 2)
    assert "| 2 | 32 | float | 13 | 169 |" in text and "2.0 bits of knowledge per parameter" in text
