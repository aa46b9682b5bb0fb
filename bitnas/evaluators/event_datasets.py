"""Real event-camera data sets: DVS128 Gesture, CIFAR10-DVS and N-Caltech101.

Each task reads a directory the user already has (``task.path``), in the layout
SpikingJelly 2.0 uses, and lets SpikingJelly's own dataset classes
(``DVS128Gesture``, ``CIFAR10DVS``, ``NCaltech101``) integrate the events into
``bins`` frames by event count (``data_type='frame'``, ``frames_number=bins``,
``split_by='number'``: every frame holds the same number of events, the last
one the remainder). bitnas never downloads anything.

Layouts accepted in ``task.path``, first match wins (``<T>`` is ``task.bins``):

``frames_number_<T>_split_by_number/``
    frames SpikingJelly integrated before, one ``.npz`` per sample with key
    ``frames`` of shape [T, 2, H, W]; reused as they are.
``events_np/``
    the per-sample events, one ``.npz`` per sample with arrays ``t``, ``x``,
    ``y``, ``p``; SpikingJelly integrates them into the folder above (once; it is
    written beside ``events_np``, so the directory must be writable).
``extract/``
    the unpacked archives as published; SpikingJelly converts them into
    ``events_np/`` first (DVS128 Gesture: ``extract/DvsGesture/`` with
    ``trials_to_train.txt``; CIFAR10-DVS: ``extract/<class>/*.aedat``;
    N-Caltech101: ``extract/Caltech101/<class>/*.bin``).

Below ``events_np`` and the frames folder, DVS128 Gesture has ``train/`` and
``test/`` (the official split), each with class folders ``0`` .. ``10``;
CIFAR10-DVS has the ten class folders ``airplane`` .. ``truck``, and N-Caltech101
its 101 class folders. A directory in any other layout is refused with one line
that says what is missing.

The frames are loaded into memory as float32 tensors [N, bins, 2, size, size]
(channel 0 OFF, channel 1 ON events, as SpikingJelly integrates them). The
sensor's 128x128 (180x240 for N-Caltech101) frames are reduced to size x size on
load by *area-weighted sum pooling*: every input pixel's count is shared among
the output cells it overlaps, in proportion to the overlap. When size divides the
sensor side this is plain sum pooling; otherwise the cells are fractional but
nothing is lost or counted twice. A sum, not an average, keeps the values event
counts, like SpikingJelly's frames and ``event_digits``, and keeps every
sample's total number of events exactly. (N-Caltech101's 180x240 is squeezed to
a square, as usual for this data set.) Full-size frames would not fit: 16 frames
of 2x128x128 for CIFAR10-DVS's 10,000 samples are 21 GB in float32.

SpikingJelly's dataset modules import ``torchvision`` (``DatasetFolder`` and the
download helpers), which does not import against this project's CPU torch, and
bitnas never imports torchvision or torchaudio. So the three dataset modules
(with ``base`` and ``utils``, but not the ``spikingjelly.datasets`` package
``__init__``, which would import every other data set too) are imported once,
inside a scoped shim: for the duration of that import only, ``sys.modules`` holds
small stand-ins for ``torchvision``, ``torchvision.datasets`` (a faithful
``DatasetFolder``), ``torchvision.datasets.utils`` (download, checksum and unpack
helpers that refuse with a BitnasError), ``torchvision.transforms`` and
``torchaudio``. Afterwards ``sys.modules`` is put back as it was, for those names
and for ``spikingjelly.datasets*``; the imported modules keep their references
to the stand-ins, so they can never download. The dataset classes are also
subclassed so that their "prepare the raw data set" step only ever uses what is
on disk.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import threading
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split, Task, TaskData, int_option
from bitnas.registry import TASKS

#: the file extensions SpikingJelly's datasets read (``get_extensions``)
SAMPLE_EXTENSIONS = (".npy", ".npz")
#: SpikingJelly's dataset modules the tasks use, imported without the package ``__init__``
SJ_MODULES = ("utils", "base", "dvs128_gesture", "cifar10_dvs", "n_caltech101")
#: the names the shim owns while it imports them; restored afterwards
SHIMMED = ("torchvision", "torchaudio", "spikingjelly.datasets")

#: what SpikingJelly (and numpy under it) raise on files it cannot read or write
SJ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, IndexError, EOFError, NotImplementedError,
             zipfile.BadZipFile)

NO_DOWNLOAD = ("bitnas never downloads data sets; put the data set you already have into "
               "task.path in SpikingJelly's layout (events_np/ or extract/)")


# ---------------------------------------------------------------------------------------
# The import shim: stand-ins for the few torchvision pieces SpikingJelly's datasets use
# ---------------------------------------------------------------------------------------


class DatasetFolder(torch.utils.data.Dataset):
    """Stand-in for ``torchvision.datasets.DatasetFolder``, with the same behaviour.

    Class folders are the sorted subdirectories of ``root``; ``samples`` lists
    (path, class index) for every file below them with an allowed extension, in
    sorted order; ``__getitem__`` returns ``(loader(path), class index)`` through
    the optional transforms.
    """

    def __init__(self, root: str | Path, loader: Callable[[str], Any],
                 extensions: tuple[str, ...] | None = None, transform: Callable | None = None,
                 target_transform: Callable | None = None,
                 is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False) -> None:
        self.root = os.path.expanduser(root) if isinstance(root, str) else root
        self.loader = loader
        self.extensions = extensions
        self.transform = transform
        self.target_transform = target_transform
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(self.root, self.class_to_idx, extensions, is_valid_file, allow_empty)
        self.targets = [target for _, target in self.samples]

    @staticmethod
    def find_classes(directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory: str | Path, class_to_idx: dict[str, int],
                     extensions: tuple[str, ...] | None = None,
                     is_valid_file: Callable[[str], bool] | None = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        if (extensions is None) == (is_valid_file is None):
            raise ValueError("Both extensions and is_valid_file cannot be None or not None at the same time")
        valid = is_valid_file or (lambda path: path.lower().endswith(tuple(extensions)))
        samples, empty = [], []
        for name in sorted(class_to_idx):
            found = [(os.path.join(folder, fname), class_to_idx[name])
                     for folder, _, fnames in sorted(os.walk(os.path.join(directory, name), followlinks=True))
                     for fname in sorted(fnames) if valid(os.path.join(folder, fname))]
            if not found:
                empty.append(name)
            samples += found
        if empty and not allow_empty:
            shown = extensions if isinstance(extensions, str) else ", ".join(extensions or ())
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. "
                                    + (f"Supported extensions are: {shown}" if extensions else ""))
        return samples

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    def __len__(self) -> int:
        return len(self.samples)


def download_url(url: str, root: str | Path, filename: str | None = None, *args: Any, **kwargs: Any) -> None:
    """Stand-in for torchvision's: refuses."""
    raise BitnasError(f"{NO_DOWNLOAD} (SpikingJelly asked to download {filename or url})")


