"""lucent's ``misc.io``: :func:`show` arrays in a notebook, :func:`save` them to files."""

from circuits_vision.compat.lucent.misc.io.saving import save
from circuits_vision.compat.lucent.misc.io.showing import show

__all__ = ["save", "show"]
