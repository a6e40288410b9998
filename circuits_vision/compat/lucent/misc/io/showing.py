"""lucent's ``misc.io.showing``: display numpy arrays as images in a notebook (HTML)."""

from __future__ import annotations

import base64
import html

import numpy as np

from circuits_vision.compat.lucent.misc.io._arrays import collapse_channels, encode

__all__ = ["show", "image", "images"]


def _display_html(markup: str) -> None:
    try:
        import IPython.display
    except ImportError as error:
        raise ImportError(
            "show() displays images in a Jupyter notebook and needs IPython: pip install ipython"
        ) from error
    IPython.display.display(IPython.display.HTML(markup))


def _image_html(array, width=None, domain=None, fmt: str = "png") -> str:
    data = base64.b64encode(encode(array, fmt=fmt, domain=domain)).decode("ascii")
    style = "image-rendering: pixelated;" + (f" width: {int(width)}px;" if width is not None else "")
    return f'<img src="data:image/{fmt.lower()};base64,{data}" style="{style}">'


def image(array, domain=None, width=None, fmt: str = "png") -> None:
    """Display one image ``[H, W]`` or ``[H, W, C]``; ``domain`` maps to black..white (None: min..max)."""
    _display_html(_image_html(array, width=width, domain=domain, fmt=fmt))


def images(arrays, labels=None, domain=None, width=None) -> None:
    """Display images side by side, each under its label (default: its index)."""
    cells = []
    for i, array in enumerate(arrays):
        label = html.escape(str(labels[i] if labels is not None else i))
        cells.append(
            f'<div style="margin-right:10px; margin-top: 4px;">{label} <br/>{_image_html(array, width, domain)}</div>'
        )
    _display_html('<div style="display: flex; flex-direction: row;">' + "".join(cells) + "</div>")


def _collapse_if_needed(array: np.ndarray) -> np.ndarray:
    return array if array.shape[-1] in (1, 3, 4) else collapse_channels(array)


def show(thing, domain=(0, 1), **kwargs) -> None:
    """Display an array by its rank: ``[N, H, W, C]`` as a row of images, ``[H, W(, C)]`` as one,
    a list of ``[H, W, C]`` arrays as a row. Channels other than 1, 3, 4 are collapsed to RGB by
    hue. ``domain=None`` scales each image from its min to its max; ``width=``/``labels=`` as
    :func:`image` / :func:`images`."""
    if isinstance(thing, np.ndarray):
        if thing.ndim in (3, 4):
            thing = _collapse_if_needed(thing)
        if thing.ndim == 4:
            images(thing, domain=domain, **kwargs)
        elif thing.ndim in (2, 3):
            image(thing, domain=domain, **kwargs)
        else:
            print(repr(thing))
    elif isinstance(thing, (list, tuple)):
        arrays = [_collapse_if_needed(t) if isinstance(t, np.ndarray) and t.ndim == 3 else t for t in thing]
        images(arrays, domain=domain, **kwargs)
    else:
        raise TypeError(f"show() takes a numpy array or a list of them, got {type(thing).__name__}")
