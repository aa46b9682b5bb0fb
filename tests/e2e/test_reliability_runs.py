"""Reliability of runs: refused infeasible specs, no empty --out folders, warm starts that
survive a killed worker, FP-cache integrity, resumable FP training, rebuilds that repeat
the trial's torch thread count."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FixedTrial, TrialState

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.evaluators import training
from bitnas.search.context import SearchContext
from bitnas.search.objective import process_start_time, worker_id
from bitnas.search.rebuild import rebuild_trial
from bitnas.search.strategies import uniform_params
from bitnas.search.study import WARM_START_ATTR, check_feasible, open_study, run_search
from bitnas.spec import StudySpec, load_spec
from tests.conftest import write_spec


def _one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("bitnas: error:"), err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


# -- 3: a spec no candidate can satisfy is refused before any trial --------------------


def test_infeasible_spec_is_refused_before_anything_is_written(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml", weight_bytes=10)
    line = _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")],
                           "no candidate can meet constraints.weight_bytes = 10",
                           "the cheapest plan", "raise the bound or shrink the space")
    assert "Traceback" not in line
    assert not (tmp_path / "run").exists()  # defect 10 too: no study, no empty folder


def test_the_refusal_bound_is_the_cheapest_plans_cost(tmp_path):
    """A bound at the cheapest plan's cost is met (that plan is feasible); one byte less is not."""
    spec = load_spec(write_spec(tmp_path / "s.toml", weight_bytes=10))
    ctx = SearchContext(spec)
    with pytest.raises(BitnasError) as e:
        check_feasible(spec, ctx)
    needed = int(str(e.value).split("needs ")[1].split()[0])
    cheapest = ctx.space.suggest(FixedTrial(uniform_params(ctx.space, min, "uniform", arch_pick=min)))
    assert ctx.cost(cheapest).weight_bytes == needed
    at = load_spec(write_spec(tmp_path / "at.toml", weight_bytes=needed))
    check_feasible(at, SearchContext(at))
    under = load_spec(write_spec(tmp_path / "under.toml", weight_bytes=needed - 1))
    with pytest.raises(BitnasError, match=f"weight_bytes = {needed - 1}: the cheapest plan"):
        check_feasible(under, SearchContext(under))


# -- 10: failed runs leave no --out folder behind ---------------------------------------


def test_a_bad_data_path_leaves_no_out_folder(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml")
    spec.write_text(spec.read_text().replace('name = "digits"', 'name = "digits"\npath = "/no/such/dir"'))
    out = tmp_path / "deep" / "run"
    _one_line_error(capsys, ["search", str(spec), "--out", str(out)], "/no/such/dir")
    assert not (tmp_path / "deep").exists()


def test_a_bad_storage_leaves_no_out_folder(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.toml")
    bad = tmp_path / "not_a_db.db"
    bad.write_text("this is no database")
    _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run"),
                             "--storage", f"sqlite:///{bad}"])
    assert not (tmp_path / "run").exists()


# -- 11: a warm start claimed by a worker that died is taken over ----------------------


