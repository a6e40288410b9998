"""Neurons against dictionary features: which basis of a layer is cleaner?

:func:`compare` puts a trained :class:`~circuits_vision.analysis.dictionary.Dictionary` beside the
layer's neurons:

- the polysemanticity scores of both (:mod:`circuits_vision.analysis.polysemanticity`, 0 = one
  pattern drives the unit; higher = several),
- for each scored feature, its *covering neurons*: the ``cover`` neurons with the largest absolute
  decoder weight in its direction (the neurons that carry most of it). The feature is *cleaner* than
  its covering neurons when its score is strictly below the lowest score among them (the cleanest
  covering neuron); features whose covering neurons were not all scored are left out of that count
  (``uncovered``),
- reconstruction error (fraction of variance unexplained), L0 sparsity and alive features (after
  resampling, and before it when the dictionary recorded it),
- on a model with planted directions (``truth`` ``[P, C]`` unit vectors, e.g.
  :func:`circuits_vision.models.superposition.superposition`), how well each basis recovers them:
  the mean over planted directions of the best cosine with a dictionary direction, and with a
  neuron (an axis: the largest absolute component).

    found = compare(sae, feature_scores={f: s, ...}, neuron_scores={u: s, ...})
    found.cleaner, found.table(), print(found)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from circuits_vision.analysis.dictionary import Dictionary
from circuits_vision.results import Result

__all__ = ["COVER", "DictionaryComparison", "compare", "covering_neurons", "planted_recovery"]

COVER = 3
"""Covering neurons per feature: its neurons with the largest absolute decoder weight."""


@dataclass
class DictionaryComparison(Result):
    """Neurons vs dictionary features of one layer (definitions in the module docstring).

    ``covering``: ``{feature: [neurons]}``; ``cleaner``: features scoring below their cleanest covering
    neuron; ``uncovered``: scored features with an unscored covering neuron; ``planted``: ``{"dictionary",
    "neurons"}`` mean best cosine with the planted directions, or None without them.
    """

    layer: str
    n_features: int
    alive: int
    alive_before_resampling: int | None
    fraction_unexplained: float
    l0: float
    feature_scores: dict[int, float] = field(default_factory=dict)
    neuron_scores: dict[int, float] = field(default_factory=dict)
    covering: dict[int, list[int]] = field(default_factory=dict)
    cleaner: list[int] = field(default_factory=list)
    uncovered: list[int] = field(default_factory=list)
    planted: dict[str, float] | None = None

    @property
    def compared(self) -> int:
        """Scored features whose covering neurons were all scored."""
        return len(self.covering) - len(self.uncovered)

    def table(self) -> list[dict]:
        """One row per scored feature: feature, score, covering neurons, their cleanest score, cleaner."""
        rows = []
        for feature, score in sorted(self.feature_scores.items()):
            neurons = self.covering.get(feature, [])
            known = [self.neuron_scores[n] for n in neurons if n in self.neuron_scores]
            rows.append(
                {
                    "feature": feature,
                    "score": round(score, 4),
                    "covering": neurons,
                    "cleanest_covering": round(min(known), 4) if len(known) == len(neurons) and known else None,
                    "cleaner": feature in self.cleaner,
                }
            )
        return rows

    def summary(self) -> dict:
        """The headline figures as one flat dict (what a report shows)."""
        return {
            "layer": self.layer,
            "features": self.n_features,
            "alive": self.alive,
            "alive_before_resampling": self.alive_before_resampling,
            "fraction_unexplained": round(self.fraction_unexplained, 4),
            "l0": round(self.l0, 3),
            "features_scored": len(self.feature_scores),
            "neurons_scored": len(self.neuron_scores),
            "compared": self.compared,
            "cleaner": len(self.cleaner),
            "mean_feature_score": _mean(self.feature_scores),
            "mean_neuron_score": _mean(self.neuron_scores),
            **({f"planted_{k}": round(v, 4) for k, v in self.planted.items()} if self.planted else {}),
        }

    def __str__(self) -> str:
        s = self.summary()
        before = (
            ""
            if s["alive_before_resampling"] is None
            else (f" ({s['alive_before_resampling']} on the sample of the first resampling round, before it)")
        )
        lines = [
            f"dictionary of {self.layer!r}: {s['alive']}/{s['features']} features alive{before}, "
            f"fraction of variance unexplained {s['fraction_unexplained']:.3f}, L0 {s['l0']:.2f}"
        ]
        if self.feature_scores:
            lines.append(
                f"polysemanticity: features mean {s['mean_feature_score']} ({s['features_scored']} scored), "
                f"neurons mean {s['mean_neuron_score']} ({s['neurons_scored']} scored)"
            )
            lines.append(
                f"{s['cleaner']} of {s['compared']} features are cleaner than the cleanest of their "
                f"{COVER} covering neurons"
            )
        if self.planted:
            lines.append(
                f"planted directions recovered (mean best cosine): dictionary {self.planted['dictionary']:.3f}, "
                f"neurons {self.planted['neurons']:.3f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DictionaryComparison({self.layer!r}, alive={self.alive}/{self.n_features}, "
            f"cleaner={len(self.cleaner)}/{self.compared})"
        )


def _mean(scores: Mapping[int, float]) -> float | None:
    return round(sum(scores.values()) / len(scores), 4) if scores else None


def covering_neurons(found: Dictionary, feature: int, cover: int = COVER) -> list[int]:
    """The ``cover`` neurons with the largest absolute decoder weight in ``feature``'s direction, largest first."""
    return [unit for unit, _ in found.strongest_neurons(feature, cover)]