def check_integrity(fpath: str | Path, md5: str | None = None) -> bool:
    """Stand-in for torchvision's: SpikingJelly checks only downloads, which bitnas never makes."""
    raise BitnasError(f"{NO_DOWNLOAD} (SpikingJelly asked to check the download {fpath})")


def extract_archive(from_path: str | Path, to_path: str | Path | None = None,
                    *args: Any, **kwargs: Any) -> None:
    """Stand-in for torchvision's: refuses; the user unpacks the archives."""
    raise BitnasError(f"bitnas does not unpack archives; unpack {from_path} yourself into "
                      f"{to_path or Path(from_path).parent} (SpikingJelly's extract/ folder)")


def _stand_ins() -> dict[str, types.ModuleType]:
    def module(name: str, doc: str, package: bool = True, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name, f"bitnas stand-in: {doc}")
        if package:
            mod.__path__ = []  # a package that holds nothing else: other submodules fail to import
        mod.__dict__.update(attrs)
        return mod

    utils = module("torchvision.datasets.utils", "no downloads, no unpacking", package=False,
                   download_url=download_url, check_integrity=check_integrity,
                   extract_archive=extract_archive)
    datasets = module("torchvision.datasets", "DatasetFolder only", DatasetFolder=DatasetFolder, utils=utils)
    transforms = module("torchvision.transforms", "empty (SpikingJelly uses it only to plot)")
    vision = module("torchvision", "see bitnas.evaluators.event_datasets",
                    datasets=datasets, transforms=transforms)
    audio = module("torchaudio", "empty; bitnas never imports torchaudio")
    return {m.__name__: m for m in (vision, datasets, utils, transforms, audio)}


