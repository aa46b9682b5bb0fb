"""The real event data sets, read through SpikingJelly from tiny fake directories.

Each directory is built here in the layout SpikingJelly 2.0 writes (``events_np/``
with one ``.npz`` of t, x, y, p per sample, or ``extract/`` with the published raw
files), so the tests run SpikingJelly's own frame integration and never need the
real data sets. Every sample gets a known number of events, which integration and
sum pooling must keep.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.evaluators import event_datasets as ed
from bitnas.evaluators.event_datasets import (
    CIFAR10DVSTask,
    DVS128GestureTask,
    NCaltech101Task,
    area_matrix,
    pool_frames,
)
from bitnas.registry import TASKS

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_events(path: Path, n: int, rng: np.random.Generator, *, p=None, x_max=128) -> None:
    """One sample of SpikingJelly's events_np: n random events on the 128 x 128 sensor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, t=np.sort(rng.integers(0, 10**6, n)), x=rng.integers(0, x_max, n),
             y=rng.integers(0, 128, n), p=rng.integers(0, 2, n) if p is None else np.full(n, p))


def gesture_dir(root: Path, train: int = 3, test: int = 1) -> dict[str, list[tuple[int, int]]]:
    """events_np/{train,test}/<0..10>/; class 3 is all ON events, class 5 only in x < 64.

    Returns the sorted (label, events) of each part; label c has 100 * c + 10 + k events.
    """
    rng = np.random.default_rng(0)
    counts: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for part, per_class in (("train", train), ("test", test)):
        for c in range(11):
            for k in range(per_class):
                n = 100 * c + 10 + k
                write_events(root / "events_np" / part / str(c) / f"user{k:02d}_lab_{c}.npz", n, rng,
                             p=1 if c == 3 else None, x_max=64 if c == 5 else 128)
                counts[part].append((c, n))
    return {part: sorted(v) for part, v in counts.items()}


def cifar_dir(root: Path, per_class: int = 5) -> None:
    rng = np.random.default_rng(1)
    for c, name in enumerate(CIFAR):
        for k in range(per_class):
            write_events(root / "events_np" / name / f"cifar10_{name}_{k}.npz", 100 * c + 10 + k, rng)