def planted_recovery(found: Dictionary, truth: torch.Tensor) -> dict[str, float]:
    """``{"dictionary", "neurons"}``: mean over planted unit directions ``truth [P, C]`` of the best cosine
    with a dictionary direction, and with a neuron axis (the largest absolute component)."""
    truth = torch.as_tensor(truth, dtype=torch.float32)
    if truth.dim() != 2 or truth.shape[1] != found.directions.shape[1]:
        raise ValueError(f"truth must be [P, {found.directions.shape[1]}] planted directions, got {tuple(truth.shape)}")
    truth = torch.nn.functional.normalize(truth, dim=1)
    return {
        "dictionary": float((truth @ found.directions.float().T).max(1).values.mean()),
        "neurons": float(truth.abs().max(1).values.mean()),
    }


def compare(
    found: Dictionary,
    feature_scores: Mapping[int, float] | None = None,
    neuron_scores: Mapping[int, float] | None = None,
    *,
    cover: int = COVER,
    truth: torch.Tensor | None = None,
    quality: Mapping[str, float] | None = None,
) -> DictionaryComparison:
    """Compare ``found``'s features with its layer's neurons (module docstring).

    Args:
        feature_scores, neuron_scores: ``{index: polysemanticity score}`` (either may be partial or None).
        cover: covering neurons per feature.
        truth: planted directions ``[P, C]`` when the model has them.
        quality: ``{"fraction_unexplained", "l0", "dead"}`` measured elsewhere (e.g. on held-out images,
            :func:`~circuits_vision.analysis.dictionary.quality`); default the dictionary's training figures.
    """
    if cover < 1:
        raise ValueError(f"cover must be >= 1 neuron, got {cover}")
    feature_scores = {int(k): float(v) for k, v in (feature_scores or {}).items()}
    neuron_scores = {int(k): float(v) for k, v in (neuron_scores or {}).items()}
    bad = [f for f in feature_scores if not 0 <= f < found.n_features]
    if bad:
        raise ValueError(f"feature_scores names features {bad[:5]} outside 0..{found.n_features - 1}")
    q = dict(quality or {})
    dead = int(q.get("dead", found.dead))
    result = DictionaryComparison(
        layer=found.layer,
        n_features=found.n_features,
        alive=found.n_features - dead,
        alive_before_resampling=found.alive_before_resampling,
        fraction_unexplained=float(q.get("fraction_unexplained", found.fraction_unexplained)),
        l0=float(q.get("l0", found.l0)),
        feature_scores=feature_scores,
        neuron_scores=neuron_scores,
        planted=None if truth is None else planted_recovery(found, truth),
    )
    for feature, score in sorted(feature_scores.items()):
        neurons = covering_neurons(found, feature, cover)
        result.covering[feature] = neurons
        if any(n not in neuron_scores for n in neurons):
            result.uncovered.append(feature)
        elif score < min(neuron_scores[n] for n in neurons):
            result.cleaner.append(feature)
    return result
