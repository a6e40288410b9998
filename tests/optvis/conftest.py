"""Small models shared by the optvis tests."""

from __future__ import annotations

import pytest
import torch
from support import one_torch_thread
from torch import nn


class TinyNet(nn.Module):
    """conv(3->8, 3x3) relu, conv(8->16, 3x3) relu, maxpool, conv(16->12, 3x3) relu; [N,3,H,W] in [0, 1].

    Module names double as lucent layer names ("conv1", "relu1", ...).
    """

    input_size = 32

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 12, 3)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        x = self.relu1(self.conv1(x * 2 - 1))
        x = self.pool(self.relu2(self.conv2(x)))
        return self.relu3(self.conv3(x))


def make_tiny_net(seed: int = 0) -> TinyNet:
    generator = torch.Generator().manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.dim() > 1 else 0.1))
    return net.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def tiny_net() -> TinyNet:
    return make_tiny_net()


@pytest.fixture
def make_net():
    """``make_net(seed)`` -> a fresh :class:`TinyNet` with weights drawn from ``seed``."""
    return make_tiny_net
