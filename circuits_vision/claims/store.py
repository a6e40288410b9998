"""The resumable store: one JSON record per (claim, model fingerprint), written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from circuits_vision.claims.result import ClaimResult

RULES = 2
"""The revision of the claims' measurements and verdict rules; part of every record's key, so records made
under other rules (e.g. before verdicts were decided against nulls) are measured again, not read back."""


def fingerprint(model: nn.Module, size: int) -> str:
    """16 hex digits identifying ``model``'s class, parameters and buffers (names, shapes, values), the
    input ``size`` the claims are measured at, the toolkit's version and :data:`RULES` (whose claims and rules
    made the record): the same weights give the same fingerprint."""
    from circuits_vision import __version__

    digest = hashlib.sha256(f"{type(model).__qualname__}|{size}|{__version__}|rules {RULES}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename, so a reader (or an
    interrupted run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Store:
    """``out/records/<claim>-<fingerprint>.json``: a claim already measured on these weights is read back."""

    def __init__(self, out: str | os.PathLike, model_fingerprint: str) -> None:
        self.folder = Path(out) / "records"
        self.fingerprint = model_fingerprint

    def path(self, claim: str) -> Path:
        return self.folder / f"{claim}-{self.fingerprint}.json"

    def load(self, claim: str) -> ClaimResult | None:
        """The stored result, or None when there is none or it is unreadable (then it is measured again)."""
        path = self.path(claim)
        if not path.is_file():
            return None
        try:
            return ClaimResult.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError):
            return None

    def save(self, result: ClaimResult) -> None:
        write_atomic(self.path(result.claim), json.dumps(result.to_json(), indent=1, default=_jsonable))


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
