"""Feature visualization, batched across many objectives (lucid-faithful, lucent-compatible).

    >>> import circuits_vision as cv
    >>> result = cv.render(model, ["mixed4a:476", "mixed4a:477"], steps=512)   # one batched optimisation
    >>> result.images.shape
    torch.Size([2, 3, 128, 128])

Four small modules with lucid/lucent's contracts: :mod:`.param` (``param -> (params, image_f)``),
:mod:`.transforms` (``transform(x, generator) -> x``, also fusable into one affine resample),
:mod:`.objectives` (``objective(T) -> loss``, with ``+ - * /``) and :mod:`.render`.
"""

from circuits_vision.optvis import facets, objectives, param, transforms
from circuits_vision.optvis._batching import RenderTooLargeError
from circuits_vision.optvis._validate import RenderInputError
from circuits_vision.optvis.adam import Adam
from circuits_vision.optvis.config import RenderConfig
from circuits_vision.optvis.objectives import Objective, as_objective
from circuits_vision.optvis.redirect import NoReLUWarning, redirected_relus
from circuits_vision.optvis.render import PRESETS, NonFiniteError, Preset, RenderResult, render

__all__ = [
    "Adam",
    "NoReLUWarning",
    "NonFiniteError",
    "Objective",
    "PRESETS",
    "Preset",
    "RenderConfig",
    "RenderInputError",
    "RenderResult",
    "RenderTooLargeError",
    "as_objective",
    "facets",
    "objectives",
    "param",
    "redirected_relus",
    "render",
    "transforms",
]
