"""``save(thing, path)``: images to PNG/JPEG, arrays to ``.npy``, everything JSON-able to ``.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from circuits_vision.compat.lucent.misc.io._arrays import encode

__all__ = ["save"]


def save(thing, path: str | os.PathLike, domain=(0, 1), quality: int = 90) -> Path:
    """Write ``thing`` to ``path``, choosing the format by the suffix.

    ``.png`` / ``.jpg`` / ``.jpeg``: an image ``[H, W(, C)]``, or ``[N, H, W, C]`` laid out side by
    side (values in ``domain``); ``.npy``: a numpy array; ``.json``: lists, dicts, numbers, strings.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        array = np.asarray(thing)
        if array.ndim == 4:
            array = np.concatenate(list(array), axis=1)
        path.write_bytes(encode(array, fmt=suffix[1:], domain=domain, quality=quality))
    elif suffix == ".npy":
        np.save(path, np.asarray(thing))
    elif suffix == ".json":
        path.write_text(json.dumps(thing, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    else:
        raise ValueError(f"save() writes .png, .jpg, .jpeg, .npy or .json files, got {path.name!r}")
    return path
