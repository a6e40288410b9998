"""lucent's ``misc``: ``io`` (showing and saving arrays) and ``channel_reducer``."""

from circuits_vision.compat.lucent.misc import channel_reducer, io

__all__ = ["channel_reducer", "io"]
