"""The built-in modules behind each registry, by entry-point group.

Each module registers its entries with a ``register`` decorator when imported;
:class:`bitnas.registry.Registry` imports the modules of its own group the first
time it is asked for a name, so that ``import bitnas`` stays light. A new built-in
is one module plus one line here; a third-party plugin declares entry points in
the same groups instead.
"""

MODULES: dict[str, tuple[str, ...]] = {
    "bitnas.spaces": ("bitnas.spaces.cnn", "bitnas.spaces.spiking", "bitnas.spaces.spiking_cnn",
                      "bitnas.spaces.ai8x", "bitnas.spaces.transformer", "bitnas.spaces.mamba",
                      "bitnas.spaces.recall"),
    "bitnas.quantizers": ("bitnas.quantizers.uniform", "bitnas.quantizers.pot", "bitnas.quantizers.ai8x",
                          "bitnas.quantizers.nonuniform", "bitnas.quantizers.series",
                          "bitnas.quantizers.codebook"),
    "bitnas.tasks": ("bitnas.evaluators.digits", "bitnas.evaluators.event_digits",
                     "bitnas.evaluators.event_datasets", "bitnas.evaluators.images",
                     "bitnas.evaluators.recall", "bitnas.evaluators.rssi"),
    "bitnas.hardware": ("bitnas.hardware_models.generic45nm", "bitnas.hardware_models.snn45nm",
                        "bitnas.hardware_models.loihi", "bitnas.hardware_models.max7800x",
                        "bitnas.hardware_models.mcu"),
    "bitnas.strategies": ("bitnas.search.strategies",),
    "bitnas.experiments": ("bitnas.experiments.spiking_vit_hq", "bitnas.experiments.dex",
                           "bitnas.experiments.fp_xint", "bitnas.experiments.nonuniform_ptq",
                           "bitnas.experiments.vq4all", "bitnas.experiments.tinyml_indoor",
                           "bitnas.experiments.factual_recall"),
    "bitnas.input_transforms": ("bitnas.evaluators.dex",),
    "bitnas.exporters": ("bitnas.exporters.ai8x", "bitnas.exporters.nir", "bitnas.exporters.onnx",
                         "bitnas.exporters.pytorch"),
}
