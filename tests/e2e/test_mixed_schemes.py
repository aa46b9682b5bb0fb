"""A study whose groups choose their scheme: uniform, pot, nonuniform, series (with its terms
searched) and codebook, side by side in one model, under the ILP warm start."""

from __future__ import annotations

from bitnas.search.rebuild import rebuild_trial
from bitnas.search.study import run_search
from bitnas.spec import load_spec
from tests.conftest import write_spec

SCHEMES = """
[quantizers.series]
terms = [1, 2]
"""


def test_a_study_mixes_schemes_per_group_and_rebuilds_them(tmp_path):
    spec_path = write_spec(tmp_path / "mixed.toml", trials=12, epochs=3, sampler="sensitivity-guided",
                           extra=SCHEMES)
    text = spec_path.read_text().replace(
        'w_bits = [2, 4, 8]',
        'w_bits = [2, 4, 8]\nquantizers = ["uniform", "pot", "nonuniform", "series", "codebook"]')
    spec_path.write_text(text)
    lines: list[str] = []
    result = run_search(load_spec(spec_path), tmp_path / "run", log=lines.append)
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 12
    plans = [t.user_attrs["candidate"]["plan"] for t in trials]
    schemes = {lq["quantizer"] for plan in plans for lq in plan.values()}
    assert len(schemes) >= 3, schemes  # the ILP's front and the sampler use several
    mixed = [p for p in plans if len({lq["quantizer"] for lq in p.values()}) > 1]
    assert mixed, "no plan mixes schemes across its groups"
    assert any(lq.get("options", {}).get("terms") == 2 for p in plans for lq in p.values()
               if lq["quantizer"] == "series"), "the series terms knob was never searched"
    assert any("choices" in line and "sensitivities" in line for line in lines)
    # a mixed plan rebuilds to its stored figures
    trial = next(t for t in trials if len({lq["quantizer"] for lq in
                                           t.user_attrs["candidate"]["plan"].values()}) > 1)
    again = rebuild_trial(result.study, load_spec(spec_path), trial.number, tmp_path / "run" / "fp_cache")
    assert again["metrics"]["accuracy"] == again["stored_metrics"]["accuracy"]
