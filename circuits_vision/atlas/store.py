"""The atlas directory on disk: atomic files, the run lock, the settings fingerprint, unit records.

Every file is written to a temporary file in the same directory, flushed, fsynced and moved over
the final name with ``os.replace``, so a reader (or a run resumed after ``kill -9``) sees either the
old file or the complete new one, never a truncated one.

Layout of an atlas directory::

    settings.json          what the atlas was built with (model, weights hash, steps, size, seed, layers)
    atlas.lock             {"pid": ..., "host": ...} while a run writes here
    records/rank<r>.jsonl  one JSON line per rendered unit, written by rank r (rewritten atomically)
    img/<layer>/<unit>.png feature visualizations
    manifest.jsonl         every unit's metadata and file names (written when the run completes)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SETTINGS_FILE = "settings.json"
LOCK_FILE = "atlas.lock"
RECORDS_DIR = "records"
MANIFEST_FILE = "manifest.jsonl"


class AtlasLockedError(RuntimeError):
    """Another live process is writing to the same atlas directory."""


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
# Lock

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the lock file is still created atomically
    fcntl = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def _directory_guard(directory: Path):
    """Exclusive ``flock`` on ``directory`` while the lock file is inspected and changed.

    Deciding that a lock is free or stale and then taking it are two steps; holding this guard makes
    them one for every process on the host, so two runs can never both decide the lock is theirs.
    The guard is held for a few file operations only; the kernel drops it if the process dies.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _create_with_content(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` in one step (False if it exists): a complete temp file hard-linked into place.

    A reader never sees the lock file empty or half-written, which it would take for a stale lock.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:
            raise _named(error, path) from error
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, written under the guard
            try:
                out = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return True
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


class AtlasLock:
    """``with AtlasLock(directory):`` -- exclusive right to write the atlas in ``directory``.

    The lock file ``atlas.lock`` names the holder (pid, host). It appears complete in one step, and
    checking it and taking it (or taking over a stale one) happen under an ``flock`` of the directory,
    so of any number of processes starting at once exactly one gets the lock. A lock left by a
    process that no longer runs (killed with ``kill -9``) is taken over with a warning; a lock of a
    live process raises :class:`AtlasLockedError`.
    """

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_FILE
        self.taken_over: dict | None = None

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}  # unreadable lock: treated as stale
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        mine = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        data = json.dumps(mine).encode()
        with _directory_guard(self.path.parent):
            holder = self._read()
            if holder is not None:
                pid = holder.get("pid")
                if isinstance(pid, int) and pid != os.getpid() and (holder.get("host", host) != host or _pid_alive(pid)):
                    raise AtlasLockedError(
                        f"another run (pid {pid} on {holder.get('host')}, started {holder.get('started')}) is "
                        f"writing to {self.path.parent}; wait for it to finish or stop it. If no such run "
                        f"exists, delete {self.path}."
                    )
                warnings.warn(
                    f"taking over the stale lock {self.path} of pid {pid}, which is no longer running "
                    "(an interrupted run); continuing where it stopped",
                    stacklevel=3,
                )
                self.taken_over = holder
                atomic_write_bytes(self.path, data)  # replaces the stale file in one step, under the guard
            elif not _create_with_content(self.path, data):
                # only a process that does not take the guard (another host, no flock) gets here
                raise AtlasLockedError(f"another run took the lock {self.path} at the same moment; wait for it to finish")

    def release(self) -> None:
        """Delete the lock file if this process holds it (a no-op otherwise, so it is safe in ``finally``)."""
        if not self.path.parent.is_dir():
            return
        with _directory_guard(self.path.parent):
            holder = self._read()
            if holder and holder.get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> AtlasLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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
        raise CorruptAtlasFileError(f"{path} holds no settings object; restore it, or delete it to continue "
                                    "this atlas with this run's settings")
    keys = sorted(set(stored) | set(settings))
    differences = [f"  {k}: atlas has {stored.get(k)!r}, this run has {settings.get(k)!r}"
                   for k in keys if stored.get(k) != settings.get(k)]
    if differences:
        raise SettingsMismatchError(
            f"{directory} holds an atlas built with other settings:\n" + "\n".join(differences)
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
            problem = f"is not valid JSON ({record})" if isinstance(record, ValueError) else (
                f"lacks {[k for k in required if k not in record]}" if isinstance(record, dict) else "is no JSON object")
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
