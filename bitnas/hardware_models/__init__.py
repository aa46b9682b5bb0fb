"""Workload extraction and analytical cost models; constants live in data/*.toml."""

from bitnas.hardware_models.base import (
    COST_FIELDS,
    Cost,
    HardwareModel,
    LayerWorkload,
    load_constants,
)
from bitnas.hardware_models.generic45nm import Generic45nm
from bitnas.hardware_models.loihi import Loihi
from bitnas.hardware_models.snn45nm import SNN45nm
from bitnas.hardware_models.spikes import measure_activity
from bitnas.hardware_models.workload import extract_workload

__all__ = [
    "COST_FIELDS",
    "Cost",
    "Generic45nm",
    "HardwareModel",
    "LayerWorkload",
    "Loihi",
    "SNN45nm",
    "extract_workload",
    "load_constants",
    "measure_activity",
]
