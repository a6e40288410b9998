"""atlas.build on a tiny Inception-style model: contents, resume, refusal, escaping, sharding."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from circuits_vision import atlas, hooks, optvis
from circuits_vision.atlas import store
from circuits_vision.cli import load_model_file

TINY = Path(__file__).with_name("tiny_model.py")
FAST = dict(steps=2, size=32, progress=False, report=False, config=atlas.AtlasConfig(log=lambda message: None))


def job(**knobs) -> atlas.AtlasConfig:
    """A quiet AtlasConfig with these job knobs (chunk_size, batch_size, on_progress, ...)."""
    return atlas.AtlasConfig(log=lambda message: None, **knobs)


@pytest.fixture
def counted_render(monkeypatch):
    """Count every objective that reaches optvis.render."""
    rendered = []
    real = optvis.render

    def counting(model, objectives, **kwargs):
        rendered.extend("{}:{}".format(*o.channels[0]) for o in objectives)  # channels: ((layer, unit),)
        return real(model, objectives, **kwargs)

    monkeypatch.setattr(optvis, "render", counting)
    return rendered


def _manifest(directory):
    return store.read_jsonl(Path(directory) / "manifest.jsonl")


def test_default_layers_are_the_main_layers(tiny):
    assert atlas.default_layers(tiny) == ["conv2d0", "conv2d1", "mixed3a", "mixed3b"]


def test_build_writes_every_unit_with_metadata(tiny, full_atlas):
    records = _manifest(full_atlas)
    assert [(r["layer"], r["unit"]) for r in records] == [("mixed3a", u) for u in range(10)] + [
        ("mixed3b", u) for u in range(12)
    ]
    for r in records:
        with Image.open(full_atlas / r["image"]) as image:
            assert image.size == (32, 32)
        assert (full_atlas / r["page"]).is_file()
    # mixed3a's branches: 1x1 [0,2), 3x3 [2,6), 5x5 [6,8), pool [8,10)
    assert [records[u]["branch"] for u in (0, 2, 6, 9)] == ["1x1", "3x3", "5x5", "pool"]
    # strongest inputs of mixed3b:0 come from mixed3a, ranked by the norm of its expanded weights
    from circuits_vision.weights import expanded_weights

    E = expanded_weights(tiny, "mixed3a", "mixed3b")
    norms = E[0].flatten(1).norm(dim=1)
    inputs = records[10]["inputs"]
    assert [i["unit"] for i in inputs] == norms.argsort(descending=True)[:6].tolist()
    assert inputs[0]["norm"] == pytest.approx(float(norms.max()), rel=1e-4)
    # the first layer's input is the RGB image
    assert records[0]["inputs"][0]["layer"] == "input" and records[0]["inputs"][0]["picture"].startswith(
        "data:image/png"
    )
    assert records[0]["outputs"][0]["layer"] == "mixed3b"
    assert records[10]["outputs"] is None  # the last layer feeds no chosen layer
    for r in records:
        assert isinstance(r["tuning"], dict) and r["tuning"]["color_category"] in (
            "color",
            "black_and_white",
            "both",
            "unresponsive",
        )
        assert isinstance(r["family"], (dict, str)) and not str(r["family"]).startswith("not computed")
    # without an image folder the examples come from scenes of the shipped model's distribution
    assert len(records[0]["examples"]["values"]) == 6 and records[0]["examples"]["sources"][0].startswith("scene ")
    # curve tuning in the atlas is find_curve_detectors' verdict, unit by unit
    from circuits_vision.analysis.tuning import find_curve_detectors

    for layer in ("mixed3a", "mixed3b"):
        found = {d.unit: d for d in find_curve_detectors(tiny, layer).detectors}
        flagged = {r["unit"] for r in records if r["layer"] == layer and r["tuning"]["curve_detector"]}
        assert flagged == set(found)
        for r in records:
            if r["layer"] == layer and r["unit"] in found:
                assert r["tuning"]["curve_orientation"] == pytest.approx(
                    found[r["unit"]].preferred_orientation, abs=0.05
                )
    assert (full_atlas / "index.html").is_file() and (full_atlas / "layers" / "mixed3b.html").is_file()
    report = (full_atlas / "report" / "index.html").read_text()
    assert "Branch specialization" in report and "mixed3b_branches_color.png" in report
    # The branch tables are the reports' text tables, not a printed list of row dicts.
    tables = report.split("Branch specialization of mixed3b", 1)[1].split("<pre>")[1:]
    assert tables and all(
        not t.lstrip().startswith("[{") and "&#x27;category&#x27;:" not in t.split("</pre>")[0] for t in tables
    )
    assert 'href="report/index.html"' in (full_atlas / "index.html").read_text()


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_without_rendering_any_unit_twice(tiny, tmp_path, counted_render):
    def stop_after_two_chunks(done, total):
        if done >= 8:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        atlas.build(
            tiny,
            ["mixed3a"],
            tmp_path,
            parts=("branch",),
            **{**FAST, "config": job(chunk_size=4, on_progress=stop_after_two_chunks)},
        )
    assert len(counted_render) == 8 and not (tmp_path / "manifest.jsonl").exists()
    assert not (tmp_path / store.LOCK_FILE).exists()  # released on the way out
    result = atlas.build(tiny, ["mixed3a"], tmp_path, parts=("branch",), **{**FAST, "config": job(chunk_size=4)})
    assert result.rendered == 2 and result.units == 10
    assert sorted(counted_render) == sorted(set(counted_render)) and len(counted_render) == 10
    for r in _manifest(tmp_path):
        with Image.open(tmp_path / r["image"]) as image:
            image.verify()
    # a third run finds nothing to do
    assert (
        atlas.build(tiny, ["mixed3a"], tmp_path, parts=("branch",), **{**FAST, "config": job(chunk_size=4)}).rendered
        == 0
    )
    assert len(counted_render) == 10


def test_other_settings_into_the_same_atlas_are_refused(tiny, tmp_path):
    atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    with pytest.raises(atlas.SettingsMismatchError, match="steps: atlas has 2, this run has 3"):
        atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **{**FAST, "steps": 3})
    other = load_model_file(TINY)
    with torch.no_grad():
        next(other.parameters()).add_(0.1)
    with pytest.raises(atlas.SettingsMismatchError, match="weights_sha256"):
        atlas.build(other, ["conv2d1"], tmp_path, parts=(), **FAST)


def test_a_second_run_into_a_locked_atlas_is_refused(tiny, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / store.LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(atlas.AtlasLockedError, match="another run"):
            atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_unknown_layer_lists_close_names(tiny, tmp_path):
    with pytest.raises(hooks.UnknownLayerError, match="mixed3b"):
        atlas.build(tiny, ["mixed3c"], tmp_path, **FAST)


def test_labels_are_escaped(full_atlas):
    for page in ["layers/mixed3a.html", "units/mixed3a/1.html"]:
        text = (full_atlas / page).read_text()
        assert "<script>" not in text
        assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in text
    assert _manifest(full_atlas)[1]["label"] == "<script>document.title='pwned'</script>"


def test_two_torchrun_processes_shard_the_units(tmp_path):
    pytest.importorskip("torch.distributed")
    out = tmp_path / "atlas"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "circuits_vision.cli",
        "atlas",
        "--model",
        str(TINY),
        "--out",
        str(out),
        "--steps",
        "2",
        "--size",
        "32",
        "--layers",
        "mixed3a",
        "mixed3b",
        "--chunk-size",
        "3",
        "--parts",
        "branch",
        "--no-report",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = _manifest(out)
    keys = [(r["layer"], r["unit"]) for r in records]
    assert len(keys) == len(set(keys)) == 22
    assert {r["rank"] for r in records} == {0, 1}  # both ranks rendered
    per_rank = [store.read_jsonl(store.records_path(out, rank)) for rank in (0, 1)]
    assert sum(len(r) for r in per_rank) == 22  # every unit rendered exactly once across the ranks
    assert "index.html" in done.stdout


def test_kill_9_mid_run_then_rerun_takes_over_and_finishes(tiny, tmp_path, counted_render):
    out = tmp_path / "atlas"
    command = [
        sys.executable,
        "-m",
        "circuits_vision.cli",
        "atlas",
        "--model",
        str(TINY),
        "--out",
        str(out),
        "--steps",
        "20",
        "--size",
        "32",
        "--layers",
        "mixed3a",
        "--chunk-size",
        "1",
        "--parts",
        "branch",
        "--no-report",
    ]  # ten one-unit chunks, slow enough to be killed between two of them
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    records = store.records_path(out, 0)
    deadline = time.monotonic() + 60
    try:
        while not store.read_jsonl(records) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done_before = {r["unit"] for r in store.read_jsonl(records)}
    assert done_before and (out / store.LOCK_FILE).exists()  # killed mid-run, holding the lock
    if len(done_before) == 10:
        pytest.skip("the run finished before it could be killed")
    with pytest.warns(UserWarning, match="stale lock"):
        result = atlas.build(
            tiny,
            ["mixed3a"],
            out,
            parts=("branch",),
            model_name=TINY.name,
            **{**FAST, "steps": 20, "config": job(chunk_size=1)},
        )
    units = [int(name.split(":")[1]) for name in counted_render]
    assert not set(units) & done_before  # nothing rendered twice
    assert sorted(units + sorted(done_before)) == list(range(10)) and result.rendered == len(units)
    for r in _manifest(out):
        with Image.open(out / r["image"]) as image:
            image.verify()
    assert not list(out.rglob("*.tmp")) and not (out / store.LOCK_FILE).exists()


def test_dataset_examples_from_an_image_folder(tiny, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(5):
        store.save_png(folder / f"{i}.png", torch.rand(3, 32, 32, generator=generator))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "atlas"
    atlas.build(tiny, ["conv2d1"], out, parts=("examples",), images=folder, **FAST)
    records = _manifest(out)
    for r in records:
        examples = r["examples"]
        assert len(examples["values"]) == 5 and examples["values"] == sorted(examples["values"], reverse=True)
        assert all(source.endswith(".png") for source in examples["sources"])
        with Image.open(out / examples["image"]) as strip:
            assert strip.size[0] == 5 * strip.size[1]  # five square crops side by side
    page = (out / records[0]["page"]).read_text()
    assert 'id="examples"' in page and records[0]["examples"]["image"] in page


def test_dataset_examples_default_to_held_out_scenes_with_the_crop_outlined(tiny, tmp_path):
    from circuits_vision.atlas import analyses
    from circuits_vision.models.train_shapes import HELDOUT_SEED_OFFSET
    from circuits_vision.stimuli.scenes import COLOR_NAMES, SHAPE_CLASSES, scene_batches

    # neither the shipped model's training stream (seed 0) nor its held-out set
    assert analyses.EXAMPLE_SEED not in (0, 0 + HELDOUT_SEED_OFFSET)
    found = analyses.examples(tiny, "conv2d1", None, tmp_path, k=4, units=[1, 3], n_scenes=300)
    assert sorted(found) == [1, 3]
    labels: dict = {}
    scenes = torch.cat(list(scene_batches(300, analyses.EXAMPLE_SEED, size=32, labels=labels)))
    act = hooks.run_with_cache(tiny, scenes, ["conv2d1"])["conv2d1"].amax(dim=(2, 3))  # [300, 6]
    for unit, value in found.items():
        index = [int(s.split()[1]) for s in value["sources"]]
        assert index == act[:, unit].argsort(descending=True)[:4].tolist()
        assert value["values"] == pytest.approx(act[index, unit].tolist(), abs=1e-3)
        assert (
            value["labels"][0] == f"{SHAPE_CLASSES[labels['shape'][index[0]]]} {COLOR_NAMES[labels['color'][index[0]]]}"
        )
        with Image.open(tmp_path / value["image"]) as strip:
            whole = torch.from_numpy(np.asarray(strip.convert("RGB"), dtype=np.float32)).permute(2, 0, 1) / 255
        scale = whole.shape[1] // 32
        assert whole.shape == (3, 32 * scale, 4 * 32 * scale)
        for j, (top, left, bottom, right) in enumerate(value["boxes"]):
            assert (bottom - top, right - left) == (16, 16)
            picture = whole[:, :, j * 32 * scale : (j + 1) * 32 * scale]
            y0, x0 = max(0, top) * scale, max(0, left) * scale
            y1, x1 = min(32, bottom) * scale - 1, min(32, right) * scale - 1
            # black rim on the box edge, orange line just inside it
            assert torch.allclose(picture[:, y0, x0 : x1 + 1], torch.zeros(3, 1), atol=0.01)
            assert torch.allclose(picture[:, y1, x0 : x1 + 1], torch.zeros(3, 1), atol=0.01)
            assert torch.allclose(picture[:, y0 + 1, x0 + 1 : x1], torch.tensor(analyses.OUTLINE)[:, None], atol=0.01)
            # outside the box (and at its centre) the picture is the scene, enlarged
            small, scene = picture[:, ::scale, ::scale], scenes[index[j]]
            outside = torch.ones(32, 32, dtype=torch.bool)
            outside[max(0, top) : bottom, max(0, left) : right] = False
            outside[(top + bottom) // 2, (left + right) // 2] = True
            assert torch.allclose(small[:, outside], scene[:, outside], atol=0.01)
        with Image.open(tmp_path / value["crops"]) as crops:
            assert crops.size == (4 * 16, 16)


def test_inceptionv1_default_layers_are_its_relu_and_mixed_layers():
    from circuits_vision.models import inceptionv1

    model = inceptionv1()
    model.input_size = 32  # the probe forwards that find the branches need not be 224 px to see the structure
    assert atlas.default_layers(model) == [
        "conv2d0",
        "conv2d1",
        "conv2d2",
        "mixed3a",
        "mixed3b",
        "mixed4a",
        "mixed4b",
        "mixed4c",
        "mixed4d",
        "mixed4e",
        "mixed5a",
        "mixed5b",
    ]


def test_curve_tuning_finds_the_shipped_models_curve_family():
    from circuits_vision import models
    from circuits_vision.atlas import analyses

    recorded = json.loads((Path(models.__file__).parent.parent / "data" / "shapes.json").read_text())
    family = recorded["curve_detectors"]["mixed3b"]
    got = analyses.curve_tuning(models.load("shapes"), "mixed3b")
    assert sorted(got) == sorted(family["units"])
    for unit, orientation in zip(family["units"], family["preferred_orientation_deg"]):
        assert got[unit]["curve_orientation"] == pytest.approx(orientation, abs=0.05)


def test_unit_page_states_curve_tuning():
    from circuits_vision.atlas.viewer import _tuning_html

    curve = {
        "curve_detector": True,
        "curve_orientation": 45.0,
        "curve_peak": 3.1,
        "curve_vs_line": 0.4,
        "color_category": "unresponsive",
        "color_drive": 0.0,
        "bw_drive": 0.0,
        "orientation_selectivity": 0.0,
    }
    assert _tuning_html(curve).startswith("curve detector, preferred orientation 45.0° (peak 3.1 sd")
    assert _tuning_html({**curve, "curve_detector": False}).startswith("not a curve detector")


def _pngs(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(Path(directory).rglob("img/**/*.png"))}


def test_images_do_not_depend_on_chunk_size_batch_size_or_resuming(tiny, tmp_path, counted_render):
    whole = tmp_path / "whole"
    atlas.build(tiny, ["mixed3a"], whole, parts=("branch",), **{**FAST, "config": job(chunk_size=4)})

    def stop_after_one_chunk(done, total):
        raise _Interrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        atlas.build(
            tiny,
            ["mixed3a"],
            resumed,
            parts=("branch",),
            **{**FAST, "config": job(chunk_size=4, on_progress=stop_after_one_chunk)},
        )
    assert len(_pngs(resumed)) == 4
    # resumed with other chunk and batch sizes: the six units left land in other batches and places
    atlas.build(tiny, ["mixed3a"], resumed, parts=("branch",), **{**FAST, "config": job(chunk_size=3, batch_size=2)})
    assert len(_pngs(whole)) == 10 and _pngs(resumed) == _pngs(whole)
    assert _manifest(resumed) == _manifest(whole)  # losses too

    # a deleted image is rendered once more, identical, and its record replaced rather than added
    counted_render.clear()
    (resumed / "img" / "mixed3a" / "5.png").unlink()
    assert (
        atlas.build(tiny, ["mixed3a"], resumed, parts=("branch",), **{**FAST, "config": job(chunk_size=4)}).rendered
        == 1
    )
    assert counted_render == ["mixed3a:5"]
    records = store.read_jsonl(store.records_path(resumed, 0))
    assert sorted(r["unit"] for r in records) == list(range(10))
    assert _pngs(resumed) == _pngs(whole) and len(_manifest(resumed)) == 10


def test_a_failing_set_up_releases_the_lock(tiny, tmp_path):
    atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    records = store.records_path(tmp_path, 0)
    good = records.read_text()
    records.write_text(good + '{"layer": "conv2d1", "unit": 0, "ima\n')  # a damaged line
    with pytest.raises(store.CorruptAtlasFileError, match=r"rank0\.jsonl line 7 is not valid JSON.*Delete it"):
        atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    assert not (tmp_path / store.LOCK_FILE).exists()
    records.unlink()
    records.mkdir()  # a folder where the records file should be
    with pytest.raises(IsADirectoryError, match="rank0.jsonl"):
        atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    assert not (tmp_path / store.LOCK_FILE).exists()
    (tmp_path / "settings.json").write_text('{"model": ')
    with pytest.raises(store.CorruptAtlasFileError, match=r"settings\.json is not valid JSON"):
        atlas.build(tiny, ["conv2d1"], tmp_path, parts=(), **FAST)
    assert not (tmp_path / store.LOCK_FILE).exists()


def test_a_rerun_with_fewer_parts_and_no_report_keeps_what_was_computed(tiny, full_atlas, tmp_path):
    import shutil

    copy = tmp_path / "atlas"
    shutil.copytree(full_atlas, copy)
    pages = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.html")}
    result = atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        copy,
        **{**FAST, "size": 32, "config": job(chunk_size=8)},
        parts=("branch",),
        labels={"mixed3a:1": "<script>document.title='pwned'</script>"},
    )
    assert result.rendered == 0 and result.report == copy / "report" / "index.html"
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.html")} == pages  # nothing dropped
    assert 'href="report/index.html"' in (copy / "index.html").read_text()
    assert _manifest(copy) == _manifest(full_atlas)
    (copy / "analysis" / "mixed3b.family.json").write_text("[1, 2")
    with pytest.raises(store.CorruptAtlasFileError, match=r"mixed3b\.family\.json is not valid JSON.*delete it"):
        atlas.build(
            tiny, ["mixed3a", "mixed3b"], copy, **{**FAST, "size": 32, "config": job(chunk_size=8)}, parts=("branch",)
        )


def test_a_small_atlas_analyses_only_its_units_and_shows_progress(tiny, tmp_path, monkeypatch, capsys):
    from circuits_vision.analysis import equivariance

    searched, real = [], equivariance.report
    monkeypatch.setattr(
        equivariance, "report", lambda *a, **kw: searched.append((a[1], kw.get("units"))) or real(*a, **kw)
    )
    atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        tmp_path,
        units_per_layer=3,
        parts=("inputs", "outputs", "family", "tuning"),
        **{**FAST, "report": ("mixed3a", "mixed3b"), "progress": True},
    )
    for layer in ("mixed3a", "mixed3b"):
        for part in ("inputs", "family", "tuning"):
            stored = json.loads((tmp_path / "analysis" / f"{layer}.{part}.json").read_text())
            assert sorted(stored) == ["0", "1", "2"], (layer, part)
    # the atlas's family part and the report's two family sections searched the first three units only
    assert searched == [("mixed3a", [0, 1, 2]), ("mixed3b", [0, 1, 2]), ("mixed3a", [0, 1, 2]), ("mixed3b", [0, 1, 2])]
    err = capsys.readouterr().err
    assert "atlas analyses" in err and "8/8" in err  # 2 layers x 4 parts, with elapsed<remaining time
    assert re.search(r"circuit report: 100%\|[^|]*\| (\d+)/\1 \[", err)  # every section, with elapsed<remaining


def _build_racing(model, out, barrier, outcomes):
    import warnings

    torch.set_num_threads(1)
    barrier.wait()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atlas.build(model, ["conv2d1"], out, parts=(), **FAST)
        outcomes.put("built")
    except atlas.AtlasLockedError:
        outcomes.put("refused")
    except Exception as error:  # e.g. the other run's clean-up pulling files from under this one
        outcomes.put(f"{type(error).__name__}: {error}")


def test_two_builds_started_together_on_a_stale_lock_let_one_through(tiny, tmp_path):
    import multiprocessing

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    context = multiprocessing.get_context("fork")
    for trial in range(3):
        out = tmp_path / f"trial{trial}"
        out.mkdir()
        (out / store.LOCK_FILE).write_text(json.dumps({"pid": int(finished.stdout), "host": os.uname().nodename}))
        barrier, outcomes = context.Barrier(2, timeout=60), context.Queue()
        racers = [context.Process(target=_build_racing, args=(tiny, out, barrier, outcomes)) for _ in range(2)]
        for racer in racers:
            racer.start()
        results = sorted(outcomes.get(timeout=120) for _ in racers)
        for racer in racers:
            racer.join(30)
        assert results == ["built", "refused"], results
        assert len(store.read_jsonl(store.records_path(out, 0))) == 6 and not (out / store.LOCK_FILE).exists()


def test_unit_page_names_the_curve_family_and_orientation():
    from circuits_vision.atlas.viewer import _family_html

    tuning = {"curve_detector": True, "curve_orientation": 135.0, "curve_family": [4, 9, 2]}
    record = {"layer": "mixed3b", "unit": 9, "family": "no rotation family", "tuning": tuning}
    html = _family_html(record, {("mixed3b", 4)})
    assert html.startswith("curve detector family (by tuning, 3 units), orientation 135.0&deg;; members: ")
    assert "units/mixed3b/4.html" in html and "by weights: no rotation family" in html
    plain = {"layer": "mixed3b", "unit": 1, "family": "no rotation family", "tuning": {"curve_detector": False}}
    assert _family_html(plain, set()) == "no rotation family"


def test_records_and_unit_pages_flag_units_that_never_activate(full_atlas):
    records = _manifest(full_atlas)
    assert all(isinstance(r["never_active"], bool) for r in records)
    assert all(r["loss"] == 0 for r in records if r["never_active"])  # off at every step, so at the last
    assert any(r["loss"] != 0 for r in records)
    for r in records:
        page = (Path(full_atlas) / r["page"]).read_text()
        assert ('id="never-active"' in page) == r["never_active"]


def test_every_unit_has_a_neuron_visualization_on_its_page(tiny, full_atlas):
    records = _manifest(full_atlas)
    for r in records:
        neuron = r["neuron"]
        assert neuron["image"] == f"img/{r['layer']}/{r['unit']}_neuron.png" and isinstance(
            neuron["never_active"], bool
        )
        with Image.open(full_atlas / neuron["image"]) as image:
            picture = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        assert picture.shape == (3, 32, 32)
        # the recorded activation is the unit's centre activation on the stored picture (up to 8-bit rounding)
        with torch.no_grad():
            act = hooks.run_with_cache(tiny, picture[None], [r["layer"]])[r["layer"]][0, r["unit"]]
        assert neuron["activation"] == pytest.approx(float(act[act.shape[0] // 2, act.shape[1] // 2]), abs=0.02)
        page = (Path(full_atlas) / r["page"]).read_text()
        assert f'id="neuron" src="../../{neuron["image"]}"' in page


def test_the_layer_grid_shows_the_neuron_visualization_of_a_unit_no_channel_render_reached():
    from circuits_vision.atlas.viewer import _layer_html, grid_image

    def record(unit, never_active, neuron_never_active):
        return {
            "layer": "mixed3b",
            "unit": unit,
            "image": f"img/mixed3b/{unit}.png",
            "page": f"units/mixed3b/{unit}.html",
            "never_active": never_active,
            "neuron": {
                "image": f"img/mixed3b/{unit}_neuron.png",
                "activation": 1.0,
                "never_active": neuron_never_active,
            },
        }

    records = [
        record(0, False, False),
        record(1, True, False),
        record(2, True, True),
        {**record(3, True, False), "neuron": "not computed: x"},
    ]
    assert [grid_image(r) for r in records] == [
        ("img/mixed3b/0.png", False),
        ("img/mixed3b/1_neuron.png", True),
        ("img/mixed3b/2.png", False),
        ("img/mixed3b/3.png", False),
    ]
    page = str(_layer_html("mixed3b", records, ["mixed3b"], 0))
    assert page.count('class="unit neuron"') == 1 and 'src="../img/mixed3b/1_neuron.png"' in page


def test_unit_pages_show_polysemanticity_and_facets(tiny, full_atlas, tmp_path):
    from circuits_vision.atlas import analyses

    records = _manifest(full_atlas)
    for r in records:
        value = r["polysemanticity"]
        assert value["previous"] == (None if r["layer"] == "mixed3a" else "mixed3a")
        assert [c["size"] for c in value["clusters"]] == value["cluster_sizes"]
        assert value["score"] >= 0 and value["n_clusters"] == len(value["clusters"])
    r = next(r for r in records if r["polysemanticity"]["clusters"])
    page = (full_atlas / r["page"]).read_text()
    assert f'id="poly-score">{r["polysemanticity"]["score"]}<' in page and 'id="clusters"' in page
    assert r["facets"] == "not computed: not requested"  # facets are opt-in: three more renders per unit
    # the polysemanticity part is the analysis module's result on the example scenes
    direct = analyses.polysemanticity(tiny, r["layer"], r["polysemanticity"]["previous"], [r["unit"]])
    assert direct[r["unit"]]["score"] == r["polysemanticity"]["score"]
    out = tmp_path / "facets"
    atlas.build(tiny, ["mixed3b"], out, parts=("facets",), units_per_layer=2, **FAST)
    for r in _manifest(out):
        assert r["facets"]["k"] == analyses.FACETS and 0 <= r["facets"]["similarity"] <= 1
        with Image.open(out / r["facets"]["image"]) as strip:
            assert strip.size == (analyses.FACETS * 32, 32)
        assert 'id="facets"' in (out / r["page"]).read_text()


def test_job_knobs_live_in_a_frozen_atlas_config(tiny, tmp_path, monkeypatch):
    import dataclasses
    import inspect

    knobs = {"chunk_size", "batch_size", "render_options", "on_progress", "log"}
    assert not knobs & set(inspect.signature(atlas.build).parameters)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job().chunk_size = 3
    for bad in ({"chunk_size": 0}, {"batch_size": -1}, {"chunk_size": 2.5}):
        with pytest.raises(ValueError, match="AtlasConfig"):
            atlas.AtlasConfig(**bad)
    with pytest.raises(TypeError, match="AtlasConfig.render must be a RenderConfig"):
        atlas.AtlasConfig(render={"fused": False})
    with pytest.raises(TypeError, match="config must be an AtlasConfig, got dict"):
        atlas.build(tiny, ["mixed3a"], tmp_path / "bad", **{**FAST, "config": {"chunk_size": 2}})

    seen = []
    real = optvis.render
    monkeypatch.setattr(
        optvis, "render", lambda model, objectives, **kw: seen.append(kw) or real(model, objectives, **kw)
    )
    engine = optvis.RenderConfig(fused=False, channels_last=False)
    out = tmp_path / "atlas"
    atlas.build(
        tiny,
        ["mixed3a"],
        out,
        units_per_layer=3,
        parts=(),
        **{**FAST, "config": job(chunk_size=2, render=engine, render_options={"preset": "lucent"})},
    )
    assert [len(kw["image_seeds"]) for kw in seen] == [2, 1]  # chunks of two units
    assert all(kw["config"] is engine and kw["preset"] == "lucent" for kw in seen)
    settings = json.loads((out / store.SETTINGS_FILE).read_text())
    assert settings["render_options"] == {"preset": "'lucent'"} and "fused=False" in settings["render_config"]


def test_the_report_can_cover_whole_layers_of_a_small_atlas(tiny, tmp_path, monkeypatch):
    from circuits_vision.atlas import report as report_module

    scopes = []

    def recording(model, source, target, out, **kwargs):
        scopes.append(kwargs["units_per_layer"])
        raise RuntimeError("stop after recording the scope")

    monkeypatch.setattr(report_module, "circuit_report", recording)
    for whole, expected in [(False, 3), (True, None)]:
        atlas.build(
            tiny,
            ["mixed3a", "mixed3b"],
            tmp_path / str(whole),
            units_per_layer=3,
            parts=(),
            **{**FAST, "report": ("mixed3a", "mixed3b"), "config": job(report_whole_layers=whole)},
        )
        assert scopes[-1] == expected


def test_a_rerun_reuses_the_report_the_stages_record_and_remakes_it_for_another_scope(tiny, tmp_path, monkeypatch):
    from circuits_vision.atlas import report as report_module

    calls = []

    def fake_report(model, source, target, out, **kwargs):  # what build asks for; the real one is tested above
        calls.append((source, target, kwargs["units_per_layer"]))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "index.html").write_text(f"<title>report {len(calls)}</title>")
        return Path(out) / "index.html"

    monkeypatch.setattr(report_module, "circuit_report", fake_report)

    def run(whole: bool, pair=("mixed3a", "mixed3b")):
        return atlas.build(
            tiny,
            ["mixed3a", "mixed3b"],
            tmp_path,
            units_per_layer=3,
            parts=(),
            **{**FAST, "report": pair, "config": job(report_whole_layers=whole)},
        )

    assert run(False).report == tmp_path / "report" / "index.html" and calls == [("mixed3a", "mixed3b", 3)]
    stages = json.loads((tmp_path / store.STAGES_FILE).read_text())
    assert stages["report"] == {
        "source": "mixed3a",
        "target": "mixed3b",
        "units_per_layer": 3,
        "page": "report/index.html",
    }
    assert stages["analyses"]["mixed3a"]["branch"] == "not computed: not requested"
    (tmp_path / "report" / "index.html").write_text("edited: no layer names here")
    assert run(False).report == tmp_path / "report" / "index.html" and len(calls) == 1  # reused, page not read
    run(True)  # the whole layers now: the report of three units is not reused
    assert calls[-1] == ("mixed3a", "mixed3b", None) and len(calls) == 2
    run(True, ("conv2d1", "mixed3a"))  # another pair: made
    assert calls[-1] == ("conv2d1", "mixed3a", None) and len(calls) == 3
    run(True)  # and back: the stages hold the last pair only
    assert len(calls) == 4
    assert json.loads((tmp_path / store.STAGES_FILE).read_text())["report"]["units_per_layer"] is None
    assert run(True, False).report == tmp_path / "report" / "index.html" and len(calls) == 4  # no report asked: kept


def test_a_failed_report_is_recorded_and_a_damaged_stages_file_is_named(tiny, tmp_path, monkeypatch):
    from circuits_vision.atlas import report as report_module

    def failing(model, source, target, out, **kwargs):
        raise RuntimeError("no curve detectors <here>")

    monkeypatch.setattr(report_module, "circuit_report", failing)
    result = atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        tmp_path,
        units_per_layer=2,
        parts=(),
        **{**FAST, "report": ("mixed3a", "mixed3b")},
    )
    assert result.report is None
    assert json.loads((tmp_path / store.STAGES_FILE).read_text())["report"]["error"] == (
        "RuntimeError: no curve detectors <here>"
    )
    assert "circuit report: RuntimeError: no curve detectors &lt;here&gt;" in (tmp_path / "index.html").read_text()
    monkeypatch.undo()
    (tmp_path / store.STAGES_FILE).write_text("{")
    with pytest.raises(store.CorruptAtlasFileError, match=r"stages\.json is not valid JSON.*delete it"):
        atlas.build(tiny, ["mixed3a", "mixed3b"], tmp_path, units_per_layer=2, parts=(), **FAST)
    assert not (tmp_path / store.LOCK_FILE).exists()
