"""The ``circuits-vision`` command as a person types it."""

import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from circuits_vision import cli
from circuits_vision.atlas import analyses, store

TINY = Path(__file__).parent / "atlas" / "tiny_model.py"


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_module_is_runnable_and_lists_commands():
    done = subprocess.run(
        [sys.executable, "-m", "circuits_vision.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for command in ("atlas", "report", "serve", "demo"):
        assert command in done.stdout


def test_unknown_model_names_close_ones(capsys, tmp_path):
    code, _, err = _run(capsys, "atlas", "--model", "shapez", "--out", tmp_path)
    assert code == 2
    assert "unknown model 'shapez'" in err and "'shapes'" in err
    assert "Traceback" not in err


def test_unknown_layer_names_close_ones(capsys, tmp_path):
    code, _, err = _run(capsys, "atlas", "--model", TINY, "--layers", "mixed3c", "--out", tmp_path / "a")
    assert code == 2
    assert "mixed3c" in err and "mixed3a" in err and "mixed3b" in err


def test_bad_numbers_are_argument_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["atlas", "--steps", "0"])
    assert exit_.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_model_file_without_factory_is_explained(capsys, tmp_path):
    bad = tmp_path / "nothing.py"
    bad.write_text("x = 1\n")
    code, _, err = _run(capsys, "atlas", "--model", bad, "--out", tmp_path / "a")
    assert code == 2 and "defines none of model(), build_model(), create_model()" in err


def test_shapes_model_loads_or_says_what_is_missing():
    from circuits_vision.models import shapes

    if shapes.default_weights_path().is_file():
        assert cli.load_model("shapes", None).input_size == 64
    else:
        with pytest.raises(cli.CommandError, match="shapes.pt is missing.*train_shapes"):
            cli.load_model("shapes", None)


def test_atlas_command_builds_then_refuses_other_settings(capsys, tmp_path):
    out = tmp_path / "atlas"
    common = [
        "atlas",
        "--model",
        TINY,
        "--layers",
        "conv2d1",
        "--out",
        out,
        "--size",
        "32",
        "--parts",
        "branch",
        "--no-report",
    ]
    code, stdout, err = _run(capsys, *common, "--steps", "2")
    assert code == 0, err
    assert str((out / "index.html").resolve()) in stdout
    assert len(store.read_jsonl(out / "manifest.jsonl")) == 6
    code, _, err = _run(capsys, *common, "--steps", "3")
    assert code == 2 and "other settings" in err and "steps: atlas has 2, this run has 3" in err


def test_report_command_writes_html_and_explains_missing_sections(capsys, tmp_path):
    code, stdout, err = _run(capsys, "report", "conv2d0", "conv2d1", "--model", TINY, "--out", tmp_path / "r")
    assert code == 0, err
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Rotation families of conv2d0" in page and "Rotation families of conv2d1" in page
    assert "not computed: NotABranchLayerError" in page  # conv2d1 is no concatenation of branches
    assert "index.html" in stdout


def test_serve_binds_localhost_only(tmp_path):
    from circuits_vision.atlas.serve import make_server

    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>atlas</title>")
    server = make_server(tmp_path, 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
            assert b"<title>atlas</title>" in response.read()
        thread.join(10)
    finally:
        server.server_close()
    with pytest.raises(FileNotFoundError, match="no index.html"):
        make_server(tmp_path / "missing", 0)


def test_cli_parts_match_the_atlas():
    assert cli.PARTS == analyses.PARTS


ATLAS = [
    "atlas",
    "--model",
    TINY,
    "--layers",
    "conv2d1",
    "--size",
    "32",
    "--steps",
    "2",
    "--parts",
    "branch",
    "--no-report",
]


def _one_line_error(err, *needles):
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("circuits-vision atlas: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_file_where_a_folder_should_be_is_a_one_line_error(capsys, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    code, _, err = _run(capsys, *ATLAS, "--out", out)
    assert code == 1
    _one_line_error(err, str(out), "a file is where a folder should be")
    good = tmp_path / "atlas"
    (good / "img").mkdir(parents=True)
    (good / "img" / "conv2d1").write_text("in the way of the images")
    code, _, err = _run(capsys, *ATLAS, "--out", good)
    assert code == 1
    _one_line_error(err, str(good / "img" / "conv2d1"))
    assert not (good / store.LOCK_FILE).exists()


def _failing(monkeypatch, where, number, text):
    """Make every file written under ``where`` fail with OSError ``number``, as the system does."""
    import errno
    import os
    import tempfile

    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def mkstemp(*args, dir=None, **kwargs):
        if number != errno.ENOSPC and dir is not None and str(dir).startswith(str(where)):
            raise OSError(number, text, str(dir))  # the error a read-only folder gives, naming it
        return real_mkstemp(*args, dir=dir, **kwargs)

    def fsync(fd):
        if number == errno.ENOSPC and os.readlink(f"/proc/self/fd/{fd}").startswith(str(where)):
            raise OSError(number, text)  # a full disk fails the write, naming no file
        return real_fsync(fd)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", fsync)


def test_read_only_output_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "atlas"
    out.mkdir()
    _failing(monkeypatch, out, errno.EACCES, "Permission denied")
    code, _, err = _run(capsys, *ATLAS, "--out", out)
    assert code == 1
    _one_line_error(err, "Permission denied", str(out), "no permission to write there")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the file being written through /proc")
def test_full_disk_is_a_one_line_error_naming_the_file(capsys, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "atlas"
    _failing(monkeypatch, out, errno.ENOSPC, "No space left on device")
    code, _, err = _run(capsys, *ATLAS, "--out", out)
    assert code == 1
    line = _one_line_error(err, "No space left on device", str(out), "the disk is full")
    assert line.split(": ")[3].startswith(str(out))  # names the file it could not write
    assert not list(out.rglob("*.tmp"))


def test_damaged_atlas_files_are_named(capsys, tmp_path):
    out = tmp_path / "atlas"
    code, _, err = _run(capsys, *ATLAS, "--out", out)
    assert code == 0, err
    (out / "settings.json").write_text('{"steps": 2,')
    code, _, err = _run(capsys, *ATLAS, "--out", out)
    assert code == 2
    _one_line_error(err, str(out / "settings.json"), "not valid JSON")


def test_report_of_swapped_layers_is_refused(capsys, tmp_path):
    code, _, err = _run(capsys, "report", "mixed3b", "mixed3a", "--model", TINY, "--out", tmp_path / "r")
    assert code == 2 and "Traceback" not in err
    assert "mixed3b runs after mixed3a" in err and "report mixed3a mixed3b" in err
    assert not (tmp_path / "r" / "index.html").exists()
    code, _, err = _run(capsys, "report", "mixed3a", "mixed3a", "--model", TINY, "--out", tmp_path / "r")
    assert code == 2 and "got mixed3a twice" in err


def test_report_takes_detection_settings(capsys, tmp_path, monkeypatch):
    from circuits_vision.analysis import equivariance, tuning

    calls, real = [], equivariance.report
    monkeypatch.setattr(equivariance, "report", lambda *a, **kw: calls.append((a[1], kw)) or real(*a, **kw))
    curves, real_curves = [], tuning.find_curve_detectors
    monkeypatch.setattr(
        tuning, "find_curve_detectors", lambda *a, **kw: curves.append((a[1], kw.get("units"))) or real_curves(*a, **kw)
    )
    code, _, err = _run(
        capsys,
        "report",
        "mixed3a",
        "mixed3b",
        "--model",
        TINY,
        "--out",
        tmp_path / "r",
        "--threshold",
        "0.3",
        "--min-members",
        "2",
        "--units-per-layer",
        "4",
    )
    assert code == 0, err
    assert [(layer, kw["units"], kw["threshold"], kw["min_members"]) for layer, kw in calls] == [
        ("mixed3a", [0, 1, 2, 3], 0.3, 2),
        ("mixed3b", [0, 1, 2, 3], 0.3, 2),
    ]
    assert curves == [("mixed3a", [0, 1, 2, 3]), ("mixed3b", [0, 1, 2, 3])]  # the curve search too
    page = (tmp_path / "r" / "index.html").read_text()
    assert page.count("detection: threshold 0.3, at least 2 members, units 0-3 only") == 2
    assert re.search(r"circuit report: 100%\|[^|]*\| (\d+)/\1 \[", err)  # the sections' progress bar, all done
    with pytest.raises(SystemExit):
        cli.main(["report", "mixed3a", "mixed3b", "--threshold", "5"])
    assert "expected a cosine similarity in (0, 1], got 5.0" in capsys.readouterr().err


def test_serve_on_a_busy_port_is_a_one_line_error(capsys, tmp_path):
    import socket

    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>atlas</title>")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _run(capsys, "serve", tmp_path, "--port", port)
    assert code == 2 and "Traceback" not in err
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err


def test_atlas_passes_the_dictionary_part_and_its_settings(monkeypatch, tmp_path):
    from circuits_vision import atlas
    from circuits_vision.atlas import dictionary_units

    assert cli.DICTIONARY_PART == dictionary_units.PART
    seen = {}

    def build(model, **kwargs):
        seen.update(kwargs)
        return atlas.AtlasResult(tmp_path, tmp_path / "index.html", tmp_path / "manifest.jsonl", 0, 0)

    monkeypatch.setattr(atlas, "build", build)
    assert (
        cli.main(
            [
                "atlas",
                "--model",
                str(TINY),
                "--parts",
                "inputs",
                "dictionary",
                "--dictionary-layers",
                "mixed3b",
                "--dictionary-features",
                "8",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert seen["parts"] == ["inputs", "dictionary"]
    assert seen["config"].dictionary_layers == ("mixed3b",) and seen["config"].dictionary_features == 8
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(["atlas", "--dictionary-features", "0"])
