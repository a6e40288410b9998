"""lucent's ``optvis.render``: :func:`render_vis`, :func:`hook_model`, :func:`tensor_to_img_array`,
:func:`view` and :func:`export`.

``render_vis`` takes lucent's arguments and returns what lucent returns: a list with one numpy
array ``[N, H, W, C]`` (float32, in [0, 1]) per step listed in ``thresholds``. It builds the call
as lucent does (``param_f()``, the optimizer, ``standard_transforms``, the model's preprocessing,
upsampling to 224 px below that size) and then runs it on the engine's batched render when every
piece is one the engine knows, else in an eager loop with lucent's semantics (see ``_engine.py``
and ``_eager.py``; ``last_run()`` says which ran).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from circuits_vision.compat.lucent.misc.io import show
from circuits_vision.compat.lucent.modelzoo.inceptionv1 import InceptionV1
from circuits_vision.compat.lucent.optvis import objectives, transform
from circuits_vision.compat.lucent.optvis import param as lucent_param
from circuits_vision.compat.lucent.optvis._eager import eager_render, to_array
from circuits_vision.compat.lucent.optvis._engine import ResizeTo, engine_render
from circuits_vision.compat.lucent.optvis._features import FeatureRecorder
from circuits_vision.models import InceptionNet

__all__ = ["render_vis", "hook_model", "ModuleHook", "tensor_to_img_array", "view", "export", "last_run"]

_LAST_RUN = {"path": None}


def last_run() -> str | None:
    """``"engine"`` or ``"eager"``: how the latest ``render_vis`` call in this process ran."""
    return _LAST_RUN["path"]


def _preprocessing(model: nn.Module) -> transform.ValueMap | None:
    """lucent's rule: InceptionV1 gets lucid's [-117, 138] range, other models ImageNet
    normalisation; the toolkit's own Inception models take [0, 1] and preprocess themselves."""
    if isinstance(model, InceptionNet) and not isinstance(model, InceptionV1):
        return None
    if model._get_name() == "InceptionV1":
        return transform.preprocess_inceptionv1()
    return transform.normalize()


def _model_input_size(image_shape: Sequence[int], fixed_image_size) -> int | None:
    if fixed_image_size is not None:
        return fixed_image_size
    if image_shape[2] < 224 or image_shape[3] < 224:
        return 224
    return None


