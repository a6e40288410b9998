"""Weight pictures as arrays, after "Visualizing Weights" (Voss et al., Distill 2021).

All functions return numpy arrays (RGB in [0, 1], ``[..., kh, kw, 3]``) or plain data; turning
them into images or figures is :mod:`circuits_vision.viz.weights`' job.

- :func:`rgb_kernels`: first-layer weights (3 input channels) as RGB pictures, 0 at mid grey.
- :func:`heatmap`: any weight slice as a red (excitatory) / blue (inhibitory) map on white.
- :func:`strongest_inputs` / :func:`strongest_outputs`: units ranked by the L2 norm of their expanded weights.
- :func:`nmf_factors`: a unit's input weights reduced to 3 spatial factors shown as RGB.
- :func:`circuit_graph`: the top-k edges between two layers as a JSON-ready graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch


def _numpy(weights) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        return weights.detach().cpu().double().numpy()
    return np.asarray(weights, dtype=np.float64)


def shared_scale(*weights) -> float:
    """The largest absolute weight across all arguments (1.0 when all are zero): one colour scale for all."""
    largest = max((float(np.abs(_numpy(w)).max()) for w in weights if _numpy(w).size), default=0.0)
    return largest if largest > 0 else 1.0


def rgb_kernels(weights, scale: float | None = None) -> np.ndarray:
    """First-layer kernels ``[C_out, 3, kh, kw]`` -> RGB pictures ``[C_out, kh, kw, 3]`` in [0, 1].

    ``0.5 + 0.5 * w / scale`` per colour channel: zero weight is mid grey, a weight of ``+scale`` on the
    red input channel is pure red contribution. ``scale`` defaults to the largest absolute weight (shared).
    """
    w = _numpy(weights)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"rgb_kernels expects [C_out, 3, kh, kw] weights of a layer reading RGB, got shape {w.shape}")
    scale = shared_scale(w) if scale is None else float(scale)
    return np.clip(0.5 + 0.5 * w.transpose(0, 2, 3, 1) / scale, 0.0, 1.0)


def heatmap(weights, scale: float | None = None) -> np.ndarray:
    """Weights ``[..., kh, kw]`` -> ``[..., kh, kw, 3]``: red where positive, blue where negative, white at 0.

    Intensity ``a = min(|w| / scale, 1)``: positive ``(1, 1 - a, 1 - a)``, negative ``(1 - a, 1 - a, 1)``.
    Pass the same ``scale`` (e.g. :func:`shared_scale` of all slices) to compare slices; default: this
    array's largest absolute weight.
    """
    w = _numpy(weights)
    scale = shared_scale(w) if scale is None else float(scale)
    strength = np.clip(np.abs(w) / scale, 0.0, 1.0)
    rgb = np.ones(w.shape + (3,))
    positive, negative = w > 0, w < 0
    rgb[..., 1] -= strength  # green fades for both signs
    rgb[..., 2] -= np.where(positive, strength, 0.0)
    rgb[..., 0] -= np.where(negative, strength, 0.0)
    return rgb


def _ranked(norms: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-norms, kind="stable")[: k if k is not None else len(norms)]
    return order, norms[order]


def strongest_inputs(expanded, unit: int, k: int | None = 8) -> tuple[np.ndarray, np.ndarray]:
    """Source units with the largest L2 norm of ``expanded[unit]`` (``expanded``: ``[C_target, C_source, kh, kw]``).

    Returns ``(source_units [k], norms [k])``, strongest first (ties: lower index first).
    """
    e = _numpy(expanded)
    _check_unit(e.shape[0], unit, "target")
    return _ranked(np.sqrt((e[unit] ** 2).reshape(e.shape[1], -1).sum(1)), k)


def strongest_outputs(expanded, unit: int, k: int | None = 8) -> tuple[np.ndarray, np.ndarray]:
    """Target units most affected by source ``unit``: largest L2 norm of ``expanded[:, unit]``."""
    e = _numpy(expanded)
    _check_unit(e.shape[1], unit, "source")
    return _ranked(np.sqrt((e[:, unit] ** 2).reshape(e.shape[0], -1).sum(1)), k)


def _check_unit(count: int, unit: int, role: str) -> None:
    if not 0 <= unit < count:
        raise IndexError(
            f"{role} unit {unit} out of range: the expanded weights have {count} {role} units (0..{count - 1})"
        )


@dataclass
class NMFFactors:
    """A unit's input weights ``[C_source, kh, kw]`` as ``n`` non-negative spatial factors.

    ``image [kh, kw, n]``: the factors' spatial maps, each scaled to [0, 1] (``n=3``: an RGB picture);
    ``loadings [n, 2*C_source]``: how much each factor uses each source channel's positive part
    (first ``C_source`` columns) and negative part (last ``C_source``); ``relative_error``: the
    Frobenius error of the reconstruction relative to the weights' norm.
    """

    image: np.ndarray
    loadings: np.ndarray
    relative_error: float


def nmf_factors(unit_weights, n_factors: int = 3, seed: int = 0, max_iter: int = 500) -> NMFFactors:
    """Factor ``[C_source, kh, kw]`` weights into ``n_factors`` spatial maps (Visualizing Weights' trick).

    NMF needs non-negative data, so the weights are split into ``relu(w)`` and ``relu(-w)`` as separate
    "channels" (``[kh*kw, 2*C_source]``, pixels by signed channels) and factored as
    ``pixels x factors @ factors x signed channels`` with scikit-learn's NMF (``random_state=seed``).
    """
    from sklearn.decomposition import NMF

    w = _numpy(unit_weights)
    if w.ndim != 3:
        raise ValueError(f"nmf_factors expects one unit's weights [C_source, kh, kw], got shape {w.shape}")
    c, kh, kw = w.shape
    pixels = w.reshape(c, kh * kw).T
    data = np.concatenate([np.maximum(pixels, 0), np.maximum(-pixels, 0)], axis=1)  # [kh*kw, 2C]
    if not data.any():
        raise ValueError("nmf_factors: all weights are zero")
    model = NMF(n_components=n_factors, init="nndsvda", random_state=seed, max_iter=max_iter)
    maps = model.fit_transform(data)  # [kh*kw, n]
    loadings = model.components_  # [n, 2C]
    error = float(np.linalg.norm(data - maps @ loadings) / np.linalg.norm(data))
    peak = maps.max(axis=0, keepdims=True)
    image = (maps / np.where(peak > 0, peak, 1.0)).reshape(kh, kw, n_factors)
    return NMFFactors(image, loadings, error)


def circuit_graph(
    expanded,
    source_layer: str,
    target_layer: str,
    k: int = 20,
    *,
    target_units=None,
    source_units=None,
) -> dict:
    """The ``k`` strongest edges between two layers, as ``{"nodes": [...], "edges": [...]}``.

    An edge's ``weight`` is the sum of its expanded weights over the kernel (its net effect on a
    uniform input, signed); ``l2`` is their L2 norm, which ranks the edges (strongest first, ties by
    target then source unit). Nodes are ``{"id": "layer:unit", "layer", "unit"}``; edges
    ``{"source": id, "target": id, "weight", "l2"}``. ``target_units`` / ``source_units`` restrict the
    candidates (``expanded`` is ``[C_target, C_source, kh, kw]`` of those layers).
    """
    e = _numpy(expanded)
    targets = np.arange(e.shape[0]) if target_units is None else np.asarray(list(target_units))
    sources = np.arange(e.shape[1]) if source_units is None else np.asarray(list(source_units))
    block = e[targets][:, sources]
    l2 = np.sqrt((block**2).reshape(len(targets), len(sources), -1).sum(-1))
    total = block.reshape(len(targets), len(sources), -1).sum(-1)
    flat = np.argsort(-l2, axis=None, kind="stable")[:k]
    edges, nodes = [], {}
    for index in flat:
        t, s = np.unravel_index(index, l2.shape)
        source_id, target_id = f"{source_layer}:{int(sources[s])}", f"{target_layer}:{int(targets[t])}"
        nodes.setdefault(source_id, {"id": source_id, "layer": source_layer, "unit": int(sources[s])})
        nodes.setdefault(target_id, {"id": target_id, "layer": target_layer, "unit": int(targets[t])})
        edges.append({"source": source_id, "target": target_id, "weight": float(total[t, s]), "l2": float(l2[t, s])})
    return {"nodes": list(nodes.values()), "edges": edges}


def circuit_graph_json(graph: dict) -> str:
    """:func:`circuit_graph`'s result as JSON text."""
    return json.dumps(graph, indent=1)
