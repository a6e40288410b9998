"""Null baselines for the equivariance statistics, permutation and tail p-values, Benjamini-Hochberg q-values.

Every score that decides membership is compared with the same statistic on a baseline that keeps the
layer's marginal statistics and breaks the structure being tested:

- :func:`scramble_kernels` (pairs, invariance, mirror pairs, the default): every kernel's spatial
  phases randomised, the same random phase for all its input channels, then its radial energy profile
  put back. The surrogate keeps the kernel's spatial power spectrum per channel, the cross-spectra
  between its channels (so it stays inside the subspace a bottleneck confines the layer to) and how its
  energy falls off from the centre; it loses its shape. For random weights (Gaussian fields) the
  surrogates are drawn from the same distribution as the kernels, so the test is calibrated there.
  When the source layer holds rotation families (``source_families``), a rotation also moves a kernel's
  inputs between family members; the surrogates keep their weights per input channel at zero frequency,
  so each surrogate's inputs are also permuted among the members of each family
  (:func:`shuffle_family_channels`, its own permutation per surrogate) and their pairs are compared under
  the map of shuffled member angles (``family_gather(shuffle=...)``): both break the correspondence
  between the kernels and the source orientations (for a 1x1 kernel, which scrambling leaves as it is,
  the permutation is the whole null).
- :func:`shuffle_kernels`: which kernel belongs to which unit shuffled independently per input channel.
  Keeps every channel's kernels exactly; breaks the coherence across channels. It is anti-conservative
  when a bottleneck confines the kernels to a subspace (the surrogates leave it), so it is an option only.
- :func:`scramble_curves` (tuning-curve pairs, ``tuning_null="phase"``): each curve's Fourier phases randomised (power spectrum
  kept). A pure cosine keeps its shape under this, so cosine-tuned units cannot reach significance.
- :func:`shuffle_weights` (tuning-curve pairs, the default of ``method="tuning"``): copies of the model
  with every parameter tensor's entries permuted; their units' curves are the null pairs. With
  ``only=`` :func:`layer_parameters` (``tuning_null="layer"``) only the weights between a source layer and
  the layer are permuted: the null units read the real source units through random wiring, so a family
  that passes is one the layer's own wiring makes, not one inherited from tuned inputs.
- :func:`shift_curves`, shuffled angles (families, circuits): each member's angle redrawn uniformly
  over the period, which for tuning curves is each curve shifted circularly.

Pair p-values are :func:`tail_p_values`: permutation p-values whose far tail is a fitted generalized
Pareto distribution, so that a family in a wide layer can pass Benjamini-Hochberg over all its pairs.

Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import copy
from collections.abc import Collection

import torch
from torch import nn

__all__ = [
    "benjamini_hochberg",
    "effect_size",
    "permutation_p_values",
    "scramble_curves",
    "scramble_kernels",
    "shift_curves",
    "shuffle_family_channels",
    "shuffle_kernels",
    "shuffle_weights",
    "tail_p_values",
]


def _sources(n: int, count: int | None, generator: torch.Generator) -> torch.Tensor:
    """``[count]`` unit indices: every unit once per round, in random order, as many rounds as needed."""
    count = n if count is None else count
    rounds = [torch.randperm(n, generator=generator) for _ in range(-(-count // n))]
    return torch.cat(rounds)[:count]


def scramble_kernels(
    kernels: torch.Tensor, generator: torch.Generator, count: int | None = None, *, sources: torch.Tensor | None = None
) -> torch.Tensor:
    """``count`` (default ``N``) phase-randomised surrogates of ``kernels [N, C, S, S]``: ``[count, C, S, S]``.

    Surrogate ``m`` is made from kernel ``sources[m]`` (default: every kernel once per round, random order).
    """
    if kernels.ndim != 4:
        raise ValueError(f"kernels must be [N, C, S, S], got {tuple(kernels.shape)}")
    n, c, h, w = kernels.shape
    pick = _sources(n, count, generator) if sources is None else sources
    k = kernels[pick.to(kernels.device)].double()
    noise = torch.randn(len(pick), 1, h, w, generator=generator, dtype=torch.float64).to(k.device)
    phase = torch.angle(torch.fft.fft2(noise))  # Hermitian-antisymmetric, so the surrogate stays real
    phase[..., 0, 0] = 0.0  # keep the mean of every channel
    surrogate = torch.fft.ifft2(torch.fft.fft2(k) * torch.polar(torch.ones_like(phase), phase)).real
    # Put the radial energy profile back: phase randomisation spreads energy evenly over the square,
    # while kernels concentrate it near the centre (fewer effective pixels, more extreme similarities).
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ring = torch.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).round().long().flatten().to(k.device)  # [S*S]
    energy = k.pow(2).sum(1).flatten(1)  # [M, S*S]
    rings = int(ring.max()) + 1
    total = torch.zeros(len(pick), rings, dtype=torch.float64, device=k.device).index_add_(1, ring, energy)
    count_per_ring = torch.bincount(ring, minlength=rings).to(k.dtype)
    profile = (total / count_per_ring)[:, ring].view(len(pick), 1, h, w)
    mean_energy = surrogate.pow(2).sum(1, keepdim=True).mean((2, 3), keepdim=True).clamp_min(1e-300)
    surrogate = surrogate * (profile / mean_energy).sqrt()
    return surrogate.to(kernels.dtype)


def shuffle_kernels(
    kernels: torch.Tensor, generator: torch.Generator, count: int | None = None, *, sources: torch.Tensor | None = None
) -> torch.Tensor:
    """Surrogates ``[count, C, S, S]`` whose channel ``c`` is channel ``c`` of a random unit, drawn per channel
    (channel 0 from ``sources[m]`` when given)."""
    if kernels.ndim != 4:
        raise ValueError(f"kernels must be [N, C, S, S], got {tuple(kernels.shape)}")
    n, c = kernels.shape[:2]
    count = n if count is None else count
    picks = [_sources(n, count, generator) for _ in range(c)]
    if sources is not None:
        picks[0] = sources
    pick = torch.stack(picks, 1).to(kernels.device)  # [count, C]
    return kernels[pick, torch.arange(c, device=kernels.device)[None, :]]


def shuffle_family_channels(
    kernels: torch.Tensor, groups: list[torch.Tensor], generator: torch.Generator
) -> torch.Tensor:
    """``kernels [M, C, S, S]`` with each kernel's input channels permuted inside every group of ``groups``
    (``[k]`` long channel indices each: the members of one source family), a permutation of its own per
    kernel and group. The weights each kernel puts on a family stay; which member carries which is lost."""
    out = kernels.clone()
    m = kernels.shape[0]
    rows = torch.arange(m, device=kernels.device)[:, None]
    for group in groups:
        if len(group) < 2:
            continue
        group = group.to(kernels.device)
        order = torch.argsort(torch.rand(m, len(group), generator=generator), dim=1).to(kernels.device)
        out[:, group] = kernels[rows, group[order]]
    return out


def scramble_curves(
    curves: torch.Tensor, generator: torch.Generator, count: int | None = None, *, sources: torch.Tensor | None = None
) -> torch.Tensor:
    """Phase-randomised surrogates ``[count, A]`` of tuning curves ``[N, A]`` (mean and power spectrum kept), or
    ``[count, A, R]`` of response surfaces ``[N, A, R]`` (one random phase per frequency shared by a surface's
    ``R`` conditions, so the cross-spectra between them are kept too); surrogate ``m`` from curve
    ``sources[m]`` (default: every curve once per round, random order)."""
    if curves.ndim not in (2, 3):
        raise ValueError(
            f"curves must be [units, orientations] or [units, orientations, conditions], got {tuple(curves.shape)}"
        )
    pick = _sources(curves.shape[0], count, generator) if sources is None else sources
    x = curves[pick.to(curves.device)].double()
    spectrum = torch.fft.rfft(x, dim=1)
    shape = spectrum.shape[:2]
    phase = torch.rand(shape, generator=generator, dtype=torch.float64).to(x.device) * (2 * torch.pi)
    phase[:, 0] = 0.0
    if x.shape[1] % 2 == 0:
        phase[:, -1] = 0.0  # the Nyquist term is real
    if x.ndim == 3:
        phase = phase[:, :, None].expand_as(spectrum.real)
    return torch.fft.irfft(spectrum * torch.polar(torch.ones_like(phase), phase), n=x.shape[1], dim=1).to(curves.dtype)


def shuffle_weights(model: nn.Module, generator: torch.Generator, only: Collection[str] | None = None) -> nn.Module:
    """A deep copy of ``model`` whose every parameter tensor (or those named in ``only``, from
    ``named_parameters()``) has its entries permuted (``model`` is untouched).

    Each layer keeps its weights' values (their distribution, scale and sign balance) and loses which
    weight sits where: the units of the copy are those of an untrained network of this architecture.
    Their tuning curves are the null of the tuning-curve pair test: the ReLU gives random units single
    bumps too, so a phase surrogate of a unit's own curve (which keeps only its spectrum) is not what
    "unrelated units" look like; for a randomly initialised model the copy is drawn from the same
    distribution as the model, so the test is calibrated there.
    """
    copy_ = copy.deepcopy(model)
    if only is not None:
        unknown = set(only) - {name for name, _ in copy_.named_parameters()}
        if unknown:
            raise ValueError(f"only names parameters the model does not have: {sorted(unknown)[:5]}")
    with torch.no_grad():
        for name, parameter in copy_.named_parameters():
            if only is not None and name not in only:
                continue
            flat = parameter.view(-1)
            order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
            flat.copy_(flat[order])
    return copy_


def layer_parameters(model: nn.Module, layer: str, source: str | None) -> list[str]:
    """Names (``named_parameters()``) of the parameters between ``source`` and ``layer``: those ``layer``'s output
    depends on and ``source``'s does not (read off the autograd graph of one probe image, so any
    architecture works; ``source=None``: the input, i.e. every parameter up to ``layer``). Raises ValueError
    when there are none (``source`` is not before ``layer``)."""
    from circuits_vision.hooks import eval_mode, layer_names, model_input_size, probe_input, run_with_cache

    named = [(name, p) for name, p in model.named_parameters() if p.is_floating_point()]
    frozen = [p for _, p in named if not p.requires_grad]  # planted and loaded models may freeze theirs
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad(), eval_mode(model):
            x = probe_input(model, model_input_size(model), torch.Generator().manual_seed(0))
            acts = run_with_cache(model, x, [name for name in (source, layer) if name is not None])
            reached = {None: set()}
            for name in acts:
                out = acts[name]
                grads = torch.autograd.grad(out.sum(), [p for _, p in named], allow_unused=True, retain_graph=True)
                reached[name] = {n for (n, _), g in zip(named, grads) if g is not None}
    finally:
        for p in frozen:
            p.requires_grad_(False)
    between = [n for n, _ in named if n in reached[layer] and n not in reached[source]]
    if not between:
        raise ValueError(
            f"no parameters lie between {source!r} and {layer!r}: pass a source layer that comes before "
            f"{layer!r} (e.g. one of {layer_names(model)[:3]}...)"
        )
    return between


def shift_curves(curves: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each curve of ``[N, A]`` shifted circularly by a random number of steps; returns (curves, shifts [N])."""
    n, a = curves.shape
    shifts = torch.randint(a, (n,), generator=generator)
    index = (torch.arange(a)[None, :] - shifts[:, None]) % a
    return curves.gather(1, index.to(curves.device)), shifts


def permutation_p_values(statistic: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``(1 + #{null >= s}) / (1 + len(null))`` for every ``s`` in ``statistic`` (any shape); ``null`` 1-D.

    The ``+1`` counts the observed value among the draws, so no p-value is 0.
    """
    ordered = torch.sort(null.flatten().double()).values
    s = statistic.double()
    below = torch.searchsorted(ordered, s.flatten().contiguous(), right=False).view(s.shape)
    return (1.0 + (len(ordered) - below).double()) / (1.0 + len(ordered))


TAIL_EXCEEDANCES = 250
"""Null draws above the threshold the generalized Pareto tail of :func:`tail_p_values` is fitted to."""

TAIL_MIN_DRAWS = 1000
"""Fewer null draws than this and :func:`tail_p_values` keeps the permutation p-values."""

TAIL_BELOW = 10
"""Statistics with fewer null draws at or above them than this get the tail's p-value."""


def _pareto_pwm(excess: torch.Tensor) -> tuple[float, float] | None:
    """Shape ``k`` and scale ``sigma`` of a generalized Pareto distribution fitted to ``excess`` (> 0, 1-D) by
    probability-weighted moments (Hosking & Wallis 1987; ``k > 0`` is a bounded tail ending at ``sigma / k``).
    None when the moments give no valid distribution."""
    y = torch.sort(excess.double()).values
    n = len(y)
    plotting = (torch.arange(1, n + 1, dtype=torch.float64) - 0.35) / n
    a0 = float(y.mean())
    a1 = float(((1.0 - plotting) * y).mean())
    if not a0 - 2.0 * a1 > 0.0:
        return None
    k = a0 / (a0 - 2.0 * a1) - 2.0
    sigma = 2.0 * a0 * a1 / (a0 - 2.0 * a1)
    if not sigma > 0.0:
        return None
    return k, sigma


def _pareto_survival(y: torch.Tensor, k: float, sigma: float) -> torch.Tensor:
    """``P(Y > y)`` of the generalized Pareto distribution (``y >= 0``)."""
    if abs(k) < 1e-9:
        return torch.exp(-y / sigma)
    base = (1.0 - k * y / sigma).clamp_min(0.0)
    return base.pow(1.0 / k)


def tail_p_values(statistic: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """Permutation p-values of ``statistic`` (any shape) against ``null`` (1-D), with the far tail modelled.

    A permutation p-value cannot fall below ``1 / (1 + len(null))``, while Benjamini-Hochberg over ``m`` tests
    asks about ``alpha * k / m`` of the ``k`` smallest: with a few thousand null pairs and ten thousand unit
    pairs, a family of eight rotated copies could never pass, however far beyond the null its pairs lie. Where
    fewer than ``TAIL_BELOW`` draws reach a statistic, its p-value is read from a generalized Pareto
    distribution fitted to the ``TAIL_EXCEEDANCES`` largest draws (Knijnenburg et al. 2009, "Fewer
    permutations, more accurate P-values"): ``p = (exceedances / len(null)) * P(Y > s - t)``, ``t`` halfway
    between the largest draw left out and the smallest kept. With fewer than ``TAIL_MIN_DRAWS`` draws, or a fit
    that fails, these are the plain :func:`permutation_p_values`. A fitted bounded tail (shape ``k > 0``) is
    replaced by the exponential one (``k = 0``) fitted to the same draws: the statistics tested here are bounded, but
    a bounded fit from a few hundred draws can end too early and give p = 0 to values the null does reach,
    while the exponential tail only overstates p (costs power, never false discoveries).
    """
    p = permutation_p_values(statistic, null)
    draws = null.flatten().double()
    total = len(draws)
    if total < TAIL_MIN_DRAWS:
        return p
    exceedances = min(TAIL_EXCEEDANCES, total // 10)
    top = torch.topk(draws, exceedances + 1).values  # descending
    threshold = float(top[-1] + top[-2]) / 2.0
    excess = top[:-1] - threshold
    fit = _pareto_pwm(excess)
    if fit is None:
        return p
    s = statistic.double()
    far = (p * (1.0 + total) - 1.0 < TAIL_BELOW) & (s > threshold)
    if not bool(far.any()):
        return p
    k, sigma = fit
    if k > 0.0:  # the exponential tail, fitted by maximum likelihood (its scale is the mean excess)
        k, sigma = 0.0, float(excess.mean())
    tail = (exceedances / total) * _pareto_survival(s[far] - threshold, k, sigma)
    out = p.clone()
    out[far] = torch.minimum(tail, p[far]).clamp_min(torch.finfo(torch.float64).tiny)
    return out


def benjamini_hochberg(p: torch.Tensor) -> torch.Tensor:
    """Benjamini-Hochberg q-values of ``p`` (any shape; NaN entries are not tests and stay NaN)."""
    flat = p.double().flatten()
    valid = ~torch.isnan(flat)
    q = torch.full_like(flat, float("nan"))
    values = flat[valid]
    m = len(values)
    if m == 0:
        return q.view(p.shape)
    order = torch.argsort(values)
    ranked = values[order] * m / torch.arange(1, m + 1, dtype=torch.float64)
    ranked = torch.flip(torch.cummin(torch.flip(ranked, [0]), 0).values, [0]).clamp(max=1.0)
    out = torch.empty_like(values)
    out[order] = ranked
    q[valid] = out
    return q.view(p.shape)


def effect_size(statistic: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``(statistic - mean(null)) / std(null)``."""
    null = null.double().flatten()
    return (statistic.double() - null.mean()) / null.std().clamp_min(1e-12)