def _owned(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in SHIMMED)


@contextlib.contextmanager
def torchvision_stand_ins() -> Iterator[None]:
    """Put the stand-ins into ``sys.modules`` for the block, then restore every entry
    under ``torchvision``, ``torchaudio`` and ``spikingjelly.datasets`` as it was."""
    before = {name: mod for name, mod in sys.modules.items() if _owned(name)}
    for name in before:
        del sys.modules[name]
    sys.modules.update(_stand_ins())
    try:
        yield
    finally:
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]
        sys.modules.update(before)


def import_spikingjelly_datasets() -> types.SimpleNamespace:
    """SpikingJelly's ``base``, ``utils`` and the three dataset modules (uncached).

    When the ``spikingjelly.datasets`` package was already imported in full (where
    torchvision works), its modules are used as they are. Otherwise they are
    imported under the shim, without running the package ``__init__``.
    """
    loaded = sys.modules.get("spikingjelly.datasets")
    try:
        if loaded is not None and hasattr(loaded, "NeuromorphicDatasetFolder"):
            modules = {n: importlib.import_module(f"spikingjelly.datasets.{n}") for n in SJ_MODULES}
        else:
            with torchvision_stand_ins():
                spec = importlib.util.find_spec("spikingjelly.datasets")
                if spec is None:
                    raise ImportError("No module named 'spikingjelly.datasets'")
                package = importlib.util.module_from_spec(spec)  # its __init__ is not run
                sys.modules["spikingjelly.datasets"] = package
                modules = {n: importlib.import_module(f"spikingjelly.datasets.{n}") for n in SJ_MODULES}
    except ImportError as e:
        raise BitnasError(f"cannot import SpikingJelly's dataset modules ({e}); the event data sets "
                          "need spikingjelly==2.0.0 as pinned in pyproject.toml (pip install -e .)") from None
    return types.SimpleNamespace(**modules)


_SJ_LOCK = threading.Lock()
_SJ: types.SimpleNamespace | None = None


def spikingjelly_datasets() -> types.SimpleNamespace:
    """The modules of :func:`import_spikingjelly_datasets`, imported once per process."""
    global _SJ
    with _SJ_LOCK:
        if _SJ is None:
            _SJ = import_spikingjelly_datasets()
        return _SJ


_OFFLINE: dict[type, type] = {}


def offline(dataset_cls: type) -> type:
    """A subclass of a SpikingJelly dataset class whose raw-data step uses only the disk.

    SpikingJelly's ``prepare_raw_dataset`` downloads when ``events_np`` is missing.
    Here it returns when ``events_np`` or the integrated frames exist, converts
    ``extract/`` with SpikingJelly's ``create_raw_from_extracted`` when only that
    exists, and otherwise refuses.
    """
    if dataset_cls not in _OFFLINE:
        def prepare_raw_dataset(self: Any) -> None:
            raw = Path(self.raw_root)
            if raw.exists() or self.get_dataset_builder().processed_root.exists():
                return
            extract = Path(self.cfg.root) / "extract"
            if not extract.is_dir():
                raise BitnasError(f"{self.cfg.root} has neither events_np/ nor extract/; {NO_DOWNLOAD}")
            marker = raw.with_name(f"{raw.name}.building")  # SpikingJelly's own marker
            marker.touch(exist_ok=False)
            raw.mkdir()
            type(self).create_raw_from_extracted(extract, raw)
            marker.unlink()  # left in place on failure, as SpikingJelly does: the next run refuses

        _OFFLINE[dataset_cls] = type(f"Offline{dataset_cls.__name__}", (dataset_cls,),
                                     {"prepare_raw_dataset": prepare_raw_dataset,
                                      "__doc__": offline.__doc__})
    return _OFFLINE[dataset_cls]


