"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing stored lost."""

from __future__ import annotations

import pytest

from bitnas.cli import main
from tests.conftest import run_bitnas, run_study, write_spec


def _one_line_error(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bitnas: error:"), err
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("old,new,fragment", [
    ('name = "cnn"', 'name = "resnet"', "unknown space space.name = 'resnet'"),
    ('name = "generic45nm"', 'name = "tpu"', "unknown hardware model hardware.name = 'tpu'"),
    ("w_bits = [2, 4, 8]", "w_bits = [2, 4, 64]", "space.w_bits = 64 is out of range; use 1..16"),
    ("w_bits = [2, 4, 8]", "w_bits = [0]", "space.w_bits = 0 is out of range"),
])
def test_bad_spec_fields(tmp_path, capsys, old, new, fragment):
    path = write_spec(tmp_path / "s.toml")
    path.write_text(path.read_text().replace(old, new, 1))
    _one_line_error(capsys, ["search", str(path), "--out", str(tmp_path / "run")], fragment)
    assert not (tmp_path / "run").exists()


def test_missing_spec_and_malformed_toml(tmp_path, capsys):
    _one_line_error(capsys, ["search", str(tmp_path / "missing.toml")], "not found")
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nname = "x\n')
    _one_line_error(capsys, ["search", str(bad)], "malformed TOML")


@pytest.mark.parametrize("url,fragment", [
    ("sqlite:////no/such/dir/x.db", "directory /no/such/dir does not exist"),
    ("postgresql://alice:s3cr3tpw@127.0.0.1:1/bitnas", "alice:***@127.0.0.1"),
    ("nosuchdb://x", "cannot open storage nosuchdb://x"),
])
def test_storage_that_cannot_be_opened(tmp_path, capsys, url, fragment):
    spec = write_spec(tmp_path / "s.toml")
    line = _one_line_error(capsys, ["search", str(spec), "--storage", url, "--out",
                                    str(tmp_path / "run")], "cannot open storage", fragment)
    assert "s3cr3tpw" not in line


@pytest.mark.parametrize("name, fragment", [("study.log", "not an Optuna journal"),
                                            ("study.db", "cannot open storage")])  # an older run's
def test_corrupt_study_file(tmp_path, capsys, name, fragment):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_bytes(b"this is not a database" * 100)
    spec = write_spec(tmp_path / "s.toml")
    _one_line_error(capsys, ["search", str(spec), "--out", str(run)], fragment)
    _one_line_error(capsys, ["pareto", str(run)], fragment)
    assert (run / name).read_bytes().startswith(b"this is not")  # left as it was


def test_spec_changed_under_an_existing_study(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", trials=1, epochs=1)
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    spec.write_text(spec.read_text().replace("w_bits = [2, 4, 8]", "w_bits = [2, 4]"))
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")],
                    "was created from a different spec", "space.w_bits")
    assert len(run_study(tmp_path / "run").trials) == 1


def test_pareto_on_missing_run_and_unknown_study(tmp_path, capsys):
    _one_line_error(capsys, ["pareto", str(tmp_path / "nowhere")], "neither a run directory")
    spec = write_spec(tmp_path / "s.toml", trials=1, epochs=1)
    assert main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["pareto", str(tmp_path / "run"), "--study", "nope"],
                    "no study 'nope'", "tiny")


def test_bad_flags_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as e:
        main(["search"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("bitnas: error:")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    path = write_spec(tmp_path / "s.toml")
    path.write_text(path.read_text().replace('name = "cnn"', 'name = "nope"', 1))
    proc = run_bitnas("search", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bitnas: error: unknown space")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_worker_threads_must_be_positive(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml")
    _one_line_error(capsys, ["worker", str(spec), "--storage", f"journal:///{tmp_path / 'j.log'}",
                             "--threads", "0"], "--threads must be at least 1")
    assert not (tmp_path / "j.log").exists()