def _worker_of(proc: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{proc.pid}:{process_start_time(proc.pid)}"


@pytest.fixture
def ilp_spec(tmp_path):
    return load_spec(write_spec(tmp_path / "s.toml", trials=3, epochs=1)).replace(sampler="ilp")


def _queued(study):
    return [t for t in study.trials if "fixed_params" in t.system_attrs]


def test_a_dead_workers_warm_start_claim_is_taken_over(tmp_path, ilp_spec):
    proc = subprocess.Popen(["sleep", "60"])
    dead = _worker_of(proc)
    proc.kill()
    proc.wait()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(ilp_spec, url)  # a study whose first run was SIGKILLed mid warm start
    study.set_user_attr(WARM_START_ATTR, {"strategy": "ilp", "worker": dead, "state": "claimed"})
    logs: list[str] = []
    result = run_search(ilp_spec, tmp_path / "run", storage_url=url, log=logs.append)
    assert len(_queued(result.study)) >= 2
    claim = result.study.user_attrs[WARM_START_ATTR]
    assert claim == {"strategy": "ilp", "worker": worker_id(), "state": "done"}
    assert any(dead in line and "taking it over" in line for line in logs), logs


def test_a_live_workers_warm_start_claim_is_respected(tmp_path, ilp_spec):
    proc = subprocess.Popen(["sleep", "120"])
    try:
        live = {"strategy": "ilp", "worker": _worker_of(proc), "state": "claimed"}
        url = f"sqlite:///{tmp_path / 'study.db'}"
        open_study(ilp_spec, url).set_user_attr(WARM_START_ATTR, live)
        logs: list[str] = []
        result = run_search(ilp_spec, tmp_path / "run", storage_url=url, log=logs.append)
        assert not _queued(result.study)
        assert result.study.user_attrs[WARM_START_ATTR] == live
        assert any(live["worker"] in line and "leaves it" in line for line in logs), logs
    finally:
        proc.kill()
        proc.wait()


def test_an_old_studys_plain_warm_start_value_means_done(tmp_path, ilp_spec):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(ilp_spec, url).set_user_attr(WARM_START_ATTR, "ilp")  # as older bitnas stored it
    result = run_search(ilp_spec, tmp_path / "run", storage_url=url, log=lambda m: None)
    assert not _queued(result.study)
    assert result.study.user_attrs[WARM_START_ATTR] == "ilp"


# -- 12: the FP cache verifies what it loads --------------------------------------------


def _cnn_ctx(tmp_path: Path, cache: Path, epochs: int = 3) -> tuple[SearchContext, object]:
    spec = load_spec(write_spec(tmp_path / "s.toml", epochs=epochs))
    ctx = SearchContext(spec, cache_dir=cache)
    cand = ctx.space.suggest(FixedTrial(uniform_params(ctx.space, 4, "uniform")))
    return ctx, cand


def _entry(cache: Path) -> Path:
    (path,) = [p for p in cache.glob("*.pt") if not p.name.endswith(".ckpt.pt")]
    return path


def test_flipped_bits_in_a_cache_entry_are_caught_and_retrained(tmp_path, capfd):
    cache = tmp_path / "fp_cache"
    ctx, cand = _cnn_ctx(tmp_path, cache)
    clean_metrics, _, clean_cost = ctx.evaluate(cand)
    path = _entry(cache)
    blob = torch.load(path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.is_floating_point())
    original = blob["state_dict"][name].clone()
    raw = blob["state_dict"][name].view(-1).view(torch.uint8)
    raw[3] ^= 0x40  # one exponent bit of the first weight; the stored checksum is kept
    torch.save(blob, path)
    capfd.readouterr()

    again, cand2 = _cnn_ctx(tmp_path, cache)
    metrics, timing, cost = again.evaluate(cand2)
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if "fails its checksum" in line] == [
        f"fp cache: {path} fails its checksum (altered or damaged on disk); retraining it"]
    assert timing["fp_train_s"] > 0
    assert metrics == clean_metrics and cost.energy_j == clean_cost.energy_j
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"][name], original)


def test_a_cache_entry_that_does_not_fit_the_model_is_retrained(tmp_path, capfd):
    cache = tmp_path / "fp_cache"
    ctx, cand = _cnn_ctx(tmp_path, cache)
    clean = ctx.evaluate(cand)[0]
    path = _entry(cache)
    foreign = torch.nn.Linear(3, 2).state_dict()  # another model's weights, checksum valid
    torch.save({"state_dict": foreign, "sha256": training.state_digest(foreign)}, path)
    capfd.readouterr()

    again, cand2 = _cnn_ctx(tmp_path, cache)
    metrics, timing, _ = again.evaluate(cand2)
    err = capfd.readouterr().err
    assert sum("does not fit the model" in line and "retraining it" in line
               for line in err.splitlines()) == 1, err
    assert timing["fp_train_s"] > 0 and metrics == clean


# -- 14: FP training resumes from its last epoch --------------------------------------


class _Killed(Exception):
    pass


def _kill_after_epoch(monkeypatch, k: int) -> None:
    """Let ``k`` epoch checkpoints be written, then stop training as a SIGKILL would."""
    original = training._save_checkpoint
    written = {"n": 0}

    def save(path, blob):
        original(path, blob)
        written["n"] += 1
        if written["n"] == k:
            raise _Killed

    monkeypatch.setattr(training, "_save_checkpoint", save)


