"""lucent's ``optvis.objectives``: every objective, :func:`wrap_objective`, :func:`handle_batch`,
the :class:`Objective` algebra and :func:`as_objective`.

The objectives are the engine's own (:mod:`circuits_vision.optvis.objectives`), which compute
lucent's values (tests hold them to lucent's to 1e-5) and also record the layers they read, so
``render_vis`` can stop the forward pass there. ``Objective`` adds ``*`` and ``/`` between
objectives to lucent's ``+ - *`` with numbers; everything lucent accepts works the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from circuits_vision.optvis.objectives import (
    L1,
    L2,
    Objective,
    alignment,
    blur_input_each_step,
    channel,
    channel_interpolate,
    channel_weight,
    class_logit,
    deepdream,
    direction,
    direction_neuron,
    diversity,
    localgroup_weight,
    neuron,
    neuron_weight,
    total_variation,
    wrap_objective,
)

__all__ = [
    "L1",
    "L2",
    "Objective",
    "alignment",
    "as_objective",
    "blur_input_each_step",
    "channel",
    "channel_interpolate",
    "channel_weight",
    "class_logit",
    "deepdream",
    "direction",
    "direction_neuron",
    "diversity",
    "handle_batch",
    "localgroup_weight",
    "neuron",
    "neuron_weight",
    "total_variation",
    "wrap_objective",
]

Activations = Callable[[str], torch.Tensor]


def handle_batch(batch: int | None = None):
    """Decorator for ``f(T) -> loss``: with an int ``batch``, ``T(name)`` returns only image
    ``batch`` (``[1, C, H, W]``); with ``None``, all images (lucent's ``handle_batch``)."""

    def decorate(func: Callable[[Activations], torch.Tensor]) -> Callable[[Activations], torch.Tensor]:
        def inner(T: Activations) -> torch.Tensor:
            if isinstance(batch, int):
                return func(lambda name: T(name)[batch : batch + 1])
            return func(T)

        return inner

    return decorate


def as_objective(obj):
    """lucent's ``as_objective``: ``"layer:n"`` -> ``channel(layer, n)``; objectives and other
    callables ``T -> loss`` are returned unchanged."""
    if isinstance(obj, Objective) or callable(obj):
        return obj
    if isinstance(obj, str):
        layer, sep, index = obj.partition(":")
        try:
            n_channel = int(index)
        except ValueError:
            n_channel = None
        if not sep or n_channel is None or not layer.strip():
            raise ValueError(f"an objective string looks like 'layer:channel' (e.g. 'mixed4a:476'), got {obj!r}")
        return channel(layer.strip(), n_channel)
    raise TypeError(
        f"an objective is an Objective, a function T -> loss or a 'layer:channel' string, got {type(obj).__name__}"
    )
