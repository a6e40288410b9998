"""A tiny InceptionV1-style model for atlas tests (also a model file for ``--model tiny_model.py``)."""

import torch

from circuits_vision.models import BlockSpec, ConvSpec, InceptionNet, InceptionSpec, MaxPoolSpec


def model() -> InceptionNet:
    """Random init from a fixed seed: conv2d0 (4) -> maxpool0 -> conv2d1 (6) -> mixed3a (10) -> mixed3b (12); 32 px."""
    spec = InceptionSpec(
        stem=(ConvSpec("conv2d0", 4, 3, stride=2), MaxPoolSpec("maxpool0"), ConvSpec("conv2d1", 6, 3)),
        blocks=(BlockSpec("mixed3a", 2, 2, 4, 2, 2, 2), BlockSpec("mixed3b", 3, 2, 4, 2, 3, 2)),
        input_size=32,
    )
    return InceptionNet(spec, generator=torch.Generator().manual_seed(0)).eval()
