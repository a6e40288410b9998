"""Synthetic stimuli drawn as tensors: curves, angles, lines, edges, circles, gratings, high-low patterns, blobs.

All drawings are anti-aliased signed-distance renderings, batched over parameter vectors and drawn
on the requested device; every function returns ``[N, 3, size, size]`` in [0, 1], in ``dtype`` (float32 by
default; float16 and bfloat16 drawings are computed in float32 and cast; other dtypes raise TypeError).
Angles are degrees counter-clockwise from image right with y up, lengths are pixels.
"""

from .geometry import angles, circles, curves, edges, lines, rounded_corner_distance
from .grid import parameter_grid
from .patterns import blobs, gratings, high_low, solid

__all__ = [
    "angles",
    "blobs",
    "circles",
    "curves",
    "edges",
    "gratings",
    "high_low",
    "lines",
    "parameter_grid",
    "rounded_corner_distance",
    "solid",
]
