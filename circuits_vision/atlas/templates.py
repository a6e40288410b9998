"""HTML from templates in which every substituted value is escaped unless it is already markup.

    html("<h1>{title}</h1><p>{count} units, score {score:.3f}</p>{table}", title=layer, count=n,
         score=s, table=rows)

A template is ``str.format`` text. :func:`html` formats each value (format specs such as ``:.3f``
work) and escapes the result with :func:`escape`, except a value that is :class:`Safe` -- the result
of another template, of :func:`join`, or text marked safe on purpose -- which goes in unchanged. So
markup enters a page only from the literal text of a template: a layer name, label, file name or
error message can never open a tag or end an attribute. No dependency (no Jinja, no MarkupSafe).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable

from circuits_vision._utils import escape_html

__all__ = ["Safe", "escape", "html", "join"]


class Safe(str):
    """Markup to insert as it is: made by :func:`html` or :func:`join`, or marked safe by hand
    (``Safe("&rarr;")``) for literal markup that holds no outside value.

    ``Safe + text`` escapes the text, so concatenating never lets plain text through unescaped.
    """

    __slots__ = ()

    def __add__(self, other) -> Safe:
        return Safe(str.__add__(self, escape(other)))

    def __radd__(self, other) -> Safe:
        return Safe(str.__add__(escape(other), self))


def escape(value) -> Safe:
    """``value`` as text that shows as itself in HTML (``& < > " '`` escaped); :class:`Safe` unchanged."""
    if isinstance(value, Safe):
        return value
    return Safe(escape_html(value))


def _field(value, format_spec: str) -> str:
    if isinstance(value, Safe):
        if format_spec:
            raise ValueError(f"a format spec ({format_spec!r}) cannot apply to markup; format the value first")
        return value
    return escape(format(value, format_spec))


_PARSER = string.Formatter()


@functools.lru_cache(maxsize=1024)
def _parsed(template: str) -> tuple[tuple[str, str | None, str, str | None], ...]:
    """``(literal text, field name or None, format spec, conversion)`` runs of ``template``, parsed once
    (a viewer fills the same few templates for every unit)."""
    parts = []
    for literal, name, spec, conversion in _PARSER.parse(template):
        if name is not None and (not name or "{" in (spec or "")):
            raise ValueError(f"template fields need a name and a plain format spec: {template[:80]!r}")
        parts.append((literal, name, spec or "", conversion))
    return tuple(parts)


def html(template: str, /, **values) -> Safe:
    """``template.format(**values)`` with every value escaped unless :class:`Safe`."""
    out = []
    for literal, name, spec, conversion in _parsed(template):
        out.append(literal)
        if name is None:
            continue
        value = values[name] if name in values else _PARSER.get_field(name, (), values)[0]  # ``{a.b}``, ``{a[k]}``
        if conversion is not None:
            value = _PARSER.convert_field(value, conversion)
        out.append(_field(value, spec))
    return Safe("".join(out))


def join(pieces: Iterable, separator: str = "") -> Safe:
    """``separator.join(pieces)`` with each piece escaped unless :class:`Safe` (the separator is markup)."""
    return Safe(separator.join(escape(piece) for piece in pieces))
