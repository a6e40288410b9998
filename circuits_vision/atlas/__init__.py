"""Whole-model atlases (like OpenAI Microscope): every channel of the chosen layers, browsable offline.

    import circuits_vision as cv
    result = cv.atlas.build(model, layers=["mixed3a", "mixed3b"], out="atlas/", steps=256, size=96)
    print(result.index)      # atlas/index.html: open it in a browser (file://, no server needed)

- :func:`build`: render all units (batched, resumable, ``torchrun``-shardable), gather per unit its
  strongest inputs/outputs with weight pictures, family, branch, tuning and dataset examples, and write
  the viewer and the circuit report.
- :func:`circuit_report`: families, equivariant circuits and branch specialization of a layer pair.
- :func:`default_layers`: the main layers of a model (ReLU outputs and concatenations outside blocks).
- :func:`serve`: serve an atlas directory on 127.0.0.1.
- :func:`activation_atlas`: an activation atlas of one layer (2-D layout of many activations, every grid
  cell rendered in one batched call), class-filtered on request; ``result.save(out)`` writes its static
  zoomable page (:func:`write_activation_atlas_page`).
"""

from circuits_vision.atlas.activation_atlas import ActivationAtlas, activation_atlas, heldout_scenes
from circuits_vision.atlas.activation_atlas_page import write_activation_atlas_page
from circuits_vision.atlas.build import AtlasResult, build, weights_fingerprint
from circuits_vision.atlas.config import AtlasConfig
from circuits_vision.atlas.coordination import AtlasLockedError
from circuits_vision.atlas.layers import default_layers
from circuits_vision.atlas.report import LayerOrderError, circuit_report
from circuits_vision.atlas.serve import serve
from circuits_vision.atlas.store import CorruptAtlasFileError, SettingsMismatchError

__all__ = [
    "ActivationAtlas",
    "AtlasConfig",
    "AtlasLockedError",
    "AtlasResult",
    "CorruptAtlasFileError",
    "LayerOrderError",
    "SettingsMismatchError",
    "activation_atlas",
    "build",
    "circuit_report",
    "default_layers",
    "heldout_scenes",
    "serve",
    "weights_fingerprint",
    "write_activation_atlas_page",
]
