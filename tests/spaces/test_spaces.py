"""Every registered space: builds, runs forward and backward, and rebuilds from its params."""

import optuna
import pytest
import torch

from bitnas.evaluators import DigitsTask
from bitnas.hardware_models import extract_workload
from bitnas.registry import SPACES, TASKS, load_all
from bitnas.search.rebuild import rebuild_candidate
from bitnas.spec import make_space

load_all()


def _space(name):
    """The space on digits, or, for a space of token ids, on its example task."""
    cls = SPACES.get(name)
    if not cls.takes_tokens:
        return make_space(name, DigitsTask(), "digits")
    options = dict(cls.example_task)
    task_name = options.pop("name")
    return make_space(name, TASKS.create(task_name, **options), task_name)


def _inputs(space, n=3):
    if space.takes_tokens:
        return torch.randint(space.input_vocab, (n, *space.input_shape)).float()
    return torch.randn(n, *space.input_shape)


def _candidates(space, n=8):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((space.suggest(trial), trial.params))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("name", SPACES.names())
def test_build_forward_backward(name):
    space = _space(name)
    for cand, _ in _candidates(space):
        model = space.build(cand.arch_dict())
        out = model(_inputs(space))
        assert out.shape == (3, space.num_classes) and torch.isfinite(out).all()
        out.sum().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", SPACES.names())
def test_groups_match_plan_and_workload(name):
    space = _space(name)
    for cand, _ in _candidates(space):
        model = space.build(cand.arch_dict())
        groups = space.layer_groups(model)
        assert list(groups) == list(cand.plan.layers)
        wl = extract_workload(model, space.example_input(), groups)
        assert {w.group for w in wl} == set(groups)
        # pools etc. hold no weights; a parameter another op reads (a scan's A) does no work itself
        assert all((w.macs > 0 or w.kind == "param") and w.params > 0 for w in wl if w.weighted)


@pytest.mark.parametrize("name", SPACES.names())
def test_fixed_trial_rebuilds_same_candidate(name):
    space = _space(name)

    class Ctx:
        pass

    ctx = Ctx()
    ctx.space = space
    for cand, params in _candidates(space):
        assert rebuild_candidate(ctx, params) == cand


def test_cnn_space_rejects_bad_choices():
    from bitnas.errors import BitnasError

    with pytest.raises(BitnasError, match="space.w_bits"):
        SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, w_bits=[4, 40])
    with pytest.raises(BitnasError, match="space.kernel_size must be odd"):
        SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, kernel_size=[4])
    with pytest.raises(BitnasError, match="unknown quantizer"):
        SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, quantizers=["lloyd"])