def test_fp_training_resumes_from_its_checkpoint_with_the_same_weights(tmp_path, monkeypatch, capfd):
    straight_ctx, cand = _cnn_ctx(tmp_path, tmp_path / "straight", epochs=4)
    straight, _ = straight_ctx.fp_model(cand)
    assert not list((tmp_path / "straight").glob("*.ckpt.pt"))  # deleted once stored

    cache = tmp_path / "killed"
    ctx, cand = _cnn_ctx(tmp_path, cache, epochs=4)
    _kill_after_epoch(monkeypatch, 2)
    with pytest.raises(_Killed):
        ctx.fp_model(cand)
    monkeypatch.undo()
    (ckpt,) = cache.glob("*.ckpt.pt")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    capfd.readouterr()

    resumed_ctx, cand = _cnn_ctx(tmp_path, cache, epochs=4)
    torch.manual_seed(12345)  # the global RNG's state comes from the checkpoint, not from here
    resumed, seconds = resumed_ctx.fp_model(cand)
    assert seconds is not None
    assert "resuming FP training at epoch 3 of 4" in capfd.readouterr().err
    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert not ckpt.exists()


def test_a_damaged_checkpoint_is_ignored(tmp_path, monkeypatch, capfd):
    straight_ctx, cand = _cnn_ctx(tmp_path, tmp_path / "straight", epochs=2)
    straight, _ = straight_ctx.fp_model(cand)
    cache = tmp_path / "damaged"
    ctx, cand = _cnn_ctx(tmp_path, cache, epochs=2)
    _kill_after_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        ctx.fp_model(cand)
    monkeypatch.undo()
    (ckpt,) = cache.glob("*.ckpt.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # cut short, as a full disk would leave it
    capfd.readouterr()
    model, _ = _cnn_ctx(tmp_path, cache, epochs=2)[0].fp_model(cand)
    assert "ignoring training checkpoint" in capfd.readouterr().err
    want, got = straight.state_dict(), model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not ckpt.exists()


# -- 13: a rebuild runs with the thread count the trial was evaluated with -------------

SNN = {
    "study": {"name": "snn", "trials": 1, "seed": 0, "sampler": "random"},
    "space": {"name": "spikformer", "time_steps": [2], "embed_dims": [16], "depth": [1], "heads": [1],
              "mlp_ratio": [2], "w_bits": [4, 8]},
    "task": {"name": "event_digits", "bins": 4, "epochs": 2},
    "hardware": {"name": "snn45nm"},
    "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
}


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_rebuild_repeats_the_trials_thread_count(tmp_path, restore_threads):
    spec = StudySpec.from_dict(SNN)
    torch.set_num_threads(2)
    result = run_search(spec, tmp_path / "run", log=lambda m: None, export=False)
    torch.set_num_threads(1)
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert trials and all(t.user_attrs["runtime"] == {"torch_threads": 2} for t in trials)
    t = trials[0]
    # no FP cache: the rebuild trains the FP model again, which is where threads matter most
    out = rebuild_trial(result.study, spec, t.number, None)
    assert out["torch_threads"] == 2 and torch.get_num_threads() == 1  # restored afterwards
    assert out["metrics"] == t.user_attrs["metrics"]
    assert out["cost"].energy_j == t.user_attrs["cost"]["energy_j"]


def test_old_trials_without_a_recorded_thread_count_still_rebuild(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    result = run_search(spec, tmp_path / "run", log=lambda m: None, export=False)
    (t,) = result.study.trials
    old = {k: v for k, v in t.user_attrs.items() if k != "runtime"}  # as older bitnas stored it
    result.study.add_trial(optuna.trial.create_trial(
        params=t.params, distributions=t.distributions, values=t.values, user_attrs=old))
    out = rebuild_trial(result.study, spec, t.number + 1, tmp_path / "run" / "fp_cache")
    assert out["torch_threads"] is None and out["metrics"] == t.user_attrs["metrics"]
