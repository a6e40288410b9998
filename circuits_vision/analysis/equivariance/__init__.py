"""Feature families: units that are rotated, hue-shifted, mirrored or rescaled copies of each other.

"Naturally Occurring Equivariance in Neural Networks" (Olah et al., Distill 2020) finds curve
detectors at many orientations, colour detectors at many hues and left/right mirror pairs by eye.
This subpackage finds them automatically, for every pair of units of a layer at once, and says how
sure it is:

- :mod:`.rotation` (``rotation.families``): rotate every unit's kernel by every angle (one batched
  bilinear resampling) and compare all pairs (one matrix product per angle). Kernels come from the
  expanded weights to an earlier layer (``source``; the RGB input when ``source=None``), from feature
  visualizations (``method="visualization"``) or from orientation tuning curves (``method="tuning"``).
- :mod:`.hue`: the input colour space rotated around the grey axis.
- :mod:`.reflection`: kernels flipped left/right.
- :mod:`.scale`: the same pattern resampled at growing size.
- :mod:`.null`: the baselines every decision is tested against, permutation p-values (their far tail a
  fitted generalized Pareto distribution) and Benjamini-Hochberg q-values.
- :mod:`.agreement`: families from weights, tuning curves and feature visualizations side by side.
- :mod:`.circuits`: equivariant circuits between two layers, against shuffled angles.

Every detector returns an :class:`EquivarianceResult` (``table() -> list[dict]``, readable ``str``).

How a family is decided (the default, with no per-model argument): a pair of units is linked when its
best similarity after transformation is significant against the structure null (kernels with their
spatial phases scrambled; q < 0.05 over all pairs of the layer); groups of linked units get angles by
angular synchronisation; a group is a family when its angles spread over at least a quarter turn
(narrower groups are look-alike units) and its members fit each other better at their angles than
at random ones (the shuffled-angle test, q < 0.05 over the candidate groups). For tuning curves the pair
null is the units of copies of the model with shuffled weights (their responses to arcs at every
orientation x 4 radii and to the arcs' tangent line), not phase surrogates of the units' own curves: a ReLU
gives units of random networks single bumps too, and a bump's phase surrogate is a bump, so that null found
families in random controls and random-weight InceptionV1 (``tuning_null="phase"`` keeps it for comparison).
``threshold=`` replaces the pair test by a fixed cosine, for comparison with older searches. Angles are degrees
counter-clockwise with y up, as in :mod:`circuits_vision.stimuli`; a member's angle is relative to
its family's reference member.

Which evidence to trust: the weights give exact, cheap answers; tuning curves need only forward
passes; feature visualizations are the noisiest (short renders of the planted curve family reach
~0.6 similarity after rotation).
"""

from __future__ import annotations

from circuits_vision.analysis.equivariance import (  # noqa: F401
    agreement,
    circuits,
    hue,
    null,
    reflection,
    rotation,
    scale,
    transforms,
)
from circuits_vision.analysis.equivariance._detect import (
    ALPHA,
    INVARIANT_THRESHOLD,
    MIN_MEMBERS,
    REFLECTION_THRESHOLD,
    families_from_kernels,
    families_from_tuning,
    orientation_error,
)
from circuits_vision.analysis.equivariance._grouping import circular_difference
from circuits_vision.analysis.equivariance._kernels import family_gather, unit_kernels
from circuits_vision.analysis.equivariance._mirror import reflection_pairs_from_kernels
from circuits_vision.analysis.equivariance._model import (
    earlier_layers,
    network_null_curves,
    orientation_surfaces,
    orientation_tuning,
    report,
)
from circuits_vision.analysis.equivariance._result import (
    EquivarianceReport,
    EquivarianceResult,
    Family,
    NullSummary,
    ReflectionPair,
    Settings,
)
from circuits_vision.analysis.equivariance.agreement import compare_families, weights_vs_tuning
from circuits_vision.analysis.equivariance.transforms import disk_mask, rotate

__all__ = [
    "ALPHA",
    "EquivarianceReport",
    "EquivarianceResult",
    "Family",
    "INVARIANT_THRESHOLD",
    "MIN_MEMBERS",
    "NullSummary",
    "REFLECTION_THRESHOLD",
    "ReflectionPair",
    "Settings",
    "agreement",
    "circuits",
    "circular_difference",
    "compare_families",
    "disk_mask",
    "earlier_layers",
    "families_from_kernels",
    "families_from_tuning",
    "family_gather",
    "hue",
    "hue_families",
    "null",
    "orientation_error",
    "network_null_curves",
    "orientation_surfaces",
    "orientation_tuning",
    "reflection",
    "reflection_pairs",
    "reflection_pairs_from_kernels",
    "report",
    "rotate",
    "rotation",
    "rotation_families",
    "scale",
    "scale_families",
    "transforms",
    "unit_kernels",
    "weights_vs_tuning",
]

rotation_families = rotation.families
hue_families = hue.families
scale_families = scale.families
reflection_pairs = reflection.pairs
