"""Automatic batch size: as many images per optimisation batch as fit a memory budget."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision._utils import int_pair

__all__ = [
    "choose_batch_size",
    "bytes_per_image",
    "default_memory_budget",
    "available_memory",
    "check_fits",
    "RenderTooLargeError",
]

# activation gradients and temporaries during backward come on top of the saved activations
_BACKWARD_FACTOR = 2.0
_CPU_BUDGET_CAP = 4 * 2**30
# Above this many input pixels the memory a render needs is estimated from a small probe (scaled
# by area) before anything of the full size is allocated; below it a probe at full size is cheap.
_ESTIMATE_ABOVE_PIXELS = 1024 * 1024
_REFERENCE_SIZE = (128, 128)


class RenderTooLargeError(ValueError):
    """A render would need more memory than the device has (says the estimate)."""


def available_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device; available RAM on the CPU (total RAM when that is unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 * 2**30


def default_memory_budget(device: torch.device) -> int:
    """Half the free memory of a CUDA device; a quarter of RAM, at most 4 GiB, on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 * 2**30
    return int(min(_CPU_BUDGET_CAP, ram // 4))


def bytes_per_image(model: nn.Module, layers: Sequence[str] | None, input_size, device: torch.device) -> int:
    """Bytes autograd saves for one image's forward to ``layers`` (weights excluded), measured by a
    probe forward with ``saved_tensors_hooks``; ``input_size`` is ``S`` or ``(H, W)``."""
    height, width = int_pair(input_size)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in weights:
            seen.add(key)
            total += storage.nbytes()
        return tensor

    x = hooks.probe_input(model, (height, width)).requires_grad_(True)
    names = list(layers) if layers is not None else hooks.layer_names(model)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        if names:
            hooks.run_with_cache(model, x, names, truncate=layers is not None)
    image_state = _image_state_bytes(height, width)
    return int(total * _BACKWARD_FACTOR) + image_state


def _image_state_bytes(height: int, width: int) -> int:
    return 3 * height * width * 4 * 8  # params, Adam moments, grads, image copies


def check_fits(model: nn.Module, layers: Sequence[str] | None, size, group: int, device: torch.device) -> None:
    """Refuse, before allocating anything of the full size, a render whose ``group`` images of
    ``size`` ``(H, W)`` would not fit the device: the bytes of a probe at 128x128 scaled by area."""
    height, width = int_pair(size)
    if height * width <= _ESTIMATE_ABOVE_PIXELS:
        return
    scale = height * width / (_REFERENCE_SIZE[0] * _REFERENCE_SIZE[1])
    try:
        per_image = bytes_per_image(model, layers, _REFERENCE_SIZE, device) * scale
    except (RuntimeError, ValueError):  # the layers need another size: count the image state alone
        per_image = _image_state_bytes(height, width)
    needed = per_image * group
    free = available_memory(device)
    if needed > free:
        raise RenderTooLargeError(
            f"size=({height}, {width}) needs about {needed / 2**30:.1f} GiB for {group} image(s) (images, optimiser "
            f"state and activations, estimated from a {_REFERENCE_SIZE[0]}-px probe), but {device} has "
            f"{free / 2**30:.1f} GiB free; use a smaller size"
        )


def choose_batch_size(
    model: nn.Module,
    layers: Sequence[str] | None,
    input_size,
    group: int,
    total: int,
    device: torch.device,
    memory_budget: int | None,
) -> int:
    """The largest multiple of ``group`` (at most ``total``) whose images fit ``memory_budget``."""
    budget = memory_budget if memory_budget is not None else default_memory_budget(device)
    per_image = max(1, bytes_per_image(model, layers, input_size, device))
    fits = max(1, budget // per_image)
    return max(group, min(total, (fits // group) * group))
