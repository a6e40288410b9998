"""A configurable InceptionV1-style network with lucid/lucent's flat layer names.

A spec lists a stem (convs, max pools, LRNs), mixed blocks with their branch widths, the max pools
between blocks, and an optional classifier head. :class:`InceptionNet` turns it into one flat
``nn.Module`` whose attributes carry lucid's names, every layer called in ``forward`` so hooks reach it:

- stem conv ``"conv2d0"``: ``conv2d0_pre_relu_conv`` (``nn.Conv2d``) then ``conv2d0`` (``nn.ReLU``)
- block ``"mixed3a"``: ``mixed3a_{1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce}_pre_relu_conv``
  with ReLUs ``mixed3a_1x1`` ..., the max pool ``mixed3a_pool``, ``mixed3a_pre_relu`` (:class:`Concat` of the
  branch pre-ReLU convs) and ``mixed3a`` (:class:`Concat` of the branch ReLUs), channels in the order
  [1x1, 3x3, 5x5, pool_reduce]
- head: ``avgpool0``, ``softmax2_pre_activation_matmul`` (``nn.Linear``), ``softmax2`` (``nn.Softmax``)

Padding is TensorFlow "SAME", applied as an explicit ``F.pad`` before convs and max pools (max pools pad
with -inf), computed from the input size, so any input size gives TensorFlow's shapes.

Example, a small three-block model for 64-px inputs::

    spec = InceptionSpec(
        stem=[ConvSpec("conv2d0", 32, 7, stride=2), MaxPoolSpec("maxpool0"),
              ConvSpec("conv2d1", 32, 1), ConvSpec("conv2d2", 64, 3), MaxPoolSpec("maxpool1")],
        blocks=[BlockSpec("mixed3a", 16, 16, 32, 8, 16, 16),
                BlockSpec("mixed3b", 32, 32, 48, 8, 24, 16),
                BlockSpec("mixed4a", 48, 32, 64, 8, 32, 32)],
        pools_after={"mixed3b": "maxpool4"},
        num_classes=10,
        preprocess=Preprocess(scale=2.0, offset=-1.0),
        input_size=64,
    )
    model = InceptionNet(spec, generator=torch.Generator().manual_seed(0))
    model(torch.rand(1, 3, 64, 64)).shape   # torch.Size([1, 10])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.models.layers import (
    Concat,
    LocalResponseNormLucent,
    LocalResponseNormTF,
    pad_same,
)

BRANCH_ORDER = ("1x1", "3x3", "5x5", "pool_reduce")
"""Order of the branches in a block's concatenated output."""


@dataclass(frozen=True)
class ConvSpec:
    """A stem convolution ``{name}_pre_relu_conv`` followed by the ReLU ``{name}``."""

    name: str
    out_channels: int
    kernel_size: int
    stride: int = 1


@dataclass(frozen=True)
class MaxPoolSpec:
    """A max pool ``name`` with TensorFlow "SAME" padding (padded with -inf)."""

    name: str
    kernel_size: int = 3
    stride: int = 2


@dataclass(frozen=True)
class LRNSpec:
    """A local response norm ``name``: ``kind="tf"`` (:class:`LocalResponseNormTF`) or ``"lucent"``."""

    name: str
    kind: str = "tf"


@dataclass(frozen=True)
class BlockSpec:
    """An Inception ("mixed") block: branch widths in GoogLeNet's table order."""

    name: str
    c1x1: int
    c3x3_bottleneck: int
    c3x3: int
    c5x5_bottleneck: int
    c5x5: int
    pool_reduce: int

    @property
    def out_channels(self) -> int:
        return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_reduce

    def branch_widths(self) -> dict[str, int]:
        """Output channels of each branch, in concatenation order."""
        return {"1x1": self.c1x1, "3x3": self.c3x3, "5x5": self.c5x5, "pool_reduce": self.pool_reduce}


@dataclass(frozen=True)
class Preprocess:
    """``x * scale + offset`` applied to the [0, 1] RGB input; scalars or per-channel triples."""

    scale: float | tuple[float, float, float] = 1.0
    offset: float | tuple[float, float, float] = 0.0

    @classmethod
    def imagenet(cls) -> Preprocess:
        """torchvision's ImageNet normalisation ``(x - mean) / std``."""
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        return cls(scale=tuple(1 / s for s in std), offset=tuple(-m / s for m, s in zip(mean, std)))


@dataclass(frozen=True)
class InceptionSpec:
    """Architecture of an :class:`InceptionNet` (see the module docstring for an example).

    ``pools_after`` maps a block name to the max pool that follows it (a name for a 3x3 stride-2 pool, or
    a :class:`MaxPoolSpec`). With ``num_classes`` the head is average pool ``avgpool_name`` (a fixed
    ``avgpool_kernel`` window as in lucid's graph, or ``None`` for a global mean), a linear layer
    ``logits_name`` and, when ``softmax_name`` is set, a softmax (``forward`` returns probabilities;
    otherwise logits). Without ``num_classes`` ``forward`` returns the last block's output.
    """

    stem: Sequence[ConvSpec | MaxPoolSpec | LRNSpec]
    blocks: Sequence[BlockSpec]
    pools_after: Mapping[str, str | MaxPoolSpec] = field(default_factory=dict)
    num_classes: int | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    input_size: int = 224
    in_channels: int = 3
    avgpool_name: str = "avgpool0"
    avgpool_kernel: int | None = None
    logits_name: str = "softmax2_pre_activation_matmul"
    softmax_name: str | None = "softmax2"


