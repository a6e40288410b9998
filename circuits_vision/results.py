"""The contract every analysis result follows, and the text table they share.

A result is a dataclass with typed fields and:

- ``table() -> list[dict]``: one dict per row, plain Python values (ints, floats, strings, lists),
  ready for ``pandas.DataFrame(result.table())`` or ``json.dumps``;
- ``__str__``: a readable text table (``print(result)``);
- ``__repr__``: one short line, never a tensor's values (a tensor shows as ``tensor[3, 64]``).

:class:`Result` gives the last two from the first; a result overrides them where it can say more.
This module imports nothing from the package, so every subpackage may use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

__all__ = ["Result", "format_table", "short"]

_MAX_ROWS = 40
_MAX_CELL = 32


class Result:
    """Base of analysis results: ``table()`` rows, a text-table ``__str__``, a short ``__repr__``.

    Subclasses are dataclasses that implement :meth:`table`; dataclasses that should keep this
    ``__repr__`` are declared ``@dataclass(repr=False)`` (the dataclass one prints whole tensors).
    """

    def table(self) -> list[dict]:
        """One dict per row of the result."""
        raise NotImplementedError(f"{type(self).__name__} does not implement table()")

    def title(self) -> str:
        """The first line of ``str(result)``; by default the short ``repr``."""
        return repr(self)

    def __str__(self) -> str:
        return f"{self.title()}\n{format_table(self.table())}"

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):
            return f"{type(self).__name__}()"
        fields = [f for f in dataclasses.fields(self) if f.repr]
        return f"{type(self).__name__}({', '.join(f'{f.name}={short(getattr(self, f.name))}' for f in fields)})"


def short(value: object) -> str:
    """A one-glance text for ``value``: tensors and arrays by shape, long containers by length."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (int, float, str)):
        kind = "tensor" if type(value).__module__.startswith("torch") else "array"
        return f"{kind}[{', '.join(str(int(s)) for s in shape)}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return (
            f"{{{len(value)} items}}"
            if len(value) > 4
            else "{" + ", ".join(f"{short(k)}: {short(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) > 6 or any(hasattr(v, "shape") or dataclasses.is_dataclass(v) for v in value):
            return f"[{len(value)} {type(value[0]).__name__ if len(value) else 'items'}]"
        return "[" + ", ".join(short(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        return f"{type(value).__name__}(...)"
    text = repr(value)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    text = value if isinstance(value, str) else short(value)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."


def format_table(rows: Sequence[Mapping], max_rows: int = _MAX_ROWS) -> str:
    """``rows`` as aligned text columns (the keys of all rows, in first-seen order); numbers right-aligned.

    >>> print(format_table([{"unit": 3, "score": 0.5}, {"unit": 12, "score": 0.25}]))
    unit  score
       3    0.5
      12   0.25
    """
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    shown = list(rows[:max_rows])
    cells = [[_cell(row.get(c)) for c in columns] for row in shown]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in shown) for c in columns]
    widths = [max(len(str(c)), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [line([str(c) for c in columns]), *(line(values) for values in cells)]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows")
    return "\n".join(lines)
