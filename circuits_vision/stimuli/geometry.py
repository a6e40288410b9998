"""Line drawings: curves (rounded corners), angles, lines, edges and circles.

Each function takes scalars or 1-D parameters (broadcast to a batch N; see ``parameter_grid`` for
cartesian grids) and returns images ``[N, 3, size, size]`` in [0, 1]. Lengths are in pixels, angles in
degrees counter-clockwise from +x (image right), y pointing up; see ``_canvas`` for the conventions.
"""

from __future__ import annotations

import math

import torch

from ._canvas import (
    ParamLike,
    as_device,
    batch_params,
    check_antialias,
    check_size,
    col,
    drawn_in_float,
    fill_coverage,
    make_canvas,
    radians,
    require,
    segment_distance,
    stroke_coverage,
)

BLACK = (0.0, 0.0, 0.0)
WHITE = (1.0, 1.0, 1.0)


def rounded_corner_distance(x, y, orientation, radius, angular_width, arm_length, cx, cy) -> torch.Tensor:
    """Distance [N, H, W] from each pixel to a rounded corner (all parameters [N]; angles in degrees).

    The corner is an arc of radius ``radius`` spanning ``angular_width`` degrees whose midpoint sits at
    (cx, cy) and whose convex side faces ``orientation``; from each end a straight arm of length
    ``arm_length`` continues along the tangent. Radius 0 gives a sharp angle whose arms turn by
    ``angular_width`` degrees.
    """
    theta = col(radians(orientation))
    half = col(radians(angular_width)) / 2
    r = col(radius)
    arm = col(arm_length)
    # Centre of the circle the arc lies on: one radius behind the arc's midpoint.
    ox = col(cx) - r * torch.cos(theta)
    oy = col(cy) - r * torch.sin(theta)
    rx, ry = x - ox, y - oy
    offset = torch.remainder(torch.atan2(ry, rx) - theta + math.pi, 2 * math.pi) - math.pi
    on_arc = offset.abs() <= half
    arc_dist = (torch.hypot(rx, ry) - r).abs()
    distances = []
    for sign in (1.0, -1.0):
        phi = theta + sign * half
        ex, ey = ox + r * torch.cos(phi), oy + r * torch.sin(phi)
        # Tangent leaving the arc at this end (counter-clockwise at +, clockwise at -).
        tx, ty = -sign * torch.sin(phi), sign * torch.cos(phi)
        distances.append(segment_distance(x, y, ex, ey, ex + arm * tx, ey + arm * ty))
    ends = torch.minimum(distances[0], distances[1])
    return torch.where(on_arc, torch.minimum(arc_dist, ends), ends)


