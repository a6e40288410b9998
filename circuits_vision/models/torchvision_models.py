"""torchvision classification models that take [0, 1] RGB input like every model here.

The ImageNet normalisation ``(x - mean) / std`` runs in a forward pre-hook registered on the model, so
module names and state-dict keys stay exactly torchvision's ("layer1.0.conv1", "inception3a.branch2.1").
The hook runs on ``model(x)``; calling ``model.forward(x)`` directly skips it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Models trained at another resolution than 224 px.
_INPUT_SIZES = {"inception_v3": 299}
# Models whose pretrained checkpoints carry auxiliary classifiers that torchvision drops after loading.
_AUX_HEADS = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


def torchvision_model_names() -> list[str]:
    """Names of torchvision's ImageNet classification models (``torchvision.models.list_models``)."""
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def imagenet_normalize(module: nn.Module, inputs: tuple) -> tuple:
    """Forward pre-hook: ``[N, 3, H, W]`` in [0, 1] -> ImageNet-normalised input."""
    x, *rest = inputs
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{type(module).__name__} expects images [N, 3, H, W] in [0, 1], got {tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std, *rest)


def torchvision_model(
    name: str,
    weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    *,
    sha256: str | None = None,
    generator: torch.Generator | None = None,
    **kwargs,
) -> nn.Module:
    """torchvision model ``name`` taking [0, 1] input, in eval mode, with ``input_size`` and ``input_channels`` set.

    ``weights=None`` gives torchvision's random init, seeded from ``generator`` (seed 0 by default)
    without disturbing the global RNG; otherwise a path, URL or state dict of torchvision's keys.
    ``kwargs`` go to the torchvision constructor (e.g. ``num_classes``).
    """
    import torchvision.models

    if name not in torchvision_model_names():
        raise ValueError(f"{name!r} is not a torchvision classification model")
    aux_heads = _AUX_HEADS.get(name, ())
    if aux_heads:
        # As torchvision does for its pretrained weights: the checkpoint has aux heads and expects
        # transform_input (which maps ImageNet-normalised input back to the range it was trained on).
        kwargs.setdefault("aux_logits", weights is not None)
        kwargs.setdefault("transform_input", weights is not None)
        kwargs.setdefault("init_weights", weights is None)  # loaded weights overwrite any init
    seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    if weights is not None:
        from circuits_vision.models.loading import load_weights

        load_weights(model, weights, sha256=sha256)
    for aux in aux_heads:  # never used in eval mode; drop them so layer lists show only what runs
        if getattr(model, aux, None) is not None:
            setattr(model, aux, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
    model.register_forward_pre_hook(imagenet_normalize)
    model.input_size = _INPUT_SIZES.get(name, 224)
    model.input_channels = 3
    return model.eval()
