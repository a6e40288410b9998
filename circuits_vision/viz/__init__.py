"""circuits_vision.viz: display only (grids, heatmaps, plots); the core never imports it.

Every function returns a picture (a matplotlib ``Figure`` or a PIL image) and never shows or saves it.

- :mod:`.renders`: :func:`render_grid`, a render result as a labelled grid picture.
- :mod:`.weights`: zoomed kernels and small multiples (:func:`small_multiples`,
  :func:`strongest_inputs_figure`, :func:`first_layer_figure`, :func:`nmf_figure`).
- :mod:`.families`: feature families and their circuits (:func:`family_figure`, ...).
- :mod:`.tuning`: tuning curves (:func:`radial_tuning_plot`, :func:`tuning_curve_grid`).
- :mod:`.branches`: branch specialization (:func:`plot_report`, :func:`plot_routing`).
- :mod:`.curve_circuits`: the Curve Circuits experiments' figures.
"""

from circuits_vision.viz import branches, curve_circuits, families, renders, tuning, weights
from circuits_vision.viz.branches import plot_report, plot_routing
from circuits_vision.viz.curve_circuits import (
    echo_survey_figure,
    echo_tuning_figure,
    replacement_figure,
    weight_vs_orientation_figure,
)
from circuits_vision.viz.families import echo_figure, family_figure, pattern_figure, similarity_figure
from circuits_vision.viz.renders import render_grid
from circuits_vision.viz.tuning import radial_tuning_plot, tuning_curve_grid
from circuits_vision.viz.weights import first_layer_figure, nmf_figure, small_multiples, strongest_inputs_figure

__all__ = [
    "branches",
    "curve_circuits",
    "echo_figure",
    "echo_survey_figure",
    "echo_tuning_figure",
    "families",
    "family_figure",
    "first_layer_figure",
    "nmf_figure",
    "pattern_figure",
    "plot_report",
    "plot_routing",
    "radial_tuning_plot",
    "render_grid",
    "renders",
    "replacement_figure",
    "similarity_figure",
    "small_multiples",
    "strongest_inputs_figure",
    "tuning",
    "tuning_curve_grid",
    "weight_vs_orientation_figure",
    "weights",
]
