"""The generated textures task and the image-folder loader (on a tiny folder written here)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.evaluators.images import TEXTURES, read_image_folder
from bitnas.registry import TASKS


def test_every_texture_is_half_on_in_every_4x4_block_at_every_phase():
    """So 4x4 area downsampling leaves the same flat grey for every class."""
    rows, cols = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    for (name, fn), dr, dc in itertools.product(TEXTURES, range(4), range(4)):
        assert fn(rows + dr, cols + dc).sum() == 8, (name, dr, dc)


def test_classes_differ_only_below_the_patch_size():
    rows, cols = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    blocks = {tuple(fn(rows, cols).ravel()) for _, fn in TEXTURES}
    assert len(blocks) == len(TEXTURES)  # distinct inside a patch


def test_textures_are_deterministic_by_seed_and_balanced():
    task = TASKS.create("textures", size=32, per_class=10)
    a, b, c = task.load(0), task.load(0), task.load(1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert a.train.x.shape[1:] == (3, 32, 32) and a.train.x.dtype == torch.float32
    assert float(a.train.x.min()) >= 0 and float(a.train.x.max()) <= 1
    n = len(a.train) + len(a.val) + len(a.test)
    assert n == 80 and torch.bincount(torch.cat([a.train.y, a.val.y, a.test.y])).tolist() == [10] * 8


def test_downsampling_erases_the_class_and_full_resolution_keeps_it():
    """Class means of the 4x4-averaged images are equal up to noise; at full resolution the
    per-class mean image differs."""
    data = TASKS.create("textures", size=32, per_class=40).load(0)
    x, y = data.train.x, data.train.y
    small = F.avg_pool2d(x, 4)
    # the texture's share of a pixel's variance: large at full size, gone after averaging
    residual_full = (x - F.interpolate(small, scale_factor=4, mode="nearest")).abs().mean()
    assert residual_full > 0.05
    means = torch.stack([small[y == k].mean() for k in range(8)])
    assert float(means.max() - means.min()) < 0.03


def _write(path, size, color, fmt):
    from PIL import Image

    Image.new("RGB", size, color).save(path, fmt)


def test_image_folder_reads_classes_resizes_and_crops(tmp_path):
    from PIL import Image

    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(6):
            _write(tmp_path / name / f"{i}.png", (20 + i, 12), (200 * k, 10, 50), "PNG")
        _write(tmp_path / name / "x.jpg", (16, 16), (200 * k, 10, 50), "JPEG")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    # a 16x8 image, left half white, right half black: resized to 16 tall (32x16), the centre
    # crop keeps columns 8..23 of the 32: half white, half black
    im = Image.new("RGB", (16, 8), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 8, 8))
    im.save(tmp_path / "cat" / "half.png")
    x, y, classes = read_image_folder(tmp_path, 16)
    assert classes == ["cat", "dog"] and x.shape == (15, 3, 16, 16)
    assert y.tolist() == [0] * 8 + [1] * 7
    half = x[classes.index("cat") * 0 + 6]  # sorted: 0..5.png, half.png, x.jpg
    assert half[:, :, :7].min() > 0.9 and half[:, :, 9:].max() < 0.1
    task = TASKS.create("image_folder", path=str(tmp_path), size=16, val_fraction=0.2, test_fraction=0.2)
    assert task.num_classes == 2 and task.input_shape == (3, 16, 16)
    data = task.load(0)
    assert len(data.train) + len(data.val) + len(data.test) == 15
    assert torch.equal(task.load(0).val.x, data.val.x)


@pytest.mark.parametrize("case, match", [
    ("empty", "class folder .*b holds no images"),
    ("unreadable", r"cannot read image .*broken\.jpg"),
    ("single", "holds 1 class folder"),
])
def test_image_folder_bad_input_is_one_line(tmp_path, case, match):
    (tmp_path / "a").mkdir()
    _write(tmp_path / "a" / "0.png", (8, 8), (1, 2, 3), "PNG")
    if case != "single":
        (tmp_path / "b").mkdir()
    if case == "unreadable":
        (tmp_path / "b" / "broken.jpg").write_bytes(b"\x00 not a jpeg")
    with pytest.raises(BitnasError, match=match) as e:
        read_image_folder(tmp_path, 8)
    assert "\n" not in str(e.value)


def test_a_missing_folder_stops_the_cli_with_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(f"""
[study]
name = "f"
trials = 1
[space]
name = "ai8x"
[task]
name = "image_folder"
path = "{tmp_path / 'nowhere'}"
[hardware]
name = "max78000"
[[objectives]]
name = "accuracy"
[[objectives]]
name = "latency_s"
""")
    assert main(["search", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "nowhere is not a directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
