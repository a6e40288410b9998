"""``RenderConfig``: how the engine runs a render, apart from what it optimises.

The arguments of :func:`~circuits_vision.optvis.render` say *what* to render (objectives, steps,
size, seed, parameterization, transforms, preset); a ``RenderConfig`` holds the engine's knobs,
which change speed, memory and rounding but not the optimisation itself. Frozen, so one config can
be shared by many calls and stored in an atlas's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RenderConfig"]

_PRECISIONS = {None: "tf32", False: "fp32", True: "bf16", "tf32": "tf32", "fp32": "fp32", "bf16": "bf16"}


@dataclass(frozen=True)
class RenderConfig:
    """The engine's knobs for :func:`~circuits_vision.optvis.render`.

    Attributes:
        channels_last: channels-last memory format for the model during the render.
        autocast: ``None`` (TF32 on CUDA, exact fp32 on the CPU), ``False`` or ``"fp32"`` (fp32
            everywhere), ``True`` or ``"bf16"`` (bfloat16 autocast of the forward), ``"tf32"``.
        fused: use the fused image pipeline (``None``: whenever the parameterization and transforms
            allow; ``True`` makes it an error when they do not; ``False`` runs the transforms one by one).
        memory_budget: bytes the automatic batch size may use (``None``: half the free GPU memory, or a
            quarter of RAM capped at 4 GiB on the CPU).
    """

    channels_last: bool = True
    autocast: bool | str | None = None
    fused: bool | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.channels_last, bool):
            raise TypeError(f"RenderConfig.channels_last must be True or False, got {self.channels_last!r}")
        if self.autocast not in _PRECISIONS:
            raise ValueError(
                f"RenderConfig.autocast must be one of None, False, True, 'fp32', 'tf32', 'bf16'; got {self.autocast!r}"
            )
        if self.fused not in (None, True, False):
            raise TypeError(f"RenderConfig.fused must be None, True or False, got {self.fused!r}")
        if self.memory_budget is not None and (
            isinstance(self.memory_budget, bool) or not isinstance(self.memory_budget, int) or self.memory_budget < 1
        ):
            raise ValueError(
                f"RenderConfig.memory_budget must be >= 1, got {self.memory_budget!r} "
                "(bytes; None picks it from the free memory)"
            )

    @property
    def precision(self) -> str:
        """``"tf32"``, ``"fp32"`` or ``"bf16"``: the forward's precision mode."""
        return _PRECISIONS[self.autocast]
