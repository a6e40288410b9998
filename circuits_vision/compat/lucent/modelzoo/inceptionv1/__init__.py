"""lucent's ``modelzoo.inceptionv1``: InceptionV1 (lucid's ``inception5h``) with lucent's interface.

Built on the engine's :class:`circuits_vision.models.InceptionNet` with lucent's local response
norm, so for the same state dict every layer's output equals lucent's model's. As lucent's, it
takes lucid's input range [-117, 138] (``render_vis`` adds ``preprocess_inceptionv1`` for it),
its state-dict keys are lucent's (``mixed3a_1x1_pre_relu_conv.weight``), and with
``redirected_ReLU=True`` every ReLU passes a tenth of the gradient below zero, at every step.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from circuits_vision.models import InceptionNet, Preprocess, load_weights
from circuits_vision.models.inceptionv1 import inceptionv1_spec

__all__ = ["InceptionV1", "RedirectedReLU", "model_urls"]

model_urls = {
    # lucid's InceptionV1, converted to PyTorch by ProGamerGov; the file lucent loads
    "inceptionv1": "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
}

NEGATIVE_SLOPE = 0.1


class _LeakyGradientReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # torch.where, not boolean-mask indexing: one pass, no index tensors
        return torch.where(x < 0, grad * NEGATIVE_SLOPE, grad)


class RedirectedReLU(nn.ReLU):
    """``relu`` forward; backward passes ``0.1 * grad`` where the input is negative (lucent's
    ``RedirectedReLU``), so units that start off can still be moved by the objective."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LeakyGradientReLU.apply(x)


def _random_generator() -> torch.Generator:
    """Random weights follow torch's global generator (as lucent's model), without using it up per layer."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))


class InceptionV1(InceptionNet):
    """InceptionV1 taking ``[N, 3, H, W]`` in lucid's range [-117, 138]; output ``[N, 1008]``
    probabilities at 224 px (layers work at any size; the classifier head needs 224).

    Args:
        pretrained: load lucent's ``inception5h.pth`` (downloaded once into torch.hub's cache).
        progress: accepted for lucent's signature; the download shows no progress bar.
        redirected_ReLU: use :class:`RedirectedReLU` for every ReLU.
    """

    def __init__(self, pretrained: bool = False, progress: bool = True, redirected_ReLU: bool = True):  # noqa: N803
        spec = dataclasses.replace(inceptionv1_spec("lucent"), preprocess=Preprocess())
        super().__init__(spec, generator=None if pretrained else _random_generator(), init=not pretrained)
        self.redirected_ReLU = bool(redirected_ReLU)
        if redirected_ReLU:
            for name, module in list(self.named_children()):
                if type(module) is nn.ReLU:
                    setattr(self, name, RedirectedReLU())
        if pretrained:
            load_weights(self, model_urls["inceptionv1"])
