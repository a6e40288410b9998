"""Custom ops (C++/CUDA kernels registered under ``torch.ops.circuits_vision``).

Every op has a pure-PyTorch twin in :mod:`circuits_vision.ops._reference`; the public
functions here fall back to it (warning once) when the compiled extension is missing.
"""

from circuits_vision.ops._extension import extension_available
from circuits_vision.ops.compose_kernels import compose_kernels
from circuits_vision.ops.image_pipeline import image_pipeline

__all__ = ["compose_kernels", "extension_available", "image_pipeline"]
