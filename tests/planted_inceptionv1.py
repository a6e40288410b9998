"""A random InceptionV1 with a few published Circuits claims written into it at their published units.

Darkness relays (black = 1, white = 0) are carried from the image to
chosen channels through conv2d0 -> conv2d1 -> conv2d2 -> mixed3a's 3x3 branch (the published 3a curve
partners of the aligned pairs) and mixed3a's 5x5 branch (its 9 published black-and-white units). Each
published mixed3b curve unit reads only its published 3a partner, through a 5x5 kernel that is the
partner's own response map to a curve at the unit's published orientation (fitted to respond at that orientation and not to lines): so
379 <- 147 is its strongest input, the curve family sits at its published orientations, inside the 5x5
branch, and the 3a black-and-white units are colour-blind (their relay weighs R, G, B equally; the
curve partners' relay reads red only, so they see colour). The high-low frequency units' weights get the published NMF factors
(:func:`_plant_high_low_frequency`), mixed5b's 5x5 kernels horizontal bands and conv2d0's colour-contrast and
Gabor families their kinds of kernel (:func:`_plant_conv2d0_families`). The echo of Curve
Circuits is planted in 3b:379 (:func:`_plant_echo`): an excitatory matched filter for the opposite curve from one
opposite-facing 3a unit, cancelled exactly by the same filter with a minus sign from another, so the unit's
tuning is unchanged until the inhibition is removed. Every other weight stays random.
"""

from __future__ import annotations

import math

import torch

from circuits_vision import stimuli
from circuits_vision.analysis.tuning import receptive_field_center
from circuits_vision.hooks import get_layer, run_with_cache
from circuits_vision.models import facts, inceptionv1

# conv2d0 / conv2d1 and conv2d2 channels carrying the red channel's darkness (for the curves; it also
# sees colour, so the curve partners are not black-and-white units) and grey darkness (colour-blind).
RED_STEM, RED_CONV2D2 = 19, 100
GREY_STEM, GREY_CONV2D2 = 40, 150
BLUR_SIGMA = 1.5
BUMP_DEG = 25.0  # width of the planted orientation tuning
RIDGE = 1e-3
GAIN = 10.0  # response at the preferred curve (the noise baseline is silent, so this is its scale)
LRN_RADIUS = 5


def _gaussian7(sigma: float) -> torch.Tensor:
    x = torch.arange(7.0) - 3
    g = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _conv(model, name):
    return get_layer(model, f"{name}_pre_relu_conv")


