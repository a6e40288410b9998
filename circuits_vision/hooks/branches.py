"""Which channel range of a concatenated layer comes from which branch, found by value.

One probe forward (uniform noise from a fixed ``torch.Generator``, eval mode, no gradients) records
the layer's output ``[1, C, H, W]`` and the outputs of its candidate branch modules:

- a module that concatenates its *inputs* (our ``Concat``: ``forward(*tensors) -> torch.cat``): the
  inputs are the branches, in order; each is named after the module that produced that very tensor;
- a module whose output is a ``torch.cat`` of its *sub-modules'* outputs (torchvision's ``Inception``
  blocks, DenseNet's dense blocks): channel slices of the output are matched exactly against the
  sub-modules' outputs, shallowest sub-module first; channels made by function calls rather than
  modules (``F.max_pool2d`` in Inception3's ``Mixed_6a``) become ``"unmatched{i}"`` parts.

Nothing model-specific is assumed, so any conv net with such layers works. Branch labels are short:
``"mixed3b_3x3"`` of layer ``"mixed3b"`` -> ``"3x3"`` (``"mixed3b_pool_reduce"`` -> ``"pool"``), and
``"inception3a.branch2"`` of ``"inception3a"`` -> ``"branch2"``.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.hooks.capture import (
    ForwardHook,
    channel_index,
    eval_mode,
    layer_shape,
    model_input_size,
    probe_input,
    require_channel,
    run_with_cache,
    size_pair,
)
from circuits_vision.hooks.names import resolve_layer

__all__ = ["Branch", "NotABranchLayerError", "branches", "branch_of"]

_PROBE_SEED = 0


@dataclass(frozen=True)
class Branch:
    """Channels ``[start, stop)`` of a concatenated layer, produced by the layer called ``module``.

    ``module`` is ``""`` for a range given by hand in a branch map or whose producer is no module.
    """

    name: str
    start: int
    stop: int
    module: str

    @property
    def width(self) -> int:
        return self.stop - self.start

    @property
    def channels(self) -> range:
        return range(self.start, self.stop)

    def __contains__(self, channel: object) -> bool:
        return isinstance(channel, int) and self.start <= channel < self.stop


class NotABranchLayerError(ValueError):
    """The layer's output is not a concatenation of branch outputs."""


