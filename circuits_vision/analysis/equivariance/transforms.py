"""Kernel transformations and batched all-pairs similarity under a transformation.

Everything here works on stacks of kernels (or images) ``[N, C, S, S]`` and is batched: one
``grid_sample`` call transforms every unit at once and one matrix product per transformation
parameter compares every pair of units. Geometry follows :mod:`circuits_vision.stimuli`: angles
are degrees counter-clockwise with y pointing up (row 0 is the top row), so rotating a kernel by
``a`` turns what it detects by ``a`` counter-clockwise on screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, float], torch.Tensor]
"""``(kernels [N, C, S, S], parameter) -> transformed kernels [N, C, S, S]``."""


def _affine(kernels: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Resample ``kernels [N, C, S, S]`` at ``matrix @ (x, y_down)`` (normalised, centre at 0), bilinear, 0 outside."""
    n, c, h, w = kernels.shape
    theta = kernels.new_tensor([[matrix[0] + [0.0], matrix[1] + [0.0]]])
    # One transform for every kernel: fold the kernels into channels, so one grid serves them all.
    grid = F.affine_grid(theta, [1, n * c, h, w], align_corners=True)
    out = F.grid_sample(
        kernels.reshape(1, n * c, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out.view(n, c, h, w)


def rotate(kernels: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """``kernels [N, C, S, S]`` rotated by ``angle_deg`` counter-clockwise about their centre (bilinear).

    Multiples of 90 degrees are exact (pixel centres land on pixel centres).
    """
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-9:  # exact, no interpolation blur
        return torch.rot90(kernels, k=int(round(quarter)) % 4, dims=(-2, -1))
    a = math.radians(angle_deg)
    # output pixel p reads input at R(-a) p; in (x, y_down) coordinates that is [[cos, -sin], [sin, cos]].
    return _affine(kernels, [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def zoom(kernels: torch.Tensor, log2_scale: float) -> torch.Tensor:
    """``kernels [N, C, S, S]`` with their pattern enlarged ``2 ** log2_scale`` times about the centre."""
    inverse = 2.0 ** (-log2_scale)
    if abs(log2_scale) < 1e-12:
        return kernels
    return _affine(kernels, [[inverse, 0.0], [0.0, inverse]])


def hue_matrix(hue_deg: float, like: torch.Tensor) -> torch.Tensor:
    """[3, 3] rotation of RGB space by ``hue_deg`` around the grey axis (1, 1, 1) (red -> green at 120)."""
    a = math.radians(hue_deg)
    axis = like.new_full((3,), 1.0 / math.sqrt(3.0))
    cross = like.new_tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    outer = torch.outer(axis, axis)
    eye = torch.eye(3, dtype=like.dtype, device=like.device)
    return math.cos(a) * eye + math.sin(a) * cross + (1 - math.cos(a)) * outer  # Rodrigues' formula


def hue_rotate(kernels: torch.Tensor, hue_deg: float) -> torch.Tensor:
    """RGB ``kernels [N, 3, S, S]`` whose preferred colour is turned by ``hue_deg`` around grey.

    A kernel ``w`` responds to colour ``c`` with ``w . c``; the rotated kernel ``H w`` responds to
    ``H c`` the same way, since ``H`` is orthogonal.
    """
    if kernels.shape[1] != 3:
        raise ValueError(f"hue rotation needs RGB kernels [N, 3, S, S], got {tuple(kernels.shape)}")
    return torch.einsum("ij,njhw->nihw", hue_matrix(hue_deg, kernels), kernels)


def disk_mask(size: int, like: torch.Tensor) -> torch.Tensor:
    """[size, size] with 1 inside the disk inscribed in the kernel, 0 in the corners rotation drops."""
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=like.dtype, device=like.device) - c
    radius = c + 0.5
    return ((idx[:, None] ** 2 + idx[None, :] ** 2) <= radius**2).to(like.dtype)


def channel_gather(
    source_angles: torch.Tensor, source_groups: torch.Tensor, periods: torch.Tensor, shift_deg: float
) -> torch.Tensor:
    """Input-channel map for a rotation by ``shift_deg`` when the source layer has rotation families.

    Args:
        source_angles: [C_source] orientation of every source channel (anything for non-members).
        source_groups: [C_source] family id of every source channel, -1 for channels in no family.
        periods: [n_families] the period (deg) of every source family.
    Returns:
        [C_source] long: rotated channel ``t`` takes the values of channel ``index[t]``, the member of
        ``t``'s family whose orientation is closest to ``angle[t] - shift`` (non-members map to themselves).
    """
    index = torch.arange(len(source_angles), device=source_angles.device)
    for g in range(len(periods)):
        members = (source_groups == g).nonzero().flatten()
        if len(members) == 0:
            continue
        period = float(periods[g])
        wanted = source_angles[members] - shift_deg
        diff = torch.remainder(source_angles[members][None, :] - wanted[:, None] + period / 2, period) - period / 2
        index[members] = members[diff.abs().argmin(dim=1)]
    return index


def normalised_flat(kernels: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``kernels [N, C, S, S]`` -> unit-norm rows ``[N, C*S*S]`` (after the spatial mask; zero rows stay 0)."""
    if mask is not None:
        kernels = kernels * mask
    flat = kernels.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def transform_similarity(
    kernels: torch.Tensor,
    parameters: torch.Tensor,
    transform: Transform,
    *,
    mask: torch.Tensor | None = None,
    gather: Callable[[float], torch.Tensor] | None = None,
    period: float | None = None,
) -> torch.Tensor:
    """All-pairs cosine similarity after a transformation, for every parameter: ``[P, N, N]``.

    ``S[p, i, j] = cos(T_p(W_i), W_j)``: how well unit ``j`` is unit ``i`` transformed by ``p``. It is
    computed as ``cos(T_{p/2}(W_i), T_{-p/2}(W_j))`` so both sides go through the same amount of
    interpolation (a bilinear rotation blurs; comparing a blurred kernel with a sharp one would favour
    parameters that need no interpolation). One matrix product per parameter; and since that form gives
    ``S[-p] = S[p]^T`` exactly, a parameter whose opposite (``-p``, modulo ``period`` for angles) was
    already computed costs only a transpose.

    Args:
        kernels: [N, C, S, S].
        parameters: [P] transformation parameters (angles, hue angles, log2 scales).
        transform: ``(kernels, parameter) -> kernels``; for ``period`` it must satisfy
            ``T_{a + period/2} = T_{period/2} o T_a`` with ``T_{period/2}`` orthogonal (rotations, hue turns).
        mask: [S, S] applied after transforming (the inscribed disk for rotations).
        gather: ``parameter -> [C] long`` input-channel map applied with the transformation (when the
            source layer is itself a family, a rotation also moves a unit's inputs to other channels).
        period: the parameters are angles modulo this (360); None for scales.
    """
    done: dict[float, torch.Tensor] = {}
    sims = []
    for p in parameters.tolist():
        key = _key(p, period)
        opposite = _key(-p, period)
        if opposite in done:
            sims.append(done[opposite].T)
            continue
        left = normalised_flat(_apply(kernels, p / 2, transform, gather), mask)
        right = normalised_flat(_apply(kernels, -p / 2, transform, gather), mask)
        done[key] = left @ right.T
        sims.append(done[key])
    return torch.stack(sims)


def self_similarity(
    kernels: torch.Tensor,
    parameters: torch.Tensor,
    transform: Transform,
    *,
    mask: torch.Tensor | None = None,
    gather: Callable[[float], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``[P, N]``: each kernel's similarity to itself transformed, ``cos(T_{p/2}(W_i), T_{-p/2}(W_i))``.

    The diagonal of :func:`transform_similarity` at a cost linear in ``N`` (no all-pairs product).
    """
    rows = []
    for p in parameters.tolist():
        left = normalised_flat(_apply(kernels, p / 2, transform, gather), mask)
        right = normalised_flat(_apply(kernels, -p / 2, transform, gather), mask)
        rows.append((left * right).sum(1))
    return torch.stack(rows)


def _key(p: float, period: float | None) -> float:
    """``p`` as a dictionary key: rounded, and wrapped into [0, period) for angles."""
    if period is None:
        return round(p, 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return round(p % period, 6) % period


def _apply(kernels: torch.Tensor, p: float, transform: Transform, gather) -> torch.Tensor:
    out = transform(kernels, p)
    if gather is not None:
        out = out[:, gather(p)]
    return out
