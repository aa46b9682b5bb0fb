"""QAT: a short fine-tune through the fake quantizers, chosen in the spec."""

import pytest

from bitnas.errors import BitnasError
from bitnas.evaluators import TrainConfig
from bitnas.plan import Candidate, QuantPlan
from bitnas.search.context import SearchContext
from bitnas.spec import StudySpec

BASE = {
    "study": {"name": "qat", "trials": 1, "seed": 0},
    "space": {"name": "cnn", "depth": [2], "widths": [8], "kernel_size": [3], "w_bits": [1, 8]},
    "hardware": {"name": "generic45nm"},
    "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
}
ARCH = {"depth": 2, "widths": [8, 8], "kernel_size": 3}


def _ctx(**task):
    spec = StudySpec.from_dict({**BASE, "task": {"name": "digits", "epochs": 10, **task}})
    return SearchContext(spec, cache_dir=None)


def test_qat_recovers_what_binary_weights_break():
    ctx = _ctx(qat="always", qat_epochs=3, qat_lr=1e-3)
    cand = Candidate(ARCH, QuantPlan.uniform(["conv0", "conv1", "fc"], 1), "cnn")
    metrics, _, _ = ctx.evaluate(cand)
    assert metrics["qat"] == 1.0
    assert metrics["accuracy"] > metrics["ptq_accuracy"] + 0.02
    again, _, _ = ctx.evaluate(cand)  # deterministic: a stored trial rebuilds the same
    assert again["accuracy"] == metrics["accuracy"]


def test_when_broken_leaves_a_healthy_plan_alone():
    ctx = _ctx(qat="when_broken", qat_threshold=0.02)
    healthy = Candidate(ARCH, QuantPlan.uniform(["conv0", "conv1", "fc"], 8), "cnn")
    metrics, _, _ = ctx.evaluate(healthy)
    assert set(metrics) == {"accuracy", "macro_f1", "test_accuracy", "test_macro_f1", "qat"}
    assert metrics["qat"] == 0.0
    # the same figures as without QAT configured: PTQ's validation and test accuracy
    plain = _ctx(qat="off").evaluate(healthy)[0]
    assert metrics == {**plain, "qat": 0.0}
    broken = Candidate(ARCH, QuantPlan.uniform(["conv0", "conv1", "fc"], 1), "cnn")
    fixed = ctx.evaluate(broken)[0]
    assert set(fixed) == {"accuracy", "macro_f1", "test_accuracy", "test_macro_f1", "ptq_accuracy",
                          "qat"} and fixed["qat"] == 1.0
    # the stored PTQ figure is the one QAT started from
    assert fixed["ptq_accuracy"] == _ctx(qat="off").evaluate(broken)[0]["accuracy"]


@pytest.mark.parametrize("kw,message", [({"qat": "sometimes"}, "task.qat = 'sometimes'"),
                                        ({"qat_threshold": 2}, "task.qat_threshold"),
                                        ({"promote_margin": -0.1}, "task.promote_margin"),
                                        ({"qat_epochs": 0}, "task.qat_epochs")])
def test_bad_qat_settings(kw, message):
    with pytest.raises(BitnasError, match=message):
        TrainConfig(**kw)


def test_promote_without_a_front_falls_back_to_when_broken():
    """The int8 reference and other evaluations outside a study have no front to compare
    with: under qat = "promote" they fine-tune only where PTQ lost over qat_threshold."""
    ctx = _ctx(qat="promote", qat_threshold=0.02)
    groups = ["conv0", "conv1", "fc"]
    assert ctx.evaluate(Candidate(ARCH, QuantPlan.uniform(groups, 8), "cnn"))[0]["qat"] == 0.0
    assert ctx.evaluate(Candidate(ARCH, QuantPlan.uniform(groups, 1), "cnn"))[0]["qat"] == 1.0
    # with a callback, its word decides, and the PTQ cost it saw is the one reported
    seen = []
    metrics, _, cost = ctx.evaluate(Candidate(ARCH, QuantPlan.uniform(groups, 1), "cnn"),
                                    promote=lambda ptq, c: seen.append(c) or False)
    assert metrics["qat"] == 0.0 and seen == [cost]
