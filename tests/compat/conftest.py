"""Models both lucent and the drop-in can run: a small conv net, and lucent's InceptionV1 twin."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn


def small_net() -> nn.Module:
    """conv1 (8 ch) -> relu1 -> pool1 -> conv2 (16 ch) -> relu2 -> gap -> fc, seeded weights."""
    torch.manual_seed(123)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 5),
        )
    ).eval()


@pytest.fixture
def net() -> nn.Module:
    return small_net()


@pytest.fixture(scope="module")
def inception_pair():
    """(drop-in InceptionV1, lucent's InceptionV1) with the same random weights."""
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1

    from circuits_vision.compat.lucent.modelzoo import inceptionv1

    torch.manual_seed(0)
    ours = inceptionv1().eval()
    theirs = LucentInceptionV1().eval()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs
