"""``render``: optimise N images for N objectives in one batch (feature visualization).

Objective ``i`` sees only its own image(s), and the loss is the sum over objectives, so every
image gets exactly the gradient it would get alone; one forward/backward serves all of them.
The forward stops at the deepest layer any objective reads, the weights are frozen, and on the
default path colour, sigmoid and all geometric transforms are a single resampling per step.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from circuits_vision import hooks, ops
from circuits_vision._utils import derive_seed
from circuits_vision.optvis import _arguments as args_
from circuits_vision.optvis import transforms as T_
from circuits_vision.optvis._batching import check_fits, choose_batch_size
from circuits_vision.optvis._session import forward_autocast, precision, prepared_model
from circuits_vision.optvis._validate import (
    check_channels_and_size,
    declared_input_size,
    fixed_input_size,
    needed_layers,
    objective_layers,
    runs_at,
)
from circuits_vision.optvis.adam import Adam
from circuits_vision.optvis.config import RenderConfig
from circuits_vision.optvis.objectives import INPUT, Objective
from circuits_vision.optvis.param import CPPN, FFT, ImageFunction, Pixel
from circuits_vision.optvis.redirect import redirected_relus

__all__ = ["render", "RenderResult", "NonFiniteError", "PRESETS", "Preset"]


class NonFiniteError(FloatingPointError):
    """An image, objective value or gradient became NaN or infinite during rendering."""


@dataclass
class RenderResult:
    """What :func:`render` returns (all tensors on the CPU).

    Attributes:
        images: ``[N, 3, H, W]`` in [0, 1] (``[N, 4, H, W]`` with an alpha channel), image
            ``i * images_per_objective + j`` belongs to objective ``i``.
        history: ``[steps, num_objectives]`` objective (loss) values at every step, as computed on
            that step's transformed images before the update.
        snapshots: ``{step: images}`` after each step listed in ``thresholds``.
        objectives: each objective's description.
        never_active: ``[num_objectives]`` bool, True where the objective's value was exactly 0 at
            every step: the unit never turned on (its ReLU stayed off for every image the
            optimisation tried), so its image is the barely changed start, typically flat grey.
    """

    images: torch.Tensor
    history: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    objectives: list[str] = field(default_factory=list)
    never_active: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))


@dataclass(frozen=True)
class Preset:
    """Defaults that make ``render`` behave like lucid or like lucent.

    ``model_input`` maps the render size to a fixed size every transformed image is resized to
    (``None``: the transforms decide).
    """

    name: str
    param: Callable
    transforms: Callable[[], T_.Compose]
    redirect_relu: str | None
    model_input: Callable[[int], int | None]
    learning_rate: float = 0.05


PRESETS = {
    # lucid.optvis.render.render_vis: FFT + decorrelated colour, standard_transforms, model at the
    # transformed size, redirected ReLU gradients for 16 steps, Adam(0.05).
    "lucid": Preset("lucid", FFT(), T_.standard_transforms, "lucid", lambda size: None),
    # lucent.optvis.render.render_vis: same parameterization, lucent's transforms (shift jitter),
    # upsampled to 224 px when smaller, leaky ReLU gradient at every step, Adam(5e-2).
    "lucent": Preset("lucent", FFT(), T_.lucent_transforms, "lucent", lambda size: 224 if size < 224 else None),
}

_PARAMS = {"fft": FFT, "pixel": Pixel, "cppn": CPPN}


def _image_generator(seed: int, index: int) -> torch.Generator:
    """Image ``index``'s own generator: its start and random transforms depend on nothing else."""
    return torch.Generator().manual_seed(derive_seed(int(seed), int(index)))


def _resolve_param(param, preset: Preset):
    if param is None:
        return preset.param
    if isinstance(param, str):
        if param not in _PARAMS:
            raise ValueError(f"param must be one of {sorted(_PARAMS)}, a factory or a function, got {param!r}")
        return _PARAMS[param]()
    if callable(param):
        return param
    raise TypeError(f"param must be a name, a factory or a function, got {type(param).__name__}")


