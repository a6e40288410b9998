"""circuits_vision.analysis."""
from circuits_vision.analysis import branches, unit_categories  # noqa: F401  (cv.branches, cv.analysis.branches)
from circuits_vision.analysis import dataset_examples, tuning  # noqa: F401
from circuits_vision.analysis import equivariance, motifs  # noqa: F401  (cv.equivariance, cv.analysis.motifs)
from circuits_vision.analysis import ablation, curve_circuits  # noqa: F401
from circuits_vision.analysis.ablation import ablate  # noqa: F401  (cv.analysis.ablate)
