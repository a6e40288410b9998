"""Who may write an atlas: the run lock between processes, and the ranks of one distributed job.

Two levels of coordination, kept apart from what is written (:mod:`~circuits_vision.atlas.store`) and
from what is to be done (:mod:`~circuits_vision.atlas.plan`):

- :class:`AtlasLock`: one run at a time per atlas directory (``atlas.lock``; a stale lock of a killed
  run is taken over, a live one refused with :class:`AtlasLockedError`).
- :class:`Ranks`: under ``torch.distributed`` (e.g. ``torchrun``) rank 0 takes the lock and decides,
  and every rank learns the decision, or the error, so none waits forever; one rank, without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuits_vision.atlas import store

__all__ = ["AtlasLock", "AtlasLockedError", "Ranks"]


class AtlasLockedError(RuntimeError):
    """Another live process is writing to the same atlas directory."""


# --------------------------------------------------------------------------------------------------
# Ranks


@dataclass(frozen=True)
class Ranks:
    """The ranks of this job: ``dist`` (``torch.distributed`` when a process group is up, else None),
    this process's ``rank`` and the ``world`` size."""

    dist: Any
    rank: int
    world: int

    @classmethod
    def current(cls) -> Ranks:
        """This process's place: the initialised process group, else rank 0 of 1."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist, dist.get_rank(), dist.get_world_size())
        return cls(None, 0, 1)

    @property
    def leader(self) -> bool:
        """Rank 0: holds the lock, decides what is left, merges and writes the shared files."""
        return self.rank == 0

    def decided_by_leader(self, decide: Callable[[], Any]) -> Any:
        """``decide()`` run on rank 0 and its value given to every rank; an error it raises is raised
        on every rank (the others would otherwise wait for a value that never comes)."""
        failure, value = None, None
        if self.leader:
            try:
                value = decide()
            except Exception as error:
                failure = error
        failure, value = self.broadcast((failure, value))
        if failure is not None:
            raise failure
        return value

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank."""
        if self.dist is None:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, count: int) -> int:
        """The sum of every rank's ``count``."""
        if self.dist is None:
            return count
        counts = [None] * self.world
        self.dist.all_gather_object(counts, count)
        return sum(counts)

    def share(self, items: list) -> list:
        """This rank's share of ``items``, dealt round-robin."""
        return items[self.rank :: self.world]


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
            raise store._named(error, path) from error
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
        self.path = Path(directory) / store.LOCK_FILE
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
                if (
                    isinstance(pid, int)
                    and pid != os.getpid()
                    and (holder.get("host", host) != host or _pid_alive(pid))
                ):
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
                store.atomic_write_bytes(self.path, data)  # replaces the stale file in one step, under the guard
            elif not _create_with_content(self.path, data):
                # only a process that does not take the guard (another host, no flock) gets here
                raise AtlasLockedError(
                    f"another run took the lock {self.path} at the same moment; wait for it to finish"
                )

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
