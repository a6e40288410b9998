"""The reproduction report: a table of claims as escaped HTML and as JSON."""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from circuits_vision.claims.result import VERDICTS, ClaimResult
from circuits_vision.claims.store import _jsonable, write_atomic

_COLOURS = {"holds": "#c8f0c8", "partly": "#f5e6b0", "fails": "#f5c0c0", "not applicable": "#e0e0e0"}


@dataclass
class Reproduction:
    """Results of :func:`~circuits_vision.claims.reproduce`: one :class:`ClaimResult` per claim, in order."""

    results: list[ClaimResult]
    fingerprint: str
    size: int
    html_path: Path | None = None
    json_path: Path | None = None

    def __getitem__(self, claim: str) -> ClaimResult:
        for result in self.results:
            if result.claim == claim:
                return result
        raise KeyError(f"no claim {claim!r} in this report (claims: {[r.claim for r in self.results]})")

    def verdicts(self) -> dict[str, str]:
        return {r.claim: r.verdict for r in self.results}

    def counts(self) -> dict[str, int]:
        counted = Counter(r.verdict for r in self.results)
        return {v: counted.get(v, 0) for v in VERDICTS}

    def table(self) -> list[dict]:
        return [row for r in self.results for row in r.table()]

    def to_json(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "size": self.size,
            "counts": self.counts(),
            "claims": [r.to_json() for r in self.results],
        }

    def __str__(self) -> str:
        lines = [f"{r.claim:<28} {r.verdict:<15} {r.measured}" for r in self.results]
        summary = ", ".join(f"{n} {v}" for v, n in self.counts().items() if n)
        return "\n".join(lines + [summary])

    def __repr__(self) -> str:
        return f"Reproduction({len(self.results)} claims: {self.counts()})"


def render_html(reproduction: Reproduction, title: str, figures: dict[str, str] | None = None) -> str:
    """The report page; every text from a claim or the model is escaped. ``figures``: claim -> the
    relative path of its PNG."""
    e = html.escape
    figures = figures or {}
    rows = []
    for r in reproduction.results:
        image = (
            f'<img src="{e(figures[r.claim], quote=True)}" alt="{e(r.claim, quote=True)}" style="max-width:520px">'
            if r.claim in figures
            else ""
        )
        rows.append(
            f'<tr style="background:{_COLOURS[r.verdict]}"><td>{e(r.claim)}</td><td>{e(r.article)}<br>'
            f"<small>{e(r.figure)}</small></td><td>{e(r.published)}</td><td>{e(r.measured)}</td>"
            f"<td><b>{e(r.verdict)}</b></td><td><small>{e(r.rule)}</small><br><small><i>null:</i> {e(r.null)}</small>"
            f"</td><td>{image}</td></tr>"
        )
    counts = ", ".join(f"{n} {e(v)}" for v, n in reproduction.counts().items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + e(title) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;vertical-align:top;text-align:left}</style></head><body>"
        f"<h1>{e(title)}</h1><p>model fingerprint {e(reproduction.fingerprint)}, measured at "
        f"{reproduction.size} px: {counts}</p><table><tr><th>claim</th><th>article and figure</th>"
        "<th>published</th><th>measured</th><th>verdict</th><th>how decided, against which null</th>"
        "<th>figure</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )


def write_figures(reproduction: Reproduction, out: Path) -> dict[str, str]:
    """``out/figures/<claim>.png`` for every claim with something to draw; claim -> path relative to ``out``."""
    from circuits_vision.claims.figures import claim_figure
    from circuits_vision.claims.registry import CLAIMS

    written = {}
    for result in reproduction.results:
        registered = CLAIMS.get(result.claim)
        png = claim_figure(result, registered.plot if registered is not None else None)
        if png is None:
            continue
        path = out / "figures" / f"{result.claim}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(png)
        temporary.replace(path)
        written[result.claim] = f"figures/{path.name}"
    return written


def write(reproduction: Reproduction, out: str | Path, title: str) -> None:
    """``out/report.html``, ``out/report.json`` and ``out/figures/*.png``, each written atomically."""
    out = Path(out)
    reproduction.html_path, reproduction.json_path = out / "report.html", out / "report.json"
    figures = write_figures(reproduction, out)
    write_atomic(reproduction.json_path, json.dumps(reproduction.to_json(), indent=1, default=_jsonable))
    write_atomic(reproduction.html_path, render_html(reproduction, title, figures))