# ---------------------------------------------------------------------------------------
# Pooling the sensor frames down to size x size
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in]: the share of input pixel r that falls into output cell i.

    Output cell i covers input coordinates [i * n_in / n_out, (i + 1) * n_in / n_out);
    each column sums to 1, so ``A @ v`` keeps ``v.sum()``. When n_out divides n_in
    the entries are exactly 0 or 1 (sum pooling).
    """
    edges = torch.arange(n_out + 1, dtype=torch.float64) * n_in / n_out
    r = torch.arange(n_in, dtype=torch.float64)
    lo = torch.maximum(edges[:-1, None], r[None, :])
    hi = torch.minimum(edges[1:, None], r[None, :] + 1)
    return (hi - lo).clamp_min(0).float()


def pool_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Frames [..., H, W] -> [..., size, size] by area-weighted sum pooling (counts kept)."""
    h, w = frames.shape[-2:]
    return area_matrix(h, size) @ frames @ area_matrix(w, size).T


# ---------------------------------------------------------------------------------------
# The tasks
# ---------------------------------------------------------------------------------------


def _fraction(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 0.5:
        raise BitnasError(f"{field} must be a fraction in (0, 0.5), got {value!r}")
    return value


def _progress(msg: str, done: bool = False) -> None:
    """One updating line on a terminal; nothing when stderr is not one (logs, tests)."""
    if sys.stderr.isatty():
        print(f"\r\033[K{msg}", end="\n" if done else "", file=sys.stderr, flush=True)


def _count_samples(top: Path) -> int:
    """The sample files (.npz, .npy) anywhere below ``top``."""
    return sum(Path(f).suffix.lower() in SAMPLE_EXTENSIONS
               for _, _, files in os.walk(top, followlinks=True) for f in files)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")


def bad_events_file(events: Path, sensor: tuple[int, int]) -> str | None:
    """The first events file SpikingJelly cannot integrate, and why (after it failed)."""
    h, w = sensor
    for folder, _, files in sorted(os.walk(events, followlinks=True)):
        for path in (Path(folder, f) for f in sorted(files) if f.lower().endswith(".npz")):
            try:
                with np.load(path) as z:
                    missing = sorted({"t", "x", "y", "p"} - set(z.files))
                    if missing:
                        return f"{path} has no {', '.join(missing)} array"
                    x, y = z["x"], z["y"]
                    if len(x) and (x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h):
                        return f"{path} has events outside the {w}x{h} sensor"
            except SJ_ERRORS as e:
                return f"{path}: {_first_line(e)}"
    return None


class EventDatasetTask(Task):
    """An event-camera data set read through SpikingJelly (base of the registered tasks)."""

    key = ""  # the registry name, for messages
    title = ""  # the data set's name, for messages
    sj_module = ""
    sj_class = ""
    parts: tuple[str, ...] = ("",)  # subfolders of events_np/frames that hold class folders
    class_names: tuple[str, ...] | None = None  # the class folders, in label order; None: any
    sample_paths: tuple[str, ...] = ()  # the sample files below events_np/ or the frames, for messages
    extract_layout = ""  # what extract/ holds, for messages
    extract_marker = ""  # a path below extract/ that the unpacked archives have

    def __init__(self, *, path: str | None, bins: int, size: int, val_fraction: float,
                 test_fraction: float | None = None) -> None:
        if path is None:
            raise BitnasError(
                f"task {self.key} needs task.path: the {self.title} directory you already have, with "
                f"{self.layout('events_np')} (SpikingJelly's layout); bitnas never downloads"
            )
        if not isinstance(path, str) or not path.strip():
            raise BitnasError(f"task.path must be a directory path, got {path!r}")
        self.bins = int_option(bins, "task.bins", 1, 64)
        self.size = int_option(size, "task.size", 8, 128)
        self.options: dict[str, Any] = {"path": path, "bins": self.bins, "size": self.size,
                                        "val_fraction": _fraction(val_fraction, "task.val_fraction")}
        if test_fraction is not None:
            self.options["test_fraction"] = _fraction(test_fraction, "task.test_fraction")
        self.input_shape = (self.bins, 2, self.size, self.size)

    # -- the directory ---------------------------------------------------------------

    def layout(self, folder: str) -> str:
        """The sample files expected below ``folder``, for messages."""
        return " and ".join(f"{folder}/{p}" for p in self.sample_paths)

    @property
    def frames_dir_name(self) -> str:
        """Where SpikingJelly writes and finds the frames (FrameFixedNumberBuilder)."""
        return f"frames_number_{self.bins}_split_by_number"

    def root(self) -> Path:
        root = Path(self.options["path"]).expanduser()
        if not root.exists():
            raise BitnasError(f"task.path {root} does not exist; it must be the {self.title} directory "
                              f"with {self.layout('events_np')}")
        if not root.is_dir():
            raise BitnasError(f"task.path {root} is not a directory; it must be the {self.title} "
                              f"directory with {self.layout('events_np')}")
        return root

    def check_layout(self, root: Path) -> str:
        """Which layout ``root`` has ('frames', 'events' or 'extract'); refuses a wrong one."""
        frames, events, extract = root / self.frames_dir_name, root / "events_np", root / "extract"
        for d in (frames, events):
            marker = d.with_name(f"{d.name}.building")
            if marker.exists():
                raise BitnasError(
                    f"task {self.key}: {marker} says an earlier conversion into {d.name}/ did not finish "
                    f"(or another process is converting now); if none is, delete {d} and {marker} and "
                    "run again"
                )
        if frames.is_dir():
            again = f"delete {frames} to integrate events_np/ again"
            n = self.check_samples(frames, again if events.is_dir()
                                   else f"it must hold {self.layout(frames.name)}")
            if events.is_dir() and n != (m := _count_samples(events)):
                raise BitnasError(f"task {self.key}: {frames} holds {n} samples but {events} holds {m} "
                                  f"(an interrupted or older integration?); {again}")
            return "frames"
        if events.is_dir():
            self.check_samples(events, f"it must hold {self.layout('events_np')}", only_samples=True)
            return "events"
        if extract.is_dir():
            if not (extract / self.extract_marker).exists():
                raise BitnasError(f"task {self.key}: {extract} has no {self.extract_marker}; it must hold "
                                  f"{self.extract_layout}")
            return "extract"
        others = sorted(p.name for p in root.glob("frames_number_*_split_by_number") if p.is_dir())
        hint = (f" ({', '.join(others)} exist{'s' if len(others) == 1 else ''}: set task.bins to "
                "its number to use it)") if others else ""
        raise BitnasError(
            f"task {self.key}: {root} has no events_np/, {self.frames_dir_name}/ or extract/ folder{hint}; "
            f"bitnas never downloads, so put the {self.title} data set there in SpikingJelly's layout: "
            f"{self.layout('events_np')} (or {self.extract_layout})"
        )

    def check_samples(self, top: Path, fix: str, only_samples: bool = False) -> int:
        """Every part of ``top`` holds the expected class folders, none of them empty.

        Returns the number of samples. With ``only_samples``, any other file below
        ``top`` is refused too.
        """
        n = 0
        for part in self.parts:
            d = top / part
            if not d.is_dir():
                raise BitnasError(f"task {self.key}: {top} has no {part}/ folder; {fix}")
            classes = sorted(p.name for p in d.iterdir() if p.is_dir())
            expected = sorted(self.class_names) if self.class_names else None
            if (classes != expected) if expected else len(classes) != self.num_classes:
                want = f"{self.num_classes} class folders" + (
                    f" ({', '.join(self.class_names)})" if self.class_names else "")
                shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
                raise BitnasError(f"task {self.key}: {d} holds {len(classes)} class folders "
                                  f"({shown or 'none'}), expected {want}; {fix}")
            for name in classes:
                found = _count_samples(d / name)
                if not found:
                    raise BitnasError(f"task {self.key}: class folder {d / name} holds no .npz samples; "
                                      f"{fix}")
                n += found
        if only_samples:  # SpikingJelly integrates every file below events_np/
            for folder, _, fs in os.walk(top, followlinks=True):
                for f in sorted(fs):
                    if Path(f).suffix.lower() not in SAMPLE_EXTENSIONS:
                        raise BitnasError(f"task {self.key}: {Path(folder, f)} is not a .npz sample; "
                                          f"SpikingJelly integrates every file below {top}, so move it out")
        return n

    # -- SpikingJelly ----------------------------------------------------------------

    def open_part(self, root: Path, part: str) -> Any:
        """SpikingJelly's dataset over ``part`` of the frames, integrating them if needed."""
        sj_cls = getattr(getattr(spikingjelly_datasets(), self.sj_module), self.sj_class)
        kwargs: dict[str, Any] = {"train": part == "train"} if part else {}
        frames, events = root / self.frames_dir_name, root / "events_np"
        watch = [frames, events, *(d.with_name(f"{d.name}.building") for d in (frames, events))]
        existed = {p for p in watch if p.exists()}
        building = frames not in existed
        if building:
            _progress(f"bitnas: SpikingJelly integrates {self.title} events into {frames} (once) ...")
        try:
            dataset = offline(sj_cls)(str(root), data_type="frame", frames_number=self.bins,
                                      split_by="number", **kwargs)
        except SJ_ERRORS as e:
            made = [str(p) for p in watch if p.exists() and p not in existed]
            then = f"delete {' and '.join(made)}, then run again" if made else "then run again"
            if isinstance(e, PermissionError):
                raise BitnasError(
                    f"task {self.key}: cannot write the frames into {frames} ({_first_line(e)}); make "
                    f"{root} writable (or point task.path at a writable directory holding a link to "
                    f"events_np/), {then}") from None
            bad = bad_events_file(events, sj_cls.get_H_W()) if events.is_dir() else None
            raise BitnasError(f"task {self.key}: SpikingJelly could not prepare the frames in {root}: "
                              f"{bad or _first_line(e)}; fix or remove that file, {then}") from None
        if building:
            _progress(f"bitnas: SpikingJelly integrated {self.title} events into {frames}", done=True)
        if Path(dataset.processed_root) != frames:
            raise BitnasError(f"task {self.key}: SpikingJelly wrote the frames to {dataset.processed_root}, "
                              f"not {frames}; bitnas needs spikingjelly==2.0.0")
        self.check_samples(frames, f"delete {frames} to integrate events_np/ again")
        return dataset

    def labels(self, dataset: Any) -> np.ndarray:
        """Each sample's label: its class folder's place in ``class_names`` (else sorted order)."""
        order = list(self.class_names or dataset.classes)
        remap = np.array([order.index(name) for name in dataset.classes], dtype=np.int64)
        return remap[np.asarray(dataset.targets, dtype=np.int64)]

    def frames(self, dataset: Any, indices: np.ndarray, labels: np.ndarray, what: str) -> Split:
        """The samples at ``indices``, pooled to size x size, as one in-memory split."""
        sensor = tuple(dataset.get_H_W())
        x = torch.empty(len(indices), *self.input_shape)
        for n, i in enumerate(indices):
            path = dataset.samples[i][0]
            try:
                sample, _ = dataset[int(i)]
            except SJ_ERRORS as e:
                raise BitnasError(f"task {self.key}: cannot read frames file {path}: {_first_line(e)}; "
                                  f"delete {Path(dataset.processed_root)} to integrate events_np/ again"
                                  ) from None
            if tuple(sample.shape) != (self.bins, 2, *sensor):
                raise BitnasError(f"task {self.key}: frames file {path} holds shape {tuple(sample.shape)}, "
                                  f"expected {(self.bins, 2, *sensor)}; delete "
                                  f"{Path(dataset.processed_root)} to integrate events_np/ again")
            x[n] = pool_frames(torch.from_numpy(np.asarray(sample, dtype=np.float32)), self.size)
            if n % 50 == 0 or n == len(indices) - 1:
                _progress(f"bitnas: loading {self.title} {what} frames {n + 1}/{len(indices)}",
                          done=n == len(indices) - 1)
        return Split(x=x, y=torch.from_numpy(labels[indices]))

    def split(self, labels: np.ndarray, fraction: float, seed: int, field: str
              ) -> tuple[np.ndarray, np.ndarray]:
        """(kept, split off) sample indices, stratified by label and seeded."""
        try:
            kept, off = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed,
                                         stratify=labels)
        except ValueError as e:  # too few samples per class
            raise BitnasError(f"task {self.key}: cannot split {len(labels)} samples with {field} = "
                              f"{fraction}: {_first_line(e)}") from None
        return np.sort(kept), np.sort(off)

    def load(self, seed: int) -> TaskData:
        root = self.root()
        self.check_layout(root)
        val_fraction = self.options["val_fraction"]
        if self.parts == ("train", "test"):  # the official split; validation comes out of train
            train_ds, test_ds = self.open_part(root, "train"), self.open_part(root, "test")
            train_y, test_y = self.labels(train_ds), self.labels(test_ds)
            train_i, val_i = self.split(train_y, val_fraction, seed, "task.val_fraction")
            return TaskData(train=self.frames(train_ds, train_i, train_y, "train"),
                            val=self.frames(train_ds, val_i, train_y, "validation"),
                            test=self.frames(test_ds, np.arange(len(test_y)), test_y, "test"))
        dataset = self.open_part(root, "")
        y = self.labels(dataset)
        rest_i, test_i = self.split(y, self.options["test_fraction"], seed, "task.test_fraction")
        train_j, val_j = self.split(y[rest_i], val_fraction, seed, "task.val_fraction")
        return TaskData(train=self.frames(dataset, rest_i[train_j], y, "train"),
                        val=self.frames(dataset, rest_i[val_j], y, "validation"),
                        test=self.frames(dataset, test_i, y, "test"))