@drawn_in_float
def curves(
    orientation: ParamLike,
    radius: ParamLike,
    *,
    angular_width: ParamLike = 90.0,
    arm_length: ParamLike = 0.0,
    thickness: ParamLike = 2.0,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Curves (arcs, lucid's rounded-corner family) -> [N, 3, size, size].

    Args:
        orientation: direction (deg) the convex side of the curve faces; the arc's midpoint is at ``center``.
        radius: radius of curvature in pixels (>= 0; 0 = a sharp angle when ``arm_length`` > 0).
        angular_width: angle (deg, 0..360) the arc spans; for radius 0 how far the arms turn.
        arm_length: straight tangent arms (pixels, >= 0) added at both ends of the arc.
        thickness: stroke width in pixels (> 0).
        center: (x, y) offset in pixels of the arc's midpoint from the image centre, (2,) or (N, 2).
        color, background: RGB in [0, 1], (3,) or (N, 3).
    """
    dev = as_device(device)
    size, antialias = check_size(size), check_antialias(antialias)
    n, p = batch_params(
        dev,
        dtype,
        orientation=orientation,
        radius=radius,
        angular_width=angular_width,
        arm_length=arm_length,
        thickness=thickness,
    )
    require(p["radius"] >= 0, "radius", ">= 0 pixels", p["radius"])
    require(
        (p["angular_width"] >= 0) & (p["angular_width"] <= 360),
        "angular_width",
        "in [0, 360] degrees",
        p["angular_width"],
    )
    require(p["arm_length"] >= 0, "arm_length", ">= 0 pixels", p["arm_length"])
    require(p["thickness"] > 0, "thickness", "> 0 pixels", p["thickness"])
    length = p["radius"] * radians(p["angular_width"]) + 2 * p["arm_length"]
    require(length > 0, "radius", "> 0 (or arm_length > 0 for an angle): the curve has zero length", p["radius"])
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    d = rounded_corner_distance(
        canvas.x,
        canvas.y,
        p["orientation"],
        p["radius"],
        p["angular_width"],
        p["arm_length"],
        canvas.center[:, 0],
        canvas.center[:, 1],
    )
    return canvas.paint(stroke_coverage(d, p["thickness"], antialias))


@drawn_in_float
def angles(
    orientation: ParamLike,
    opening: ParamLike = 90.0,
    *,
    arm_length: ParamLike = 16.0,
    thickness: ParamLike = 2.0,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sharp angles -> [N, 3, size, size]: two arms of ``arm_length`` pixels meeting at ``center``.

    ``opening`` is the interior angle in degrees, in (0, 180] (180 = a straight line); the apex points
    towards ``orientation``. Equal to ``curves(orientation, 0, angular_width=180 - opening, arm_length=...)``.
    """
    opening_t = torch.as_tensor(opening, dtype=dtype)
    require((opening_t > 0) & (opening_t <= 180), "opening", "in (0, 180] degrees", opening_t)
    require(torch.as_tensor(arm_length, dtype=dtype) > 0, "arm_length", "> 0 pixels", arm_length)
    return curves(
        orientation,
        0.0,
        angular_width=180.0 - opening_t,
        arm_length=arm_length,
        thickness=thickness,
        center=center,
        color=color,
        background=background,
        size=size,
        antialias=antialias,
        device=device,
        dtype=dtype,
    )


@drawn_in_float
def lines(
    orientation: ParamLike,
    *,
    length: ParamLike = 32.0,
    thickness: ParamLike = 2.0,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Straight line segments through ``center`` along ``orientation`` (deg, period 180) -> [N, 3, size, size]."""
    dev = as_device(device)
    size, antialias = check_size(size), check_antialias(antialias)
    n, p = batch_params(dev, dtype, orientation=orientation, length=length, thickness=thickness)
    require(p["length"] > 0, "length", "> 0 pixels", p["length"])
    require(p["thickness"] > 0, "thickness", "> 0 pixels", p["thickness"])
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    theta = col(radians(p["orientation"]))
    hx, hy = col(p["length"]) / 2 * torch.cos(theta), col(p["length"]) / 2 * torch.sin(theta)
    d = segment_distance(canvas.x, canvas.y, canvas.cx - hx, canvas.cy - hy, canvas.cx + hx, canvas.cy + hy)
    return canvas.paint(stroke_coverage(d, p["thickness"], antialias))


@drawn_in_float
def edges(
    orientation: ParamLike,
    *,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Edges between two half-planes -> [N, 3, size, size].

    The boundary passes through ``center``; ``color`` fills the side that ``orientation`` (deg, period 360,
    so it includes polarity) points to, ``background`` the other. With two colours this is also the
    colour-contrast pattern.
    """
    dev = as_device(device)
    size, antialias = check_size(size), check_antialias(antialias)
    n, p = batch_params(dev, dtype, orientation=orientation)
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    theta = col(radians(p["orientation"]))
    along_normal = (canvas.x - canvas.cx) * torch.cos(theta) + (canvas.y - canvas.cy) * torch.sin(theta)
    return canvas.paint(fill_coverage(-along_normal, antialias))


@drawn_in_float
def circles(
    radius: ParamLike,
    *,
    thickness: ParamLike | None = 2.0,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Circles (rings ``thickness`` pixels wide) or, with ``thickness=None``, filled discs -> [N, 3, size, size]."""
    dev = as_device(device)
    size, antialias = check_size(size), check_antialias(antialias)
    params = {"radius": radius} if thickness is None else {"radius": radius, "thickness": thickness}
    n, p = batch_params(dev, dtype, **params)
    require(p["radius"] > 0, "radius", "> 0 pixels", p["radius"])
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    from_centre = torch.hypot(canvas.x - canvas.cx, canvas.y - canvas.cy) - col(p["radius"])
    if thickness is None:
        return canvas.paint(fill_coverage(from_centre, antialias))
    require(p["thickness"] > 0, "thickness", "> 0 pixels (or None for a filled disc)", p["thickness"])
    return canvas.paint(stroke_coverage(from_centre.abs(), p["thickness"], antialias))
