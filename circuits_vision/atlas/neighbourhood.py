"""A unit's circuit neighbourhood as a small inline SVG graph: inputs left, the unit centred, outputs right.

Each edge is one strong weight link: its colour is the link's sign (red positive, blue negative, grey
when the sign is not known, e.g. an analysis cached before signs were recorded) and its width grows
with the link's strength. Each node is a link to that unit's page when the atlas has it. Every text
and attribute goes through :func:`html.escape` and every number is formatted from a float, so the
markup is safe by construction; the SVG is inline, so the page still works from ``file://``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from circuits_vision._utils import escape_html

__all__ = ["POSITIVE", "NEGATIVE", "UNKNOWN", "neighbourhood_svg", "Node"]

# Red excitatory, blue inhibitory: the convention of the weight pictures beside the graph
# (circuits_vision.weights.pictures.heatmap), so one page never shows a sign in two colours.
POSITIVE, NEGATIVE, UNKNOWN = "#b2182b", "#2166ac", "#999999"
WIDTH, ROW, MARGIN, RADIUS = 520, 26, 18, 8
Node = dict
"""``{"layer", "unit" (int or None), "strength" (>= 0, sets the width), "sign" (+1, -1 or None)}``."""


_e = escape_html


def _colour(sign) -> str:
    if sign is None:
        return UNKNOWN
    return POSITIVE if float(sign) > 0 else NEGATIVE if float(sign) < 0 else UNKNOWN


def _name(node: Node) -> str:
    return str(node["layer"]) if node.get("unit") is None else f"{node['layer']}:{node['unit']}"


def _node(x: float, y: float, node: Node, href: str | None, anchor: str, label_dx: float, css: str) -> str:
    name = _name(node)
    sign = node.get("sign")
    title = f"{name}, strength {float(node.get('strength') or 0):.3g}" + (
        "" if sign is None else f", {'positive' if float(sign) > 0 else 'negative' if float(sign) < 0 else 'zero'}"
    )
    shape = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{RADIUS}" fill="#fff" stroke="#333"></circle>'
        f'<text x="{x + label_dx:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}" font-size="11">{_e(name)}</text>'
        f"<title>{_e(title)}</title>"
    )
    if href:
        return f'<a class="{css}" href="{_e(href)}">{shape}</a>'
    return f'<g class="{css}">{shape}</g>'


def neighbourhood_svg(
    centre: str,
    inputs: Sequence[Node],
    outputs: Sequence[Node],
    href: Callable[[str, int | None], str | None],
    *,
    centre_href: str | None = None,
) -> str:
    """``<svg>`` of ``centre`` (its name) with edges from ``inputs`` and to ``outputs``.

    ``href(layer, unit)``: the relative page of a node, or None for a node without a page (drawn unlinked).
    """
    inputs, outputs = list(inputs), list(outputs)
    rows = max(len(inputs), len(outputs), 1)
    height = 2 * MARGIN + rows * ROW
    strongest = max([float(n.get("strength") or 0) for n in inputs + outputs] + [1e-12])
    cx, cy = WIDTH / 2, height / 2
    left, right = 150.0, WIDTH - 150.0
    edges, nodes = [], []

    def column(items: Sequence[Node], x: float, side: str) -> None:
        top = cy - (len(items) - 1) * ROW / 2
        for i, node in enumerate(items):
            y = top + i * ROW
            width = 1.0 + 4.0 * float(node.get("strength") or 0) / strongest
            kind = (
                "positive"
                if _colour(node.get("sign")) == POSITIVE
                else ("negative" if _colour(node.get("sign")) == NEGATIVE else "unknown")
            )
            edges.append(
                f'<line class="edge {side} {kind}" x1="{x:.1f}" y1="{y:.1f}" x2="{cx:.1f}" y2="{cy:.1f}" '
                f'stroke="{_colour(node.get("sign"))}" stroke-width="{width:.2f}" stroke-opacity="0.8"></line>'
            )
            dx, anchor = (-RADIUS - 4, "end") if side == "input" else (RADIUS + 4, "start")
            nodes.append(_node(x, y, node, href(node["layer"], node.get("unit")), anchor, dx, f"node {side}"))

    column(inputs, left, "input")
    column(outputs, right, "output")
    centre_node = {"layer": centre, "unit": None, "strength": strongest}
    middle = (
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{RADIUS + 3}" fill="#ffe9c7" stroke="#7a3e00"></circle>'
        f'<text x="{cx:.1f}" y="{cy - RADIUS - 8:.1f}" text-anchor="middle" font-size="12" '
        f'font-weight="600">{_e(_name(centre_node))}</text>'
    )
    if centre_href:
        middle = f'<a class="node centre" href="{_e(centre_href)}">{middle}</a>'
    legend = (
        f'<text x="4" y="{height - 4}" font-size="10" fill="{POSITIVE}">positive</text>'
        f'<text x="60" y="{height - 4}" font-size="10" fill="{NEGATIVE}">negative</text>'
    )
    return (
        f'<svg class="neighbourhood" id="neighbourhood" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="circuit neighbourhood of '
        f'{_e(centre)}">{"".join(edges)}{middle}{"".join(nodes)}{legend}</svg>'
    )
