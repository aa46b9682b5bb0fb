"""A study whose groups choose their scheme: uniform, pot, nonuniform, series (with its terms
searched) and codebook, side by side in one model, under the ILP warm start."""

from __future__ import annotations

import pytest

from bitnas.search.rebuild import rebuild_trial
from bitnas.search.study import run_search
from bitnas.spec import load_spec
from tests.conftest import write_spec
from tests.e2e.test_cli_errors import _one_line_error

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


@pytest.mark.parametrize("extra, fragments", [
    ('\n[quantizers.codebook]\npath = "missing.npz"\n', ("missing.npz", "bitnas codebook build")),
    ('\n[quantizers.codebook]\npath = "d4.npz"\ndim = 8\n', ("holds 4-dim codewords", "dim = 8")),
    ('\n[quantizers.series]\nterms = [0, 2]\n', ("terms must be 1..8",)),
])
def test_a_bad_scheme_option_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, extra,
                                                              fragments):
    from bitnas.quantizers.codebook import builtin_codebook, save_codebook

    monkeypatch.chdir(tmp_path)
    save_codebook(builtin_codebook(dim=4), tmp_path / "d4.npz")
    spec = write_spec(tmp_path / "bad.toml", extra=extra)
    spec.write_text(spec.read_text().replace(
        'w_bits = [2, 4, 8]', 'w_bits = [2, 4, 8]\nquantizers = ["uniform", "series", "codebook"]'))
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")], *fragments)
    assert not (tmp_path / "run").exists()


def test_bits_a_scheme_cannot_run_are_refused_naming_the_group(tmp_path, capsys):
    spec = write_spec(tmp_path / "bad.toml")
    spec.write_text(spec.read_text().replace(
        'w_bits = [2, 4, 8]', 'w_bits = [2, 4, 16]\nquantizers = ["uniform", "nonuniform"]'))
    _one_line_error(capsys, ["search", str(spec)], "quantizer nonuniform runs 1, 2", "[16]", "layer group")


def test_every_combination_of_searched_options_is_checked_before_anything_runs(tmp_path, capsys,
                                                                              monkeypatch):
    from bitnas.quantizers.codebook import builtin_codebook, save_codebook

    monkeypatch.chdir(tmp_path)
    save_codebook(builtin_codebook(dim=4), tmp_path / "d4.npz")
    spec = write_spec(tmp_path / "bad.toml", extra='\n[quantizers.codebook]\npath = "d4.npz"\ndim = [4, 8]\n')
    spec.write_text(spec.read_text().replace('w_bits = [2, 4, 8]',
                                             'w_bits = [2, 4, 8]\nquantizers = ["codebook"]'))
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")], "holds 4-dim codewords",
                    "dim = 8")
    assert not (tmp_path / "run").exists()


def test_the_ilp_never_queues_a_scheme_the_hardware_cannot_run(tmp_path):
    # the base plan takes the first quantizer, which the max78000 cannot run: every queued plan
    # must still use only the one it can
    spec_path = tmp_path / "chip.toml"
    spec_path.write_text("""
[study]
name = "chip"
trials = 2
seed = 0
strategy = "ilp"
[space]
name = "ai8x"
input_transforms = ["full"]
depth = [2]
widths = [8]
kernel_size = [3]
pools = [0]
w_bits = [2, 8]
quantizers = ["uniform", "ai8x"]
[task]
name = "digits"
epochs = 2
[hardware]
name = "max78000"
[[objectives]]
name = "accuracy"
[[objectives]]
name = "latency_s"
""")
    from bitnas.search.context import SearchContext
    from bitnas.search.strategies import ilp_params

    spec = load_spec(spec_path)
    plans = ilp_params(SearchContext(spec, cache_dir=tmp_path / "fp_cache"), spec, 4)
    assert plans
    assert all(v == "ai8x" for p in plans for k, v in p.items() if k.endswith(".quantizer"))
