"""Bundled study specs (``bitnas search quickstart``) and reproduced paper experiments."""

#: ``bitnas reproduce NAME``: experiment name -> module with ``NAME``, ``run`` and ``format_report``
REPRODUCIBLE = {
    "spiking_vit_hq": "bitnas.experiments.spiking_vit_hq",
}
