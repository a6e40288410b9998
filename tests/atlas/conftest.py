"""Fixtures for the atlas tests: the tiny model and one complete atlas of it, built once."""

from pathlib import Path

import pytest

from circuits_vision import atlas
from circuits_vision.cli import load_model_file

TINY = Path(__file__).with_name("tiny_model.py")
LABEL = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="session", autouse=True)
def fewer_example_scenes():
    """Atlases in these tests search 256 example scenes, not 2048: the same code, an eighth of the time."""
    from circuits_vision.atlas import analyses

    saved, analyses.EXAMPLE_SCENES = analyses.EXAMPLE_SCENES, 256
    yield
    analyses.EXAMPLE_SCENES = saved


@pytest.fixture(scope="session")
def tiny():
    return load_model_file(TINY)


@pytest.fixture(scope="session")
def full_atlas(tiny, tmp_path_factory):
    """Every unit of mixed3a and mixed3b with all analyses, the circuit report and a hostile label."""
    out = tmp_path_factory.mktemp("atlas")
    atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        out,
        steps=2,
        size=32,
        progress=False,
        labels={"mixed3a:1": LABEL},
        report=("mixed3a", "mixed3b"),
        config=atlas.AtlasConfig(chunk_size=8, log=lambda message: None),
    )
    return out


DICTIONARY_OPTIONS = {"steps": 300, "l1": 0.05}


def _build_with_dictionary(tiny, out, messages, **config):
    """An atlas of mixed3a and mixed3b with the dictionary part (a short sparse-autoencoder training)."""
    return atlas.build(
        tiny,
        ["mixed3a", "mixed3b"],
        out,
        steps=2,
        size=32,
        progress=False,
        report=False,
        parts=["inputs", "outputs", "polysemanticity", "dictionary"],
        config=atlas.AtlasConfig(chunk_size=8, log=messages.append, dictionary_options=DICTIONARY_OPTIONS, **config),
    )


@pytest.fixture(scope="session")
def dictionary_atlas(tiny, tmp_path_factory):
    """``(directory, log messages)``: :func:`build_with_dictionary` with 24 features."""
    out = tmp_path_factory.mktemp("dictionary_atlas")
    messages = []
    _build_with_dictionary(tiny, out, messages, dictionary_features=24)
    return out, messages


@pytest.fixture
def build_with_dictionary():
    """``build(tiny, out, messages, **AtlasConfig fields)``: the dictionary atlas again (a rerun or other settings)."""
    return _build_with_dictionary