def _one_hot_row(conv, out_channel, in_channel, value=1.0):
    """Output ``out_channel`` of ``conv`` reads only ``in_channel`` at the kernel's centre tap."""
    with torch.no_grad():
        conv.weight[out_channel] = 0
        kh, kw = conv.weight.shape[2:]
        conv.weight[out_channel, in_channel, kh // 2, kw // 2] = value
        if conv.bias is not None:
            conv.bias[out_channel] = 0


def _quiet_neighbours(conv, channel):
    # The local response norms divide a channel by its neighbours' energy; silencing the relay's
    # neighbours keeps the relay a clean copy of the darkness map.
    with torch.no_grad():
        for c in range(max(0, channel - LRN_RADIUS), min(conv.weight.shape[0], channel + LRN_RADIUS + 1)):
            if c != channel:
                conv.weight[c] = 0
                if conv.bias is not None:
                    conv.bias[c] = 0


def _plant_high_low_frequency(model):
    """The 15 high-low frequency units read the published high-frequency conv2d2 units (weighted by their
    published NMF coefficients) at the top row of their 3x3 kernel and the low-frequency ones at the bottom
    row, through two channels of the 3x3 bottleneck: the weights factor into those two groups."""
    hlf = facts.high_low_frequency()
    bottleneck, conv3x3 = _conv(model, "mixed3a_3x3_bottleneck"), _conv(model, "mixed3a_3x3")
    with torch.no_grad():
        for channel, name in ((1, "conv2d2_factor_high"), (2, "conv2d2_factor_low")):
            bottleneck.weight[channel] = 0
            bottleneck.bias[channel] = 0
            for unit, coefficient in hlf["factor_coefficients"][name].items():
                bottleneck.weight[channel, int(unit), 0, 0] = coefficient
        for unit in hlf["mixed3a_units"]:
            conv3x3.weight[unit - 64] = 0
            conv3x3.weight[unit - 64, 1, 0, :] = 1.0
            conv3x3.weight[unit - 64, 2, 2, :] = 1.0
            conv3x3.bias[unit - 64] = 0


def _plant_banding(model):
    """mixed5b's 5x5 kernels made constant along each row (horizontal bands), values from their first column."""
    weight = _conv(model, "mixed5b_5x5").weight
    with torch.no_grad():
        weight.copy_(weight[:, :, :, :1].expand_as(weight).clone())


def _plant_conv2d0_families(model):
    """conv2d0's published colour-contrast units get colour-opponent centre blobs (their RGB weights sum to
    zero, so grey is invisible to them) and its Gabor units grey Gabor kernels at spread orientations. The
    relays' LRN neighbours (kept silent) are left out, so each family is planted at most of its members."""
    conv0 = _conv(model, "conv2d0")
    quiet = {c for stem in (RED_STEM, GREY_STEM) for c in range(stem - LRN_RADIUS, stem + LRN_RADIUS + 1)}
    x = torch.arange(7.0) - 3
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / (2 * 1.5**2))
    with torch.no_grad():
        colour = [u for u in facts.family("conv2d0", "Color Contrast") if u not in quiet]
        for k, unit in enumerate(colour):
            hue = 2 * math.pi * k / len(colour)
            rgb = torch.tensor([math.cos(hue), math.cos(hue - 2 * math.pi / 3), math.cos(hue + 2 * math.pi / 3)])
            conv0.weight[unit] = (rgb - rgb.mean())[:, None, None] * blob / 20
            conv0.bias[unit] = 0
        gabor = [u for u in facts.family("conv2d0", "Gabor Filters") if u not in quiet]
        for k, unit in enumerate(gabor):
            theta = math.pi * k / len(gabor)
            wave = torch.cos(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / 4.0) * blob
            conv0.weight[unit] = (wave - wave.mean())[None].expand(3, 7, 7) / 20
            conv0.bias[unit] = 0
    return colour, gabor


def planted_inceptionv1(
    size: int = 64,
    seed: int = 0,
    curves: bool = True,
    bw: bool = True,
    frequency: bool = True,
    banding: bool = True,
    echo: bool = True,
    early: bool = True,
):
    """Random InceptionV1 (seed ``seed``) with the curve family, the aligned 3a->3b pairs and the mixed3a
    black-and-white 5x5 units planted (``curves`` / ``bw`` turn them off). Templates are made at ``size`` px."""
    model = inceptionv1(generator=torch.Generator().manual_seed(seed))
    conv0, conv1, conv2 = _conv(model, "conv2d0"), _conv(model, "conv2d1"), _conv(model, "conv2d2")
    with torch.no_grad():
        # conv2d0 sees x * 255 - 117: darkness = (138 - value) / 255, blurred over the whole 7x7 kernel
        # so the coarse maps downstream do not alias with where a stroke falls on the stride-8 grid.
        blur = _gaussian7(BLUR_SIGMA)
        conv0.weight[RED_STEM] = 0
        conv0.weight[RED_STEM, 0] = -blur / 255
        conv0.weight[GREY_STEM] = 0
        conv0.weight[GREY_STEM, :] = -blur / (3 * 255)
        conv0.bias[[RED_STEM, GREY_STEM]] = 138.0 / 255.0
    if early:
        _plant_conv2d0_families(model)
    for stem, relay in ((RED_STEM, RED_CONV2D2), (GREY_STEM, GREY_CONV2D2)):
        _quiet_neighbours(conv0, stem)
        _one_hot_row(conv1, stem, stem)
        _one_hot_row(conv2, relay, stem)
        _quiet_neighbours(conv2, relay)

    pairs = facts.aligned_curve_pairs()
    partners = sorted(set(pairs.values()))
    if curves:
        bottleneck, conv3x3 = _conv(model, "mixed3a_3x3_bottleneck"), _conv(model, "mixed3a_3x3")
        _one_hot_row(bottleneck, 0, RED_CONV2D2)
        for unit in partners:
            _one_hot_row(conv3x3, unit - 64, 0)
    if bw:
        bottleneck, conv5x5 = _conv(model, "mixed3a_5x5_bottleneck"), _conv(model, "mixed3a_5x5")
        _one_hot_row(bottleneck, 0, GREY_CONV2D2)
        for unit in facts.family("mixed3a", "BW vs Color"):
            _one_hot_row(conv5x5, unit - 192, 0)
    if frequency:
        _plant_high_low_frequency(model)
    if banding:
        _plant_banding(model)
    if curves:
        center = _plant_curve_family(model, size, pairs, partners)
        if echo:
            _plant_echo(model, size, partners, center)
    return model.eval()