def render_vis(
    model: nn.Module,
    objective_f,
    param_f: Callable | None = None,
    optimizer: Callable | None = None,
    transforms: Sequence[Callable] | None = None,
    thresholds: Sequence[int] = (512,),
    verbose: bool = False,
    preprocess: bool = True,
    progress: bool = True,
    show_image: bool = True,
    save_image: bool = False,
    image_name: str | None = None,
    show_inline: bool = False,
    fixed_image_size: int | None = None,
) -> list[np.ndarray]:
    """Optimise ``param_f``'s image(s) to minimise ``objective_f`` (lucent's ``render_vis``).

    Args:
        model: the model, e.g. ``modelzoo.inceptionv1()``, in eval mode.
        objective_f: an objective, a ``"layer:n"`` string or a function ``T -> loss``.
        param_f: ``() -> (params, image_f)`` (default ``param.image(128)``); all images
            ``image_f()`` makes are optimised together.
        optimizer: ``params -> optimizer`` (default ``torch.optim.Adam(params, lr=5e-2)``).
        transforms: list of ``image -> image`` (default ``transform.standard_transforms``).
        thresholds: steps after which to return the image; runs ``max(thresholds)`` steps.
        verbose: print the loss at the start and at each threshold (and show images with ``show_inline``).
        preprocess: append the model's input preprocessing to the transforms.
        progress: tqdm progress bar.
        show_image: open the final image in an image viewer (PIL) unless ``show_inline``.
        save_image: save the final image to ``image_name`` (default "image.jpg").
        show_inline: display images in the notebook.
        fixed_image_size: resize every transformed image to this size (default: 224 px when smaller).

    Returns:
        list of float32 arrays ``[N, H, W, C]`` in [0, 1], one per threshold step reached.
    """
    if param_f is None:
        param_f = lambda: lucent_param.image(128)  # noqa: E731
    params, image_f = param_f()
    params = list(params)  # lucent's cppn hands over a generator; the optimizer and we both read it
    optimizer = (optimizer or (lambda p: torch.optim.Adam(p, lr=5e-2)))(params)
    chain = list(transform.standard_transforms if transforms is None else transforms)
    preprocessing = _preprocessing(model) if preprocess else None
    if preprocessing is not None:
        chain.append(preprocessing)
    model_input_size = _model_input_size(image_f().shape, fixed_image_size)
    objective_f = objectives.as_objective(objective_f)
    thresholds = tuple(int(t) for t in thresholds)

    try:
        run = engine_render(
            model, objective_f, params, image_f, optimizer, chain, model_input_size, thresholds, progress
        )
    except KeyboardInterrupt:
        print("Interrupted optimization.")
        _LAST_RUN["path"] = "engine"
        return _finish([to_array(image_f())], image_f, save_image, image_name, show_inline, show_image)
    if run is not None:
        _LAST_RUN["path"] = "engine"
        images = run.images
        if verbose:  # the engine's losses are known once it is done: print lucent's lines then
            print(f"Initial loss: {run.losses[0]:.3f}")
            for step, image in zip(sorted(set(t for t in thresholds if 1 <= t)), images):
                print(f"Loss at step {step}: {run.losses[step - 1]:.3f}")
                if show_inline:
                    show(image)
    else:
        _LAST_RUN["path"] = "eager"
        if model_input_size is not None:
            chain.append(ResizeTo(model_input_size))
        images, _ = eager_render(
            model,
            objective_f,
            params,
            image_f,
            optimizer,
            transform.compose(chain),
            thresholds,
            verbose,
            progress,
            show if show_inline else None,
        )
    return _finish(images, image_f, save_image, image_name, show_inline, show_image)


def _finish(images, image_f, save_image, image_name, show_inline, show_image) -> list[np.ndarray]:
    if save_image:
        export(image_f(), image_name)
    if show_inline:
        show(tensor_to_img_array(image_f()))
    elif show_image:
        view(image_f())
    return images


class ModuleHook:
    """A forward hook on ``module`` keeping its latest output in ``features`` (lucent's ``ModuleHook``)."""

    def __init__(self, module: nn.Module):
        self.hook = module.register_forward_hook(self.hook_fn)
        self.module = None
        self.features = None

    def hook_fn(self, module: nn.Module, input, output) -> None:
        self.module = module
        self.features = output

    def close(self) -> None:
        self.hook.remove()


def hook_model(model: nn.Module, image_f: Callable[[], torch.Tensor]) -> Callable[[str], torch.Tensor]:
    """lucent's ``hook_model``: forward hooks on every layer; returns ``T(name)`` -> the layer's latest
    output (``"input"``: ``image_f()``, ``"labels"``: the last layer's). ``T.close()`` removes the hooks."""
    return FeatureRecorder(model, image_f)


def tensor_to_img_array(tensor: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` tensor -> ``[N, H, W, C]`` numpy array."""
    return to_array(tensor)


def _strip(tensor: torch.Tensor) -> np.ndarray:
    image = tensor_to_img_array(tensor)
    if image.ndim not in (3, 4):
        raise ValueError(f"Image should have 3 or 4 dimensions, invalid image shape {image.shape}")
    image = (image * 255).astype(np.uint8)
    return np.concatenate(image, axis=1) if image.ndim == 4 else image


def view(tensor: torch.Tensor) -> None:
    """Open the images ``[N, C, H, W]`` side by side in the system's image viewer (PIL)."""
    from PIL import Image

    Image.fromarray(_strip(tensor)).show()


def export(tensor: torch.Tensor, image_name: str | None = None) -> None:
    """Save the images ``[N, C, H, W]`` side by side to ``image_name`` (default "image.jpg")."""
    from PIL import Image

    Image.fromarray(_strip(tensor)).save(image_name or "image.jpg")
