"""lucent's ``T``: every layer's latest output, read by name, recorded by forward hooks.

Names are lucent's (:func:`~circuits_vision.compat.lucent.modelzoo.util.lucent_layer_paths`);
``T("input")`` is ``image_f()`` and ``T("labels")`` the output of the last named layer. The
recorder can also end a forward pass early, right after the last layer the objective read on
the previous pass (the eager loop's truncated forward), and notices when an objective asks for a
layer that this pass did not reach, so the caller can rerun the pass in full.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from circuits_vision.compat.lucent.modelzoo.util import lucent_layer_paths
from circuits_vision.errors import UnknownNameError, close_names

__all__ = ["FeatureRecorder", "StaleFeatures", "InvalidLayerError"]


class StaleFeatures(Exception):
    """``T(name)`` of a layer that the current (truncated) forward pass did not compute."""


class InvalidLayerError(UnknownNameError, AssertionError):
    """A layer name the model does not have (an ``AssertionError`` like lucent's, and a ``KeyError``)."""


class _StopForward(Exception):
    """Raised from the last needed layer's hook to end a truncated forward pass."""


class FeatureRecorder:
    """Forward hooks on every layer of ``model``; ``recorder(name)`` is lucent's ``T(name)``."""

    def __init__(self, model: nn.Module, image_f: Callable[[], torch.Tensor]):
        self.model, self.image_f = model, image_f
        self.features: dict[str, torch.Tensor | None] = {}
        self._computed_at: dict[str, int] = {}
        self.passes = 0
        self.truncate_after: str | None = None
        self._order: list[str] = []  # names in the order the last full pass computed them
        self._read: set[str] = set()
        self._handles = []
        for name, module in lucent_layer_paths(model):
            self.features[name] = None
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self.features[name] = output
            self._computed_at[name] = self.passes
            self._order.append(name)
            if name == self.truncate_after:
                raise _StopForward

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def forward(self, run: Callable[[], object], truncate: bool = False) -> None:
        """One pass of ``run()`` (which calls the model); ``truncate`` stops after the deepest
        layer read since the last full pass, if that is known."""
        self.passes += 1
        self._order = []
        if not truncate:
            self.truncate_after = None
        try:
            run()
        except _StopForward:
            pass

    def plan_truncation(self) -> None:
        """After a full pass: truncate later passes at the last layer (in execution order) read so far."""
        read = [name for name in self._order if name in self._read]
        # a layer that runs twice per pass (a shared ReLU) is read at its last call: no early stop
        once = len(read) == len(set(read)) and set(read) == self._read
        self.truncate_after = read[-1] if read and once else None

    def _current(self, name: str) -> torch.Tensor:
        if self.truncate_after is not None and self._computed_at.get(name) != self.passes:
            raise StaleFeatures(name)
        out = self.features[name]
        if out is None:
            raise AssertionError(
                "There are no saved feature maps. Make sure to put the model in eval mode, like so: "
                "`model.to(device).eval()`, and that the layer runs in the model's forward pass."
            )
        return out

    def __call__(self, layer: str) -> torch.Tensor:
        if layer == "input":
            return self.image_f()
        self._read.add(layer)
        if layer == "labels":
            return self._current(list(self.features)[-1])
        if layer not in self.features:
            close = close_names(layer, self.features, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise InvalidLayerError(
                f"Invalid layer {layer!r}{hint}. Retrieve the list of layers with "
                "`circuits_vision.compat.lucent.modelzoo.util.get_model_layers(model)`.",
                close,
            )
        return self._current(layer)
