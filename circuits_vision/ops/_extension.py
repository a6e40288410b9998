"""Loading the compiled op library ``circuits_vision._C``.

Importing ``_C`` runs the C++ ``TORCH_LIBRARY`` registrations that define every op
under ``torch.ops.circuits_vision``. When it is missing (a pure-Python install, a
failed build), the public op functions fall back to their pure-PyTorch twins in
``_reference.py`` and warn once; ``CIRCUITS_VISION_REQUIRE_EXT=1`` turns the
fallback into an error, so a broken build cannot hide behind it.
"""

from __future__ import annotations

import os
import warnings

_LOAD_ERROR: BaseException | None = None

try:
    from circuits_vision import _C  # noqa: F401  (imported for its op registrations)
except ImportError as error:  # pragma: no cover - exercised where the build is missing
    _LOAD_ERROR = error

_warned = False


def extension_available() -> bool:
    """True when the compiled kernels are loaded."""
    return _LOAD_ERROR is None


def require_extension_env() -> bool:
    return os.environ.get("CIRCUITS_VISION_REQUIRE_EXT", "0") not in ("", "0")


def check_extension() -> None:
    """Raise if ``CIRCUITS_VISION_REQUIRE_EXT=1`` and the extension did not load."""
    if _LOAD_ERROR is not None and require_extension_env():
        raise RuntimeError(
            "circuits_vision: the compiled extension circuits_vision._C could not be imported "
            f"({_LOAD_ERROR}) and CIRCUITS_VISION_REQUIRE_EXT=1 forbids the pure-PyTorch fallback. "
            "Build it with `pip install -e . --no-build-isolation` (or `python setup.py build_ext --inplace`)."
        ) from _LOAD_ERROR


def use_fallback(op_name: str) -> bool:
    """Whether ``op_name`` must run its pure-PyTorch twin; warns once per process."""
    global _warned
    if _LOAD_ERROR is None:
        return False
    check_extension()
    if not _warned:
        warnings.warn(
            f"circuits_vision: compiled kernels unavailable ({_LOAD_ERROR}); {op_name} and the other ops "
            "run their slower pure-PyTorch twins. Set CIRCUITS_VISION_REQUIRE_EXT=1 to make this an error.",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned = True
    return True


check_extension()