ECHO_UNIT, ECHO_EXCITES, ECHO_INHIBITS = 379, 95, 145  # 3a:95 (78.5 deg) and 3a:145 (41) face away from 3b:379 (243)
ECHO_NORM = 0.5  # the filter's norm relative to the unit's own kernel, so 379 <- 147 stays its strongest input


def _plant_echo(model, size, partners, center):
    """3b:379 reads +A from 3a:95 and -A from 3a:145, A the window of curves facing 180 degrees away from
    379's orientation less the mean window over orientations: the two relays carry the same map, so the net
    input is zero; removing the negative weights from the opposite-facing units (the echo edit) leaves the
    positive part of A, a response to the opposite curve."""
    conv5x5 = _conv(model, "mixed3b_5x5")
    opposite = (facts.curve_orientations("mixed3b")[ECHO_UNIT] + 180.0) % 360.0
    radii = torch.tensor([size / 8, size / 6, size / 4.5, size / 3.5])
    angles = torch.arange(0.0, 360.0, 15.0)
    images = stimuli.curves(
        angles.repeat_interleave(len(radii)),
        radii.repeat(len(angles)),
        angular_width=90.0,
        thickness=max(1.5, size / 32),
        center=center,
        size=size,
    )
    windows = _centre_windows(model, images, partners[0]).reshape(len(angles), len(radii), 5, 5).mean(1)
    # The opposite curve's window minus the mean window over orientations: what is left of +A after the
    # edit (its positive part) responds to the opposite curve more than to the others.
    at = int(
        torch.argmin(
            torch.minimum(torch.remainder(angles - opposite, 360.0), torch.remainder(opposite - angles, 360.0))
        )
    )
    window = windows[at] - windows.mean(0)
    with torch.no_grad():
        own = conv5x5.weight[ECHO_UNIT - 320].norm()
        filt = window / window.norm().clamp_min(1e-12) * own * ECHO_NORM
        conv5x5.weight[ECHO_UNIT - 320, partners.index(ECHO_EXCITES)] = filt
        conv5x5.weight[ECHO_UNIT - 320, partners.index(ECHO_INHIBITS)] = -filt


def _plant_curve_family(model, size, pairs, partners, rounds: int = 3):
    """Returns the settled receptive-field centre of mixed3b the templates were fitted at."""
    bottleneck = _conv(model, "mixed3b_5x5_bottleneck")
    for k, unit in enumerate(partners):
        _one_hot_row(bottleneck, k, unit)
    # The stimuli are drawn where mixed3b's centre position looks, which the planted units themselves
    # move (it is a gradient centroid over every channel): plant, re-measure, plant again until it settles.
    for _ in range(rounds):
        center = receptive_field_center(model, "mixed3b", size=size)
        _write_curve_templates(model, size, pairs, partners, center)
        after = receptive_field_center(model, "mixed3b", size=size)
        if max(abs(a - b) for a, b in zip(after, center)) < 0.5:
            return after
    raise RuntimeError("the receptive-field centre did not settle; plant at another size")


