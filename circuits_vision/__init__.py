"""circuits_vision: reverse-engineer vision conv nets the way the Distill Circuits thread did.

Subpackages load on first use, so ``import circuits_vision as cv`` stays cheap:

- :mod:`~circuits_vision.models`   InceptionV1 (lucid/lucent names), the shipped ``shapes`` model, planted models
- :mod:`~circuits_vision.hooks`    any layer of any ``nn.Module`` by name, activation capture, truncated forward
- :mod:`~circuits_vision.optvis`   feature visualization (``cv.render``)
- :mod:`~circuits_vision.weights`  expanded weights (``cv.expanded_weights``) and weight pictures
- :mod:`~circuits_vision.analysis` equivariance, motifs, branch specialization, tuning curves
  (``cv.equivariance(model, layer)`` and ``cv.branches(model, layer)`` run their reports; their
  modules' other functions are attributes: ``cv.equivariance.rotation_families``)
- :mod:`~circuits_vision.stimuli`  synthetic stimuli
- :mod:`~circuits_vision.atlas`    whole-model atlases with a static HTML viewer
- :mod:`~circuits_vision.claims`   the published Circuits claims checked on given weights (``cv.reproduce``)
- :mod:`~circuits_vision.ops`      the custom C++/CUDA ops and their pure-PyTorch twins
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time these load on first use (below)
    from circuits_vision import (
        analysis,
        atlas,
        claims,
        errors,
        hooks,
        models,
        ops,
        optvis,
        results,
        stimuli,
        viz,
        weights,
    )
    from circuits_vision.analysis import branches, equivariance
    from circuits_vision.claims import reproduce
    from circuits_vision.optvis import render
    from circuits_vision.weights import expanded_weights

_SUBPACKAGES = (
    "analysis",
    "atlas",
    "claims",
    "errors",
    "hooks",
    "models",
    "ops",
    "optvis",
    "results",
    "stimuli",
    "viz",
    "weights",
)
# Short names for the calls a user makes most, as in `cv.render(...)`: (module, function).
_SHORTCUTS = {
    "render": ("circuits_vision.optvis", "render"),
    "expanded_weights": ("circuits_vision.weights", "expanded_weights"),
    "reproduce": ("circuits_vision.claims", "reproduce"),
}
# Analyses called as `cv.branches(model, layer)` that also keep their module's other functions one
# attribute away, as in `cv.equivariance.rotation_families(model, layer)`: (module, the call).
_ANALYSIS_SHORTCUTS = {
    "equivariance": ("circuits_vision.analysis.equivariance", "report"),
    "branches": ("circuits_vision.analysis.branches", "report"),
}


class _AnalysisShortcut:
    # A callable for one analysis: calling it runs the module's main function; attributes are the
    # module's. `cv.branches(model, "mixed3b")` is `cv.analysis.branches.report(model, "mixed3b")` and
    # `cv.branches.specialization` is `cv.analysis.branches.specialization`. (No class docstring:
    # `__doc__` below shows the call's own.)

    def __init__(self, name: str, module: str, function: str) -> None:
        self._name, self._module_name, self._function = name, module, function

    @property
    def _module(self):
        return importlib.import_module(self._module_name)

    def __call__(self, *args, **kwargs):
        return getattr(self._module, self._function)(*args, **kwargs)

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self._module, attribute)

    def __dir__(self):
        return sorted(set(dir(self._module)))

    @property
    def __doc__(self):  # help(cv.branches) shows the call it makes
        return getattr(self._module, self._function).__doc__

    @property
    def __wrapped__(self):  # inspect.signature(cv.branches) is the call's signature
        return getattr(self._module, self._function)

    def __repr__(self) -> str:
        return (
            f"<circuits_vision.{self._name}: calls {self._module_name}.{self._function}; other functions as attributes>"
        )


# Written out, so that static tools read it: the subpackages and leaf modules, then the shortcuts.
__all__ = [
    "__version__",
    "analysis",
    "atlas",
    "claims",
    "errors",
    "hooks",
    "models",
    "ops",
    "optvis",
    "results",
    "stimuli",
    "viz",
    "weights",
    "render",
    "expanded_weights",
    "reproduce",
    "equivariance",
    "branches",
]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"circuits_vision.{name}")
    if name in _SHORTCUTS:
        module, attribute = _SHORTCUTS[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _ANALYSIS_SHORTCUTS:
        shortcut = _AnalysisShortcut(name, *_ANALYSIS_SHORTCUTS[name])
        globals()[name] = shortcut  # one object per session, so `cv.branches is cv.branches`
        return shortcut
    raise AttributeError(f"module 'circuits_vision' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_SHORTCUTS) | set(_ANALYSIS_SHORTCUTS))
