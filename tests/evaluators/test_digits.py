import numpy as np
import pytest
import torch

from bitnas.errors import BitnasError
from bitnas.evaluators import DigitsTask, read_optdigits


def test_split_is_fixed_by_seed_and_disjoint():
    a, b, c = DigitsTask().load(0), DigitsTask().load(0), DigitsTask().load(1)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    rows = {tuple(x.flatten().tolist()) for x in a.test.x}
    # scikit-learn's digits hold a few duplicate images; the split itself must not repeat rows
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in a.val.x)
    assert overlap <= 2
    assert a.train.x.shape[1:] == (1, 8, 8) and 0 <= a.train.x.min() and a.train.x.max() <= 1


def _write_optdigits(path, n, seed):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        pixels = rng.integers(0, 17, 64)
        lines.append(",".join(map(str, [*pixels, i % 10])))
    path.write_text("\n".join(lines) + "\n")


def test_real_optdigits_files(tmp_path):
    _write_optdigits(tmp_path / "optdigits.tra", 100, 0)
    _write_optdigits(tmp_path / "optdigits.tes", 30, 1)
    data = DigitsTask(path=str(tmp_path)).load(0)
    assert len(data.test) == 30 and len(data.train) + len(data.val) == 100
    images, labels = read_optdigits(tmp_path / "optdigits.tes")
    assert images.shape == (30, 8, 8) and labels[:3].tolist() == [0, 1, 2]
    assert torch.allclose(data.test.x[0, 0] * 16, torch.from_numpy(images[0]).float())


def test_bad_optdigits_files(tmp_path):
    task = DigitsTask(path=str(tmp_path / "nope"))  # checked at load: viewing results needs no data
    with pytest.raises(BitnasError, match="not a directory"):
        task.load(0)
    with pytest.raises(BitnasError, match="task.path must be a directory path"):
        DigitsTask(path="  ")
    (tmp_path / "optdigits.tra").write_text("1,2,3\n")
    with pytest.raises(BitnasError, match=r"optdigits.tra:1: expected 64"):
        DigitsTask(path=str(tmp_path)).load(0)
    (tmp_path / "optdigits.tra").write_text("a,b\n")
    with pytest.raises(BitnasError, match="comma-separated integers"):
        DigitsTask(path=str(tmp_path)).load(0)


@pytest.mark.parametrize("frac", [0, 0.5, 1.5, "x", True])
def test_bad_fractions(frac):
    with pytest.raises(BitnasError, match="task.val_fraction"):
        DigitsTask(val_fraction=frac)


def test_too_few_images_to_split_is_one_clear_error(tmp_path):
    _write_optdigits(tmp_path / "optdigits.tra", 5, 0)
    _write_optdigits(tmp_path / "optdigits.tes", 5, 1)
    with pytest.raises(BitnasError, match="cannot split the images"):
        DigitsTask(path=str(tmp_path)).load(0)


def test_macro_f1_matches_scikit_learn():
    import torch
    from sklearn.metrics import f1_score

    from bitnas.evaluators.base import macro_f1

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        target = torch.randint(0, 5, (60,), generator=gen)
        noise = torch.randint(0, 5, (60,), generator=gen)
        pred = torch.where(torch.rand(60, generator=gen) < 0.6, target, noise)
        expected = f1_score(target.numpy(), pred.numpy(), average="macro")
        assert macro_f1(pred, target) == pytest.approx(expected, abs=1e-12)
    # an imbalanced split: accuracy hides the missed class, macro-F1 does not
    target = torch.tensor([0] * 9 + [1])
    pred = torch.zeros(10, dtype=torch.long)
    assert float((pred == target).float().mean()) == pytest.approx(0.9)
    assert macro_f1(pred, target) == pytest.approx(f1_score(target, pred, average="macro", zero_division=0))
