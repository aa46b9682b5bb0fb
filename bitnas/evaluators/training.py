"""Floating-point training, cached on disk so that each architecture is trained once.

The cache key covers the space, the architecture, the task and its options, the
training settings and the seed; entries are written atomically, carry a checksum of
their tensors and are loaded with ``weights_only=True``. An entry that cannot be
read, fails its checksum or does not fit the model is retrained, with one log line
saying why. Training checkpoints each epoch, so a killed run resumes where it was.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.evaluators.base import Split
from bitnas.spec import TrainConfig

CACHE_VERSION = 2

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    """The gist of an exception on one line (load_state_dict puts it on the second)."""
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``: a reader (or
    a run killed meanwhile) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and raw tensor bytes, in key order:
    a flipped bit anywhere in a weight changes it."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(value.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def _save_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    """One epoch's training state (a separate function so tests can simulate a kill here)."""
    atomic_save(blob, path)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
                 temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. (2015): (1 - alpha) x cross-entropy on the labels + alpha x T^2 x
    KL(teacher's softmax at T || student's softmax at T), the T^2 keeping the soft term's
    gradients on the scale of the hard one's."""
    hard = nn.functional.cross_entropy(student, target)
    soft = nn.functional.kl_div(nn.functional.log_softmax(student / temperature, dim=1),
                                nn.functional.log_softmax(teacher / temperature, dim=1),
                                reduction="batchmean", log_target=True)
    return (1 - alpha) * hard + alpha * temperature ** 2 * soft


def train_fp(model: nn.Module, train: Split, cfg: TrainConfig, seed: int,
             *, epochs: int | None = None, lr: float | None = None,
             checkpoint: Path | None = None, log: Log | None = None,
             teacher: nn.Module | None = None) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; deterministic given ``seed``.

    With ``teacher`` (a trained FP model) the loss is :func:`distill_loss` at the config's
    ``kd_temperature`` and ``kd_alpha``: knowledge distillation.

    The same loop fine-tunes a fake-quantized model (QAT): its quantizers pass
    gradients straight through (or train their own state, ``Quantizer.trainable``: made
    before the optimizer, annealed after each epoch), and spiking neurons use their
    surrogate gradients.

    ``checkpoint``: after each epoch the model, optimizer, scheduler and RNG states are
    written there atomically, and a call that finds one resumes after its epoch, with
    the same final weights as an uninterrupted run. The file is left in place (the
    caller deletes it once the result is stored), so a kill in between loses nothing.
    """
    epochs = cfg.epochs if epochs is None else epochs
    lr = cfg.lr if lr is None else lr
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    for m in model.modules():  # schemes that fine-tune their own state (a soft codebook) make it now
        if hasattr(m, "start_training"):
            m.start_training()

    def optimizer() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        # a module may ask for its own rate (``lr_scale``: a soft codebook's ratio logits)
        scaled = {id(p): m.lr_scale for m in model.modules() if hasattr(m, "lr_scale")
                  for p in m.parameters()}
        plain = [p for p in model.parameters() if id(p) not in scaled]
        groups = [{"params": plain}] + [
            {"params": [p for p in model.parameters() if scaled.get(id(p)) == k], "lr": lr * k}
            for k in sorted(set(scaled.values()))]
        opt = torch.optim.Adam(groups, lr=lr, weight_decay=cfg.weight_decay)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    opt, sched = optimizer()
    first = 0
    if checkpoint is not None and checkpoint.is_file():
        initial = copy.deepcopy(model.state_dict())
        try:
            first = _resume(checkpoint, model, opt, sched, gen, epochs=epochs, lr=lr, seed=seed)
            (log or _stderr)(f"resuming FP training at epoch {first + 1} of {epochs} from {checkpoint}")
        except Exception as e:  # damaged, or from other settings: start over, from a clean state
            (log or _stderr)(f"ignoring training checkpoint {checkpoint} ({_first_line(e)}); "
                             "training from the first epoch")
            model.load_state_dict(initial)
            torch.manual_seed(seed)
            gen.manual_seed(seed)
            opt, sched = optimizer()
    loss_fn = nn.CrossEntropyLoss()
    if teacher is not None:
        teacher.eval()
    model.train()
    for epoch in range(first, epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            if teacher is None:
                loss = loss_fn(model(train.x[idx]), train.y[idx])
            else:
                with torch.no_grad():
                    soft = teacher(train.x[idx])
                loss = distill_loss(model(train.x[idx]), soft, train.y[idx], cfg.kd_temperature, cfg.kd_alpha)
            loss.backward()
            opt.step()
        sched.step()
        for m in model.modules():  # a fine-tuning schedule (progressive freezing)
            if hasattr(m, "anneal"):
                m.anneal((epoch + 1) / epochs)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "epoch": epoch + 1, "epochs": epochs, "lr": lr, "seed": seed,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "generator": gen.get_state()})
    model.eval()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise BitnasError(
            f"training diverged (non-finite weights) at learning rate {lr}; lower task.lr or task.qat_lr"
        )
    return model


def _resume(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator,
            *, epochs: int, lr: float, seed: int) -> int:
    """Load a checkpoint into the training state; returns the number of epochs it holds."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    wanted = {"epochs": epochs, "lr": lr, "seed": seed}
    if not isinstance(blob, dict) or any(blob.get(k) != v for k, v in wanted.items()):
        raise ValueError(f"it is not a checkpoint of this training run ({wanted})")
    epoch = blob["epoch"]
    if not isinstance(epoch, int) or not 0 < epoch <= epochs:
        raise ValueError(f"epoch {epoch!r} is out of range")
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    gen.set_state(blob["generator"])
    return epoch


