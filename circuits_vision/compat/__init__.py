"""Other libraries' public APIs on the circuits_vision engine.

- :mod:`circuits_vision.compat.lucent`: lucent 0.1.8's modules and signatures, so switching a
  notebook is one import line::

      from circuits_vision.compat.lucent.optvis import render, objectives, param, transform

This package sits on top of the toolkit and uses only its public names.
"""

__all__ = ["lucent"]  # loaded on import: `from circuits_vision.compat import lucent`