# model -> {(canonical layer name, (H, W)): branches}; weak keys so the cache never keeps a model alive.
_BRANCH_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def branches(
    model: nn.Module,
    name: str,
    *,
    branch_map: Mapping[str, tuple[int, int]] | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> list[Branch]:
    """The branches of a concatenated layer, in channel order.

    Args:
        model: any ``nn.Module``.
        name: the concatenated layer (``"mixed3b"``, ``"inception3a"``).
        branch_map: ``{branch_name: (start, stop)}`` to use instead of discovery (for layers that are no
            concatenation, e.g. a grouped convolution); checked against the layer's width.
        input_size: probe size, default ``model_input_size(model)``.

    Returns:
        e.g. for InceptionV1 ``"mixed3b"``: ``[Branch("1x1", 0, 128, "mixed3b_1x1"),
        Branch("3x3", 128, 320, "mixed3b_3x3"), Branch("5x5", 320, 416, "mixed3b_5x5"),
        Branch("pool", 416, 480, "mixed3b_pool_reduce")]``.

    Raises:
        NotABranchLayerError: the layer is no concatenation (message says how to pass ``branch_map``).
    """
    canonical, layer = resolve_layer(model, name)
    size = input_size if input_size is not None else model_input_size(model)
    if branch_map is not None:
        return _from_branch_map(model, canonical, branch_map, size)
    per_model = _BRANCH_CACHE.setdefault(model, {})
    key = (canonical, size_pair(size))
    if key not in per_model:
        per_model[key] = _discover(model, canonical, layer, size)
    return list(per_model[key])


def branch_of(
    model: nn.Module,
    layer: str,
    channel: int,
    *,
    branch_map: Mapping[str, tuple[int, int]] | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> Branch:
    """The branch of ``layer`` that channel ``channel`` belongs to (``mixed3b`` 379 -> the 5x5 branch)."""
    channel = channel_index(layer, channel)
    found = branches(model, layer, branch_map=branch_map, input_size=input_size)
    for branch in found:
        if channel in branch:
            return branch
    # Discovered branches cover the whole layer; a hand-made map may leave channels out.
    width = found[-1].stop if branch_map is None else layer_shape(model, layer, input_size)[0]
    require_channel(layer, channel, width)
    listed = ", ".join(f"{b.name} [{b.start}, {b.stop})" for b in found)
    raise ValueError(f"channel {channel} of layer {layer!r} is in no branch of the map ({listed})")


def _from_branch_map(model: nn.Module, layer: str, branch_map: Mapping[str, tuple[int, int]], size) -> list[Branch]:
    width = layer_shape(model, layer, size)[0]
    result = []
    for branch_name, bounds in branch_map.items():
        try:
            start, stop = (operator.index(v) for v in bounds)
        except (TypeError, ValueError):
            raise ValueError(
                f"branch {branch_name!r} of layer {layer!r}: give a (start, stop) pair of ints, got {bounds!r}"
            ) from None
        if not 0 <= start < stop <= width:
            raise ValueError(
                f"branch {branch_name!r} of layer {layer!r}: ({start}, {stop}) is not a channel range "
                f"within the layer's {width} channels; give (start, stop) with 0 <= start < stop <= {width}"
            )
        result.append(Branch(str(branch_name), start, stop, ""))
    result.sort(key=lambda b: b.start)
    for before, after in zip(result, result[1:]):
        if after.start < before.stop:
            raise ValueError(f"branches {before.name!r} and {after.name!r} of layer {layer!r} overlap")
    return result


def _discover(model: nn.Module, layer_name: str, layer: nn.Module, size) -> list[Branch]:
    """One probe forward, then: concatenated inputs, else a cover of the output by sub-module outputs."""
    produced: list[tuple[str, object]] = []  # (module name, output) in the order the modules finished
    layer_inputs: list[tuple] = []

    def record(name: str) -> ForwardHook:
        def hook(module, inputs, output):
            produced.append((name, output))
            if module is layer and not layer_inputs:
                layer_inputs.append(inputs)

        return hook

    handles = []
    x = probe_input(model, size, torch.Generator().manual_seed(_PROBE_SEED))
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(record(name)))
        with torch.no_grad(), eval_mode(model):
            output = run_with_cache(model, x, [layer_name])[layer_name]
    finally:
        for handle in handles:
            handle.remove()

    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        raise _not_a_branch_layer(model, layer_name, layer, "its output is not an [N, C, ...] tensor")
    found = _concatenated_inputs(layer_inputs[0] if layer_inputs else (), output, produced)
    if found is not None:
        return _label(layer_name, found, unnamed="input")
    found = _cover_by_submodules(layer_name, output, produced)
    if found is not None:
        return _label(layer_name, found, unnamed="unmatched")
    raise _not_a_branch_layer(
        model, layer_name, layer, "its output is neither torch.cat of its inputs nor contains its sub-modules' outputs"
    )


def _concatenated_inputs(inputs: tuple, output: torch.Tensor, produced) -> list[tuple[str | None, int, int]] | None:
    """``[(producer, start, stop)]`` if ``output == torch.cat(inputs, 1)`` with at least two inputs.

    ``producer`` is ``None`` for an input that no module returned (e.g. made by a functional call).
    """
    tensors = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) else list(inputs)
    if len(tensors) < 2 or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    if any(
        t.dim() != output.dim() or t.shape[0] != output.shape[0] or t.shape[2:] != output.shape[2:] for t in tensors
    ):
        return None
    if sum(t.shape[1] for t in tensors) != output.shape[1] or not torch.equal(torch.cat(tensors, 1), output):
        return None
    found, start = [], 0
    for tensor in tensors:
        # The last module to return this very tensor object made it (an in-place ReLU returns its input).
        producer = next((name for name, out in reversed(produced) if out is tensor), None)
        found.append((producer, start, start + tensor.shape[1]))
        start += tensor.shape[1]
    return found


