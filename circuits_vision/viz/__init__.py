"""circuits_vision.viz: display only (grids, heatmaps, plots); the core never imports it.

- :func:`render_grid`: a render result as a labelled grid picture, shown in a notebook or saved.
"""

from circuits_vision.viz.renders import render_grid

__all__ = ["render_grid"]
