"""The atlas directory on disk: atomic files, the settings fingerprint, unit records, the manifest.

Every file is written to a temporary file in the same directory, flushed, fsynced and moved over
the final name with ``os.replace``, so a reader (or a run resumed after ``kill -9``) sees either the
old file or the complete new one, never a truncated one.

Layout of an atlas directory::

    settings.json          what the atlas was built with (model, weights hash, steps, size, seed, layers)
    atlas.lock             {"pid": ..., "host": ...} while a run writes here
    records/rank<r>.jsonl  one JSON line per rendered unit, written by rank r (rewritten atomically)
    img/<layer>/<unit>.png feature visualizations
    manifest.jsonl         every unit's metadata and file names (written when the run completes)
    stages.json            what the stages after rendering produced: each layer's analysis parts (their files
                           or why not computed) and the circuit report (its layer pair and scope, its page or
                           its error); a rerun decides what to reuse from it

The run lock (``atlas.lock``) is :class:`circuits_vision.atlas.coordination.AtlasLock`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SETTINGS_FILE = "settings.json"
LOCK_FILE = "atlas.lock"
RECORDS_DIR = "records"
MANIFEST_FILE = "manifest.jsonl"
STAGES_FILE = "stages.json"


def __getattr__(name: str):
    """The lock's names, which lived here before :mod:`~circuits_vision.atlas.coordination` (imported lazily: it imports this module)."""
    if name in ("AtlasLock", "AtlasLockedError"):
        from circuits_vision.atlas import coordination

        return getattr(coordination, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SettingsMismatchError(ValueError):
    """The directory holds an atlas built with other settings; the message lists the differences."""


class CorruptAtlasFileError(ValueError):
    """A file of the atlas directory cannot be parsed; the message names the file and what to do."""


def read_json(path: str | os.PathLike, *, fix: str):
    """The JSON value in ``path``, or :class:`CorruptAtlasFileError` naming the file and ``fix``."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except ValueError as error:
        raise CorruptAtlasFileError(f"{path} is not valid JSON ({error}); it was damaged or edited: {fix}") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written.

    ``fsync=False`` keeps the atomic rename but skips forcing the data to disk (for files that are
    regenerated from others, such as the viewer's pages).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise _named(error, path) from error
        raise
    return path


def _named(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name when it names none (a full disk fails in ``write()``)."""
    if error.filename is not None:
        return error
    return OSError(error.errno, error.strerror or str(error), str(path))


def remove_temporary_files(directory: str | os.PathLike) -> int:
    """Delete temporary files that a killed writer left behind (``.<name>.<random>.tmp``); returns how many."""
    removed = 0
    for path in Path(directory).rglob(".*.tmp"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def png_bytes(image) -> bytes:
    """``[3, H, W]`` tensor in [0, 1], or ``[H, W, 3]`` numpy array in [0, 1], -> PNG file bytes."""
    if isinstance(image, torch.Tensor):
        array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    else:
        array = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray((array * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | os.PathLike, image) -> Path:
    return atomic_write_bytes(path, png_bytes(image))


# --------------------------------------------------------------------------------------------------
# Settings fingerprint


def check_settings(directory: str | os.PathLike, settings: dict) -> None:
    """Store ``settings`` in a new atlas, or check they equal the stored ones (else :class:`SettingsMismatchError`)."""
    path = Path(directory) / SETTINGS_FILE
    if not path.exists():
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True))
        return
    stored = read_json(path, fix="restore it, or delete it to continue this atlas with this run's settings")
    if not isinstance(stored, dict):
        raise CorruptAtlasFileError(
            f"{path} holds no settings object; restore it, or delete it to continue this atlas with this run's settings"
        )
    keys = sorted(set(stored) | set(settings))
    differences = [
        f"  {k}: atlas has {stored.get(k)!r}, this run has {settings.get(k)!r}"
        for k in keys
        if stored.get(k) != settings.get(k)
    ]
    if differences:
        raise SettingsMismatchError(
            f"{directory} holds an atlas built with other settings:\n"
            + "\n".join(differences)
            + "\nuse another --out directory, or rerun with the atlas's settings to continue it"
        )


# --------------------------------------------------------------------------------------------------
# Unit records


def records_path(directory: str | os.PathLike, rank: int) -> Path:
    return Path(directory) / RECORDS_DIR / f"rank{rank}.jsonl"


RECORD_KEYS = ("layer", "unit", "image")


def read_jsonl(path: str | os.PathLike, *, required: tuple[str, ...] = ()) -> list[dict]:
    """The records of a JSON-lines file ([] if missing); a line that is no JSON object with the
    ``required`` keys raises :class:`CorruptAtlasFileError` naming the file and line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            record = error
        if not isinstance(record, dict) or any(key not in record for key in required):
            problem = (
                f"is not valid JSON ({record})"
                if isinstance(record, ValueError)
                else (
                    f"lacks {[k for k in required if k not in record]}"
                    if isinstance(record, dict)
                    else "is no JSON object"
                )
            )
            raise CorruptAtlasFileError(
                f"{path} line {number} {problem}; the file was damaged or edited. Delete it to render the units "
                "it lists again, or restore it"
            )
        records.append(record)
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def prune_records(directory: str | os.PathLike) -> dict[tuple[str, int], dict]:
    """:func:`read_records`, after rewriting each rank's file without records whose image is missing and
    without repeated units (the last record of a unit is kept), so that a unit rendered again has one record."""
    directory = Path(directory)
    folder = directory / RECORDS_DIR
    for path in sorted(folder.glob("rank*.jsonl")) if folder.is_dir() else []:
        records = read_jsonl(path, required=RECORD_KEYS)
        latest = {(r["layer"], int(r["unit"])): r for r in records if (directory / r["image"]).is_file()}
        kept = list(latest.values())
        if len(kept) != len(records):
            write_jsonl(path, kept)
    return read_records(directory)


def read_records(directory: str | os.PathLike) -> dict[tuple[str, int], dict]:
    """Every rendered unit's record from all ranks' files, keyed by ``(layer, unit)``, whose image exists."""
    found: dict[tuple[str, int], dict] = {}
    folder = Path(directory) / RECORDS_DIR
    for path in sorted(folder.glob("rank*.jsonl")) if folder.is_dir() else []:
        for record in read_jsonl(path, required=RECORD_KEYS):
            if (Path(directory) / record["image"]).is_file():
                found[(record["layer"], int(record["unit"]))] = record
    return found


# --------------------------------------------------------------------------------------------------
# What the stages produced


def read_stages(directory: str | os.PathLike) -> dict[str, dict]:
    """``{stage: what it produced}`` from ``stages.json`` ({} for an atlas without one, e.g. made before it)."""
    path = Path(directory) / STAGES_FILE
    if not path.is_file():
        return {}
    fix = "delete it (the next run makes the circuit report again and records it)"
    stages = read_json(path, fix=fix)
    if not isinstance(stages, dict) or not all(isinstance(value, dict) for value in stages.values()):
        raise CorruptAtlasFileError(f"{path} holds no object of stages; it was damaged or edited: {fix}")
    return stages


def write_stages(directory: str | os.PathLike, stages: dict[str, dict]) -> Path:
    """Store ``stages`` (JSON, keys sorted: the same stages give the same bytes, so a resumed run matches)."""
    return atomic_write_text(Path(directory) / STAGES_FILE, json.dumps(stages, indent=1, sort_keys=True) + "\n")
