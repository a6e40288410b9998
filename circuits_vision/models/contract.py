"""The model contract: what every model of the toolkit offers, and what generic code may rely on.

Any ``nn.Module`` works with the toolkit; a model that also follows this contract gets the right
probe sizes, stimuli and renders without extra arguments. Every model :func:`circuits_vision.models.load`
builds follows it (``tests/models/test_model_contract.py`` checks each name):

- ``input_size``: the side in pixels (or an ``(H, W)`` pair) of the images the model was made for;
  generic code reads it through :func:`circuits_vision.hooks.model_input_size` (224 for a module
  without one).
- ``input_channels``: the channels of its input, 3 for RGB
  (:func:`circuits_vision.hooks.model_input_channels`; without one, the first conv's input channels).
- ``forward(x)``: ``x`` is ``[N, input_channels, H, W]`` in [0, 1]; any normalisation the weights
  expect (lucid's ``x * 255 - 117``, ImageNet's mean and std) happens inside the model, so stimuli,
  renders and dataset images are passed as they are.
- a non-linear layer other than the ones :mod:`circuits_vision.weights` knows (ReLU, pooling,
  batch norm, ...) that should be crossed when expanding weights offers ``linear_approximation()``:
  the scale it applies to small inputs (:class:`LinearlyApproximable`, e.g. the local response norm).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["LinearlyApproximable", "VisionModel"]


@runtime_checkable
class VisionModel(Protocol):
    """A model of the toolkit: ``[N, input_channels, H, W]`` images in [0, 1] -> its output.

    ``isinstance(model, VisionModel)`` checks that the attributes exist (not their values);
    :func:`circuits_vision.hooks.model_input_size` checks the value of ``input_size``.
    """

    input_size: int | tuple[int, int]
    input_channels: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LinearlyApproximable(Protocol):
    """A non-linear layer that weight expansion crosses as multiplication by a scale."""

    def linear_approximation(self) -> float | torch.Tensor:
        """The factor the layer multiplies inputs near 0 by (a float; a tensor is accepted too)."""
        ...
