"""Polysemanticity: is a unit one thing or several?

For each unit, its ``k`` top activating images are found (:func:`dataset_examples.top_activating`:
spatial max, streaming, memory bounded by ``units x k`` images). For each example, the *previous*
layer's activation pattern that drives the unit at its peak is read: gradient x activation of the
unit at that position with respect to the previous layer, summed over positions per channel
(``[C_prev]``; which input units it was built from, there). For a first layer (``previous`` None) the
crop around the peak, pooled to 4x4 RGB cells, is used. These vectors, L2-normalised (a pattern,
not a strength), are clustered with k-means for 2..``max_clusters``
clusters (scikit-learn ``KMeans``, ``random_state=seed``, so the result is deterministic), and the
clustering with the best mean silhouette is kept.

Definitions (per unit):

- ``separation``: that best mean silhouette, in [-1, 1]: near 1 when the examples fall into tight,
  far-apart groups of input patterns, near 0 when they are one blob cut arbitrarily.
- ``n_clusters``: the chosen cluster count when ``separation >= min_separation`` (default 0.5), else 1.
- ``cluster_entropy``: entropy in bits of the kept clusters' sizes (1 bit for two equal groups; 0
  for one cluster).
- ``score`` (the polysemanticity score) ``= cluster_entropy * separation``: 0 for one pattern (or
  groups too close to pass ``min_separation``), about 1 for two equally common, clearly different
  patterns, at most ``log2(max_clusters)``.
- ``label_entropy``: entropy in bits of the top examples over the image labels (scene classes by
  default), when labels are known: how many stimulus categories drive the unit.

A unit with fewer than 4 positive examples gets ``score`` 0 and ``n_clusters`` equal to its number of
positive examples (0 for a unit that never fires), with a note.

    found = polysemanticity(model, "mixed3b", "mixed3a", units=range(32))
    found.table()      # [{"unit", "score", "n_clusters", "separation", "label_entropy", ...}, ...]
    found.units[0].clusters   # [{"size", "examples": stream indices, "labels"}, ...]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from circuits_vision.hooks import check_channel, layer_shape, model_input_size
from circuits_vision.results import Result

__all__ = ["DEFAULT_SCENES", "Polysemanticity", "UnitPolysemanticity", "polysemanticity"]

DEFAULT_SCENES = 2048
"""Scenes drawn when no data is given (the shipped model's training distribution, the examples seed)."""
PIXEL_GRID = 4  # first layer: the crop is pooled to 4x4 RGB cells (48 numbers) before clustering
MIN_EXAMPLES = 4


@dataclass
class UnitPolysemanticity:
    """One unit's example clusters and score (definitions in the module docstring).

    ``examples``: stream indices of its top images, highest first; ``values``: their activations;
    ``clusters``: ``[{"size", "examples", "labels"}]`` largest first (``examples`` stream indices,
    ``labels`` their label names when known).
    """

    unit: int
    score: float
    n_clusters: int
    separation: float
    cluster_entropy: float
    label_entropy: float | None
    examples: list[int]
    values: list[float]
    clusters: list[dict]
    note: str = ""

    def row(self) -> dict:
        return {
            "unit": self.unit,
            "score": round(self.score, 4),
            "n_clusters": self.n_clusters,
            "separation": round(self.separation, 4),
            "cluster_entropy": round(self.cluster_entropy, 4),
            "label_entropy": None if self.label_entropy is None else round(self.label_entropy, 4),
            "cluster_sizes": [c["size"] for c in self.clusters],
            "note": self.note,
        }


@dataclass
class Polysemanticity(Result):
    """Polysemanticity of ``units`` of ``layer``, clustered by ``previous``'s activations (None: pixels)."""

    layer: str
    previous: str | None
    k: int
    n_images: int
    units: list[UnitPolysemanticity] = field(default_factory=list)

    def unit(self, unit: int) -> UnitPolysemanticity:
        for found in self.units:
            if found.unit == unit:
                return found
        raise KeyError(f"unit {unit} of {self.layer!r} was not measured; measured: {[u.unit for u in self.units]}")

    def table(self) -> list[dict]:
        """One row per unit: unit, score, n_clusters, separation, cluster_entropy, label_entropy, cluster_sizes, note."""
        return [u.row() for u in self.units]

    def __str__(self) -> str:
        source = repr(self.previous) if self.previous else "input pixels"
        lines = [
            f"polysemanticity of {self.layer!r} ({len(self.units)} units, top {self.k} of {self.n_images} "
            f"images, clustered by {source})",
            f"{'unit':>6} {'score':>6} {'clusters':>8} {'separation':>10} {'label H':>7}  sizes",
        ]
        for r in sorted(self.table(), key=lambda r: -r["score"]):
            label = "-" if r["label_entropy"] is None else f"{r['label_entropy']:.2f}"
            lines.append(
                f"{r['unit']:>6} {r['score']:>6.2f} {r['n_clusters']:>8} {r['separation']:>10.2f} "
                f"{label:>7}  {r['cluster_sizes']}" + (f"  ({r['note']})" if r["note"] else "")
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        top = max(self.units, key=lambda u: u.score, default=None)
        best = f", most polysemantic {top.unit} ({top.score:.2f})" if top is not None else ""
        return f"Polysemanticity(layer={self.layer!r}, units={len(self.units)}{best})"


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0"


def _default_data(model: nn.Module, labels_out: dict) -> Iterable[torch.Tensor]:
    from circuits_vision.models.train_shapes import EXAMPLES_SEED_OFFSET
    from circuits_vision.stimuli.scenes import scene_batches

    size = int(min(max(int(model_input_size(model, default=64)), 16), 128))
    return scene_batches(DEFAULT_SCENES, 0 + EXAMPLES_SEED_OFFSET, size=size, labels=labels_out)


def _peak_target(layer: str, unit: int, rows: torch.Tensor, cols: torch.Tensor):
    """The unit at each image's own peak: ``out [n, C, h, w]`` -> ``out[i, unit, rows[i], cols[i]]`` [n]."""
    from circuits_vision.analysis.attribution import Target

    def reduce(out: torch.Tensor) -> torch.Tensor:
        return out[torch.arange(out.shape[0], device=out.device), unit, rows.to(out.device), cols.to(out.device)]

    return Target(layer, reduce, f"{layer}:{unit} at its peak")


def _features(model, layer, previous, found, row: int, unit: int, live: torch.Tensor) -> torch.Tensor:
    """``[n, F]`` what drives ``unit`` at each kept example's peak: the previous layer's gradient x
    activation per channel (summed over positions), or for a first layer the crop pooled to a 4x4 grid."""
    if previous is None:
        crops = found.crops[row][live]  # [n, 3, c, c]
        return torch.nn.functional.adaptive_avg_pool2d(crops, PIXEL_GRID).flatten(1)
    from circuits_vision.analysis.attribution import attribute

    images = found.images[row][live]
    rows, cols = found.positions[row][live].unbind(-1)
    attribution = attribute(
        model, images, previous, _peak_target(layer, unit, rows, cols), batch_size=max(1, len(images))
    )  # one chunk: the target's rows are these images
    return attribution.channel.float().cpu()


def _cluster(x: np.ndarray, max_clusters: int, seed: int) -> tuple[np.ndarray, float]:
    """Best k-means clustering of rows ``x`` [n, F] for 2..max_clusters by mean silhouette -> (labels, silhouette)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    distinct = len(np.unique(np.round(x, 6), axis=0))
    best_labels, best = np.zeros(len(x), dtype=int), -1.0
    for c in range(2, min(max_clusters, distinct, len(x) - 1) + 1):
        labels = KMeans(n_clusters=c, n_init=10, random_state=seed).fit_predict(x)
        if len(np.unique(labels)) < 2:
            continue
        score = float(silhouette_score(x, labels))
        if score > best + 1e-9:
            best_labels, best = labels, score
    return best_labels, (best if best > -1.0 else 0.0)


def polysemanticity(
    model: nn.Module,
    layer: str,
    previous: str | None,
    data: Iterable[torch.Tensor] | None = None,
    *,
    labels: Sequence[int] | torch.Tensor | None = None,
    label_names: Sequence[str] | None = None,
    units: Iterable[int] | None = None,
    k: int = 32,
    max_clusters: int = 4,
    min_separation: float = 0.5,
    seed: int = 0,
) -> Polysemanticity:
    """Example clusters and the polysemanticity score of ``units`` of ``layer`` (see the module docstring).

    Args:
        previous: the layer whose activation pattern at each example's peak is clustered (the layer
            feeding ``layer``); None clusters the pixels around the peak (for a first layer).
        data: image batches ``[N, 3, H, W]`` in [0, 1]; default :data:`DEFAULT_SCENES` scenes of the
            shipped model's training distribution (seed ``EXAMPLES_SEED_OFFSET``), labelled by shape class.
        labels: one class index per image of ``data``, in stream order (with ``label_names`` naming them),
            for ``label_entropy``; ignored for the default scenes, which bring their own.
        k: top examples per unit; max_clusters: most clusters tried (>= 2); seed: k-means ``random_state``.
    """
    if k < MIN_EXAMPLES:
        raise ValueError(f"k must be >= {MIN_EXAMPLES} examples to cluster, got {k}")
    if max_clusters < 2:
        raise ValueError(f"max_clusters must be >= 2, got {max_clusters}")
    if not 0.0 <= min_separation <= 1.0:
        raise ValueError(f"min_separation is a silhouette in [0, 1], got {min_separation}")
    channels = int(layer_shape(model, layer)[0])
    units = list(range(channels)) if units is None else [int(u) for u in units]
    if not units:
        raise ValueError("units is empty; pass unit indices of the layer, or None for all")
    for unit in units:
        check_channel(model, layer, unit)
    if previous is not None:
        layer_shape(model, previous)  # unknown layer names fail here, with close names
    drawn: dict[str, list] = {}
    if data is None:
        from circuits_vision.stimuli.scenes import SHAPE_CLASSES

        data, label_names = _default_data(model, drawn), SHAPE_CLASSES
    from circuits_vision.analysis.dataset_examples import top_activating

    found = top_activating(model, layer, data, units=units, k=k, keep_images=previous is not None, progress=False)
    values, indices, seen = found.values, found.indices, found.n_images
    if drawn:
        labels = drawn["shape"]
    if labels is not None:
        labels = np.asarray(labels.tolist() if isinstance(labels, torch.Tensor) else list(labels), dtype=np.int64)
        if len(labels) != seen:
            raise ValueError(
                f"labels has {len(labels)} entries but data yielded {seen} images; give one label per image"
            )

    def name(i: int) -> str:
        label = int(labels[i])
        return label_names[label] if label_names is not None and 0 <= label < len(label_names) else str(label)

    result = Polysemanticity(layer=layer, previous=previous, k=k, n_images=seen)
    for row, unit in enumerate(units):
        live = (indices[row] >= 0) & (values[row] > 0)
        index = indices[row][live].tolist()
        vals = [float(v) for v in values[row][live]]
        label_entropy = None
        if labels is not None and index:
            label_entropy = _entropy(np.bincount(labels[index]).astype(float))
        if len(index) < MIN_EXAMPLES:
            result.units.append(
                UnitPolysemanticity(
                    unit,
                    0.0,
                    len(index),
                    0.0,
                    0.0,
                    label_entropy,
                    index,
                    vals,
                    [{"size": 1, "examples": [i], "labels": [name(i)] if labels is not None else []} for i in index],
                    note=f"only {len(index)} positive examples" if index else "never active on these images",
                )
            )
            continue
        x = _features(model, layer, previous, found, row, unit, live).double().numpy()
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        best, separation = _cluster(x, max_clusters, seed)
        assignment = best if separation >= min_separation else np.zeros(len(index), dtype=int)
        sizes = np.bincount(assignment)
        order = np.argsort(-sizes, kind="stable")
        clusters = [
            {
                "size": int(sizes[c]),
                "examples": [index[j] for j in np.flatnonzero(assignment == c)],
                "labels": [name(index[j]) for j in np.flatnonzero(assignment == c)] if labels is not None else [],
            }
            for c in order
            if sizes[c] > 0
        ]
        cluster_entropy = _entropy(sizes.astype(float))
        score = cluster_entropy * max(separation, 0.0)
        result.units.append(
            UnitPolysemanticity(
                unit,
                float(score),
                len(clusters),
                float(separation),
                float(cluster_entropy),
                label_entropy,
                index,
                vals,
                clusters,
            )
        )
    return result
