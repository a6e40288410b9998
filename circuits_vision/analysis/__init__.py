"""circuits_vision.analysis: what units detect, how they group, and the circuits between them.

Every result follows one contract (:class:`circuits_vision.results.Result`): ``table()`` rows, a
readable ``print(result)``, a short ``repr``.

- :mod:`.tuning`: tuning curves to drawn stimuli and curve detectors (:func:`tuning_curves`,
  :func:`find_curve_detectors`); :mod:`.unit_categories`: colour and orientation categories.
- :mod:`.equivariance` (a subpackage): rotation, hue and reflection families
  (``equivariance.report``, ``equivariance.rotation_families``).
- :mod:`.motifs`: equivariant circuits, curve patterns, union units, echo experiments.
- :mod:`.branches`: branch specialization (``branches.report``, ``branches.specialization``).
- :mod:`.attribution`: which units of a layer, where, an image uses for a target (:func:`attribute`,
  :func:`between`); :mod:`.groups` (:func:`neuron_groups`) and :mod:`.semantic_dictionary`
  (:func:`semantic_dictionary`): the Building Blocks views.
- :mod:`.dictionary` (:func:`.dictionary.train`): a sparse autoencoder's dictionary features of a
  layer (superposition), with dead-feature resampling; :mod:`.dictionary_comparison`
  (:func:`.dictionary_comparison.compare`): neurons against those features.
- :mod:`.polysemanticity` (:func:`.polysemanticity.polysemanticity`): is a unit one thing or several
  (example clusters and a score).
- :mod:`.dataset_examples` (:func:`top_activating`): the images that excite units most.
- :mod:`.ablation` (:func:`ablate`) and :mod:`.curve_circuits`, :mod:`.curve_experiments`: accuracy
  deltas of unit sets, and the Curve Circuits experiments.
"""

from circuits_vision.analysis import (
    ablation,
    attribution,
    branches,
    curve_circuits,
    curve_experiments,
    dataset_examples,
    dictionary,
    dictionary_comparison,
    equivariance,
    groups,
    motifs,
    polysemanticity,
    tuning,
    unit_categories,
)
from circuits_vision.analysis.ablation import AblationReport, ablate
from circuits_vision.analysis.attribution import Attribution, Target, UnitAttribution, attribute, between
from circuits_vision.analysis.branches import BranchReport
from circuits_vision.analysis.curve_circuits import CurveCircuit
from circuits_vision.analysis.dataset_examples import DatasetExamples, top_activating
from circuits_vision.analysis.dictionary import Dictionary
from circuits_vision.analysis.dictionary_comparison import DictionaryComparison
from circuits_vision.analysis.groups import NeuronGroups, neuron_groups
from circuits_vision.analysis.polysemanticity import Polysemanticity

# cv.analysis.semantic_dictionary is the function (its module is analysis/semantic_dictionary.py)
from circuits_vision.analysis.semantic_dictionary import SemanticDictionary, semantic_dictionary
from circuits_vision.analysis.tuning import CurveDetectorSearch, TuningCurves, find_curve_detectors, tuning_curves

__all__ = [
    "AblationReport",
    "Attribution",
    "BranchReport",
    "CurveCircuit",
    "CurveDetectorSearch",
    "DatasetExamples",
    "Dictionary",
    "DictionaryComparison",
    "NeuronGroups",
    "Polysemanticity",
    "SemanticDictionary",
    "Target",
    "TuningCurves",
    "UnitAttribution",
    "ablate",
    "ablation",
    "attribute",
    "attribution",
    "between",
    "branches",
    "curve_circuits",
    "curve_experiments",
    "dataset_examples",
    "dictionary",
    "dictionary_comparison",
    "equivariance",
    "find_curve_detectors",
    "groups",
    "motifs",
    "neuron_groups",
    "polysemanticity",
    "semantic_dictionary",
    "top_activating",
    "tuning",
    "tuning_curves",
    "unit_categories",
]
