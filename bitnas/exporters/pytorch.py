"""``--format torch``: the candidate's quantized model as a PyTorch state dict, for users who
stay in PyTorch.

Two files:

- ``trial<N>.pt``: the fake-quant model's ``state_dict()`` (plain tensors: the trained float
  weights, each activation quantizer's calibrated range, any scheme's learned state, a
  quantized scan's or neuron's calibration), loadable with ``torch.load(...,
  weights_only=True)``;
- ``trial<N>.json``: the candidate (architecture and plan), the study's spec, the trial's
  number and metrics.

:func:`load_export` rebuilds the model from the two files alone: the spec's space builds
the architecture, the plan fake-quantizes it, the state dict fills it in; ``bitnas rebuild
trial<N>.pt`` does that and measures it again on the spec's task. (A ``codebook`` scheme
with a user ``path`` still reads that codebook file; files the task reads, such as a
dataset folder, must be where the spec says.)
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitnas.atomic import atomic_write_all
from bitnas.errors import BitnasError
from bitnas.exporters.base import ExportItem
from bitnas.plan import Candidate
from bitnas.quantizers.fakequant import FakeQuantLayer, fake_quantize
from bitnas.registry import EXPORTERS, TASKS
from bitnas.spec import StudySpec, make_space

FORMAT = "bitnas-torch-1"


@EXPORTERS.register("torch")
class TorchExporter:
    """State dict + candidate JSON (see the module docstring)."""

    description = "PyTorch state dict (weights_only) + candidate JSON; rebuilt by `bitnas rebuild FILE.pt`"

    def export(self, item: ExportItem, out_dir: Path) -> list[Path]:
        if item.spec is None:
            raise BitnasError("--format torch needs the study's spec to rebuild the model; export from a run "
                              "(`bitnas export RUN --trial N --format torch`)")
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"trial{item.trial}" if item.trial is not None else "candidate"
        pt, meta = out_dir / f"{stem}.pt", out_dir / f"{stem}.json"
        state = {k: v.detach().clone() for k, v in item.model.state_dict().items()}
        info = {"format": FORMAT, "candidate": json.loads(item.candidate.to_json()), "spec": dict(item.spec),
                "trial": item.trial, "metrics": dict(item.metrics or {}), "task": item.task,
                "torch_threads": item.torch_threads, "state_dict": pt.name}
        # both or neither: a new .pt beside an old .json would load into the wrong plan
        atomic_write_all({pt: lambda p: torch.save(state, p),
                          meta: lambda p: p.write_text(json.dumps(info, indent=2) + "\n")})
        return [pt, meta]


def read_info(path: Path) -> dict[str, Any]:
    """The JSON beside an exported ``.pt`` (or the JSON itself)."""
    meta = path if path.suffix == ".json" else path.with_suffix(".json")
    if not meta.is_file():
        raise BitnasError(f"{meta} not found; `bitnas export --format torch` writes it beside {path.name}")
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise BitnasError(f"cannot read {meta} ({type(e).__name__}); export the trial again") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BitnasError(f"{meta} was not written by `bitnas export --format torch` (format "
                          f"{info.get('format') if isinstance(info, dict) else None!r}, expected {FORMAT!r})")
    return info


def load_export(path: Path) -> tuple[nn.Module, Candidate, dict[str, Any]]:
    """(the quantized model, its candidate, the JSON) of an export, from its two files alone."""
    path = Path(path)
    info = read_info(path)
    meta = path.with_suffix(".json")
    try:
        pt = path.with_name(str(info["state_dict"])) if path.suffix == ".json" else path
        spec = StudySpec.from_dict(info["spec"])
        task = TASKS.create(spec.task["name"], **spec.task_options())
        space = make_space(spec.space["name"], task, spec.task["name"], **spec.space_kwargs())
        cand = Candidate.from_dict(info["candidate"])
        model = space.build(cand.arch_dict())
        qmodel = fake_quantize(model, cand.plan, space.layer_groups(model), space.neuron_groups(model))
    except BitnasError as e:
        raise BitnasError(f"{meta}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BitnasError(f"{meta} is damaged ({type(e).__name__}: {e}); export the trial again") from None
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise BitnasError(f"cannot read {pt} ({type(e).__name__}); export the trial again") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise BitnasError(f"{pt} is not a state dict of tensors; export the trial again")
    for name, m in qmodel.named_modules():  # a scheme that learned its own state during QAT
        if isinstance(m, FakeQuantLayer) and any(k.startswith(f"{name}.trained.") for k in state):
            m.start_training()
    try:
        qmodel.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise BitnasError(f"{pt} does not fit the candidate's model ({first}); "
                          "export the trial again") from None
    return qmodel.eval(), cand, info
