"""The torch export: a weights_only state dict and the candidate's JSON, rebuilt from the two
files alone (by `bitnas rebuild FILE.pt`) into a model that computes what the search's did."""

from __future__ import annotations

import json

import pytest
import torch

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.exporters.pytorch import load_export
from bitnas.spec import StudySpec

SPEC = {"study": {"name": "pt", "trials": 3, "seed": 0, "strategy": "random"},
        "space": {"name": "cnn", "depth": [1], "widths": [8], "kernel_size": [3], "w_bits": [2, 4],
                  "a_bits": [8], "quantizers": ["uniform", "nonuniform"]},
        "task": {"name": "digits", "epochs": 2, "qat": "always", "qat_epochs": 1},
        "hardware": {"name": "generic45nm"},
        "objectives": [{"name": "accuracy"}, {"name": "energy_j"}]}


def test_an_exported_trial_rebuilds_from_its_files_alone(tmp_path, capsys, monkeypatch):
    from bitnas.search.context import SearchContext
    from bitnas.search.rebuild import rebuild_candidate
    from bitnas.search.study import run_search

    spec = StudySpec.from_dict(SPEC)
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    trial = next(t for t in result.study.trials if "metrics" in t.user_attrs)
    assert main(["export", str(tmp_path / "run"), "--trial", str(trial.number), "--format", "torch",
                 "--out", str(tmp_path / "out")]) == 0
    pt = tmp_path / "out" / f"trial{trial.number}.pt"
    state = torch.load(pt, weights_only=True)  # plain tensors only
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    info = json.loads(pt.with_suffix(".json").read_text())
    assert info["trial"] == trial.number and info["metrics"] == trial.user_attrs["metrics"]
    # the thread count it was measured with, which `bitnas rebuild FILE.pt` runs with again
    assert info["torch_threads"] == trial.user_attrs["runtime"]["torch_threads"] == torch.get_num_threads()
    # the run may go: the two files rebuild the model, which computes what the search's did
    model, cand, _ = load_export(pt)
    ctx = SearchContext(spec, cache_dir=tmp_path / "run" / "fp_cache")
    ours, _, _, _ = ctx.prepared(rebuild_candidate(ctx, trial.params), qat=True)
    x = ctx.data.val.x
    assert torch.equal(model(x), ours(x))
    capsys.readouterr()
    assert main(["rebuild", str(pt)]) == 0
    out = capsys.readouterr().out
    assert f"trial {trial.number}:" in out and "(same as stored)" in out
    from bitnas.evaluators.base import ClassificationEvaluator
    from bitnas.search.rebuild import rebuild_export

    before = torch.get_num_threads()
    info["torch_threads"] = stored = 1 if before != 1 else 2
    pt.with_suffix(".json").write_text(json.dumps(info))
    seen, evaluate = [], ClassificationEvaluator.evaluate

    def spy(self, model, **kw):
        seen.append(torch.get_num_threads())
        return evaluate(self, model, **kw)

    monkeypatch.setattr(ClassificationEvaluator, "evaluate", spy)
    assert rebuild_export(pt)["torch_threads"] == stored
    assert seen == [stored] and torch.get_num_threads() == before  # measured with it, then restored


def test_bad_exports_are_one_line(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BitnasError, match="x.json not found"):
        load_export(tmp_path / "x.pt")
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(BitnasError, match="was not written by `bitnas export --format torch`"):
        load_export(tmp_path / "x.pt")
    (tmp_path / "x.json").write_text(json.dumps({"format": "bitnas-torch-1", "spec": {"study": {}}}))
    with pytest.raises(BitnasError, match="x.json") as e:
        load_export(tmp_path / "x.pt")
    assert "\n" not in str(e.value)
    assert main(["rebuild", str(tmp_path / "missing.pt")]) == 2
    assert main(["rebuild", str(tmp_path)]) == 2  # a run without --trial
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "needs --trial N" in err[1]


def test_a_scheme_that_learned_its_own_state_in_qat_reloads(tmp_path):
    """A soft codebook assignment trains its own ratios during QAT (FakeQuantLayer.trained):
    the loader makes that state before loading it."""
    from optuna.trial import FixedTrial

    from bitnas.exporters import ExportItem
    from bitnas.registry import EXPORTERS
    from bitnas.search.context import SearchContext
    from bitnas.search.strategies import arch_params

    spec = StudySpec.from_dict({
        **SPEC, "space": {"name": "cnn", "depth": [1], "widths": [8], "kernel_size": [3], "w_bits": [4],
                          "a_bits": [8], "quantizers": ["codebook"]},
        "quantizers": {"codebook": {"assign": "soft"}}})
    ctx = SearchContext(spec, cache_dir=None)
    cand = ctx.space.suggest(FixedTrial(arch_params(ctx.space, 1)[0]))
    model, metrics, _, _ = ctx.prepared(cand, qat=True)
    assert any(".trained." in k for k in model.state_dict())
    groups, workload = ctx.structure(cand)
    item = ExportItem(candidate=cand, model=model, groups=groups, workload=workload, hardware=ctx.hardware,
                      space=ctx.space, task="digits", trial=0, metrics=metrics, spec=spec.to_dict())
    pt = EXPORTERS.create("torch").export(item, tmp_path)[0]
    loaded, _, _ = load_export(pt)
    x = ctx.data.val.x
    assert torch.equal(loaded(x), model(x))