def atis_bin(path: Path, x, y, p, t) -> None:
    """N-Caltech101's raw format: 40 bits per event (x, y, polarity + 23-bit time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y, p, t = (np.asarray(a, dtype=np.uint32) for a in (x, y, p, t))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    raw.astype(np.uint8).tofile(path)


def totals(split) -> list[tuple[int, int]]:
    """Sorted (label, events) of a loaded split."""
    n = split.x.sum(dim=(1, 2, 3, 4))
    assert torch.equal(n, n.round())
    return sorted(zip(split.y.tolist(), n.long().tolist(), strict=True))


def one_line_error(fn, *fragments) -> str:
    with pytest.raises(BitnasError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def no_vision_modules() -> bool:
    return not [k for k in sys.modules if k.split(".")[0] in ("torchvision", "torchaudio")]


@pytest.fixture(scope="module")
def gesture(tmp_path_factory):
    """A gesture directory, integrated and loaded once: (root, counts, data)."""
    root = tmp_path_factory.mktemp("gesture")
    counts = gesture_dir(root)
    task = DVS128GestureTask(path=str(root), bins=4, size=16, val_fraction=0.4)
    assert task.input_shape == (4, 2, 16, 16) and task.num_classes == 11
    return root, counts, task.load(0)


def test_dvs128_gesture_official_split_labels_and_event_counts(gesture):
    root, counts, data = gesture
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert (len(data.train), len(data.val), len(data.test)) == (19, 14, 11)
    assert data.test.x.shape == (11, 4, 2, 16, 16)
    # labels are the class folders' numbers (not their string order), and every event is kept
    assert totals(data.test) == counts["test"]
    assert sorted(totals(data.train) + totals(data.val)) == counts["train"]
    assert set(data.val.y.tolist()) == set(range(11))  # stratified: every class
    # integration by count: every frame but the last holds n // bins events
    per_frame = data.test.x.sum(dim=(2, 3, 4))
    n = per_frame.sum(dim=1, keepdim=True)
    assert torch.equal(per_frame[:, :-1], (n // 4).expand(-1, 3)) and (per_frame[:, -1:] >= n // 4).all()
    # channel 1 is ON (class 3 has only ON events); x is the width axis (class 5 has x < 64)
    on_only, left_only = data.test.x[data.test.y == 3], data.test.x[data.test.y == 5]
    assert on_only[:, :, 0].sum() == 0 and on_only[:, :, 1].sum() > 0
    assert left_only[..., 8:].sum() == 0 and left_only[..., :8].sum() > 0
    # SpikingJelly wrote the frames beside events_np, and nothing else was made or imported
    assert (root / "frames_number_4_split_by_number" / "test" / "10").is_dir()
    assert sorted(os.listdir(root)) == ["events_np", "frames_number_4_split_by_number"]
    assert no_vision_modules()


def test_cifar10_dvs_split_is_stratified_seeded_and_labelled_by_class_name(tmp_path):
    cifar_dir(tmp_path)
    kw = {"path": str(tmp_path), "bins": 2, "size": 8, "val_fraction": 0.4, "test_fraction": 0.4}
    a, b, c = CIFAR10DVSTask(**kw).load(0), CIFAR10DVSTask(**kw).load(0), CIFAR10DVSTask(**kw).load(1)
    assert (len(a.train), len(a.val), len(a.test)) == (18, 12, 20)
    for name in ("train", "val", "test"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        assert set(sa.y.tolist()) == set(range(10))  # every class in every split
        # class c (CIFAR-10 order) has 100 * c + 10 + k events
        assert torch.equal(sa.x.sum(dim=(1, 2, 3, 4)).long() // 100, sa.y)
    assert not torch.equal(a.test.x.sum(dim=(1, 2, 3, 4)), c.test.x.sum(dim=(1, 2, 3, 4)))
    everything = sorted(totals(a.train) + totals(a.val) + totals(a.test))
    assert everything == sorted((c, 100 * c + 10 + k) for c in range(10) for k in range(5))


def test_integrated_frames_are_reused_without_events_np(gesture, tmp_path):
    root, _, first = gesture
    shutil.copytree(root / "frames_number_4_split_by_number", tmp_path / "frames_number_4_split_by_number")
    again = DVS128GestureTask(path=str(tmp_path), bins=4, size=16, val_fraction=0.4).load(0)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).x, getattr(again, name).x)
        assert torch.equal(getattr(first, name).y, getattr(again, name).y)
    assert os.listdir(tmp_path) == ["frames_number_4_split_by_number"]  # no download/, no markers
    one_line_error(lambda: DVS128GestureTask(path=str(tmp_path), bins=8).load(0),
                   "has no events_np/, frames_number_8_split_by_number/ or extract/",
                   "frames_number_4_split_by_number exists: set task.bins")


def test_ncaltech101_from_the_extracted_bin_files(tmp_path, monkeypatch):
    """extract/Caltech101/<class>/*.bin -> SpikingJelly's events_np -> frames (180 x 240)."""
    monkeypatch.setattr(NCaltech101Task, "num_classes", 3)  # a tiny data set of 3 classes
    rng = np.random.default_rng(2)
    expected = []
    for c, name in enumerate(("BACKGROUND_Google", "Faces_easy", "accordion")):
        for k in range(6):
            n = 50 + 20 * c + k
            x, y = rng.integers(0, 240, n), rng.integers(0, 180, n)
            x[0], y[0] = 239, 179  # the far corner lands in the last cell
            atis_bin(tmp_path / "extract" / "Caltech101" / name / f"image_{k:04d}.bin",
                     x, y, rng.integers(0, 2, n), np.sort(rng.integers(0, 2**23, n)))
            expected.append((c, n))
    data = NCaltech101Task(path=str(tmp_path), bins=2, size=16, val_fraction=0.3,
                           test_fraction=0.3).load(0)
    assert data.train.x.shape[1:] == (2, 2, 16, 16)
    assert sorted(totals(data.train) + totals(data.val) + totals(data.test)) == sorted(expected)
    assert (data.test.x[..., 15, 15].sum(dim=(1, 2)) >= 1).all()
    assert (tmp_path / "events_np" / "accordion" / "image_0000.npz").is_file()
    assert not (tmp_path / "events_np.building").exists()


def test_area_pooling_is_sum_pooling_and_keeps_counts():
    frames = torch.randint(0, 5, (3, 2, 128, 128)).float()
    assert torch.equal(pool_frames(frames, 32), F.avg_pool2d(frames, 4) * 16)
    for shape, size in (((2, 180, 240), 32), ((2, 128, 128), 48), ((1, 128, 128), 128)):
        x = torch.randint(0, 5, shape).float()
        y = pool_frames(x, size)
        assert y.shape == (*shape[:-2], size, size) and (y >= 0).all()
        assert torch.allclose(y.sum(), x.sum())
    assert torch.allclose(area_matrix(180, 32).sum(dim=0), torch.ones(180))
    corner = torch.zeros(1, 128, 128)
    corner[0, 127, 0] = 1
    assert pool_frames(corner, 32)[0, 31, 0] == 1


def test_the_shim_is_scoped_and_spikingjelly_cannot_download(tmp_path, monkeypatch):
    sentinel = types.ModuleType("torchvision")
    monkeypatch.setitem(sys.modules, "torchvision", sentinel)  # whatever was there is restored
    monkeypatch.delitem(sys.modules, "spikingjelly.datasets", raising=False)
    before = {k for k in sys.modules if k.startswith(("torchvision", "torchaudio", "spikingjelly.datasets"))}
    sj = ed.import_spikingjelly_datasets()
    after = {k for k in sys.modules if k.startswith(("torchvision", "torchaudio", "spikingjelly.datasets"))}
    assert after == before and sys.modules["torchvision"] is sentinel
    assert issubclass(sj.dvs128_gesture.DVS128Gesture, ed.DatasetFolder)
    one_line_error(lambda: sj.base.download_url("https://example.org/x.zip", str(tmp_path)),
                   "bitnas never downloads")
    # SpikingJelly's own class, on an empty directory, tries to download and is refused
    one_line_error(lambda: sj.cifar10_dvs.CIFAR10DVS(str(tmp_path), data_type="frame", frames_number=2,
                                                     split_by="number"),
                   "bitnas never downloads", "airplane.zip")
    one_line_error(lambda: sj.dvs128_gesture.extract_archive(tmp_path / "DvsGesture.tar.gz", tmp_path),
                   "bitnas does not unpack archives")


def test_the_stand_in_dataset_folder_behaves_like_torchvisions(tmp_path):
    for cls, files in (("b", ["2.npz", "1.npz", "note.txt"]), ("a", ["x/3.npy"]), ("10", ["z.npz"])):
        for f in files:
            (tmp_path / cls / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cls / f).write_text(f)
    ds = ed.DatasetFolder(tmp_path, loader=lambda p: Path(p).read_text(), extensions=(".npz", ".npy"),
                          target_transform=lambda t: t * 10)
    assert ds.classes == ["10", "a", "b"] and ds.class_to_idx == {"10": 0, "a": 1, "b": 2}
    assert [(Path(p).relative_to(tmp_path).as_posix(), t) for p, t in ds.samples] == [
        ("10/z.npz", 0), ("a/x/3.npy", 1), ("b/1.npz", 2), ("b/2.npz", 2)]
    assert len(ds) == 4 and ds[3] == ("2.npz", 20) and ds.targets == [0, 1, 2, 2]
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match=r"classes a, c\. Supported extensions are: \.npz$"):
        ed.DatasetFolder(tmp_path, loader=str, extensions=(".npz",))


def _marker(root):
    gesture_dir(root, train=1, test=1)
    (root / "frames_number_16_split_by_number.building").touch()


def _stray(root):
    gesture_dir(root, train=1, test=1)
    (root / "events_np" / "train" / ".DS_Store").write_text("x")


def _corrupt(root):
    gesture_dir(root, train=1, test=1)
    (root / "events_np" / "test" / "4" / "user00_lab_4.npz").write_bytes(b"garbage" * 10)


def _outside(root):
    gesture_dir(root, train=1, test=1)
    write_events(root / "events_np" / "test" / "4" / "user00_lab_4.npz", 5, np.random.default_rng(0),
                 p=1, x_max=10**6)


def _wrong_frames(root):
    for part in ("train", "test"):
        for c in range(11):
            d = root / "frames_number_16_split_by_number" / part / str(c)
            d.mkdir(parents=True)
            for k in range(3):
                np.savez(d / f"{k}.npz", frames=np.zeros((16, 2, 64, 64)))


@pytest.mark.parametrize("build,fragments", [
    (lambda r: None, ["has no events_np/, frames_number_16_split_by_number/ or extract/",
                      "bitnas never downloads", "events_np/train/<0..10>/*.npz"]),
    (lambda r: (gesture_dir(r), shutil.rmtree(r / "events_np" / "test")), ["events_np has no test/ folder"]),
    (lambda r: [(r / "events_np" / p / "0").mkdir(parents=True) for p in ("train", "test")],
     ["holds 1 class folders (0), expected 11 class folders (0, 1, 2"]),
    (lambda r: (gesture_dir(r, 1, 1), [f.unlink() for f in (r / "events_np" / "test" / "7").iterdir()]),
     ["class folder", "test/7 holds no .npz samples"]),
    (_marker, ["did not finish", "delete"]),
    (_stray, [".DS_Store is not a .npz sample", "move it out"]),
    (_corrupt, ["SpikingJelly could not prepare the frames", "test/4/user00_lab_4.npz: This file contains",
                "fix or remove that file, delete", "frames_number_16_split_by_number.building, then run"]),
    (_outside, ["test/4/user00_lab_4.npz has events outside the 128x128 sensor"]),
    (_wrong_frames, ["holds shape (16, 2, 64, 64), expected (16, 2, 128, 128)"]),
    (lambda r: (gesture_dir(r, 1, 1), _wrong_frames(r)), ["frames_number_16_split_by_number holds 66 "
                                                          "samples but", "events_np holds 22"]),
    (lambda r: (r / "extract").mkdir(), ["has no DvsGesture/trials_to_train.txt"]),
], ids=["empty", "no-test", "one-class", "empty-class", "marker", "stray-file", "corrupt-file",
        "outside", "wrong-frames", "stale-frames", "bare-extract"])
def test_a_directory_in_the_wrong_layout_gets_one_clear_line(tmp_path, build, fragments):
    build(tmp_path)
    one_line_error(lambda: DVS128GestureTask(path=str(tmp_path), val_fraction=0.4).load(0), *fragments)


def test_the_wrong_class_folders_and_paths_are_refused(tmp_path):
    cifar_dir(tmp_path, per_class=1)
    (tmp_path / "events_np" / "airplane").rename(tmp_path / "events_np" / "plane")
    one_line_error(lambda: CIFAR10DVSTask(path=str(tmp_path)).load(0),
                   "expected 10 class folders (airplane, automobile", "plane")
    one_line_error(lambda: CIFAR10DVSTask(path=str(tmp_path / "nowhere")).load(0),
                   "nowhere does not exist", "events_np/<airplane..truck>/*.npz")
    (tmp_path / "file").write_text("x")
    one_line_error(lambda: NCaltech101Task(path=str(tmp_path / "file")).load(0), "is not a directory")
    assert not (tmp_path / "download").exists()


@pytest.mark.parametrize("kw,fragment", [
    ({}, "task dvs128_gesture needs task.path"),
    ({"path": ""}, "task.path must be a directory path"),
    ({"path": "d", "bins": 0}, "task.bins must be an integer in 1..64"),
    ({"path": "d", "bins": True}, "task.bins"),
    ({"path": "d", "size": 4}, "task.size must be an integer in 8..128"),
    ({"path": "d", "size": 256}, "task.size"),
    ({"path": "d", "val_fraction": 0.6}, "task.val_fraction must be a fraction"),
])
def test_bad_options(kw, fragment):
    one_line_error(lambda: DVS128GestureTask(**kw), fragment)


def test_registered_with_their_options():
    assert {"dvs128_gesture", "cifar10_dvs", "ncaltech101"} <= set(TASKS.names())
    assert TASKS.get("ncaltech101") is NCaltech101Task
    one_line_error(lambda: TASKS.create("cifar10_dvs", path="d", test_fraction=0.9), "task.test_fraction")
    with pytest.raises(TypeError):
        TASKS.create("dvs128_gesture", path="d", test_fraction=0.2)  # the official split is used


SPEC = """
[study]
name = "gesture"
trials = 1

[space]
name = "spikformer"
time_steps = [2]
embed_dims = [16]
depth = [1]
heads = [1]
mlp_ratio = [2]
w_bits = [4]

[task]
name = "dvs128_gesture"
{path}
bins = 4
size = 16
val_fraction = 0.4
epochs = 1

[hardware]
name = "generic45nm"

[[objectives]]
name = "accuracy"

[[objectives]]
name = "energy_j"
"""


def test_a_search_runs_on_the_gesture_directory(gesture, tmp_path, capsys):
    root, _, _ = gesture  # its frames exist: reused, not written again
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(path=f"path = {str(root)!r}"))
    code = main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert len(records) == 1 and 0 <= records[0]["metrics"]["accuracy"] <= 1


@pytest.mark.parametrize("path,fragment", [
    ("", "task dvs128_gesture needs task.path"),
    ('path = "/no/such/gesture"', "task.path /no/such/gesture does not exist"),
])
def test_cli_bad_path_is_one_line_and_exit_2(tmp_path, capsys, path, fragment):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(path=path))
    code = main(["search", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bitnas: error:"), err
    assert fragment in lines[0] and "Traceback" not in err