def _cover_by_submodules(layer_name: str, output: torch.Tensor, produced) -> list[tuple[str | None, int, int]] | None:
    """Channel slices of ``output`` that equal sub-module outputs, as ``[(module, start, stop)]``.

    Every sub-module output of the layer's batch and spatial shape, narrower than the layer, is looked
    for at every channel offset (exact equality). Among the non-overlapping choices the one leaving the
    fewest channels unexplained wins, then the one using the shallowest, latest-run sub-modules (the
    branch itself rather than its last ReLU). Channels no sub-module explains (made by a function call,
    or the block's own input as in DenseNet) come back as ``(None, start, stop)``. ``None`` when no
    sub-module output is part of ``output``: the layer is no concatenation.
    """
    prefix = layer_name + "."
    width = output.shape[1]
    candidates: list[tuple[int, str, torch.Tensor]] = []
    seen: set[str] = set()  # a module called twice: keep its first output
    for order, (name, out) in enumerate(produced):
        if name in seen or not name.startswith(prefix) or not isinstance(out, torch.Tensor):
            continue
        seen.add(name)
        if (
            out.dim() == output.dim()
            and out.shape[0] == output.shape[0]
            and out.shape[2:] == output.shape[2:]
            and 0 < out.shape[1] < width
        ):
            candidates.append((order, name, out))
    candidates.sort(key=lambda item: (item[1].count("."), -item[0]))

    channels = output.transpose(0, 1).reshape(width, -1)  # [C, N*H*W]
    starting_at: dict[int, list[tuple[int, str, int]]] = {}  # start -> [(rank, module, stop)]
    for rank, (_, name, out) in enumerate(candidates):
        span = out.shape[1]
        first = out[:, 0].reshape(1, -1)
        for start in torch.nonzero((channels[: width - span + 1] == first).all(1)).flatten().tolist():
            if torch.equal(output[:, start : start + span], out):
                starting_at.setdefault(start, []).append((rank, name, start + span))
    if not starting_at:
        return None

    # Best split of channels [offset, width): (unexplained channels, summed ranks) -> parts, by offset.
    best: dict[int, tuple[tuple[int, int], list[tuple[str | None, int, int]]]] = {width: ((0, 0), [])}
    offsets = sorted(set(starting_at) | {0})
    for offset in reversed(offsets):
        next_start = next((o for o in offsets if o > offset), width)
        (gap_cost, gap_ranks), rest = best[next_start]
        options = [((gap_cost + next_start - offset, gap_ranks), [(None, offset, next_start), *rest])]
        for rank, name, stop in starting_at.get(offset, []):
            if stop in best:
                (cost, ranks), rest = best[stop]
                options.append(((cost, ranks + rank), [(name, offset, stop), *rest]))
            else:  # ends where no match starts: the channels after it are unexplained
                gap_end = next((o for o in offsets if o > stop), width)
                (cost, ranks), rest = best[gap_end]
                options.append(
                    ((cost + gap_end - stop, ranks + rank), [(name, offset, stop), (None, stop, gap_end), *rest])
                )
        best[offset] = min(options, key=lambda option: option[0])
    return best[0][1]


def _label(layer_name: str, found: list[tuple[str | None, int, int]], unnamed: str) -> list[Branch]:
    """Short, unique branch names: the part of each module's name that differs from the layer's.

    The first differing word (``"pool"`` of ``"mixed3b_pool_reduce"``); where those collide, everything
    after the shared words; where those collide too, full module names. A part that no module
    produced is ``f"{unnamed}{i}"``, ``i`` its position among the parts.
    """
    full = [module if module is not None else f"{unnamed}{index}" for index, (module, _, _) in enumerate(found)]
    for whole_rest in (False, True):
        labels = [
            _short_name(layer_name, module, whole_rest) if module is not None else label
            for label, (module, _, _) in zip(full, found)
        ]
        if len(set(labels)) == len(labels):
            break
    else:
        labels = full
    return [Branch(label, start, stop, module or "") for label, (module, start, stop) in zip(labels, found)]


def _short_name(layer_name: str, module_name: str, whole_rest: bool = False) -> str:
    """``("inception3a", "inception3a.branch2") -> "branch2"``, ``("mixed3b", "mixed3b_pool_reduce") -> "pool"``.

    Dotted paths lose their shared leading parts and keep the next one; a flat lucid name then loses
    the underscore words it shares with the layer's name and keeps the next word (``whole_rest``: all
    the remaining words, ``"pool_reduce"``).
    """
    layer_parts, module_parts = layer_name.split("."), module_name.split(".")
    shared = 0
    while shared < min(len(layer_parts), len(module_parts)) and layer_parts[shared] == module_parts[shared]:
        shared += 1
    if shared == len(module_parts):
        return module_name
    part = module_parts[shared]
    if shared == len(layer_parts):  # a sub-module of the layer: its child name
        return part
    layer_words, words = layer_parts[shared].split("_"), part.split("_")
    common = 0
    while common < min(len(layer_words), len(words)) and layer_words[common] == words[common]:
        common += 1
    if not 0 < common < len(words):
        return part
    return "_".join(words[common:]) if whole_rest else words[common]


def _not_a_branch_layer(model: nn.Module, name: str, layer: nn.Module, why: str) -> NotABranchLayerError:
    example = "{'a': (0, 64), 'b': (64, 128)}"
    groups = getattr(layer, "groups", 1)
    out_channels = getattr(layer, "out_channels", None)
    note = ""
    if isinstance(groups, int) and groups > 1 and isinstance(out_channels, int):
        per_group = out_channels // groups
        example = (
            "{"
            + ", ".join(f"'group{g}': ({g * per_group}, {(g + 1) * per_group})" for g in range(min(groups, 3)))
            + (", ..." if groups > 3 else "")
            + "}"
        )
        note = f" (a grouped convolution, groups={groups}, is one layer here, not a concatenation)"
    return NotABranchLayerError(
        f"layer {name!r} of {type(model).__name__} is not a concatenation of branches: {why}{note}. "
        f"Pass an explicit branch map {{branch_name: (start, stop)}} instead, "
        f"e.g. branches(model, {name!r}, branch_map={example})"
    )
