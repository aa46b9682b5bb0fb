"""What an exporter is given, and what it must do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from bitnas.hardware_models.base import HardwareModel, LayerWorkload
from bitnas.plan import Candidate


@dataclass(frozen=True)
class ExportItem:
    """One candidate, ready to be written out."""

    candidate: Candidate
    #: the trained, fake-quantized model the search measured (QAT applied where it ran)
    model: nn.Module
    #: layer group -> module names (the space's ``layer_groups``)
    groups: Mapping[str, list[str]]
    workload: Sequence[LayerWorkload]
    hardware: HardwareModel
    #: the space that builds the candidate's float model (for a reader that rebuilds it)
    space: Any
    task: str
    #: the trial's number and metrics, recorded in the files where the format has room
    trial: int | None = None
    metrics: Mapping[str, float] | None = None
    #: the study's spec (``StudySpec.to_dict()``), for a format whose reader rebuilds the model
    spec: Mapping[str, Any] | None = None
    #: torch's thread count when the trial was evaluated (a rebuild measures with it again)
    torch_threads: int | None = None


class Exporter(Protocol):
    """An export format (registered by name in ``EXPORTERS``)."""

    #: one line for ``bitnas list``
    description: str

    def export(self, item: ExportItem, out_dir: Path) -> list[Path]:
        """Write the candidate's files into ``out_dir``; return their paths."""
        ...
