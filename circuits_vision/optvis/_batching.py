"""Automatic batch size: as many images per optimisation batch as fit a memory budget."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from circuits_vision import hooks

__all__ = ["choose_batch_size", "bytes_per_image", "default_memory_budget"]

# activation gradients and temporaries during backward come on top of the saved activations
_BACKWARD_FACTOR = 2.0
_CPU_BUDGET_CAP = 4 * 2**30


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


def bytes_per_image(model: nn.Module, layers: Sequence[str] | None, input_size: int, device: torch.device) -> int:
    """Bytes autograd saves for one image's forward to ``layers`` (weights excluded), measured by a
    probe forward with ``saved_tensors_hooks``."""
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

    x = torch.zeros(1, 3, input_size, input_size, device=device, requires_grad=True)
    names = list(layers) if layers is not None else hooks.layer_names(model)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        if names:
            hooks.run_with_cache(model, x, names, truncate=layers is not None)
    image_state = 3 * input_size * input_size * 4 * 8  # params, Adam moments, grads, image copies
    return int(total * _BACKWARD_FACTOR) + image_state


def choose_batch_size(
    model: nn.Module,
    layers: Sequence[str] | None,
    input_size: int,
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