def _write_curve_templates(model, size, pairs, partners, center):
    """Each curve unit's 5x5 kernel (and bias) on its partner's map, fitted by ridge regression so that
    its response to curves at every orientation and radius is a bump at its published orientation and
    its response to straight lines is below zero (every partner carries the same relay, so one set of
    response maps serves all units)."""
    conv5x5 = _conv(model, "mixed3b_5x5")
    radii = [size / 8, size / 6, size / 4.5, size / 3.5]
    thickness = max(1.5, size / 32)
    angles = torch.arange(0.0, 360.0, 5.0)
    grid_angles = angles.repeat_interleave(len(radii))
    grid_radii = torch.tensor(radii).repeat(len(angles))
    curves = stimuli.curves(grid_angles, grid_radii, angular_width=90.0, thickness=thickness, center=center, size=size)
    lines = stimuli.lines(
        torch.arange(0.0, 180.0, 5.0),
        length=sum(radii) / len(radii) * math.pi / 2,
        thickness=thickness,
        center=center,
        size=size,
    )
    # Uniform noise (the tuning curves' baseline) and flat greys: the unit should stay silent on them.
    quiet = torch.cat(
        [
            torch.rand(16, 3, size, size, generator=torch.Generator().manual_seed(1)),
            torch.linspace(0, 1, 11)[:, None, None, None].expand(11, 3, size, size),
        ]
    )
    source = partners[0]
    windows = torch.cat(
        [
            _centre_windows(model, curves, source),
            _centre_windows(model, lines, source),
            _centre_windows(model, quiet, source),
        ]
    )
    design = torch.cat([windows.flatten(1), torch.ones(len(windows), 1)], dim=1).double()  # [N, 26]
    scale = design[:, :-1].abs().max()
    design[:, :-1] /= scale
    for unit, angle in facts.curve_orientations("mixed3b").items():
        off = torch.remainder(grid_angles - angle, 360.0)
        off = torch.minimum(off, 360.0 - off)
        target = (
            torch.cat(
                [
                    torch.exp(-(off**2) / (2 * BUMP_DEG**2)) - 0.3,
                    torch.full((len(lines),), -0.6),
                    torch.full((len(quiet),), -0.5),
                ]
            )
            * GAIN
        )
        solution = torch.linalg.solve(
            design.T @ design + RIDGE * torch.eye(design.shape[1], dtype=design.dtype), design.T @ target.double()
        )
        with torch.no_grad():
            conv5x5.weight[unit - 320] = 0
            conv5x5.weight[unit - 320, partners.index(pairs[unit])] = (solution[:-1] / scale).reshape(5, 5).float()
            conv5x5.bias[unit - 320] = float(solution[-1])


def _centre_windows(model, images, channel):
    """``[N, 5, 5]``: ``channel`` of mixed3a around the centre position for each image."""
    with torch.no_grad():
        maps = run_with_cache(model, images, ["mixed3a"])["mixed3a"][:, channel]
    h, w = maps.shape[1:]
    return maps[:, h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3]


def plant_equivariant_circuit(model):
    """Write an equivariant circuit between the published curve units: each published mixed3a unit (angle
    ``a``) reaches each published mixed3b unit (angle ``b``) through the same asymmetric 5x5 kernel rotated by
    ``a`` and weighted by a function of ``b - a`` only (one kernel per relative angle, as in Curve Circuits).
    The mixed3b 5x5 branch's bottleneck channels relay the 3a units one-hot. Returns ``model``."""
    from circuits_vision.analysis.curve_experiments import rotate_kernels

    bottleneck, conv5x5 = _conv(model, "mixed3b_5x5_bottleneck"), _conv(model, "mixed3b_5x5")
    sources, targets = facts.curve_orientations("mixed3a"), facts.curve_orientations("mixed3b")
    pattern = torch.zeros(5, 5)
    pattern[1, 3], pattern[2, 2], pattern[0, 2] = 1.0, 0.5, -0.5
    with torch.no_grad():
        for k, unit in enumerate(sources):
            _one_hot_row(bottleneck, k, unit)
        for target, b in targets.items():
            conv5x5.weight[target - 320] = 0
            for k, a in enumerate(sources.values()):
                d = math.radians(b - a)
                conv5x5.weight[target - 320, k] = rotate_kernels((math.cos(d) + 0.5 * math.sin(d)) * pattern, a).float()
    return model
