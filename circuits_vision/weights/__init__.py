"""circuits_vision.weights: expanded weights and weight pictures ("Visualizing Weights", Distill 2021).

- :func:`expanded_weights` / :func:`expand`: the linear map between any two layers of a conv net as one
  kernel ``[C_target, C_source, kh, kw]`` (ReLU -> identity, max pool -> average pool, ...), composed
  with the ``compose_kernels`` op.
- :func:`linearized`: the model with those approximations; :mod:`~circuits_vision.weights.gradient`
  computes the same weights the slow way, as gradients in it (the definition the fast path is held to).
- :mod:`~circuits_vision.weights.pictures`: heat maps, RGB first-layer kernels, strongest inputs/outputs,
  NMF factors and circuit graphs, as arrays (images: :mod:`circuits_vision.viz.weights`).
"""

from circuits_vision.weights.expanded import Expansion, expand, expanded_weights
from circuits_vision.weights.linearize import linearized
from circuits_vision.weights.pictures import (
    NMFFactors,
    circuit_graph,
    heatmap,
    nmf_factors,
    rgb_kernels,
    shared_scale,
    strongest_inputs,
    strongest_outputs,
)

__all__ = [
    "Expansion",
    "NMFFactors",
    "circuit_graph",
    "expand",
    "expanded_weights",
    "heatmap",
    "linearized",
    "nmf_factors",
    "rgb_kernels",
    "shared_scale",
    "strongest_inputs",
    "strongest_outputs",
]
