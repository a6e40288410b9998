"""``shapes``: a small InceptionV1-style network trained on procedurally drawn line drawings.

The toolkit ships it as the default model of every command, because pretrained ImageNet weights
cannot be bundled. It was trained by ``python -m circuits_vision.models.train_shapes`` (command, seed,
steps, held-out accuracy and the dataset description are in ``circuits_vision/data/shapes.json``)
to classify scenes from ``circuits_vision.stimuli.scenes``: a ``shape`` head (object kind x
orientation bin: curves and angles in eight 45-degree bins, lines in four, circles, gratings,
high-low patterns, blobs) and a ``color`` head, both slices of one linear layer. Telling curve
orientation apart is what grows curve detectors in ``mixed3b``.

Layers carry lucid's flat names (``conv2d0``, ``localresponsenorm0``, ``mixed3a``, ``mixed3b_5x5``,
``maxpool4``, ``mixed4a``, ``avgpool0``, ``softmax2_pre_activation_matmul``); the forward returns the
concatenated logits ``[N, 32]`` of both heads (use :meth:`ShapesNet.split_logits`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch

from circuits_vision.models.inception import (
    BlockSpec,
    ConvSpec,
    InceptionNet,
    InceptionSpec,
    LRNSpec,
    MaxPoolSpec,
    Preprocess,
)
from circuits_vision.models.loading import load_weights, read_state_dict, resolve_weights

INPUT_SIZE = 64
HEADS = {"shape": 24, "color": 8}
"""Output heads in the order their logits are concatenated, with their class counts (see ``stimuli.scenes``)."""


MIXED3B_BOTTLENECKS = (64, 32)
"""The shipped widths of mixed3b's 3x3 and 5x5 bottlenecks (the 1x1 reduce convolutions before them); earlier
checkpoints used (32, 12)."""


def shapes_spec(mixed3b_bottlenecks: tuple[int, int] = MIXED3B_BOTTLENECKS) -> InceptionSpec:
    """The architecture: InceptionV1's stem and three mixed blocks at a fraction of the width, for 64-px input.

    ``mixed3b_bottlenecks``: the widths of mixed3b's 3x3 and 5x5 bottlenecks; the block's outputs (its
    160 units and their branches) are the same for any widths.
    """
    b3, b5 = _bottlenecks(mixed3b_bottlenecks)
    return InceptionSpec(
        stem=(
            ConvSpec("conv2d0", 16, 7, stride=2),
            MaxPoolSpec("maxpool0"),
            LRNSpec("localresponsenorm0", "tf"),
            ConvSpec("conv2d1", 16, 1),
            ConvSpec("conv2d2", 48, 3),
            LRNSpec("localresponsenorm1", "tf"),
            MaxPoolSpec("maxpool1"),
        ),
        blocks=(
            BlockSpec("mixed3a", 24, 24, 48, 8, 16, 16),
            BlockSpec("mixed3b", 48, b3, 64, b5, 32, 16),
            BlockSpec("mixed4a", 64, 32, 96, 12, 32, 32),
        ),
        pools_after={"mixed3b": "maxpool4"},
        num_classes=sum(HEADS.values()),
        # [0, 1] -> [-1, 1]: a zero-centred input trains well from a default initialisation.
        preprocess=Preprocess(scale=2.0, offset=-1.0),
        input_size=INPUT_SIZE,
        avgpool_name="avgpool0",
        avgpool_kernel=None,
        logits_name="softmax2_pre_activation_matmul",
        softmax_name=None,
    )


class ShapesNet(InceptionNet):
    """The ``shapes`` model: ``[N, 3, H, W]`` RGB in [0, 1] (64 px natural size) -> logits ``[N, 32]``."""

    heads = HEADS

    def __init__(
        self,
        *,
        generator: torch.Generator | None = None,
        init: bool = True,
        mixed3b_bottlenecks: tuple[int, int] = MIXED3B_BOTTLENECKS,
    ):
        self.mixed3b_bottlenecks = _bottlenecks(mixed3b_bottlenecks)
        super().__init__(shapes_spec(self.mixed3b_bottlenecks), generator=generator, init=init)

    @staticmethod
    def split_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, 32]`` -> ``{"shape": [N, 24], "color": [N, 8]}``."""
        if logits.dim() != 2 or logits.shape[1] != sum(HEADS.values()):
            raise ValueError(f"expected logits [N, {sum(HEADS.values())}], got shape {tuple(logits.shape)}")
        return dict(zip(HEADS, logits.split(list(HEADS.values()), dim=1)))


def _bottlenecks(widths) -> tuple[int, int]:
    try:
        b3, b5 = (int(w) for w in widths)
    except (TypeError, ValueError):
        raise ValueError(f"mixed3b_bottlenecks must be two widths (3x3, 5x5), e.g. (64, 32); got {widths!r}") from None
    if b3 < 1 or b5 < 1:
        raise ValueError(f"mixed3b_bottlenecks must be >= 1 channels each, got {widths!r}")
    return b3, b5


BOTTLENECK_KEYS = ("mixed3b_3x3_bottleneck_pre_relu_conv.weight", "mixed3b_5x5_bottleneck_pre_relu_conv.weight")


def bottlenecks_of(state_dict) -> tuple[int, int]:
    """The mixed3b bottleneck widths a state dict was trained with (the shipped ones when its keys are missing)."""
    if not all(key in state_dict and getattr(state_dict[key], "dim", lambda: 0)() == 4 for key in BOTTLENECK_KEYS):
        return MIXED3B_BOTTLENECKS
    return tuple(int(state_dict[key].shape[0]) for key in BOTTLENECK_KEYS)


def default_weights_path() -> Path:
    """The packaged checkpoint ``circuits_vision/data/shapes.pt``."""
    return Path(str(resources.files("circuits_vision") / "data" / "shapes.pt"))


def metadata_path() -> Path:
    """The packaged training record ``circuits_vision/data/shapes.json``."""
    return Path(str(resources.files("circuits_vision") / "data" / "shapes.json"))


def shapes(weights: str | os.PathLike | dict | None = None, *, pretrained: bool = True) -> ShapesNet:
    """The shipped ``shapes`` model in eval mode, with the packaged weights unless ``weights`` is given.

    ``weights``: a path/URL of a state dict or a state dict; ``pretrained=False`` with ``weights=None``
    gives the seed-0 initialisation. A file of another architecture raises
    ``circuits_vision.models.loading.WeightsError`` listing the missing, unexpected and misshaped keys.
    Half-precision checkpoints are upcast to float32 on load. A checkpoint trained with other mixed3b
    bottleneck widths (``train_shapes --mixed3b-bottlenecks``) is built with those widths.
    """
    if weights is None and not pretrained:
        return ShapesNet().eval()
    if weights is None:
        weights = default_weights_path()
    if isinstance(weights, Mapping):
        widths = bottlenecks_of(weights)
    else:
        weights = resolve_weights(weights)  # a URL is downloaded once; errors name the file
        widths = bottlenecks_of(read_state_dict(weights))
    model = ShapesNet(init=False, mixed3b_bottlenecks=widths)
    load_weights(model, weights)
    return model.eval()
