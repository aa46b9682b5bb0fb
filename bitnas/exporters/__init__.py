"""Deployable files of a candidate (``bitnas export RUN --trial N --format NAME``).

An export format is one module plus one registration in ``EXPORTERS``: an object with
``description`` and ``export(item, out_dir) -> list[Path]``, where ``item`` is an
:class:`ExportItem` (the candidate, its trained quantized model, its layer groups and
workload, the study's hardware model and task). A candidate the format cannot express
raises a one-line :class:`~bitnas.errors.BitnasError` naming the layer or op.
"""

from bitnas.exporters.base import Exporter, ExportItem

__all__ = ["ExportItem", "Exporter"]
