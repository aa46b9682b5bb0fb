"""Task metrics and cost fields as objectives, floors on metrics, and the spec's checks of
what the hardware and the quantizers accept."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bitnas.errors import BitnasError
from bitnas.spec import load_spec
from tests.conftest import write_spec


def _search(spec_path, out, **kw):
    from bitnas.search.study import run_search

    return run_search(load_spec(spec_path), out, log=lambda m: None, **kw)


def test_a_metric_floor_keeps_degenerate_members_off_the_front(tmp_path):
    spec = write_spec(tmp_path / "s.toml", trials=10, epochs=3).read_text()
    spec = spec.replace("w_bits = [2, 4, 8]", "w_bits = [1, 2, 8]")
    spec = spec.replace('name = "energy_j"', 'name = "compute_energy_j"')  # a part of the energy
    spec = spec.replace('[[objectives]]\nname = "accuracy"', '[[objectives]]\nname = "macro_f1"')
    spec = spec.replace("weight_bytes = 100000", "weight_bytes = 100000\nmacro_f1 = { min = 0.5 }\n"
                        "accuracy = { max_drop = 0.1 }")
    path = tmp_path / "floor.toml"
    path.write_text(spec)
    result = _search(path, tmp_path / "out")
    trials = [t for t in result.study.trials if "metrics" in t.user_attrs]
    broken = [t for t in trials if t.constraints and max(t.constraints.values()) > 0]
    assert broken, "some 1-bit plan must fall below the floor (otherwise this test proves nothing)"
    for t in broken:
        m = t.user_attrs["metrics"]
        assert m["macro_f1"] < 0.5 or m["accuracy"] < 0.9  # its own FP model is about 0.95
    records = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert records
    front = {r["trial"] for r in records}
    assert not front & {t.number for t in broken}
    for r in records:
        assert r["metrics"]["macro_f1"] >= 0.5
        assert r["fp_metrics"]["accuracy"] - r["metrics"]["accuracy"] <= 0.1 + 1e-12
        assert r["values"]["compute_energy_j"] == r["cost"]["compute_energy_j"] < r["cost"]["energy_j"]
        assert {"weight_energy_j", "act_energy_j", "state_energy_j"} <= set(r["cost"])
    csv = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert {"macro_f1", "compute_energy_j", "cost.energy_j", "cost.act_energy_j"} <= set(csv.columns)


BAD = [
    ('name = "generic45nm"', 'name = "loihi"', "w_bits = [2, 4, 8]", "w_bits = [2, 4, 16]",
     r"hardware loihi runs 1, 2, 3, 4, 5, 6, 7, 8, 9-bit weights, but space.w_bits offers \[16\] to "
     r"layer group conv0"),
    ('name = "generic45nm"', 'name = "loihi"', "a_bits = [8]", "a_bits = [8]\ngroup_w_bits = { fc = [32] }",
     r"space.group_w_bits.fc offers \[32\] to layer group fc"),
    ("a_bits = [8]", 'a_bits = [8]\n[quantizers.uniform]\nscale_bits = 64', None, None,
     "quantizer uniform: scale_bits must be 1..32, got 64"),
    ("a_bits = [8]", 'a_bits = [8]\n[quantizers.uniform]\nscale = 8', None, None,
     r"unknown option\(s\) \['scale'\] of quantizer uniform; accepted: scale_bits"),
    ("a_bits = [8]", 'a_bits = [8]\n[quantizers.pot]\nexponent_bits = 4', None, None,
     r"\[quantizers.pot\] sets options of a quantizer the space does not offer"),
    ("epochs = 3", "epochs = 3\nepoch = 2", None, None,
     r"unknown task option\(s\) \['epoch'\]; accepted: .*calib_batches.*epochs.*lr.*qat.*val_fraction"),
    ('name = "energy_j"', 'name = "energy_j"\nreference = -1.0', None, None,
     "no energy_j can be below it"),
    ("weight_bytes = 100000", "accuracy = { min = 0.9, at_least = 1 }", None, None,
     r"constraints.accuracy: unknown key\(s\) \['at_least'\]"),
    ("weight_bytes = 100000", "accuracy = 0.9", None, None,
     "constraints.accuracy bounds a task metric"),
]


@pytest.mark.parametrize("old,new,old2,new2,message", BAD)
def test_spec_refuses_in_one_line(tmp_path, old, new, old2, new2, message):
    text = write_spec(tmp_path / "s.toml").read_text()
    assert old in text
    text = text.replace(old, new, 1)
    if old2:
        assert old2 in text
        text = text.replace(old2, new2, 1)
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(BitnasError, match=message) as e:
        load_spec(tmp_path / "bad.toml")
    assert "\n" not in str(e.value)


def test_quantizer_options_reach_every_plan_and_lists_are_searched(tmp_path):
    from optuna.trial import FixedTrial

    from bitnas.registry import SPACES

    text = write_spec(tmp_path / "s.toml").read_text().replace(
        "a_bits = [8]", 'a_bits = [8]\n[quantizers.uniform]\nscale_bits = [8, 16]')
    (tmp_path / "q.toml").write_text(text)
    spec = load_spec(tmp_path / "q.toml")
    space = SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, **spec.space_kwargs())
    params = {"depth": 1, "width0": 4, "conv0.w_bits": 4, "conv0.uniform_scale_bits": 16,
              "fc.w_bits": 2, "fc.uniform_scale_bits": 8}
    cand = space.suggest(FixedTrial(params))
    assert cand.plan["conv0"].options == {"scale_bits": 16} and cand.plan["fc"].options == {"scale_bits": 8}
    assert spec.identity()["quantizers"] == {"uniform": {"scale_bits": [8, 16]}}
