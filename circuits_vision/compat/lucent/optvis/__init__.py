"""lucent's ``optvis``: ``render``, ``objectives``, ``param`` and ``transform``."""

from circuits_vision.compat.lucent.optvis import objectives, param, render, transform

__all__ = ["objectives", "param", "render", "transform"]
