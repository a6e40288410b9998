"""The drop-in has lucent 0.1.8's public names with lucent's signatures, and its misc helpers work."""

from __future__ import annotations
import __future__

import importlib
import inspect
import random

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.needs_lucent

MODULES = [
    "optvis.render",
    "optvis.objectives",
    "optvis.param",
    "optvis.transform",
    "modelzoo",
    "modelzoo.util",
    "misc.io",
    "misc.channel_reducer",
    "util",
]
# lucent names the drop-in leaves out, on purpose: module-level device/version constants (the
# drop-in looks the device up per call) and the GAN parameterization, whose weights are downloaded
# from a file host at first use.
LEFT_OUT = {"device", "TORCH_VERSION", "KORNIA_VERSION", "upconvGAN", "load_urls", "netsdir", "model_urls"}


def _public(module) -> dict[str, object]:
    found = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or name in LEFT_OUT or inspect.ismodule(obj) or isinstance(obj, __future__._Feature):
            continue
        if callable(obj) and not getattr(obj, "__module__", "").startswith("lucent"):
            continue  # re-exported from torch, numpy, ... (torchvision models are checked below)
        found[name] = obj
    return found


@pytest.mark.parametrize("path", MODULES)
def test_every_public_lucent_name_exists_with_lucents_parameters(path):
    theirs = importlib.import_module(f"lucent.{path}")
    ours = importlib.import_module(f"circuits_vision.compat.lucent.{path}")
    for name, obj in _public(theirs).items():
        assert hasattr(ours, name), f"{path}.{name} is missing"
        if not callable(obj):
            continue
        mine = getattr(ours, name)
        target = obj.__init__ if inspect.isclass(obj) else obj
        expected = inspect.signature(target).parameters
        got = inspect.signature(mine.__init__ if inspect.isclass(mine) else mine).parameters
        positional = [p.name for p in expected.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert list(got)[: len(positional)] == positional, f"{path}.{name}: positional order differs"
        for parameter in expected.values():
            if parameter.name in ("self", "args", "kwargs") or parameter.kind is parameter.VAR_KEYWORD:
                continue
            assert parameter.name in got, f"{path}.{name} lacks argument {parameter.name!r}"
            default, mine_default = parameter.default, got[parameter.name].default
            if callable(default):  # lucent's own class (cppn's CompositeActivation): ours of that name
                default, mine_default = default.__name__, getattr(mine_default, "__name__", mine_default)
            if default is not inspect.Parameter.empty:
                assert mine_default == default, f"{path}.{name}({parameter.name}=...)"


def test_modelzoo_forwards_torchvision_models():
    import torchvision.models

    from circuits_vision.compat.lucent import modelzoo

    assert modelzoo.resnet18 is torchvision.models.resnet18
    assert "resnet50" in dir(modelzoo)
    with pytest.raises(AttributeError, match="torchvision"):
        modelzoo.no_such_model  # noqa: B018


def test_set_seed_makes_params_and_transforms_repeat():
    from circuits_vision.compat.lucent.optvis import param, transform
    from circuits_vision.compat.lucent.util import set_seed

    runs = []
    for _ in range(2):
        set_seed(11)
        image = param.image(16)[1]()
        runs.append((transform.compose(transform.standard_transforms)(image), random.random()))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=0, atol=0)
    assert runs[0][1] == runs[1][1]


def test_channel_reducer_equals_lucents():
    from lucent.misc.channel_reducer import ChannelReducer as Theirs

    from circuits_vision.compat.lucent.misc.channel_reducer import ChannelReducer

    acts = np.abs(np.random.default_rng(0).normal(size=(2, 5, 6, 8)))
    ours, theirs = (
        ChannelReducer(3, "NMF", random_state=0, max_iter=400),
        Theirs(3, "NMF", random_state=0, max_iter=400),
    )
    reduced, expected = ours(acts), theirs(acts)
    assert reduced.shape == (2, 5, 6, 3)
    np.testing.assert_allclose(reduced, expected, rtol=1e-6)
    np.testing.assert_allclose(ours.components, theirs.components, rtol=1e-6)
    np.testing.assert_allclose(ours(acts[:1]), theirs(acts[:1]), rtol=1e-6)  # fitted: now transforms
    with pytest.raises(ValueError, match="Unknown"):
        ChannelReducer(2, "NoSuchMethod")
    with pytest.raises(ValueError, match="int"):
        ChannelReducer(2.5)


def test_show_displays_escaped_html_images(monkeypatch):
    import IPython.display

    from circuits_vision.compat.lucent.misc.io import show

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    show(np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32), labels=["<b>a</b>", "b"])
    show(np.zeros((8, 8, 6)))  # six channels: collapsed to RGB
    assert shown[0].count("<img") == 2 and "&lt;b&gt;a&lt;/b&gt;" in shown[0] and "<b>a</b>" not in shown[0]
    assert shown[1].startswith("<img") and "data:image/png;base64," in shown[1]


def test_save_writes_images_arrays_and_json(tmp_path):
    from PIL import Image

    from circuits_vision.compat.lucent.misc.io import save

    batch = np.random.default_rng(0).random((3, 8, 10, 3))
    save(batch, tmp_path / "row.png")
    assert Image.open(tmp_path / "row.png").size == (30, 8)
    save(batch[0], tmp_path / "one.jpg")
    assert Image.open(tmp_path / "one.jpg").size == (10, 8)
    save(batch, tmp_path / "batch.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "batch.npy"), batch)
    save({"loss": np.float32(1.5)}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{"loss": 1.5}'
    with pytest.raises(ValueError, match=".png"):
        save(batch, tmp_path / "x.gif")