class FPModelCache:
    """Trained FP weights per architecture, in memory and (optionally) on disk.

    ``log`` gets one line whenever a stored entry is unusable and retrained (default:
    stderr).
    """

    def __init__(self, directory: Path | None, log: Log | None = None) -> None:
        self.directory = directory
        self.log = log or _stderr
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    @staticmethod
    def key(identity: Mapping[str, Any]) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **identity}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.pt"

    def checkpoint_path(self, identity: Mapping[str, Any]) -> Path | None:
        """Where training the model of ``identity`` checkpoints each epoch (None: no disk cache)."""
        return None if self.directory is None else self.directory / f"{self.key(identity)}.ckpt.pt"

    def _load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, or not a torch file
            self.log(f"fp cache: {path} cannot be read ({_first_line(e)}); retraining it")
            return None
        state = blob.get("state_dict") if isinstance(blob, dict) else None
        if not isinstance(state, dict):
            self.log(f"fp cache: {path} holds no state dict; retraining it")
            return None
        if "sha256" not in blob:
            self.log(f"fp cache: {path} has no checksum (written by an older bitnas); retraining it")
            return None
        if state_digest(state) != blob["sha256"]:
            self.log(f"fp cache: {path} fails its checksum (altered or damaged on disk); retraining it")
            return None
        return state

    def _store(self, key: str, state: dict[str, torch.Tensor], identity: Mapping) -> None:
        path = self._path(key)
        if path is None:
            return
        atomic_save({"state_dict": state, "identity": json.dumps(identity, default=str),
                     "sha256": state_digest(state)}, path)

    def get(
        self,
        identity: Mapping[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], nn.Module],
    ) -> tuple[nn.Module, float | None]:
        """The trained model for ``identity``; the float is training seconds, None on a hit.

        ``train`` may checkpoint to :meth:`checkpoint_path`; the checkpoint is deleted
        once the trained weights are stored.
        """
        key = self.key(identity)
        state = self._memory.get(key) or self._load(key)
        model = None
        if state is not None:
            model = build()
            try:
                model.load_state_dict(state)
            except RuntimeError as e:  # wrong keys or shapes: a foreign or outdated entry
                self.log(f"fp cache: {self._path(key)} does not fit the model ({_first_line(e)}); "
                         "retraining it")
                state = None
        seconds = None
        if state is None:
            start = time.perf_counter()
            trained = train(build())
            seconds = time.perf_counter() - start
            state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
            self._store(key, state, identity)
            ckpt = self.checkpoint_path(identity)
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)
            # trained now or cached, the caller gets the same thing: a fresh build with the
            # stored weights (no state left over from training, such as a spiking net's
            # membrane potentials with their autograd history)
            model = build()
            model.load_state_dict(state)
        self._memory[key] = state
        assert model is not None
        model.eval()
        return model, seconds
