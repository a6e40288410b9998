"""InceptionV1 as in lucid's ``inception5h`` graph, the model of the Distill Circuits thread.

Layer names and state-dict keys are lucent's (``mixed3a_3x3_pre_relu_conv.weight``,
``softmax2_pre_activation_matmul.weight``, ...), so lucent's ``inception5h.pth`` loads unchanged; captum's
file (``conv1.weight``, ``mixed3a.conv_3x3.weight``, ...) is renamed on load. Channel ids in the Circuits
articles ("mixed3b:379") index these layers directly.

Differences from lucent's port, all towards lucid's TensorFlow graph:

- the model takes RGB in [0, 1] and applies lucid's ``x * 255 - 117`` itself;
- local response norm is TensorFlow's (depth radius 5, bias 2, alpha 1e-4, beta 0.5); lucent's port
  calls torch's LRN with radius 4, bias 1 and alpha/9. ``lrn="lucent"`` reproduces lucent exactly;
- padding is TensorFlow "SAME" computed from the input size (identical to lucent's fixed pads at
  224 px and any even size; lucent's differ from TensorFlow's at odd sizes).
"""

from __future__ import annotations

import os

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

INPUT_SIZE = 224
NUM_CLASSES = 1008

# Branch widths of lucid's inception5h (mixed4a has 204 3x3 channels, not the paper's 208).
INCEPTIONV1_BLOCKS = (
    BlockSpec("mixed3a", 64, 96, 128, 16, 32, 32),
    BlockSpec("mixed3b", 128, 128, 192, 32, 96, 64),
    BlockSpec("mixed4a", 192, 96, 204, 16, 48, 64),
    BlockSpec("mixed4b", 160, 112, 224, 24, 64, 64),
    BlockSpec("mixed4c", 128, 128, 256, 24, 64, 64),
    BlockSpec("mixed4d", 112, 144, 288, 32, 64, 64),
    BlockSpec("mixed4e", 256, 160, 320, 32, 128, 128),
    BlockSpec("mixed5a", 256, 160, 320, 48, 128, 128),
    BlockSpec("mixed5b", 384, 192, 384, 48, 128, 128),
)


def inceptionv1_spec(lrn: str = "tf") -> InceptionSpec:
    """The architecture of lucid's InceptionV1 with LRN kind ``lrn`` ("tf" or "lucent")."""
    if lrn not in ("tf", "lucent"):
        raise ValueError(f"unknown lrn={lrn!r}: use 'tf' (TensorFlow's, as in lucid) or 'lucent' (lucent's port)")
    return InceptionSpec(
        stem=(
            ConvSpec("conv2d0", 64, 7, stride=2),
            MaxPoolSpec("maxpool0"),
            LRNSpec("localresponsenorm0", lrn),
            ConvSpec("conv2d1", 64, 1),
            ConvSpec("conv2d2", 192, 3),
            LRNSpec("localresponsenorm1", lrn),
            MaxPoolSpec("maxpool1"),
        ),
        blocks=INCEPTIONV1_BLOCKS,
        pools_after={"mixed3b": "maxpool4", "mixed4e": "maxpool10"},
        num_classes=NUM_CLASSES,
        preprocess=Preprocess(scale=255.0, offset=-117.0),
        input_size=INPUT_SIZE,
        avgpool_name="avgpool0",
        avgpool_kernel=7,
        logits_name="softmax2_pre_activation_matmul",
        softmax_name="softmax2",
    )


class InceptionV1(InceptionNet):
    """lucid's InceptionV1 (``inception5h``): input ``[N, 3, H, W]`` RGB in [0, 1], output
    ``[N, 1008]`` class probabilities (``softmax2``; logits are ``softmax2_pre_activation_matmul``).

    Every layer works at any input size; the classifier head needs 224 px (mixed5b 7x7).
    """

    def __init__(self, *, lrn: str = "tf", generator: torch.Generator | None = None, init: bool = True):
        super().__init__(inceptionv1_spec(lrn), generator=generator, init=init)
        self.lrn = lrn


def inceptionv1(
    weights: str | os.PathLike | None = None,
    *,
    lrn: str = "tf",
    sha256: str | None = None,
    generator: torch.Generator | None = None,
) -> InceptionV1:
    """Build InceptionV1, with weights from a path or http(s) URL, or randomly initialised.

    Args:
        weights: ``None`` (random init from ``generator``, seed 0 by default), a local path, or a URL
            (downloaded once into torch.hub's cache). lucent's and captum's ``inception5h.pth`` load as is.
        lrn: ``"tf"`` (TensorFlow's local response norm, as lucid) or ``"lucent"`` (lucent's port).
        sha256: expected SHA-256 of the weight file; a mismatch raises before anything is loaded.
        generator: randomness for the random init (ignored when ``weights`` is given).

    Returns the model in eval mode. Bad files raise :class:`~circuits_vision.models.loading.WeightsError`
    naming the file and the missing / unexpected / wrongly shaped keys.
    """
    if weights is None:
        return InceptionV1(lrn=lrn, generator=generator).eval()
    from circuits_vision.models.loading import load_weights

    model = InceptionV1(lrn=lrn, init=False)
    load_weights(model, weights, sha256=sha256, convert=captum_to_lucent_names)
    return model.eval()


_CAPTUM_STEM = {"conv1": "conv2d0", "conv2": "conv2d1", "conv3": "conv2d2"}
_CAPTUM_BRANCHES = {
    "conv_1x1": "1x1",
    "conv_3x3_reduce": "3x3_bottleneck",
    "conv_3x3": "3x3",
    "conv_5x5_reduce": "5x5_bottleneck",
    "conv_5x5": "5x5",
    "pool_proj": "pool_reduce",
}


def captum_to_lucent_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename captum.optim InceptionV1 keys (``mixed3a.conv_3x3.weight``) to lucent's
    (``mixed3a_3x3_pre_relu_conv.weight``); keys already in lucent's form pass unchanged."""
    renamed = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        head, _, tail = module.partition(".")
        if module in _CAPTUM_STEM:
            key = f"{_CAPTUM_STEM[module]}_pre_relu_conv.{param}"
        elif module == "fc":
            key = f"softmax2_pre_activation_matmul.{param}"
        elif head.startswith("mixed") and tail in _CAPTUM_BRANCHES:
            key = f"{head}_{_CAPTUM_BRANCHES[tail]}_pre_relu_conv.{param}"
        renamed[key] = value
    return renamed
