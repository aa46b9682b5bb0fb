"""Bad input found by review: each must stay one line, exit 2, and leave storage usable."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from bitnas.cli import main
from bitnas.search.study import run_search
from bitnas.spec import StudySpec, load_spec
from tests.conftest import run_study, write_spec
from tests.e2e.test_cli_errors import _one_line_error


@pytest.mark.parametrize("old,new,fragment", [
    ("seed = 0", "seed = 99999999999", "study.seed must be an integer in 0..4294967295"),
    ("epochs = 3", "epochs = 3\nlr = nan", "task.lr must be a finite non-negative number"),
    ("epochs = 3", "epochs = 3\nweight_decay = inf", "task.weight_decay must be a finite"),
    ('name = "energy_j"', 'name = ["energy_j"]', "objectives[1].name = ['energy_j'] is unknown"),
    ('name = "cnn"', "name = 3", "space.name must be a name string, got 3"),
    ('name = "tiny"', 'name = "../../escape"', "study.name must be letters, digits"),
    ("epochs = 3", "epochs = 3\nval_fraction = 0.0001", "cannot split the images"),
])
def test_more_bad_fields(tmp_path, capsys, old, new, fragment):
    spec = write_spec(tmp_path / "s.toml")
    assert old in spec.read_text()
    spec.write_text(spec.read_text().replace(old, new, 1))
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")], fragment)
    assert not (tmp_path / "run").exists()  # nothing created for a spec that can't run


def test_out_that_is_a_file(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml")
    (tmp_path / "afile").write_text("x")
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "afile")], "cannot use")
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "afile" / "sub")],
                    "cannot use")


def test_equivalent_specs_resume_the_same_study(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", trials=1, epochs=1)
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    text = spec.read_text()
    spelled_out = (text.replace("a_bits = [8]", "a_bits = 8\nquantizers = [\"uniform\"]")
                   .replace("epochs = 1", "epochs = 1\nlr = 0.003")
                   .replace('name = "generic45nm"', 'name = "generic45nm"\nclock_hz = 500000000'))
    spec.write_text(spelled_out)
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet",
                 "--trials", "2"]) == 0, capsys.readouterr().err


def test_a_study_with_no_finished_trial_is_replaced_by_a_changed_spec(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    url = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    (tmp_path / "run").mkdir()
    from bitnas.search.study import open_study

    open_study(spec, url)  # created, then (say) the run died before a trial finished
    changed = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=2))
    result = run_search(changed, tmp_path / "run", log=lambda m: None)
    assert len(result.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 1


def test_no_storage_url_is_stored_on_the_study(tmp_path):
    db = tmp_path / "elsewhere.db"
    spec = write_spec(tmp_path / "s.toml", trials=1, epochs=1)
    spec.write_text(spec.read_text().replace('sampler = "random"',
                                             f'sampler = "random"\nstorage = "sqlite:///{db}"'))
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert "storage" not in study.user_attrs["bitnas_spec"]["study"]


def test_pareto_needs_no_data_and_creates_no_storage(tmp_path, capsys):
    data = tmp_path / "optdigits"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("optdigits.tra", 200), ("optdigits.tes", 50)):
        rows = [",".join(map(str, [*rng.integers(0, 17, 64), i % 10])) for i in range(n)]
        (data / name).write_text("\n".join(rows) + "\n")
    spec = write_spec(tmp_path / "s.toml", trials=2, epochs=1)
    spec.write_text(spec.read_text().replace("epochs = 1", f'epochs = 1\npath = "{data}"'))
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    for f in data.iterdir():
        f.unlink()
    data.rmdir()
    capsys.readouterr()
    assert main(["pareto", str(tmp_path / "run")]) == 0
    assert "Pareto front of 'tiny'" in capsys.readouterr().out
    _one_line_error(capsys, ["pareto", f"sqlite:///{tmp_path / 'none.db'}"], "does not exist")
    assert not (tmp_path / "none.db").exists()


def test_front_skips_trials_bitnas_did_not_write(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", trials=2, epochs=1)
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    study = run_study(tmp_path / "run")
    study.add_trial(optuna.trial.create_trial(
        params={"depth": 1}, distributions={"depth": optuna.distributions.CategoricalDistribution([1, 2])},
        values=[1.0, 0.0]))  # would dominate everything, but carries no candidate
    capsys.readouterr()
    assert main(["pareto", str(tmp_path / "run")]) == 0
    assert "Pareto front of 'tiny'" in capsys.readouterr().out


def test_a_study_whose_creation_was_cut_short_is_recreated(tmp_path):
    (tmp_path / "run").mkdir()
    url = f"sqlite:///{tmp_path / 'run' / 'study.db'}"  # a run of an older bitnas (SQLite)
    optuna.create_study(study_name="tiny", storage=url, directions=["maximize", "minimize"])
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    assert result.study.user_attrs["bitnas_identity"] == spec.identity()
    assert len(result.study.trials) == 1


def test_a_study_from_before_promote_margin_existed_still_resumes(tmp_path, capsys):
    """Identities stored before task.promote_margin was added lack it: it only counts
    under qat = "promote", so such a study resumes; under promote a change refuses."""
    spec_path = write_spec(tmp_path / "s.toml", trials=1, epochs=1)
    assert main(["search", str(spec_path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    study = run_study(tmp_path / "run")
    assert "promote_margin" not in study.user_attrs["bitnas_identity"]["task"]
    assert main(["search", str(spec_path), "--out", str(tmp_path / "run"), "--quiet",
                 "--trials", "2"]) == 0, capsys.readouterr().err
    promote = load_spec(spec_path).to_dict()
    promote["task"].update(qat="promote", promote_margin=0.05)
    other = dict(promote, task={**promote["task"], "promote_margin": 0.01})
    assert StudySpec.from_dict(promote).identity() != StudySpec.from_dict(other).identity()
