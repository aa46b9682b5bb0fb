import torch
from torch import nn

from bitnas.evaluators import FPModelCache


def _build():
    torch.manual_seed(0)
    return nn.Linear(4, 2)


def _train(model):
    with torch.no_grad():
        model.weight.add_(1.0)
    return model


def test_trains_once_then_hits_disk(tmp_path):
    identity = {"arch": [1, 2], "seed": 0}
    cache = FPModelCache(tmp_path)
    model, seconds = cache.get(identity, _build, _train)
    assert seconds is not None
    fresh = FPModelCache(tmp_path)  # a new process: only the disk remains
    again, seconds2 = fresh.get(identity, _build, lambda m: (_ for _ in ()).throw(AssertionError))
    assert seconds2 is None
    assert torch.equal(again.weight, model.weight)
    other, seconds3 = fresh.get({**identity, "seed": 1}, _build, _train)
    assert seconds3 is not None


def test_corrupt_entry_is_retrained(tmp_path):
    identity = {"arch": "x"}
    cache = FPModelCache(tmp_path)
    cache.get(identity, _build, _train)
    path = tmp_path / f"{FPModelCache.key(identity)}.pt"
    path.write_bytes(b"not a checkpoint")
    model, seconds = FPModelCache(tmp_path).get(identity, _build, _train)
    assert seconds is not None
    assert torch.load(path, weights_only=True)["state_dict"]["weight"].shape == (2, 4)
    assert not list(tmp_path.glob("*.tmp"))
