"""Floating-point training, cached on disk so that each architecture is trained once.

The cache key covers the space, the architecture, the task and its options, the
training settings and the seed; entries are written atomically and loaded with
``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def train_fp(model: nn.Module, train: Split, cfg: TrainConfig, seed: int,
             *, epochs: int | None = None, lr: float | None = None) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; deterministic given ``seed``.

    The same loop fine-tunes a fake-quantized model (QAT): its quantizers pass
    gradients straight through, and spiking neurons use their surrogate gradients.
    """
    epochs = cfg.epochs if epochs is None else epochs
    lr = cfg.lr if lr is None else lr
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(train.x[idx]), train.y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise BitnasError(
            f"training diverged (non-finite weights) at learning rate {lr}; lower task.lr or task.qat_lr"
        )
    return model


class FPModelCache:
    """Trained FP weights per architecture, in memory and (optionally) on disk."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    @staticmethod
    def key(identity: Mapping[str, Any]) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **identity}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.pt"

    def _load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return blob["state_dict"]
        except Exception:  # a truncated or foreign file: retrain and overwrite it
            return None

    def _store(self, key: str, state: dict[str, torch.Tensor], identity: Mapping) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"state_dict": state, "identity": json.dumps(identity, default=str)}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(
        self,
        identity: Mapping[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], nn.Module],
    ) -> tuple[nn.Module, float | None]:
        """The trained model for ``identity``; the float is training seconds, None on a hit."""
        key = self.key(identity)
        state = self._memory.get(key) or self._load(key)
        seconds = None
        if state is None:
            start = time.perf_counter()
            trained = train(build())
            seconds = time.perf_counter() - start
            state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
            self._store(key, state, identity)
        self._memory[key] = state
        # trained now or cached, the caller gets the same thing: a fresh build with the
        # stored weights (no state left over from training, such as a spiking net's
        # membrane potentials with their autograd history)
        model = build()
        model.load_state_dict(state)
        model.eval()
        return model, seconds