def _takes_no_arguments(fn: Callable) -> bool:
    try:
        return not any(
            p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            for p in inspect.signature(fn).parameters.values()
        )
    except (TypeError, ValueError):
        return False


def _default_optimizer(lr: float) -> Callable[[list[torch.Tensor]], Adam]:
    return lambda params: Adam(params, lr=lr)


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def render(
    model: nn.Module,
    objectives,
    *,
    steps: int = 512,
    size: int | tuple[int, int] = 128,
    seed: int = 0,
    thresholds: Sequence[int] = (),
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    param=None,
    transforms=None,
    preset: str = "lucid",
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
    progress: bool | None = None,
    images_per_objective: int = 1,
    redirect_relu: str | None = "preset",
    image_seeds: Sequence[int] | None = None,
    config: RenderConfig | None = None,
) -> RenderResult:
    """Feature visualization of every objective, optimised together.

    Args:
        model: any ``nn.Module`` taking ``[N, 3, H, W]`` images in [0, 1]; put in eval mode with
            frozen weights for the render, then restored.
        objectives: one objective or a list: :class:`~circuits_vision.optvis.objectives.Objective`,
            ``"layer:channel"`` strings (``"mixed4a:476"``), functions ``T -> loss``, or a bare layer
            name (``"mixed3b"``: every channel of the layer, in channel order).
        steps: optimisation steps.
        size: image size in pixels: ``S`` (square) or ``(height, width)``.
        seed: everything random (start images, transforms) comes from generators seeded by
            ``(seed, image index)``: the same seed and ``batch_size`` give bit-identical images on the CPU.
        thresholds: steps after which to store a snapshot of the images (``RenderResult.snapshots``).
        batch_size: images optimised together; ``None`` picks the largest batch under the config's
            ``memory_budget``.
        device: where to render; must be the model's device (default: the model's).
        param: ``"fft"`` (default), ``"pixel"``, ``"cppn"`` (with lucid's CPPN defaults: Adam 0.005 and
            no transforms unless ``optimizer`` / ``transforms`` say otherwise), a factory such as ``param.FFT(decay_power=1.5)``
            called as ``factory(batch=, height=, width=, generator=, device=)``, or a lucent-style
            function of no arguments returning ``(params, image_f)`` for all the images.
        transforms: a list or ``compose(...)`` of transforms (default: the preset's). Geometric
            transforms with constant padding are fused into one resample per image and step;
            others run sequentially, image by image, each with its own draws.
        preset: ``"lucid"`` (default) or ``"lucent"``: see :data:`PRESETS`.
        optimizer: ``params -> optimizer`` (default Adam, lr 0.05: ``torch.optim.Adam``'s update,
            see :class:`~circuits_vision.optvis.adam.Adam`).
        progress: show a tqdm bar with ETA (default: only when stderr is a terminal).
        images_per_objective: images per objective; the objective sees all of them (``batch=i``
            picks one; ``diversity`` works across them).
        redirect_relu: ``"lucid"``, ``"lucent"``, ``None`` (off), or ``"preset"`` (the preset's); every
            ReLU spelling is redirected (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu_()``, ...),
            and a model that computes no ReLU gets a :class:`~circuits_vision.optvis.NoReLUWarning`.
        image_seeds: one seed per objective, used instead of ``seed``: image ``i`` of objective ``j``
            draws from ``(image_seeds[j], i)``, so an objective's images do not depend on the other
            objectives of the call, their order, or ``batch_size`` (how the atlas renders any subset
            of units reproducibly).
        config: the engine's knobs (:class:`~circuits_vision.optvis.RenderConfig`: memory format,
            precision, fused pipeline, memory budget); default ``RenderConfig()``. Whatever the
            memory budget, a render larger than 1024x1024 px whose estimated memory exceeds the
            free memory is refused up front.

    The model runs in its own dtype (float32, float64, bfloat16 or float16): the image is
    optimised in float32 and cast to the model's dtype at its input.

    A model with a head of fixed input size (it declares ``input_size`` and only computes the layer
    there, like InceptionV1's logits) gets its input size back under the default transforms: they
    end with a crop or pad to ``input_size`` (lucid's preset) or resize to it (lucent's).

    Returns:
        :class:`RenderResult`.

    Raises:
        UnknownLayerError / IndexError: an unknown layer, channel, position or batch index, before
            the first step (the message names the valid range).
        RenderInputError: images too small for the layers (the message gives the minimum size), or
            of the wrong size for a fixed-size head (the message says which transform fixes it).
        RenderTooLargeError: the render would not fit the device (the message gives the estimate).
        NonFiniteError: NaN/Inf in an image, objective value or gradient (says step and objective).
    """
    args_.check_model(model)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if config is None:
        config = RenderConfig()
    elif not isinstance(config, RenderConfig):
        raise TypeError(f"config must be a RenderConfig, got {type(config).__name__}")
    memory_budget, mode = config.memory_budget, config.precision
    preset_settings = PRESETS[preset]
    steps, size = args_.count("steps", steps), args_.size_pair(size)
    group = args_.count("images_per_objective", images_per_objective)
    batch_size = args_.optional_count("batch_size", batch_size)
    dtype = args_.model_dtype(model)
    objective_list = args_.objective_list(objectives, model, size)
    if image_seeds is not None:
        image_seeds = [int(s) for s in image_seeds]
        if len(image_seeds) != len(objective_list):
            raise ValueError(
                f"image_seeds needs one seed per objective: got {len(image_seeds)} for {len(objective_list)} objectives"
            )
    thresholds = sorted({int(t) for t in thresholds})
    if thresholds and not 1 <= thresholds[0] <= thresholds[-1] <= steps:
        raise ValueError(f"thresholds must lie in 1..steps={steps}, got {thresholds}")

    model_dev = hooks.model_device(model)
    device = torch.device(device) if device is not None else model_dev
    if device != model_dev and not (device.type == model_dev.type and device.index is None):
        raise ValueError(
            f"the model is on {model_dev} but device={device}: move it first with model.to({str(device)!r})"
        )
    redirect = preset_settings.redirect_relu if redirect_relu == "preset" else redirect_relu

    default_transforms = transforms is None
    resolved_param = _resolve_param(param, preset_settings)
    if isinstance(resolved_param, CPPN):  # lucid's CPPN notebook: Adam 0.005, no transforms
        optimizer = optimizer or _default_optimizer(resolved_param.learning_rate)
        if transforms is None:
            transforms = []
    transform = (
        preset_settings.transforms()
        if transforms is None
        else (transforms if isinstance(transforms, T_.Compose) else T_.compose(list(transforms)))
    )
    plan = _Plan(
        model=model,
        objectives=objective_list,
        steps=steps,
        size=size,
        seed=seed,
        thresholds=thresholds,
        group=group,
        device=device,
        param=resolved_param,
        transform=transform,
        model_input=preset_settings.model_input(min(size)),
        optimizer=optimizer or _default_optimizer(preset_settings.learning_rate),
        redirect=redirect,
        fused=config.fused,
        precision=mode,
        channels_last=config.channels_last,
        image_seeds=image_seeds,
        dtype=dtype,
        default_transforms=default_transforms,
    )
    with prepared_model(model, plan.channels_last), precision(device, mode):
        check_fits(model, _static_layers(objective_list), size, group, device)
        plan.validate()
        total = len(objective_list) * group
        if plan.lucent_style_param:
            batch_size = total
        elif batch_size is None:
            batch_size = choose_batch_size(model, plan.layers, plan.input_size, group, total, device, memory_budget)
        batch_size = max(group, (int(batch_size) // group) * group)
        bar = tqdm(
            total=steps * -(-total // batch_size), disable=not _progress_enabled(progress), desc="render", unit="step"
        )
        try:
            chunks = [
                plan.run_chunk(start, min(total, start + batch_size), bar) for start in range(0, total, batch_size)
            ]
        finally:
            bar.close()
    history = torch.cat([c.history for c in chunks], dim=1)
    return RenderResult(
        images=torch.cat([c.images for c in chunks]),
        history=history,
        snapshots={t: torch.cat([c.snapshots[t] for c in chunks]) for t in thresholds},
        objectives=[o.description or o.name for o in objective_list],
        never_active=(history == 0).all(dim=0),
    )


def _static_layers(objectives: list[Objective]) -> list[str] | None:
    """The layers the objectives declare (``None`` when some objective does not say)."""
    if any(o.layers is None for o in objectives):
        return None
    return needed_layers(objectives, [layer for o in objectives for layer in o.layers])


@dataclass
class _ChunkResult:
    images: torch.Tensor
    history: torch.Tensor
    snapshots: dict[int, torch.Tensor]


@dataclass
class _Plan:
    """Everything fixed for one render call; :meth:`run_chunk` optimises one batch of images."""

    model: nn.Module
    objectives: list[Objective]
    steps: int
    size: tuple[int, int]
    seed: int
    thresholds: list[int]
    group: int
    device: torch.device
    param: Callable
    transform: T_.Compose
    model_input: int | None
    optimizer: Callable
    redirect: str | None
    fused: bool | None
    precision: str
    channels_last: bool
    dtype: torch.dtype = torch.float32
    default_transforms: bool = False
    layers: list[str] | None = None
    input_size: tuple[int, int] = (0, 0)
    image_seeds: list[int] | None = None

    @property
    def lucent_style_param(self) -> bool:
        return _takes_no_arguments(self.param) and not isinstance(self.param, (FFT, Pixel, CPPN))

    def _use_fused(self, image_f) -> bool:
        possible = (
            isinstance(image_f, ImageFunction)
            and image_f.fusable
            and self.transform.fusable
            and self.model_input is None
        )
        if self.fused and not possible:
            raise ValueError(
                "fused=True needs a colour-decorrelated image parameterization without alpha, geometric "
                "transforms with constant padding (pad, jitter, random_scale, random_rotate, crop_or_pad_to) "
                "and a preset without a fixed model input size"
            )
        return possible if self.fused is None else bool(self.fused)

    def _model_input_size(self) -> tuple[tuple[int, int], int | None]:
        """``((h, w), margin)``: the size the model sees, and how much the transforms add to ``size``
        (``None`` when a resize fixes the size)."""
        if self.model_input is not None:
            return (self.model_input, self.model_input), None
        if self.transform.fusable:
            input_size = tuple(self.transform.output_size(self.size))
        else:
            probe = torch.full((1, 3, *self.size), 0.5, device=self.device)
            input_size = tuple(self.transform(probe, torch.Generator().manual_seed(0)).shape[-2:])
        margins = {input_size[0] - self.size[0], input_size[1] - self.size[1]}
        return input_size, margins.pop() if len(margins) == 1 else None

    def _keep_fixed_input_size(self) -> None:
        """A head of fixed input size (the model declares ``input_size`` and computes the layers
        there but not at the transformed size): end the default transforms at that size."""
        declared = declared_input_size(self.model)
        if not self.default_transforms or declared is None or declared == self.input_size or self.layers is None:
            return
        needed = needed_layers(self.objectives, self.layers)
        if not needed or runs_at(self.model, needed, self.input_size):
            return
        declared = fixed_input_size(self.model, needed)
        if declared is None:
            return
        if self.model_input is not None:  # lucent: the final resize goes to the declared size
            self.model_input = declared[0] if declared[0] == declared[1] else None
        if self.model_input is None:
            # lucid: crop (or pad with the transforms' grey) back to the declared size
            self.transform = T_.compose(
                list(self.transform.transforms) + [T_.crop_or_pad_to(*declared, value=self.transform.pad_value)]
            )
        self.input_size = declared

    def validate(self) -> None:
        """Layers, channels and image size, before any optimisation."""
        self.input_size, margin = self._model_input_size()
        if min(self.input_size) < 1:
            raise ValueError(f"size={self.size} leaves no image after the transforms {self.transform!r}")
        self.layers = objective_layers(self.objectives, self.model, self.input_size, self.group)
        self._keep_fixed_input_size()
        check_channels_and_size(
            self.objectives, self.model, self.layers, self.input_size, self.size, margin, self.group
        )

    def _generator(self, index: int) -> torch.Generator:
        """Image ``index`` of the call: from ``(seed, index)``, or ``(its objective's seed, its place in the group)``."""
        if self.image_seeds is None:
            return _image_generator(self.seed, index)
        return _image_generator(self.image_seeds[index // self.group], index % self.group)

    def _make_param(self, count: int, generators: list[torch.Generator]):
        if self.lucent_style_param:
            params, image_f = self.param()
            made = image_f().shape[0]
            if made != count:
                raise ValueError(
                    f"param() made {made} images but {len(self.objectives)} objectives x "
                    f"{self.group} images_per_objective need {count}"
                )
            return params, image_f
        return self.param(
            batch=count, height=self.size[0], width=self.size[1], generator=generators, device=self.device
        )

    def run_chunk(self, start: int, stop: int, bar) -> _ChunkResult:
        count = stop - start
        generators = [self._generator(i) for i in range(start, stop)]
        params, image_f = self._make_param(count, generators)
        optimizer = self.optimizer(params)
        step_inputs = _StepInputs(self, image_f, generators, count)
        first_objective = start // self.group
        objectives = self.objectives[first_objective : first_objective + count // self.group]
        history = torch.empty(self.steps, len(objectives))
        snapshots = {}
        with redirected_relus(self.model, self.redirect) as redirect:
            for step in range(self.steps):
                if redirect is not None:
                    redirect.step(step)
                optimizer.zero_grad(set_to_none=False)
                image, model_input = step_inputs(step)
                _check_finite(image, step, "image", first_objective, self.group, objectives)
                losses = self._losses(image, model_input, objectives)
                _check_finite(losses, step, "objective value", first_objective, 1, objectives)
                losses.sum().backward()
                for p in params:
                    if p.grad is not None:
                        _check_finite(p.grad, step, "gradient", first_objective, self.group, objectives)
                optimizer.step()
                history[step] = losses.detach().float().cpu()
                if step + 1 in self.thresholds:
                    with torch.no_grad():
                        snapshots[step + 1] = image_f().detach().float().cpu()
                bar.update(1)
        with torch.no_grad():
            images = image_f().detach().float().cpu()
        return _ChunkResult(images, history, snapshots)

    def _losses(self, image: torch.Tensor, model_input: torch.Tensor, objectives: list[Objective]) -> torch.Tensor:
        """``[num_objectives]`` losses, objective ``g`` evaluated on its own images only."""
        if self.layers is None:
            names = hooks.layer_names(self.model)
            truncate = False
        else:
            names, truncate = self.layers, True
        acts = {}
        if names:
            if model_input.dtype != self.dtype:  # the image is optimised in float32; the model runs in its dtype
                model_input = model_input.to(self.dtype)
            with forward_autocast(self.device, self.precision):
                acts = hooks.run_with_cache(self.model, model_input, names, truncate=truncate)
        values = []
        for g, objective in enumerate(objectives):
            lo, hi = g * self.group, (g + 1) * self.group

            def T(name: str, lo: int = lo, hi: int = hi) -> torch.Tensor:
                if name == INPUT:
                    return image[lo:hi]
                if name not in acts:
                    acts[name] = acts[hooks.resolve_layer(self.model, name)[0]]
                return acts[name][lo:hi].float()

            value = objective(T)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                shape = (
                    f"a tensor of shape {tuple(value.shape)}"
                    if isinstance(value, torch.Tensor)
                    else type(value).__name__
                )
                raise TypeError(
                    f"objective {objective!r} must return a scalar (one loss for its images), got {shape}; "
                    "reduce it with .mean() or .sum()"
                )
            values.append(value.reshape(()))
        return torch.stack(values)


class _StepInputs:
    """Per step: ``(image [n, 3, H, W] in [0, 1], model input [n, 3, h, w])``."""

    def __init__(self, plan: _Plan, image_f, generators: list[torch.Generator], count: int):
        self.plan, self.image_f, self.generators = plan, image_f, generators
        self.fused = plan._use_fused(image_f)
        self.memory_format = torch.channels_last if plan.channels_last else torch.contiguous_format
        if self.fused:
            size = plan.size
            self.out_size = plan.transform.output_size(size)
            matrices = [plan.transform.sample(plan.steps, size, g) for g in generators]
            thetas = [T_.affine_to_theta(m, size, self.out_size) for m in matrices]
            # [steps, n, 2, 3]: one row of per-image resampling maps per step
            self.thetas = torch.stack(thetas, dim=1).float().to(plan.device).contiguous()
            self.pad_value = float(plan.transform.pad_value)
            self.scale = torch.ones(3, device=plan.device)
            self.shift = torch.zeros(3, device=plan.device)
            self.pipeline = ops.image_pipeline  # the compiled op, or its twin with the ops' one warning
            self.color = None
            self.alpha = None
        else:
            self.alpha = T_.collapse_alpha() if getattr(image_f, "alpha", False) else None
            self.resize = T_.resize(plan.model_input) if plan.model_input is not None else None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            x = self.image_f.raw()
            if self.color is None:  # moved to the device once, not every step
                self.color = self.image_f.matrix(x)
            out, image = self.pipeline(
                x, self.color, self.thetas[step], self.pad_value, self.out_size, self.scale, self.shift
            )
            return image, out.contiguous(memory_format=self.memory_format)
        image = self.image_f()
        outs = []
        for i, generator in enumerate(self.generators):
            x = image[i : i + 1]
            if self.alpha is not None:
                x = self.alpha(x, generator)
            x = self.plan.transform(x, generator)
            if self.resize is not None:
                x = self.resize(x)
            outs.append(x)
        height = max(o.shape[-2] for o in outs)
        width = max(o.shape[-1] for o in outs)
        if any(o.shape[-2:] != (height, width) for o in outs):
            outs = [T_.crop_or_pad_to(height, width, value=0.5)(o) for o in outs]
        return image, torch.cat(outs).contiguous(memory_format=self.memory_format)


def _check_finite(
    values: torch.Tensor, step: int, what: str, first: int, per_objective: int, objectives: list[Objective]
) -> None:
    """Raise :class:`NonFiniteError` naming the step and the objective whose values are NaN/Inf.

    ``values`` is batch-first with ``per_objective`` rows per objective; ``first`` is the index of
    ``objectives[0]`` in the render call.
    """
    flat = values.detach().reshape(values.shape[0], -1) if values.dim() else values.detach().reshape(1, 1)
    # one reduction per row: NaN and Inf survive a sum
    finite = torch.isfinite(flat.sum(1))
    if bool(finite.all()):
        return
    if flat.shape[0] != len(objectives) * per_objective:  # not batch-first: the image is unknown
        raise NonFiniteError(f"step {step + 1}: a {what} is NaN or infinite (objectives {first}..)")
    g = int((~finite).nonzero()[0, 0]) // per_objective
    objective = objectives[g]
    raise NonFiniteError(
        f"step {step + 1}: the {what} of objective {first + g} ({objective.description or objective.name}) "
        "is NaN or infinite; lower the learning rate, check the objective for divisions by zero, "
        "or use preset='lucid' transforms that keep the image bounded"
    )
