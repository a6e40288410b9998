"""Models: lucid's InceptionV1, the shipped ``shapes`` model, planted models, torchvision models.

Every model takes RGB images in [0, 1], ``[N, 3, H, W]``, and owns its preprocessing (the model
contract, :class:`VisionModel` in :mod:`.contract`)::

    import circuits_vision as cv
    model = cv.models.inceptionv1(weights="inception5h.pth")   # lucent's/captum's file, path or URL
    model = cv.models.load("resnet50")                          # random init, torchvision's layer names
    cv.models.available_models()                                # ['inceptionv1', 'shapes', ...]
"""

from __future__ import annotations

import importlib
import os

from circuits_vision.errors import UnknownNameError, close_names, did_you_mean
from circuits_vision.models.contract import LinearlyApproximable, VisionModel
from circuits_vision.models.inception import (
    BlockSpec,
    ConvSpec,
    InceptionNet,
    InceptionSpec,
    LRNSpec,
    MaxPoolSpec,
    Preprocess,
)
from circuits_vision.models.inceptionv1 import InceptionV1, inceptionv1
from circuits_vision.models.layers import Concat, LocalResponseNormLucent, LocalResponseNormTF
from circuits_vision.models.loading import WeightsError, inceptionv1_weights_from_env, load_weights
from circuits_vision.models.torchvision_models import torchvision_model

__all__ = [
    "BlockSpec",
    "Concat",
    "ConvSpec",
    "InceptionNet",
    "InceptionSpec",
    "InceptionV1",
    "LRNSpec",
    "LinearlyApproximable",
    "LocalResponseNormLucent",
    "LocalResponseNormTF",
    "MaxPoolSpec",
    "Preprocess",
    "UnknownModelError",
    "VisionModel",
    "WeightsError",
    "available_models",
    "inceptionv1",
    "inceptionv1_weights_from_env",
    "load",
    "load_weights",
    "torchvision_model",
]

_SUBMODULES = ("contract", "facts", "loading", "planted", "shapes", "torchvision_models", "truth")


class UnknownModelError(UnknownNameError):
    """A model name that :func:`load` does not know; the message lists the closest valid names."""


def _optional_module(name: str):
    """``circuits_vision.models.<name>``, or None when that module does not exist (yet)."""
    full = f"circuits_vision.models.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as error:
        if error.name == full:
            return None
        raise  # the module exists but one of its own imports failed: show that error


def _planted_names() -> list[str]:
    """Planted model names (``planted.MODELS``)."""
    planted = _optional_module("planted")
    return [] if planted is None else list(planted.MODELS)


def available_models() -> list[str]:
    """Every name :func:`load` accepts: "inceptionv1", "shapes", planted models, torchvision models."""
    from circuits_vision.models.torchvision_models import torchvision_model_names

    return ["inceptionv1", "shapes", *_planted_names(), *torchvision_model_names()]


def load(name: str, weights: str | os.PathLike | None = None, **kwargs):
    """Build model ``name`` (see :func:`available_models`), with ``weights`` from a path or URL.

    - ``"inceptionv1"``: :func:`inceptionv1` (``kwargs``: ``lrn``, ``sha256``, ``generator``).
    - ``"shapes"``: the small InceptionV1-style model shipped with the package (its weights by default).
    - planted model names: hand-built models with known ground truth (``circuits_vision.models.planted``);
      the module is returned, its ground truth is ``model.truth``.
    - torchvision names ("googlenet", "alexnet", "vgg16", "resnet50", ...): random init unless
      ``weights`` is given; input [0, 1] with ImageNet normalisation inside.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "inceptionv1":
        return inceptionv1(weights, **kwargs)
    if key == "shapes":
        shapes = _optional_module("shapes")
        if shapes is None:
            raise RuntimeError(
                "the 'shapes' model is not available in this installation "
                "(circuits_vision/models/shapes.py is missing); use 'inceptionv1' or a torchvision model"
            )
        return shapes.shapes(weights=weights, **kwargs)
    if key in _planted_names():
        # Like every other name, a planted name gives the nn.Module; its ground truth rides along
        # as ``model.truth`` (the factories in ``planted`` return the PlantedModel pair).
        factory = getattr(_optional_module("planted"), key)
        planted = factory(**kwargs) if weights is None else factory(weights=weights, **kwargs)
        return getattr(planted, "model", planted)
    from circuits_vision.models.torchvision_models import torchvision_model_names

    if key in torchvision_model_names():
        return torchvision_model(key, weights, **kwargs)
    valid = available_models()
    close = close_names(key, valid)
    hint = f"{did_you_mean(close)} " if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}: {hint}valid names: 'inceptionv1', 'shapes', planted models "
        f"{_planted_names()}, or a torchvision model name (see circuits_vision.models.available_models())",
        close,
    )


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = _optional_module(name)
        if module is not None:
            return module
    raise AttributeError(f"module 'circuits_vision.models' has no attribute {name!r}")