class InceptionNet(nn.Module):
    """InceptionV1-style network built from an :class:`InceptionSpec`.

    Input ``[N, 3, H, W]`` RGB in [0, 1] (the spec's preprocessing happens inside ``forward``).
    Parameters are initialised like torch's defaults but from ``generator`` (seed 0 when omitted), so
    building a model never touches the global RNG. ``init=False`` leaves them uninitialised, for
    callers that load a state dict straight away.
    """

    def __init__(self, spec: InceptionSpec, *, generator: torch.Generator | None = None, init: bool = True):
        super().__init__()
        self.spec = spec
        self.input_size = spec.input_size
        self.input_channels = spec.in_channels
        self._check_names()
        # Build on the meta device (no memory, no RNG), then allocate and initialise from `generator`.
        channels = spec.in_channels
        for stage in spec.stem:
            channels = self._add_stem_stage(stage, channels)
        for block in spec.blocks:
            channels = self._add_block(block, channels)
            pool = spec.pools_after.get(block.name)
            if pool is not None:
                self._add_stem_stage(_as_pool_spec(pool), channels)
        self.out_channels = channels
        if spec.num_classes:
            self._add_head(channels, spec.num_classes)
        # Like self.to_empty(device="cpu"), which would import sympy (seconds) on first use.
        self._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))
        self._set_preprocess(spec.preprocess)  # after allocation, which would blank its buffers
        if init:
            self.reset_parameters(generator)

    # ----------------------------------------------------------------------------------- building
    def _check_names(self) -> None:
        names = [stage.name for stage in self.spec.stem] + [block.name for block in self.spec.blocks]
        names += [_as_pool_spec(pool).name for pool in self.spec.pools_after.values()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"InceptionSpec uses these layer names more than once: {duplicates}")
        unknown = sorted(set(self.spec.pools_after) - {block.name for block in self.spec.blocks})
        if unknown:
            raise ValueError(f"pools_after names blocks that are not in the spec: {unknown}")

    def _set_preprocess(self, preprocess: Preprocess) -> None:
        for key in ("scale", "offset"):
            value = getattr(preprocess, key)
            if isinstance(value, (int, float)):
                setattr(self, f"_preprocess_{key}", float(value))
            else:
                if len(value) != self.spec.in_channels:
                    raise ValueError(f"Preprocess.{key} needs {self.spec.in_channels} values, got {value}")
                tensor = torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
                self.register_buffer(f"_preprocess_{key}", tensor, persistent=False)

    def _add_conv(self, name: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=0, device="meta")
        self.add_module(f"{name}_pre_relu_conv", conv)
        self.add_module(name, nn.ReLU())

    def _add_stem_stage(self, stage, channels: int) -> int:
        if isinstance(stage, ConvSpec):
            self._add_conv(stage.name, channels, stage.out_channels, stage.kernel_size, stage.stride)
            return stage.out_channels
        if isinstance(stage, MaxPoolSpec):
            self.add_module(stage.name, nn.MaxPool2d(stage.kernel_size, stage.stride))
            return channels
        if isinstance(stage, LRNSpec):
            self.add_module(stage.name, make_lrn(stage.kind))
            return channels
        raise TypeError(f"unknown stem stage {stage!r}: use ConvSpec, MaxPoolSpec or LRNSpec")

    def _add_block(self, block: BlockSpec, channels: int) -> int:
        n = block.name
        self._add_conv(f"{n}_1x1", channels, block.c1x1, 1)
        self._add_conv(f"{n}_3x3_bottleneck", channels, block.c3x3_bottleneck, 1)
        self._add_conv(f"{n}_3x3", block.c3x3_bottleneck, block.c3x3, 3)
        self._add_conv(f"{n}_5x5_bottleneck", channels, block.c5x5_bottleneck, 1)
        self._add_conv(f"{n}_5x5", block.c5x5_bottleneck, block.c5x5, 5)
        self.add_module(f"{n}_pool", nn.MaxPool2d(3, 1))
        self._add_conv(f"{n}_pool_reduce", channels, block.pool_reduce, 1)
        self.add_module(f"{n}_pre_relu", Concat([f"{n}_{b}_pre_relu_conv" for b in BRANCH_ORDER]))
        self.add_module(n, Concat([f"{n}_{b}" for b in BRANCH_ORDER]))
        return block.out_channels

    def _add_head(self, channels: int, num_classes: int) -> None:
        spec = self.spec
        if spec.avgpool_kernel is None:
            self.add_module(spec.avgpool_name, nn.AdaptiveAvgPool2d(1))
        else:
            self.add_module(spec.avgpool_name, nn.AvgPool2d(spec.avgpool_kernel, stride=1))
        self.add_module(spec.logits_name, nn.Linear(channels, num_classes, device="meta"))
        if spec.softmax_name:
            self.add_module(spec.softmax_name, nn.Softmax(dim=1))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every conv/linear like torch's default (U(±1/sqrt(fan_in))), from ``generator``."""
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = fan_in**-0.5
                for param in (module.weight, module.bias):
                    if param is not None:
                        param.uniform_(-bound, bound, generator=generator)

    # ----------------------------------------------------------------------------------- forward
    def layer(self, name: str) -> nn.Module:
        # Looked up by name on every call, so a module replaced with setattr takes effect.
        return getattr(self, name)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the network's input range."""
        return x * self._preprocess_scale + self._preprocess_offset

    def _conv(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``{name}_pre_relu_conv`` (with SAME padding) and its ReLU; returns (pre_relu, relu)."""
        conv = self.layer(f"{name}_pre_relu_conv")
        pre_relu = conv(pad_same(x, conv.kernel_size[0], conv.stride[0]))
        return pre_relu, self.layer(name)(pre_relu)

    def _max_pool(self, name: str, x: torch.Tensor) -> torch.Tensor:
        pool = self.layer(name)
        return pool(pad_same(x, pool.kernel_size, pool.stride, value=float("-inf")))

    def _stem_stage(self, stage, x: torch.Tensor) -> torch.Tensor:
        if isinstance(stage, ConvSpec):
            return self._conv(stage.name, x)[1]
        if isinstance(stage, MaxPoolSpec):
            return self._max_pool(stage.name, x)
        return self.layer(stage.name)(x)

    def _block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        pre_1x1, out_1x1 = self._conv(f"{name}_1x1", x)
        _, bottleneck_3x3 = self._conv(f"{name}_3x3_bottleneck", x)
        pre_3x3, out_3x3 = self._conv(f"{name}_3x3", bottleneck_3x3)
        _, bottleneck_5x5 = self._conv(f"{name}_5x5_bottleneck", x)
        pre_5x5, out_5x5 = self._conv(f"{name}_5x5", bottleneck_5x5)
        pooled = self._max_pool(f"{name}_pool", x)
        pre_pool, out_pool = self._conv(f"{name}_pool_reduce", pooled)
        self.layer(f"{name}_pre_relu")(pre_1x1, pre_3x3, pre_5x5, pre_pool)
        return self.layer(name)(out_1x1, out_3x3, out_5x5, out_pool)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        kernel = spec.avgpool_kernel
        if kernel is not None and tuple(x.shape[-2:]) != (kernel, kernel):
            raise ValueError(
                f"the classifier head averages a fixed {kernel}x{kernel} window and needs "
                f"{spec.blocks[-1].name} to be {kernel}x{kernel}, got {x.shape[-2]}x{x.shape[-1]}: feed "
                f"{self.input_size}-px images to reach {spec.logits_name!r}, or stop the forward at an "
                f"earlier layer (hooks.run_with_cache(..., truncate=True)) for other sizes"
            )
        pooled = self.layer(spec.avgpool_name)(x).flatten(1)
        logits = self.layer(spec.logits_name)(pooled)
        return self.layer(spec.softmax_name)(logits) if spec.softmax_name else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> ``[N, num_classes]`` (or the last block ``[N, C, h, w]``)."""
        if x.dim() != 4 or x.shape[1] != self.spec.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects images [N, {self.spec.in_channels}, H, W] with values in "
                f"[0, 1], got shape {tuple(x.shape)}"
            )
        x = self.preprocess(x)
        for stage in self.spec.stem:
            x = self._stem_stage(stage, x)
        for block in self.spec.blocks:
            x = self._block(block.name, x)
            pool = self.spec.pools_after.get(block.name)
            if pool is not None:
                x = self._max_pool(_as_pool_spec(pool).name, x)
        if self.spec.num_classes:
            x = self._head(x)
        return x

    def branch_ranges(self, block: str) -> dict[str, tuple[int, int]]:
        """Half-open channel range ``[start, stop)`` of each branch in block ``block``'s output."""
        specs = {b.name: b for b in self.spec.blocks}
        if block not in specs:
            raise KeyError(f"{block!r} is not a block of this model; blocks: {sorted(specs)}")
        ranges, start = {}, 0
        for branch, width in specs[block].branch_widths().items():
            ranges[branch] = (start, start + width)
            start += width
        return ranges


def make_lrn(kind: str) -> nn.Module:
    """The local response norm named ``kind``: "tf" (lucid's graph) or "lucent" (lucent's port)."""
    if kind == "tf":
        return LocalResponseNormTF()
    if kind == "lucent":
        return LocalResponseNormLucent()
    raise ValueError(f"unknown LRN kind {kind!r}: use 'tf' (TensorFlow's, as lucid) or 'lucent'")


def _as_pool_spec(pool: str | MaxPoolSpec) -> MaxPoolSpec:
    return pool if isinstance(pool, MaxPoolSpec) else MaxPoolSpec(pool)
