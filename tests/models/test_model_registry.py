"""models.load / available_models, and torchvision models taking [0, 1] input."""

from __future__ import annotations

import pytest
import torch
import torchvision

import circuits_vision.models as models
from circuits_vision.models.inceptionv1 import InceptionV1
from circuits_vision.models.torchvision_models import IMAGENET_MEAN, IMAGENET_STD


def normalise(x):
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_available_models_lists_every_kind():
    names = models.available_models()
    for name in ("inceptionv1", "shapes", "googlenet", "alexnet", "vgg16", "resnet50"):
        assert name in names
    assert len(names) == len(set(names))


def test_load_inceptionv1_passes_options():
    model = models.load("InceptionV1", lrn="lucent")
    assert isinstance(model, InceptionV1) and model.lrn == "lucent" and not model.training


def test_unknown_names_suggest_close_ones():
    with pytest.raises(models.UnknownModelError, match="did you mean 'resnet50'") as info:
        models.load("resnet05")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="did you mean 'inceptionv1'"):
        models.load("inceptionv2")


def test_torchvision_model_normalises_inside_and_keeps_its_names():
    state = torch.get_rng_state()
    model = models.load("squeezenet1_1", generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    again = models.load("squeezenet1_1", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    reference_keys = torchvision.models.squeezenet1_1().state_dict().keys()
    assert model.state_dict().keys() == reference_keys
    assert model.input_size == 224 and not model.training
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward(normalise(x)))  # forward() skips the hook
        assert not torch.allclose(model(x), model.forward(x))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\] in \[0, 1\]"):
        model(torch.rand(1, 1, 64, 64))


def test_torchvision_weights_from_a_path(tmp_path):
    source = models.load("squeezenet1_1", generator=torch.Generator().manual_seed(1))
    torch.save(source.state_dict(), tmp_path / "squeeze.pth")
    loaded = models.load("squeezenet1_1", weights=tmp_path / "squeeze.pth")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(models.WeightsError, match="missing keys"):
        models.load("resnet18", weights=tmp_path / "squeeze.pth")


def test_googlenet_checkpoint_with_aux_heads_loads_like_torchvision(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pretrained_like = torchvision.models.GoogLeNet(aux_logits=True, transform_input=True, init_weights=False)
    torch.save(pretrained_like.state_dict(), tmp_path / "googlenet.pth")
    model = models.load("googlenet", weights=tmp_path / "googlenet.pth")
    assert model.aux1 is None and model.aux2 is None and model.transform_input
    assert "aux1.conv.conv.weight" not in model.state_dict()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), pretrained_like.eval()(normalise(x)))
    random = models.load("googlenet")
    assert random.aux1 is None and not random.transform_input


def test_shapes_missing_gives_a_clear_error(monkeypatch):
    real = models._optional_module
    monkeypatch.setattr(models, "_optional_module", lambda name: None if name == "shapes" else real(name))
    with pytest.raises(RuntimeError, match="'shapes' model is not available"):
        models.load("shapes")


def test_planted_models_load_by_name():
    planted = pytest.importorskip("circuits_vision.models.planted")
    name = models._planted_names()[0]
    model = models.load(name)
    assert isinstance(model, torch.nn.Module) and not isinstance(model, planted.PlantedModel)
    assert model.truth == getattr(planted, name)().truth
    assert set(models._planted_names()) <= set(models.available_models())
