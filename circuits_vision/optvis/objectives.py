"""Objectives: ``objective(T) -> scalar loss``, where ``T(name)`` returns layer ``name``'s activation.

Names, arguments and values follow lucent, so code written for lucent works unchanged:
objectives are *losses* (``render`` minimises them), e.g. ``channel`` is minus the mean
activation. Objectives combine with ``+ - * /`` and numbers. ``T("input")`` is the image
``[N, 3, H, W]`` in [0, 1] before transforms. Inside ``render`` an objective sees only its own
images (one image per objective unless ``images_per_objective`` says more), and ``batch=i``
picks image ``i`` among those.

Sign conventions (lucent's for the objectives lucent has, then the loss view):

- activation objectives (``channel``, ``neuron``, ``direction``, ``deepdream``, ``class_logit``, ...)
  return minus the activation measure: minimising them maximises the activation;
- ``diversity`` returns minus the pairwise similarity (as lucent: use ``obj - w * diversity(layer)``);
  ``alignment`` returns the distance (use ``obj + w * alignment(layer)``);
- penalties ``L1``, ``L2``, ``total_variation`` return positive magnitudes: add them to penalise.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Objective",
    "wrap_objective",
    "as_objective",
    "channel",
    "neuron",
    "direction",
    "direction_neuron",
    "direction_neuron_cossim",
    "channel_weight",
    "neuron_weight",
    "localgroup_weight",
    "deepdream",
    "diversity",
    "alignment",
    "channel_interpolate",
    "L1",
    "L2",
    "total_variation",
    "blur_input_each_step",
    "class_logit",
    "INPUT",
]

INPUT = "input"
Activations = Callable[[str], torch.Tensor]


class Objective:
    """A loss on activations: ``objective(T) -> scalar tensor``.

    Attributes:
        name, description: lucent's short name and a readable description.
        layers: layer names the objective reads (``"input"`` excluded); ``None`` when unknown
            (a wrapped plain function), in which case ``render`` discovers them with a dry run.
        channels: ``(layer, channel)`` pairs the objective indexes, checked before rendering.
        widths: ``(layer, length, what)``: a vector argument (``what``, e.g. "direction") that must
            have one entry per channel of ``layer``, checked before rendering.
        positions: ``(layer, x, y, wx, wy, what)``: a position (column ``x``, row ``y``, either
            ``None`` for the centre) and window size the objective reads in ``layer``'s map.
        batches: ``(batch, what)``: image indices among an objective's images.
        All of these are checked against the model before the first optimisation step.
    """

    def __init__(
        self,
        objective_func: Callable[[Activations], torch.Tensor],
        name: str = "",
        description: str = "",
        layers: Iterable[str] | None = (),
        channels: Iterable[tuple[str, int]] = (),
        widths: Iterable[tuple[str, int, str]] = (),
        positions: Iterable[tuple] = (),
        batches: Iterable[tuple[int, str]] = (),
    ):
        self.objective_func = objective_func
        self.name = name
        self.description = description
        self.layers = None if layers is None else tuple(dict.fromkeys(layers))
        self.channels = tuple(channels)
        self.widths = tuple(widths)
        self.positions = tuple(positions)
        self.batches = tuple(batches)

    def __call__(self, T: Activations) -> torch.Tensor:
        return self.objective_func(T)

    def __repr__(self) -> str:
        return f"Objective({self.description or self.name})"

    def _combine(self, other: Objective, func, name: str, description: str) -> Objective:
        layers = None if self.layers is None or other.layers is None else self.layers + other.layers
        return Objective(
            func,
            name,
            description,
            layers,
            self.channels + other.channels,
            self.widths + other.widths,
            self.positions + other.positions,
            self.batches + other.batches,
        )

    def _scaled(self, func, description: str) -> Objective:
        return Objective(
            func, self.name, description, self.layers, self.channels, self.widths, self.positions, self.batches
        )

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return self._scaled(lambda T: other + self(T), f"{other} + {self.description}")
        other = as_objective(other)
        return self._combine(
            other,
            lambda T: self(T) + other(T),
            ", ".join([self.name, other.name]),
            f"Sum({self.description} +\n{other.description})",
        )

    def __radd__(self, other):
        return self.__add__(other)

    def __neg__(self):
        return -1 * self

    def __sub__(self, other):
        return self + (-1 * other)

    def __rsub__(self, other):
        return (-1 * self) + other

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            return self._scaled(lambda T: other * self(T), f"{other} * {self.description}")
        other = as_objective(other)
        return self._combine(
            other,
            lambda T: self(T) * other(T),
            f"{self.name} * {other.name}",
            f"Product({self.description},\n{other.description})",
        )

    def __rmul__(self, other):
        return self.__mul__(other)

    def __truediv__(self, other):
        if isinstance(other, (int, float)):
            return self.__mul__(1.0 / other)
        other = as_objective(other)
        return self._combine(
            other,
            lambda T: self(T) / other(T),
            f"{self.name} / {other.name}",
            f"Quotient({self.description},\n{other.description})",
        )

    @staticmethod
    def sum(objectives: Sequence[Objective]) -> Objective:
        objectives = [as_objective(o) for o in objectives]
        total = objectives[0]
        for objective in objectives[1:]:
            total = total + objective
        return total


def _arg_str(arg) -> str:
    text = str(arg)
    return "..." if len(text) > 15 or "\n" in text else text


def wrap_objective(
    layers: Callable[..., Iterable[str]] | None = None,
    channels: Callable[..., Iterable[tuple[str, int]]] | None = None,
    widths: Callable[..., Iterable[tuple[str, int, str]]] | None = None,
):
    """Decorator turning ``f(*args) -> (T -> loss)`` into ``f(*args) -> Objective`` (as lucent's).

    ``layers`` / ``channels`` / ``widths`` compute, from the same arguments, what the objective
    reads (see :class:`Objective`).
    """

    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            description = func.__name__.title() + " [" + ", ".join(_arg_str(a) for a in args) + "]"
            arguments = bound.arguments
            return Objective(
                func(*args, **kwargs),
                func.__name__,
                description,
                layers(**arguments) if layers else (),
                channels(**arguments) if channels else (),
                widths(**arguments) if widths else (),
                _positions_of(func.__name__, arguments),
                _batches_of(func.__name__, arguments),
            )

        return wrapper

    return decorate


def _positions_of(name: str, arguments: dict) -> tuple:
    """``((layer, x, y, wx, wy, what),)`` for an objective taking ``x`` / ``y`` (checked in ``render``)."""
    if "x" not in arguments or "layer" not in arguments:
        return ()
    x, y = _index_or_none(name, "x", arguments["x"]), _index_or_none(name, "y", arguments.get("y"))
    wx, wy = int(arguments.get("wx", 1)), int(arguments.get("wy", 1))
    if name == "localgroup_weight" and (x is None or y is None):
        raise ValueError(f"{name} needs the window's top-left corner: pass x= and y=")
    if wx < 1 or wy < 1:
        raise ValueError(f"{name}: the window size wx, wy must be >= 1, got {wx}, {wy}")
    what = f"{name}({arguments['layer']!r}, x={x}, y={y})"
    return ((arguments["layer"], x, y, wx, wy, what),)


def _index_or_none(name: str, what: str, value) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: {what} must be an int (None for the default), got {value!r}") from None


def _batches_of(name: str, arguments: dict) -> tuple:
    batch = _index_or_none(name, "batch", arguments.get("batch"))
    return () if batch is None else ((batch, f"{name}(..., batch={batch})"),)


def _vector(value, what: str) -> torch.Tensor | None:
    """A ``[C]`` float tensor from a tensor, NumPy array or sequence (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        vector = torch.as_tensor(value if isinstance(value, torch.Tensor) else _as_array(value))
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"`{what}` must be a vector (tensor, NumPy array or list of numbers), got {type(value).__name__}"
        ) from error
    if not (
        vector.is_floating_point() or vector.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise TypeError(f"`{what}` must hold real numbers, got dtype {vector.dtype}")
    if vector.dim() != 1:
        vector = vector.squeeze()
        if vector.dim() != 1:
            raise ValueError(
                f"`{what}` must be a [C] vector, one value per channel, got shape {tuple(torch.as_tensor(value).shape)}"
            )
    return vector.float() if not vector.is_floating_point() else vector


def _as_array(value):
    import numpy as np

    return np.asarray(value)


def _layer_of(layer, **_):
    return () if layer == INPUT else (layer,)


def _channel_of(layer, n_channel, **_):
    return ((layer, n_channel),)


def _vector_width(argument: str):
    """``widths`` for an objective whose ``argument`` is a ``[C]`` vector over ``layer``'s channels."""

    def widths(layer, **kwargs):
        vector = _vector(kwargs[argument], argument)
        return () if vector is None else ((layer, int(vector.numel()), argument),)

    return widths


def _batch(T: Activations, batch: int | None) -> Activations:
    if batch is None:
        return T
    return lambda name: T(name)[batch : batch + 1]


def _position(acts: torch.Tensor, x: int | None, y: int | None) -> torch.Tensor:
    """``[N, C, 1, 1]`` activation at ``(x, y)`` (column, row); the centre by default
    (for even sizes the lower-right of the central 2x2, as lucent)."""
    height, width = acts.shape[-2:]
    x = width // 2 if x is None else x
    y = height // 2 if y is None else y
    return acts[:, :, y : y + 1, x : x + 1]


@wrap_objective(_layer_of, _channel_of)
def channel(layer: str, n_channel: int, batch: int | None = None):
    """Minus the mean activation of one channel."""
    return lambda T: -_batch(T, batch)(layer)[:, n_channel].mean()


@wrap_objective(_layer_of, _channel_of)
def neuron(layer: str, n_channel: int, x: int | None = None, y: int | None = None, batch: int | None = None):
    """Minus one channel's activation at one position (the centre unless ``x``, ``y`` given)."""
    return lambda T: -_position(_batch(T, batch)(layer), x, y)[:, n_channel].mean()


@wrap_objective(_layer_of, widths=_vector_width("direction"))
def direction(layer: str, direction: torch.Tensor, batch: int | None = None):
    """Minus the mean cosine similarity between each position's activation vector and ``direction`` ``[C]``
    (a tensor, NumPy array or list)."""
    direction = _vector(direction, "direction")

    def inner(T):
        acts = _batch(T, batch)(layer)
        return -F.cosine_similarity(direction.to(acts).reshape(1, -1, 1, 1), acts, dim=1).mean()

    return inner


@wrap_objective(_layer_of, widths=_vector_width("direction"))
def direction_neuron(
    layer: str, direction: torch.Tensor, x: int | None = None, y: int | None = None, batch: int | None = None
):
    """As :func:`direction`, at one position (the centre by default)."""
    direction = _vector(direction, "direction")

    def inner(T):
        acts = _position(_batch(T, batch)(layer), x, y)
        return -F.cosine_similarity(direction.to(acts).reshape(1, -1, 1, 1), acts, dim=1).mean()

    return inner


@wrap_objective(_layer_of, widths=_vector_width("direction"))
def direction_neuron_cossim(
    layer: str,
    direction: torch.Tensor,
    x: int | None = None,
    y: int | None = None,
    cossim_pow: float = 4.0,
    batch: int | None = None,
):
    """Minus ``dot * max(cos, 0.1) ** cossim_pow`` at one position (the centre by default), where ``dot`` is the
    activation vector's projection on the unit ``direction`` ``[C]`` and ``cos`` their cosine similarity: the
    objective lucid's activation atlas rendered its cells with. The dot product makes the picture drive the
    direction hard; the cosine power keeps it from doing so with other channels (a plain dot product is
    won by whichever channels grow easiest). The floor at 0.1 keeps a gradient when the cosine starts
    negative."""
    direction = _vector(direction, "direction")
    power = float(cossim_pow)
    if power < 0:
        raise ValueError(f"cossim_pow must be >= 0, got {cossim_pow}")

    def inner(T):
        acts = _position(_batch(T, batch)(layer), x, y)[:, :, 0, 0]  # [N, C]
        unit = direction.to(acts) / direction.to(acts).norm().clamp_min(1e-12)
        dot = acts @ unit
        cos = dot / (acts.norm(dim=1) + 1e-4)
        return -(dot * cos.clamp_min(0.1) ** power).mean()

    return inner


@wrap_objective(_layer_of, widths=_vector_width("weight"))
def channel_weight(layer: str, weight: torch.Tensor, batch: int | None = None):
    """Minus the mean of the activation weighted per channel by ``weight`` ``[C]``."""
    weight = _vector(weight, "weight")

    def inner(T):
        acts = _batch(T, batch)(layer)
        return -(acts * weight.to(acts).view(1, -1, 1, 1)).mean()

    return inner


@wrap_objective(_layer_of, widths=_vector_width("weight"))
def neuron_weight(
    layer: str, weight: torch.Tensor | None, x: int | None = None, y: int | None = None, batch: int | None = None
):
    """Minus the mean of one position's activations weighted by ``weight`` ``[C]`` (all ones if None)."""
    weight = _vector(weight, "weight")

    def inner(T):
        acts = _position(_batch(T, batch)(layer), x, y)[:, :, 0, 0]
        return -acts.mean() if weight is None else -(acts * weight.to(acts)).mean()

    return inner


@wrap_objective(_layer_of, widths=_vector_width("weight"))
def localgroup_weight(
    layer: str,
    weight: torch.Tensor | None = None,
    x: int | None = None,
    y: int | None = None,
    wx: int = 1,
    wy: int = 1,
    batch: int | None = None,
):
    """Minus the (weighted) mean activation in the ``wx x wy`` window at ``(x, y)``."""
    weight = _vector(weight, "weight")

    def inner(T):
        acts = _batch(T, batch)(layer)
        window = acts[:, :, y : y + wy, x : x + wx]
        return -window.mean() if weight is None else -(window * weight.to(acts).view(1, -1, 1, 1)).mean()

    return inner


@wrap_objective(_layer_of)
def deepdream(layer: str, batch: int | None = None):
    """Minus the mean squared activation of a layer (lucid's DeepDream objective)."""
    return lambda T: -(_batch(T, batch)(layer) ** 2).mean()


@wrap_objective(_layer_of)
def diversity(layer: str):
    """Minus the mean cosine similarity of the images' Gram matrices (lucent's value).

    Encourages the images of one objective to differ; use ``obj - w * diversity(layer)``.
    """

    def inner(T):
        acts = T(layer)
        batch, channels = acts.shape[:2]
        flat = acts.reshape(batch, channels, -1)
        grams = F.normalize(flat @ flat.transpose(1, 2), p=2, dim=(1, 2))
        similarity = grams.reshape(batch, -1) @ grams.reshape(batch, -1).T
        return -(similarity.sum() - similarity.diagonal().sum()) / batch

    return inner


@wrap_objective(_layer_of)
def alignment(layer: str, decay_ratio: float = 2):
    """Mean squared distance between neighbouring images' activations (up to 4 apart), decayed by
    ``decay_ratio**d``; use ``obj + w * alignment(layer)``."""

    def inner(T):
        acts = T(layer)
        total = acts.new_zeros(())
        for d in (1, 2, 3, 4):
            if acts.shape[0] > d:
                per_pair = ((acts[:-d] - acts[d:]) ** 2).flatten(1).mean(1)
                total = total + per_pair.sum() / decay_ratio ** float(d)
        return total

    return inner


@wrap_objective(
    lambda layer1, layer2, **_: tuple(dict.fromkeys((layer1, layer2))),
    lambda layer1, n_channel1, layer2, n_channel2: ((layer1, n_channel1), (layer2, n_channel2)),
)
def channel_interpolate(layer1: str, n_channel1: int, layer2: str, n_channel2: int):
    """Interpolate from channel 1 (first image) to channel 2 (last image) across the images."""

    def inner(T):
        a, b = T(layer1)[:, n_channel1], T(layer2)[:, n_channel2]
        n = a.shape[0]
        weights = torch.arange(n, dtype=a.dtype, device=a.device) / max(n - 1, 1)
        return -((1 - weights) * a.flatten(1).mean(1) + weights * b.flatten(1).mean(1)).sum()

    return inner


@wrap_objective(_layer_of)
def L1(layer: str = INPUT, constant: float = 0.0, batch: int | None = None):  # noqa: N802
    """Sum of ``|T(layer) - constant|`` (a penalty: add it)."""
    return lambda T: (_batch(T, batch)(layer) - constant).abs().sum()


@wrap_objective(_layer_of)
def L2(layer: str = INPUT, constant: float = 0.0, epsilon: float = 1e-6, batch: int | None = None):  # noqa: N802
    """``sqrt(epsilon + sum((T(layer) - constant)**2))`` (a penalty: add it)."""
    return lambda T: torch.sqrt(epsilon + ((_batch(T, batch)(layer) - constant) ** 2).sum())


@wrap_objective(_layer_of)
def total_variation(layer: str = INPUT, batch: int | None = None):
    """Sum of absolute differences between neighbouring pixels (``tf.image.total_variation``; add it)."""

    def inner(T):
        t = _batch(T, batch)(layer)
        return (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., :, 1:] - t[..., :, :-1]).abs().sum()

    return inner


def _blur3x3(image: torch.Tensor) -> torch.Tensor:
    """lucent's per-channel 3x3 blur (edges weigh 0.5, centre 1), normalised at the borders."""
    kernel = image.new_full((3, 3), 0.5)
    kernel[1, 1] = 1.0
    depth = image.shape[1]
    weight = kernel.expand(depth, 1, 3, 3)
    blurred = F.conv2d(image, weight, padding=1, groups=depth)
    return blurred / F.conv2d(torch.ones_like(image), weight, padding=1, groups=depth)


@wrap_objective()
def blur_input_each_step():
    """``-0.5 * sum((input - blur(input))**2)`` with the blur held constant (lucent's value).

    Optimising ``(-k) * blur_input_each_step()`` nudges the input towards its blur each step."""

    def inner(T):
        image = T(INPUT)
        with torch.no_grad():
            blurred = _blur3x3(image)
        return -0.5 * ((image - blurred) ** 2).sum()

    return inner


@wrap_objective(_layer_of)
def class_logit(layer: str, label: int, batch: int | None = None):
    """Minus the logit of class ``label`` in ``layer`` (e.g. ``"softmax2_pre_activation_matmul"``),
    summed over images (lucid sums; spatial logits are averaged first)."""

    def inner(T):
        logits = _batch(T, batch)(layer)
        return -logits[:, label].reshape(logits.shape[0], -1).mean(1).sum()

    return inner


_CHANNEL_SPEC = re.compile(r"^\s*(?P<layer>[^:]+?)\s*:\s*(?P<channel>-?\d+)\s*$")


def as_objective(obj: Objective | str | Callable[[Activations], torch.Tensor]) -> Objective:
    """``"layer:channel"`` -> :func:`channel`; an :class:`Objective` unchanged; a function ``T -> loss`` wrapped."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, str):
        match = _CHANNEL_SPEC.match(obj)
        if match is None:
            raise ValueError(f"objective string must look like 'layer:channel' (e.g. 'mixed4a:476'), got {obj!r}")
        return channel(match["layer"], int(match["channel"]))
    if callable(obj):
        return Objective(obj, getattr(obj, "__name__", "objective"), repr(obj), layers=None)
    raise TypeError(f"cannot make an objective from {type(obj).__name__}: {obj!r}")
