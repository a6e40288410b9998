"""circuits_vision.hooks: any layer of any ``nn.Module`` by name.

- :func:`layer_names`, :func:`get_layer`: flat lucid names for our models (``"mixed3a"``), dotted
  paths elsewhere (``"layer1.0.conv1"``), lucent's underscore aliases (``"layer1_0_conv1"``) accepted.
- :func:`run_with_cache`: one forward, the outputs of the named layers, stopping after the deepest.
- :func:`as_input`, :func:`as_images`: array-likes to model inputs; images checked to be [N, C, H, W] in [0, 1].
- :func:`hooked`: forward hooks by name inside a ``with`` block.
- :func:`layer_shape`, :func:`check_channel`: layer widths from a cached probe forward.
- :func:`branches`, :func:`branch_of`: which channel range of a concatenated layer comes from which branch.
- :func:`probe_input`, :func:`eval_mode`, :func:`model_device`, :func:`model_dtype`: a probe image on the model's device, eval
  mode for a block with every module's own mode restored afterwards, and the device itself.
- :func:`model_input_size`, :func:`model_input_channels`: the input a model declares (the model contract).
"""

from circuits_vision.hooks.branches import Branch, NotABranchLayerError, branch_of, branches
from circuits_vision.hooks.capture import (
    as_images,
    as_input,
    check_channel,
    eval_mode,
    hooked,
    layer_shape,
    model_device,
    model_dtype,
    model_input_channels,
    model_input_size,
    probe_input,
    run_with_cache,
)
from circuits_vision.hooks.names import UnknownLayerError, get_layer, layer_names, resolve_layer, resolve_layers

__all__ = [
    "as_images",
    "as_input",
    "Branch",
    "NotABranchLayerError",
    "UnknownLayerError",
    "branch_of",
    "branches",
    "check_channel",
    "eval_mode",
    "get_layer",
    "hooked",
    "layer_names",
    "layer_shape",
    "model_device",
    "model_dtype",
    "model_input_channels",
    "model_input_size",
    "probe_input",
    "resolve_layer",
    "resolve_layers",
    "run_with_cache",
]
