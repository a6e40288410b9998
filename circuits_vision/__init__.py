"""circuits_vision: reverse-engineer vision conv nets the way the Distill Circuits thread did.

Subpackages load on first use, so ``import circuits_vision as cv`` stays cheap:

- :mod:`~circuits_vision.models`   InceptionV1 (lucid/lucent names), the shipped ``shapes`` model, planted models
- :mod:`~circuits_vision.hooks`    any layer of any ``nn.Module`` by name, activation capture, truncated forward
- :mod:`~circuits_vision.optvis`   feature visualization (``cv.render``)
- :mod:`~circuits_vision.weights`  expanded weights (``cv.expanded_weights``) and weight pictures
- :mod:`~circuits_vision.analysis` equivariance, motifs, branch specialization, tuning curves
- :mod:`~circuits_vision.stimuli`  synthetic stimuli
- :mod:`~circuits_vision.atlas`    whole-model atlases with a static HTML viewer
- :mod:`~circuits_vision.ops`      the custom C++/CUDA ops and their pure-PyTorch twins
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("analysis", "atlas", "hooks", "models", "ops", "optvis", "stimuli", "viz", "weights")
# Short names for the calls a user makes most, as in `cv.render(...)`.
_SHORTCUTS = {
    "render": ("circuits_vision.optvis", "render"),
    "expanded_weights": ("circuits_vision.weights", "expanded_weights"),
    "equivariance": ("circuits_vision.analysis", "equivariance"),
    "branches": ("circuits_vision.analysis", "branches"),
}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"circuits_vision.{name}")
    if name in _SHORTCUTS:
        module, attribute = _SHORTCUTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'circuits_vision' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES) + list(_SHORTCUTS))
