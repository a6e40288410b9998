"""Models shared by the hooks tests, each built once per test module (random weights, eval mode)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from circuits_vision.models.inceptionv1 import inceptionv1
from circuits_vision.models.layers import Concat


class TinyNet(nn.Module):
    """A user's own small net: conv -> relu -> two branches joined by a Concat -> pool -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 6, 3, padding=1)
        self.join = Concat()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(10, 5)

    def forward(self, x):
        x = self.relu(self.conv(x))
        x = self.join(self.left(x), self.right(x))
        return self.fc(self.pool(x).flatten(1))


def _seeded(build):
    # torchvision initialises from the global RNG; fork it so fixtures leave it untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


@pytest.fixture(scope="module")
def tiny_net():
    return _seeded(TinyNet)


@pytest.fixture(scope="module")
def inception_v1():
    return inceptionv1(generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def googlenet():
    return _seeded(lambda: torchvision.models.googlenet(weights=None, init_weights=False, aux_logits=True))


@pytest.fixture(scope="module")
def alexnet():
    return _seeded(lambda: torchvision.models.alexnet(weights=None))


@pytest.fixture(scope="module")
def vgg16():
    return _seeded(lambda: torchvision.models.vgg16(weights=None, init_weights=False))


@pytest.fixture(scope="module")
def resnet50():
    return _seeded(lambda: torchvision.models.resnet50(weights=None))