@TASKS.register("dvs128_gesture")
class DVS128GestureTask(EventDatasetTask):
    """DVS128 Gesture event frames, 11 gestures, official split; reads task.path (SpikingJelly layout)."""

    key, title = "dvs128_gesture", "DVS128 Gesture"
    sj_module, sj_class = "dvs128_gesture", "DVS128Gesture"
    num_classes = 11
    parts = ("train", "test")
    class_names = tuple(str(i) for i in range(11))  # SpikingJelly's label: the csv class - 1
    sample_paths = ("train/<0..10>/*.npz", "test/<0..10>/*.npz")
    extract_layout = "extract/DvsGesture/ from DvsGesture.tar.gz"
    extract_marker = "DvsGesture/trials_to_train.txt"

    def __init__(self, *, path: str | None = None, bins: int = 16, size: int = 32,
                 val_fraction: float = 0.2) -> None:
        super().__init__(path=path, bins=bins, size=size, val_fraction=val_fraction)


class _UnsplitEventDatasetTask(EventDatasetTask):
    """An event data set without an official split: seeded stratified train/val/test."""

    def __init__(self, *, path: str | None = None, bins: int = 16, size: int = 32,
                 val_fraction: float = 0.2, test_fraction: float = 0.2) -> None:
        super().__init__(path=path, bins=bins, size=size, val_fraction=val_fraction,
                         test_fraction=test_fraction)


@TASKS.register("cifar10_dvs")
class CIFAR10DVSTask(_UnsplitEventDatasetTask):
    """CIFAR10-DVS event frames, 10 classes, seeded split; reads task.path (SpikingJelly layout)."""

    key, title = "cifar10_dvs", "CIFAR10-DVS"
    sj_module, sj_class = "cifar10_dvs", "CIFAR10DVS"
    num_classes = 10
    # SpikingJelly's CIFAR10DVS_CLASS_NAMES, in CIFAR-10's label order
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
    sample_paths = ("<airplane..truck>/*.npz",)
    extract_layout = "extract/<airplane..truck>/*.aedat from the ten class zips"
    extract_marker = "airplane"


@TASKS.register("ncaltech101")
class NCaltech101Task(_UnsplitEventDatasetTask):
    """N-Caltech101 event frames, 101 classes, seeded split; reads task.path (SpikingJelly layout)."""

    key, title = "ncaltech101", "N-Caltech101"
    sj_module, sj_class = "n_caltech101", "NCaltech101"
    num_classes = 101  # the class folders in sorted order (BACKGROUND_Google included)
    sample_paths = ("<101 class folders>/*.npz",)
    extract_layout = "extract/Caltech101/<class>/*.bin from Caltech101.zip"
    extract_marker = "Caltech101"
