from importlib import resources
from pathlib import Path

import pytest

from bitnas.errors import BitnasError, SpecError
from bitnas.spec import StudySpec, load_spec
from tests.conftest import TINY_SPEC

QUICKSTART = Path(str(resources.files("bitnas.experiments").joinpath("quickstart.toml")))


def _spec_text(**kw):
    base = dict(trials=5, epochs=2, sampler="random", weight_bytes=1000)
    base.update(kw)
    return TINY_SPEC.format(**base)


def test_quickstart_loads():
    spec = load_spec(QUICKSTART)
    assert spec.name == "quickstart" and spec.directions == ["maximize", "minimize"]
    assert spec.space["name"] == "spikformer" and spec.hardware["name"] == "snn45nm"
    assert spec.constraints == {"weight_bytes": 16384.0}


BUNDLED = sorted(p.name for p in resources.files("bitnas.experiments").iterdir()
                 if p.name.endswith(".toml"))


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_spec_builds(name):
    from bitnas.search.context import SearchContext

    spec = load_spec(Path(str(resources.files("bitnas.experiments").joinpath(name))))
    assert spec.name == name.removesuffix(".toml")
    ctx = SearchContext(spec)  # task data, space and hardware model all build
    assert ctx.space.name == spec.space["name"]


def test_round_trip():
    spec = load_spec(QUICKSTART)
    assert StudySpec.from_dict(spec.to_dict()) == spec
    assert StudySpec.from_dict(spec.to_dict()).identity() == spec.identity()


def test_replace_overrides_and_revalidates():
    spec = load_spec(QUICKSTART)
    assert spec.replace(trials=3, seed=None).trials == 3
    with pytest.raises(BitnasError, match="study.trials"):
        spec.replace(trials=0)
    with pytest.raises(BitnasError, match="unknown strategy study.sampler = 'bogus'"):
        spec.replace(sampler="bogus")


def test_default_directions_come_from_the_objective():
    text = _spec_text().replace('name = "energy_j"', 'name = "weight_bytes"')
    spec = StudySpec.from_dict(__import__("tomllib").loads(text))
    assert spec.directions == ["maximize", "minimize"]


BAD = [
    ('name = "cnn"', 'name = "cnm"', r"unknown space space.name = 'cnm' \(did you mean 'cnn'\?\); "
                                      r"choose one of: ai8x, assoc_memory, cnn"),
    ('name = "generic45nm"', 'name = "loihi9"', r"unknown hardware model hardware.name = 'loihi9'"),
    ('name = "digits"', 'name = "mnist"', r"unknown task task.name = 'mnist'"),
    ("w_bits = [2, 4, 8]", "w_bits = [2, 4, 17]", r"space.w_bits = 17 is out of range; use 1..16"),
    ("w_bits = [2, 4, 8]", "w_bits = [0, 4]", r"space.w_bits = 0 is out of range"),
    ("a_bits = [8]", "a_bits = [8, 99]", r"space.a_bits = 99 is out of range"),
    ("depth = [1, 2]", "depth = [1, 2]\nwidth = [3]", r"unknown space option\(s\) \['width'\]; accepted:"),
    ("epochs = 2", "epochs = 0", r"task.epochs must be a positive integer"),
    ("trials = 5", "trials = -1", r"study.trials must be a positive integer"),
    ('sampler = "random"', 'sampler = "cmaes"', r"unknown strategy study.sampler = 'cmaes'"),
    ('name = "energy_j"', 'name = "joules"', r"objectives\[1\].name = 'joules' is unknown"),
    ('name = "energy_j"', 'name = "energy_j"\ndirection = "up"', r"objectives\[1\].direction = 'up'"),
    ("weight_bytes = 1000", "weight_bytes = -5", r"constraints.weight_bytes must be a positive"),
    ("weight_bytes = 1000", "flash = 5", r"constraints.flash is unknown; bound a cost field"),
    ("[study]", "[stduy]", r"unknown section\(s\) \['stduy'\]"),
    ('name = "generic45nm"', 'name = "generic45nm"\nclock_hz = 0', r"hardware.clock_hz must be"),
]


@pytest.mark.parametrize("old,new,message", BAD)
def test_bad_fields_name_the_field(tmp_path, old, new, message):
    text = _spec_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(BitnasError, match=message):
        load_spec(path)


def test_missing_file_and_malformed_toml(tmp_path):
    with pytest.raises(SpecError, match="spec file .*nope.toml not found"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = ")
    with pytest.raises(SpecError, match="malformed TOML"):
        load_spec(bad)


def test_missing_sections(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[study]\nname = "x"\n')
    with pytest.raises(SpecError, match=r"\[space\] section is missing"):
        load_spec(p)
    p.write_text(_spec_text().split("[[objectives]]")[0])
    with pytest.raises(SpecError, match=r"\[\[objectives\]\] is missing"):
        load_spec(p)
