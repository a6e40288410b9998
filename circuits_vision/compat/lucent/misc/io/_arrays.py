"""numpy image arrays -> encoded image bytes (shared by showing and saving)."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["collapse_channels", "to_uint8", "encode"]


def collapse_channels(array: np.ndarray) -> np.ndarray:
    """``[..., C]`` with C not 1, 3 or 4 -> ``[..., 3]``: channel ``k`` gets hue ``k / C``; pixels
    are the activation-weighted mean colour, scaled by the strongest channel."""
    channels = array.shape[-1]
    hues = np.arange(channels) / channels
    # hue -> RGB on the colour wheel (full saturation and value)
    wheel = np.stack([np.clip(np.abs(((hues * 6 + k) % 6) - 3) - 1, 0, 1) for k in (0, 4, 2)], axis=-1)
    weights = np.clip(array, 0, None)
    total = weights.sum(-1, keepdims=True)
    colour = (weights @ wheel) / np.where(total > 0, total, 1)
    strength = weights.max(-1, keepdims=True)
    return colour * strength / max(float(strength.max()), 1e-12)


def to_uint8(array, domain=(0, 1)) -> np.ndarray:
    """An image ``[H, W]`` or ``[H, W, C]`` (C in 1, 3, 4) as uint8, mapping ``domain`` to 0..255
    (``domain=None``: the array's own min..max)."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image is [H, W] or [H, W, C] with C in 1, 3, 4; got shape {array.shape}")
    low, high = (float(array.min()), float(array.max())) if domain is None else (float(domain[0]), float(domain[1]))
    scaled = (array - low) / (high - low if high > low else 1.0)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def encode(array, fmt: str = "png", domain=(0, 1), quality: int = 90) -> bytes:
    """One image array encoded as ``fmt`` ("png" or "jpeg")."""
    from PIL import Image

    fmt = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    picture = Image.fromarray(to_uint8(array, domain))
    if fmt == "jpeg" and picture.mode == "RGBA":
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {}))
    return buffer.getvalue()
