"""Hand a ``render_vis`` call to the engine's :func:`circuits_vision.optvis.render` when it can take it.

The engine takes the call when the optimizer steps without a closure (a ``torch.optim`` one other
than LBFGS), the image is square with 3 channels, and every transform is one the engine knows
(those of :mod:`..transform`, with a value map such as ``preprocess_inceptionv1`` or
``normalize`` only at the end). Then it runs one batched optimisation of all the images
``param_f`` made, stops the forward at the objective's deepest layer, freezes the weights and,
for the standard transforms and ``param.image``, resamples colour, sigmoid, pad, jitter, scale,
rotation and the upsampling to the model's input size in one fused op per step.

What differs from lucent is only what no user code can pin down: the random transform draws
(from a generator seeded from torch's global one; shared by the images of a batch, as lucent's),
and the geometric transforms are one resample instead of a chain of them. A trailing value map is applied to the model input
(resampling commutes with a per-channel affine map).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from circuits_vision import optvis
from circuits_vision.compat.lucent.modelzoo.util import lucent_layer_paths
from circuits_vision.compat.lucent.optvis.transform import ValueMap
from circuits_vision.optvis import transforms as engine_transforms

__all__ = ["EngineRun", "engine_render", "ResizeTo", "SharedDraws"]


class ResizeTo(engine_transforms.GeometricTransform):
    """Bilinear resize to ``size x size`` (lucent's final ``Upsample``, ``align_corners=True``);
    fusable: as an affine map it is a scaling of pixel coordinates."""

    def __init__(self, size: int):
        self.size = int(size)

    def __repr__(self) -> str:
        return f"resize_to({self.size})"

    def __call__(self, x, generator=None):
        return torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=True)

    def output_size(self, size):
        return (self.size, self.size)

    def sample(self, count, size, generator):
        # align_corners=True: output pixel centre i reads input i * (in - 1) / (out - 1); with
        # centres at half-integers that is u_in = (u_out - 1/2) * ratio + 1/2
        m = torch.eye(3, dtype=torch.float64).repeat(count, 1, 1)
        for axis, extent in ((0, size[1]), (1, size[0])):
            ratio = (extent - 1) / (self.size - 1) if self.size > 1 else 0.0
            m[:, axis, axis] = ratio
            m[:, axis, 2] = 0.5 - 0.5 * ratio
        return m


class SharedDraws(engine_transforms.Compose):
    """A chain of the engine's transforms whose random draws are shared by every image of the batch,
    as lucent draws once per step for the whole batch (objectives that compare the images of a
    batch, such as the notebook's ``dot_compare``, rely on their being transformed alike).

    The engine asks for draws per image with that image's generator; here the ``k``-th call for any
    image uses generator ``seed + k``, so all images see the same sequence of draws.
    """

    def __init__(self, transforms, seed: int):
        super().__init__(transforms)
        self.seed = int(seed)
        self._calls: dict[int, int] = {}

    def _shared(self, generator: torch.Generator | None) -> torch.Generator:
        key = generator.initial_seed() if generator is not None else -1
        k = self._calls.get(key, 0)
        self._calls[key] = k + 1
        return torch.Generator().manual_seed((self.seed + k) % 2**63)

    def __call__(self, x, generator=None):
        return super().__call__(x, self._shared(generator))

    def sample(self, count, size, generator):
        # the fused path asks once per image for all steps' maps: give every image the same ones
        return super().sample(count, size, torch.Generator().manual_seed(self.seed))


@dataclass
class EngineRun:
    """What the engine's render returned, in lucent's terms."""

    images: list[np.ndarray]  # [N, H, W, C] after each threshold step
    losses: list[float]  # per step, before that step's update


def _steps_without_closure(optimizer) -> bool:
    cls = type(optimizer)
    return (
        isinstance(optimizer, torch.optim.Optimizer)
        and cls.__module__.startswith("torch.optim")
        and not isinstance(optimizer, torch.optim.LBFGS)
    )


def _split_value_map(
    transforms: Sequence[Callable],
) -> tuple[list[engine_transforms.Transform], ValueMap | None] | None:
    """``(engine transforms, trailing value map)``, or ``None`` if some transform is not the engine's."""
    items = list(transforms)
    value_map = None
    while items and isinstance(items[-1], ValueMap):
        value_map = items.pop() if value_map is None else items.pop().then(value_map)
    if not all(isinstance(t, engine_transforms.Transform) for t in items):
        return None
    return items, value_map


@contextlib.contextmanager
def _input_map(model: nn.Module, value_map: ValueMap | None) -> Iterator[None]:
    """Apply ``value_map`` to the model's input in a forward pre-hook inside the block."""
    if value_map is None:
        yield
        return
    handle = model.register_forward_pre_hook(lambda module, args: (value_map(args[0]), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def _engine_objective(model: nn.Module, objective):
    """The objective as the engine takes it; ``T("labels")`` becomes the model's last layer."""
    objective = optvis.as_objective(objective)
    if objective.layers is not None and "labels" not in objective.layers:
        return objective
    last = lucent_layer_paths(model)[-1][0]
    return optvis.Objective(
        lambda T: objective(lambda name: T(last if name == "labels" else name)),
        objective.name,
        objective.description,
        layers=None,
    )


def engine_render(
    model: nn.Module,
    objective,
    params: list[torch.Tensor],
    image_f: Callable[[], torch.Tensor],
    optimizer,
    transforms: Sequence[Callable],
    model_input_size: int | None,
    thresholds: Sequence[int],
    progress: bool,
) -> EngineRun | None:
    """Render with the engine, or return ``None`` (nothing done) when the call needs the eager loop."""
    steps = max(thresholds, default=0)
    if steps < 1 or not _steps_without_closure(optimizer):
        return None
    probe = image_f()
    if probe.dim() != 4 or probe.shape[1] != 3 or probe.shape[2] != probe.shape[3]:
        return None
    split = _split_value_map(transforms)
    if split is None:
        return None
    chain, value_map = split
    if model_input_size is not None:
        chain = chain + [ResizeTo(model_input_size)]
    snapshot_steps = sorted({int(t) for t in thresholds if 1 <= int(t) <= steps})
    # lucent's transforms draw from the global generator; the engine's from generators seeded here
    seed = int(torch.randint(0, 2**62, (1,)).item())
    with _input_map(model, value_map):
        result = optvis.render(
            model,
            _engine_objective(model, objective),
            steps=steps,
            size=int(probe.shape[-1]),
            seed=seed,
            thresholds=snapshot_steps,
            param=lambda: (params, image_f),
            transforms=SharedDraws(chain, seed),
            preset="lucid",  # every default the preset sets is overridden here
            optimizer=lambda _: optimizer,
            progress=progress,
            images_per_objective=int(probe.shape[0]),
            redirect_relu=None,  # lucent's render redirects nothing; a model may (RedirectedReLU)
        )
    images = [np.ascontiguousarray(result.snapshots[t].permute(0, 2, 3, 1).numpy()) for t in snapshot_steps]
    return EngineRun(images, [float(v) for v in result.history[:, 0]])
