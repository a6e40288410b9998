"""Fault injection: an atlas killed (as by ``kill -9``) at its write points, then resumed, is byte-identical
to one built without interruption."""

import multiprocessing
import os
import tempfile
import warnings
from pathlib import Path

import torch

from circuits_vision import atlas
from circuits_vision.atlas import store

SETTINGS = dict(
    layers=["conv2d1", "mixed3a"],
    units_per_layer=4,
    parts=("inputs", "outputs", "branch"),
    steps=2,
    size=32,
    report=False,
    progress=False,
    config=atlas.AtlasConfig(chunk_size=3, log=lambda message: None),
)


def _files(directory: Path) -> dict[str, bytes]:
    """Every file of the atlas but the per-rank records, which carry the time each unit was stored."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.parent.name != store.RECORDS_DIR
    }


def _killed_at(model, out, point: int, before_rename: bool) -> None:
    """In a forked child: build, and die without any clean-up at write number ``point``."""
    torch.set_num_threads(1)
    real, count = store.atomic_write_bytes, [0]

    def dying(path, data, **kwargs):
        count[0] += 1
        if count[0] == point:
            if before_rename:  # half the data in the temp file, the real file untouched
                path = Path(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                os.write(fd, data[: len(data) // 2])
                os._exit(9)
            real(path, data, **kwargs)
            os._exit(9)
        return real(path, data, **kwargs)

    store.atomic_write_bytes = dying
    atlas.build(model, out=out, **SETTINGS)
    os._exit(0)  # never reached at a kill point


def test_killed_at_write_points_then_resumed_matches_an_uninterrupted_run(tiny, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed children render with one thread too: identical arithmetic
    try:
        reference, written = tmp_path / "reference", []
        real = store.atomic_write_bytes

        def recording(path, data, **kwargs):
            written.append(Path(path).relative_to(reference).as_posix())
            return real(path, data, **kwargs)

        store.atomic_write_bytes = recording
        try:
            atlas.build(tiny, out=reference, **SETTINGS)
        finally:
            store.atomic_write_bytes = real
        expected = _files(reference)
        first_png = next(i for i, name in enumerate(written) if name.endswith(".png"))
        records = [i for i, name in enumerate(written) if name.startswith("records/")]
        analysis = next(i for i, name in enumerate(written) if name.startswith("analysis/"))
        manifest = written.index(store.MANIFEST_FILE)
        points = [
            (0, True),
            (first_png, True),
            (records[1], False),
            (records[1] + 1, True),
            (analysis, True),
            (manifest, True),
            (len(written) - 1, False),
        ]  # (write index, die before its rename?)
        assert len(points) == len(set(points)) and written[0] == store.SETTINGS_FILE

        context = multiprocessing.get_context("fork")  # a copy of this process: no interpreter start per point
        for point, before_rename in points:
            out = tmp_path / f"killed_{point}_{before_rename}"
            child = context.Process(target=_killed_at, args=(tiny, out, point + 1, before_rename))
            child.start()
            child.join(120)
            assert child.exitcode == 9, f"the run killed at {written[point]} exited with {child.exitcode}"
            assert (out / store.LOCK_FILE).is_file()  # died holding the lock, as after kill -9
            if before_rename:
                assert list(out.rglob(f".{Path(written[point]).name}.*.tmp"))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                atlas.build(tiny, out=out, **SETTINGS)
            assert any("stale lock" in str(w.message) for w in caught)
            got = _files(out)
            assert sorted(got) == sorted(expected), f"killed at {written[point]}"
            different = [name for name in expected if got[name] != expected[name]]
            assert not different, f"killed at {written[point]}: {different} differ from the uninterrupted run"
            assert not list(out.rglob("*.tmp")) and not (out / store.LOCK_FILE).exists()
            keys = [(r["layer"], r["unit"]) for r in store.read_jsonl(store.records_path(out, 0))]
            assert sorted(keys) == sorted(set(keys)) and len(keys) == 8  # one record per unit
    finally:
        torch.set_num_threads(threads)
