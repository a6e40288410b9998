"""Custom ops (C++/CUDA kernels registered under ``torch.ops.circuits_vision``).

Every op has a pure-PyTorch twin (in :mod:`circuits_vision.ops._reference`, public here as
``<op>_reference``); the public functions here fall back to it (warning once) when the compiled
extension is missing.
"""

from circuits_vision.ops._extension import extension_available
from circuits_vision.ops._reference import compose_kernels as compose_kernels_reference
from circuits_vision.ops._reference import image_pipeline as image_pipeline_reference
from circuits_vision.ops.compose_kernels import compose_kernels
from circuits_vision.ops.image_pipeline import image_pipeline

__all__ = [
    "compose_kernels",
    "compose_kernels_reference",
    "extension_available",
    "image_pipeline",
    "image_pipeline_reference",
]
