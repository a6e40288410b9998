"""The atlas directory's safety: atomic files, the run lock, the settings fingerprint."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from circuits_vision.atlas import store


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    store.atomic_write_text(path, "first")
    store.atomic_write_text(path, "second version")
    assert path.read_text() == "second version"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]


def test_atomic_write_interrupted_before_replace_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "manifest.jsonl"
    store.atomic_write_text(path, "old complete content\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt  # as if Ctrl-C arrived between writing the temp file and the rename

    monkeypatch.setattr(store.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write_text(path, "new content that must never be seen half-written\n" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old complete content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]  # the temp file was removed


def test_save_png_roundtrip(tmp_path):
    image = torch.zeros(3, 5, 7)
    image[0] = 1.0  # pure red
    path = store.save_png(tmp_path / "a.png", image)
    with Image.open(path) as loaded:
        loaded.verify()
    with Image.open(path) as loaded:
        assert loaded.size == (7, 5)
        assert loaded.getpixel((3, 2)) == (255, 0, 0)


def test_lock_refuses_a_live_run(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / store.LOCK_FILE).write_text(
            json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "started": "then"})
        )
        with pytest.raises(store.AtlasLockedError, match=f"pid {sleeper.pid}.*wait for it"):
            store.AtlasLock(tmp_path).acquire()
        assert json.loads((tmp_path / store.LOCK_FILE).read_text())["pid"] == sleeper.pid  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    (tmp_path / store.LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": os.uname().nodename}))
    lock = store.AtlasLock(tmp_path)
    with pytest.warns(UserWarning, match=f"stale lock .* pid {dead_pid}"):
        lock.acquire()
    assert json.loads((tmp_path / store.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert lock.taken_over["pid"] == dead_pid
    lock.release()
    assert not (tmp_path / store.LOCK_FILE).exists()


def test_lock_is_exclusive_within_a_directory(tmp_path):
    with store.AtlasLock(tmp_path):
        assert json.loads((tmp_path / store.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / store.LOCK_FILE).exists()


def test_settings_mismatch_names_every_difference(tmp_path):
    settings = {"model": "tiny", "steps": 4, "size": 32, "seed": 0, "layers": ["a", "b"], "weights_sha256": "abc"}
    store.check_settings(tmp_path, settings)
    store.check_settings(tmp_path, dict(settings))  # same settings: fine
    with pytest.raises(store.SettingsMismatchError) as error:
        store.check_settings(tmp_path, {**settings, "steps": 8, "weights_sha256": "def"})
    message = str(error.value)
    assert "steps: atlas has 4, this run has 8" in message
    assert "weights_sha256: atlas has 'abc', this run has 'def'" in message
    assert "size" not in message


def test_records_without_their_image_do_not_count_as_done(tmp_path):
    store.save_png(tmp_path / "img" / "l" / "0.png", torch.rand(3, 4, 4))
    store.write_jsonl(
        store.records_path(tmp_path, 0),
        [
            {"layer": "l", "unit": 0, "image": "img/l/0.png"},
            {"layer": "l", "unit": 1, "image": "img/l/1.png"},  # its PNG never landed
        ],
    )
    assert list(store.read_records(tmp_path)) == [("l", 0)]


def _contend(directory, barrier, outcomes, trials):
    """One of several processes: in every trial, try the lock at the same moment as the others."""
    import warnings

    for _ in range(trials):
        barrier.wait()  # the parent has set the trial up
        lock = store.AtlasLock(directory)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lock.acquire()
            outcomes.put("held")
        except store.AtlasLockedError:
            outcomes.put("refused")
        barrier.wait()  # everyone has tried; a holder keeps the lock until now
        lock.release()
        barrier.wait()  # released: the parent checks and sets the next trial up


@pytest.mark.parametrize("start", ["no lock", "stale lock"])
def test_concurrent_processes_never_both_hold_the_lock(tmp_path, start):
    import multiprocessing
    import queue

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    context = multiprocessing.get_context("fork")  # cheap copies of this process: many trials in a few seconds
    processes, trials = 4, 25
    barrier, outcomes = context.Barrier(processes + 1, timeout=60), context.Queue()
    workers = [context.Process(target=_contend, args=(tmp_path, barrier, outcomes, trials)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    holders = []
    try:
        for _ in range(trials):
            if start == "stale lock":
                (tmp_path / store.LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": os.uname().nodename}))
            barrier.wait()
            barrier.wait()
            results = [outcomes.get(timeout=60) for _ in range(processes)]
            holders.append(results.count("held"))
            barrier.wait()
            assert not (tmp_path / store.LOCK_FILE).exists()  # the holder released it
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    assert holders == [1] * trials  # exactly one winner every time, the others refused
    try:
        outcomes.get_nowait()
        raise AssertionError("a worker reported more outcomes than trials")
    except queue.Empty:
        pass
