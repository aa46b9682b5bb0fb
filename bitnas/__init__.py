"""bitnas: neural architecture and bit-width search with analytical hardware cost models."""

__version__ = "0.1.0"

import logging  # noqa: E402

# SpikingJelly's models make torch probe for Triton, which a CPU install never has; torch
# then logs "Triton not available" twice per process. Nothing is wrong, so keep it quiet.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from bitnas.errors import BitnasError, SpecError  # noqa: E402
from bitnas.plan import Candidate, LayerQuant, QuantPlan  # noqa: E402
from bitnas.spec import StudySpec, load_spec  # noqa: E402

__all__ = [
    "BitnasError",
    "Candidate",
    "LayerQuant",
    "QuantPlan",
    "SpecError",
    "StudySpec",
    "__version__",
    "load_spec",
]
