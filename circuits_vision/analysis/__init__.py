"""circuits_vision.analysis.

- :mod:`.attribution`: which units of a layer, where, an image uses for a target (:func:`attribute`,
  :func:`between`); :mod:`.groups` (:func:`neuron_groups`) and :mod:`.semantic_dictionary`
  (:func:`semantic_dictionary`): the Building Blocks views.
- :mod:`.dictionary` (:func:`.dictionary.train`): a sparse autoencoder's dictionary features of a
  layer (superposition), with dead-feature resampling; :mod:`.dictionary_comparison`
  (:func:`.dictionary_comparison.compare`): neurons against those features.
- :mod:`.polysemanticity` (:func:`.polysemanticity.polysemanticity`): is a unit one thing or several (example
  clusters and a score).
- :mod:`.ablation` (:func:`ablate`) and :mod:`.curve_circuits`: accuracy deltas of unit sets, and the
  Curve Circuits experiments.
"""
from circuits_vision.analysis import branches, unit_categories  # noqa: F401  (cv.analysis.branches)
from circuits_vision.analysis import dataset_examples, tuning  # noqa: F401
from circuits_vision.analysis import equivariance, motifs  # noqa: F401  (cv.analysis.equivariance, cv.analysis.motifs)
from circuits_vision.analysis import attribution, dictionary, dictionary_comparison, groups  # noqa: F401
from circuits_vision.analysis import semantic_dictionary as _semantic_dictionary_module  # noqa: F401
from circuits_vision.analysis.attribution import Attribution, Target, UnitAttribution, attribute, between  # noqa: F401
# cv.analysis.semantic_dictionary stays the function (its module is analysis/semantic_dictionary.py)
from circuits_vision.analysis.semantic_dictionary import SemanticDictionary, semantic_dictionary  # noqa: F401
from circuits_vision.analysis.groups import NeuronGroups, neuron_groups  # noqa: F401
from circuits_vision.analysis import ablation, curve_circuits  # noqa: F401
from circuits_vision.analysis import polysemanticity  # noqa: F401  (cv.analysis.polysemanticity.polysemanticity)
from circuits_vision.analysis.polysemanticity import Polysemanticity  # noqa: F401
from circuits_vision.analysis.ablation import ablate  # noqa: F401  (cv.analysis.ablate)
