import json

import pytest

from bitnas.errors import BitnasError
from bitnas.plan import Candidate, LayerQuant, QuantPlan, describe_plan


def test_layer_quant_round_trip():
    lq = LayerQuant(4, 8, "uniform")
    assert LayerQuant.from_dict(json.loads(json.dumps(lq.to_dict()))) == lq


@pytest.mark.parametrize("bits", [0, -1, 17, 31, 33, 2.5, True, "8"])
def test_bits_out_of_range_rejected(bits):
    with pytest.raises(BitnasError, match="w_bits"):
        LayerQuant(bits)
    with pytest.raises(BitnasError, match="a_bits"):
        LayerQuant(4, a_bits=bits)


@pytest.mark.parametrize("bits", [1, 2, 8, 16, 32])
def test_bits_in_range_accepted(bits):
    assert LayerQuant(bits, bits).w_bits == bits


def test_layer_quant_is_frozen():
    lq = LayerQuant(4)
    with pytest.raises(AttributeError):
        lq.w_bits = 8


def test_plan_round_trip_keeps_order_and_values():
    plan = QuantPlan({"conv0": LayerQuant(2), "conv1": LayerQuant(8, 4), "fc": LayerQuant(3)})
    back = QuantPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back == plan
    assert list(back.layers) == ["conv0", "conv1", "fc"]
    assert hash(back) == hash(plan)


def test_plan_is_immutable():
    plan = QuantPlan.uniform(["a", "b"], 4)
    with pytest.raises(TypeError):
        plan.layers["a"] = LayerQuant(8)


def test_plan_validation():
    with pytest.raises(BitnasError, match="at least one"):
        QuantPlan({})
    with pytest.raises(BitnasError, match="unknown layer quant field"):
        QuantPlan.from_dict({"a": {"w_bits": 4, "bits": 3}})
    with pytest.raises(BitnasError, match="needs w_bits"):
        QuantPlan.from_dict({"a": {"a_bits": 4}})


def test_candidate_json_round_trip_and_hash():
    cand = Candidate({"depth": 2, "widths": [8, 16]}, QuantPlan.uniform(["conv0", "fc"], 4), "cnn")
    back = Candidate.from_json(cand.to_json())
    assert back == cand and hash(back) == hash(cand)
    assert back.arch_dict() == {"depth": 2, "widths": [8, 16]}
    other = Candidate({"depth": 2, "widths": [8, 8]}, cand.plan, "cnn")
    assert other != cand


def test_describe_plan_shows_every_searched_choice():
    plan = QuantPlan({
        "stem": LayerQuant(4, 8, "pot", v_bits=4),
        "head": LayerQuant(8, 8, "uniform"),
        "fc": LayerQuant(3, 8, "lut", options={"levels": 6}),
    })
    assert describe_plan(plan.to_dict()) == "stem:pot4/8/v4 head:uniform8/8 fc:lut3/8(levels=6)"
