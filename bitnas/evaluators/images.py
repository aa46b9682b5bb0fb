"""Image tasks for the tiny accelerators: a generated one whose classes live in fine detail
(``textures``), and a loader for the user's own image folders (``image_folder``).

Both keep the images at their stored resolution; a space's input transform (DEX,
downsampling, ...; :mod:`bitnas.evaluators.dex`) shrinks them to what the chip takes.

``textures``: each image (``size`` x ``size``, RGB, values in [0, 1]) is a smooth random
colour field (a 4 x 4 grid of random colours, bilinearly upsampled) plus a fine binary
texture of one of 8 classes, at a random phase, contrast (0.25-0.5) and tint, plus
Gaussian noise (sigma 0.04). The textures are stripes of period 2 (horizontal, vertical),
a checkerboard of period 2, stripes of period 4 (horizontal, vertical, both diagonals)
and a checkerboard of 2 x 2 blocks. Each is on for exactly half of every 4 x 4 block, so
averaging 4 x 4 patches (plain downsampling from 128 to 32) leaves the same flat grey
for every class: the class survives only in which pixels of a patch are bright, which
is what DEX keeps. The accuracy a network reaches at full resolution, downsampled and
with DEX shows how much (``bitnas reproduce dex``). Deterministic by seed; the default
1,600 images of 128 x 128 take a few seconds.

``image_folder``: ``root/<class>/*.jpg|jpeg|png|bmp`` (ImageNette, Caltech-101/256,
Food-101 and the like, as the user has them), read with Pillow, converted to RGB, the
shorter side resized to ``size`` and centre-cropped to ``size`` x ``size``; classes in
sorted folder order; a stratified split by seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split, Task, TaskData
from bitnas.registry import TASKS

#: texture classes: (name, function of row and column index arrays -> on/off)
TEXTURES = (
    ("stripes2_h", lambda r, c: r % 2 == 0),
    ("stripes2_v", lambda r, c: c % 2 == 0),
    ("checker2", lambda r, c: (r + c) % 2 == 0),
    ("stripes4_h", lambda r, c: r % 4 < 2),
    ("stripes4_v", lambda r, c: c % 4 < 2),
    ("diagonal4", lambda r, c: (r + c) % 4 < 2),
    ("antidiagonal4", lambda r, c: (r - c) % 4 < 2),
    ("checker4", lambda r, c: (r // 2 + c // 2) % 2 == 0),
)


def _fraction(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 0.5:
        raise BitnasError(f"{field} must be a fraction in (0, 0.5), got {value!r}")
    return float(value)


def _positive(value: object, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BitnasError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return value


def render_textures(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Images [N, 3, size, size] in [0, 1] of the given texture classes (see the docstring)."""
    n = len(labels)
    coarse = torch.from_numpy(rng.uniform(0.25, 0.75, (n, 3, 4, 4)).astype(np.float32))
    out = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True).numpy()
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    # every class at every phase (the patterns repeat every 4 pixels): [class, dr, dc, H, W]
    patterns = np.stack([np.stack([np.stack([fn(rows + dr, cols + dc) for dc in range(4)])
                                   for dr in range(4)]) for _, fn in TEXTURES]).astype(np.float32) - 0.5
    shifts = rng.integers(0, 4, (n, 2))
    contrast = rng.uniform(0.25, 0.5, n).astype(np.float32)
    tint = rng.uniform(0.5, 1.0, (n, 3)).astype(np.float32) * contrast[:, None]
    texture = patterns[labels, shifts[:, 0], shifts[:, 1]]  # [N, H, W]
    out += texture[:, None] * tint[:, :, None, None]
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(0.04)
    return np.clip(out, 0.0, 1.0, out=out)


def _splits(x: np.ndarray, y: np.ndarray, seed: int, val: float, test: float) -> TaskData:
    rest_x, test_x, rest_y, test_y = train_test_split(x, y, test_size=test, random_state=seed, stratify=y)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val / (1 - test), random_state=seed, stratify=rest_y)

    def split(a: np.ndarray, b: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b.astype(np.int64)))

    return TaskData(train=split(train_x, train_y), val=split(val_x, val_y), test=split(test_x, test_y))


@TASKS.register("textures")
class TexturesTask(Task):
    """Generated RGB textures whose 8 classes differ only in detail finer than 4x4 pixels."""

    num_classes = len(TEXTURES)

    def __init__(self, *, size: int = 128, per_class: int = 200, val_fraction: float = 0.2,
                 test_fraction: float = 0.2) -> None:
        self.size = _positive(size, "task.size", minimum=8)
        self.per_class = _positive(per_class, "task.per_class", minimum=5)
        self.val_fraction = _fraction(val_fraction, "task.val_fraction")
        self.test_fraction = _fraction(test_fraction, "task.test_fraction")
        self.input_shape = (3, self.size, self.size)

    def load(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(self.num_classes), self.per_class)
        rng.shuffle(labels)
        images = render_textures(labels, self.size, rng)
        return _splits(images, labels, seed, self.val_fraction, self.test_fraction)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as [3, size, size] float32 in [0, 1]: RGB, shorter side resized to ``size``,
    centre-cropped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BitnasError(f"cannot read image {path} ({type(e).__name__}); remove or replace it") from None
    return arr.transpose(2, 0, 1).copy()


def class_folders(root: Path) -> list[str]:
    """The class folders under ``root``, sorted (hidden ones left out)."""
    if not root.is_dir():
        raise BitnasError(f"task.path {root} is not a directory; it must hold one folder per class "
                          "(root/<class>/*.jpg)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image under ``root/<class>/``: images [N, 3, size, size], labels, class names."""
    classes = class_folders(root)
    if len(classes) < 2:
        raise BitnasError(f"task.path {root} holds {len(classes)} class folder(s); a classification "
                          "task needs at least 2 (root/<class>/*.jpg)")
    images, labels = [], []
    for k, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BitnasError(f"class folder {root / name} holds no images "
                              f"({', '.join(IMAGE_SUFFIXES)}); add some or remove the folder")
        for f in files:
            images.append(read_image(f, size))
            labels.append(k)
    return np.stack(images), np.asarray(labels), classes


@TASKS.register("image_folder")
class ImageFolderTask(Task):
    """Your own images, one folder per class (ImageNette, Caltech, Food-101 ...), via Pillow."""

    def __init__(self, *, path: str | None = None, size: int = 128, val_fraction: float = 0.15,
                 test_fraction: float = 0.15) -> None:
        if not isinstance(path, str) or not path.strip():
            raise BitnasError("task image_folder needs path = \"/data/imagenette/train\" (one folder "
                              "per class holding its images)")
        self.root = Path(path).expanduser()
        self.size = _positive(size, "task.size", minimum=8)
        self.val_fraction = _fraction(val_fraction, "task.val_fraction")
        self.test_fraction = _fraction(test_fraction, "task.test_fraction")
        self.input_shape = (3, self.size, self.size)
        self.classes = class_folders(self.root)
        self.num_classes = len(self.classes)

    def load(self, seed: int) -> TaskData:
        images, labels, _ = read_image_folder(self.root, self.size)
        try:
            return _splits(images, labels, seed, self.val_fraction, self.test_fraction)
        except ValueError as e:
            raise BitnasError(f"task image_folder: cannot split {len(labels)} images into train, "
                              f"validation and test by class ({str(e).splitlines()[0]}); each class "
                              "needs a few images per split") from None
