"""The eager loop: lucent's optimisation, step by step, for what the engine's render cannot take
(a user's transform function, an optimizer that needs a closure, non-square images, ...).

Per step, as lucent: ``optimizer.step(closure)`` where the closure runs
``model(transform_f(image_f()))`` with every layer hooked and back-propagates ``objective(T)``.
Two savings that change no value: the model's own weights are frozen during the loop (their
gradients were never used), and after the first step the forward stops right after the deepest
layer the objective read (a step that then asks for a layer not reached is rerun in full).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from circuits_vision.compat.lucent.optvis._features import FeatureRecorder, StaleFeatures

__all__ = ["eager_render", "frozen_weights", "to_array"]


def to_array(tensor: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` tensor -> ``[N, H, W, C]`` numpy array (lucent's ``tensor_to_img_array``)."""
    return np.transpose(tensor.cpu().detach().numpy(), [0, 2, 3, 1])


@contextlib.contextmanager
def frozen_weights(model: nn.Module, keep: list[torch.Tensor]) -> Iterator[None]:
    """``requires_grad=False`` on the model's parameters that are not being optimised, restored after."""
    kept = {id(p) for p in keep}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in kept]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def eager_render(
    model: nn.Module,
    objective_f: Callable,
    params: list[torch.Tensor],
    image_f: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    transform_f: Callable[[torch.Tensor], torch.Tensor],
    thresholds,
    verbose: bool,
    progress: bool,
    show: Callable[[np.ndarray], None] | None,
) -> tuple[list[np.ndarray], list[float]]:
    """Run lucent's loop for ``max(thresholds)`` steps.

    Returns the images ``[N, H, W, C]`` after each step in ``thresholds`` (plus the current one if
    interrupted) and the loss of every step (evaluated before that step's update).
    """
    recorder = FeatureRecorder(model, image_f)
    images: list[np.ndarray] = []
    losses: list[float] = []
    step = 0
    try:
        with frozen_weights(model, params):
            if verbose:
                recorder.forward(lambda: model(transform_f(image_f())))
                print(f"Initial loss: {float(objective_f(recorder)):.3f}")
            for step in tqdm(range(1, max(thresholds) + 1), disable=not progress):

                def closure(step: int = step) -> torch.Tensor:
                    optimizer.zero_grad()
                    truncated = recorder.truncate_after is not None
                    _forward(recorder, model, transform_f, image_f, step, truncated)
                    try:
                        loss = objective_f(recorder)
                    except StaleFeatures:  # the objective read past the early stop: run in full
                        recorder.truncate_after = None
                        _forward(recorder, model, transform_f, image_f, step, False)
                        loss = objective_f(recorder)
                    if not truncated:
                        recorder.plan_truncation()
                    loss.backward()
                    return loss

                loss = optimizer.step(closure)
                losses.append(float(loss.detach()) if loss is not None else float("nan"))
                if step in thresholds:
                    image = to_array(image_f())
                    if verbose:
                        print(f"Loss at step {step}: {losses[-1]:.3f}")
                        if show is not None:
                            show(image)
                    images.append(image)
    except KeyboardInterrupt:
        print(f"Interrupted optimization at step {step:d}.")
        if verbose and losses:
            print(f"Loss at step {step}: {losses[-1]:.3f}")
        images.append(to_array(image_f()))
    finally:
        recorder.close()
    return images, losses


def _forward(recorder: FeatureRecorder, model, transform_f, image_f, step: int, truncate: bool) -> None:
    def run():
        try:
            model(transform_f(image_f()))
        except (RuntimeError, ValueError) as error:
            # as lucent: layers after the objective's may not fit a small image (our InceptionV1's
            # classifier head says so with a ValueError); say so once
            if step == 1:
                warnings.warn(
                    "Some layers could not be computed because the size of the image is not big enough. "
                    "It is fine, as long as the non computed layers are not used in the objective function "
                    f"(exception details: '{error}')",
                    stacklevel=4,
                )

    recorder.forward(run, truncate=truncate)
