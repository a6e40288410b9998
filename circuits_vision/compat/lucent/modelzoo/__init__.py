"""lucent's ``modelzoo``: ``inceptionv1`` (the model class, as in lucent), ``util``, and every
``torchvision.models`` name (``modelzoo.resnet50`` is torchvision's)."""

from __future__ import annotations

from circuits_vision.compat.lucent.modelzoo import util
from circuits_vision.compat.lucent.modelzoo.inceptionv1 import InceptionV1 as inceptionv1  # noqa: N813

__all__ = ["inceptionv1", "util"]


def __getattr__(name: str):
    # lucent re-exports torchvision.models with `import *`; forward lookups instead, so
    # torchvision is imported only when a torchvision model is asked for
    import torchvision.models

    if name.startswith("__") or not hasattr(torchvision.models, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (nor has torchvision.models)")
    return getattr(torchvision.models, name)


def __dir__() -> list[str]:
    import torchvision.models

    return sorted(set(__all__) | {name for name in dir(torchvision.models) if not name.startswith("_")})
