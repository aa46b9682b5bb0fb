"""Bundled study specs (``bitnas search quickstart``) and reproduced paper experiments
(registered in ``EXPERIMENTS``; see :mod:`bitnas.experiments.base`)."""

from bitnas.experiments.base import Experiment, ModuleExperiment

__all__ = ["Experiment", "ModuleExperiment"]
