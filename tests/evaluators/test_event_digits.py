import numpy as np
import pytest
import torch

from bitnas.errors import BitnasError
from bitnas.evaluators import EventDigitsTask, events_from_images
from bitnas.evaluators.event_digits import saccade_offsets


def _images(n=6, seed=0):
    from sklearn.datasets import load_digits

    return load_digits().images[:n]


def test_shape_and_determinism_by_seed():
    a = events_from_images(_images(), bins=8, size=16, seed=3)
    b = events_from_images(_images(), bins=8, size=16, seed=3)
    c = events_from_images(_images(), bins=8, size=16, seed=4)
    assert a.shape == (6, 8, 2, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a >= 0).all() and torch.equal(a, a.round())  # event counts


def test_a_blank_scene_gives_no_events_without_noise():
    blank = np.zeros((2, 8, 8))
    ev = events_from_images(blank, bins=4, size=16, seed=0, noise_rate=0.0)
    assert ev.sum() == 0


def test_events_sit_on_the_moving_digit_and_balance_on_a_closed_path():
    ev = events_from_images(_images(20), bins=16, size=16, seed=0, noise_rate=0.0)
    on, off = ev[:, :, 0].sum(), ev[:, :, 1].sum()
    assert on > 0 and abs(float(on - off)) / float(on + off) < 0.1  # returns to its start
    # the digit covers columns 2..13 and the path only moves it right (by <= 1.8 px):
    # the two leftmost columns never see an edge
    assert ev[..., :, :2].sum() == 0 and ev[..., :, 2:].sum() > 0


def test_saccades_form_a_closed_triangle():
    path = saccade_offsets(30, 1.5)
    assert np.allclose(path[0], 0) and np.abs(path).max() <= 1.5 + 1e-9
    closing = saccade_offsets(31, 1.5)
    assert np.allclose(closing[-1], 0, atol=0.16)


def test_task_splits_and_shapes():
    task = EventDigitsTask(bins=8, size=16)
    data = task.load(0)
    assert task.input_shape == (8, 2, 16, 16)
    assert data.train.x.shape[1:] == (8, 2, 16, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert torch.equal(data.val.y, EventDigitsTask(bins=8, size=16).load(0).val.y)


@pytest.mark.parametrize("kw,field", [({"bins": 0}, "task.bins"), ({"size": 4}, "task.size"),
                                      ({"bins": 2.5}, "task.bins")])
def test_bad_options(kw, field):
    with pytest.raises(BitnasError, match=field):
        EventDigitsTask(**kw)
