"""The shipped ``shapes`` model: checkpoint, recorded accuracy, training script, and its curve detectors."""

from __future__ import annotations

import json

import pytest
import torch

from circuits_vision.analysis.tuning import find_curve_detectors
from circuits_vision.models import shapes as shapes_module
from circuits_vision.models.inception import BlockSpec, ConvSpec, InceptionNet, InceptionSpec, MaxPoolSpec
from circuits_vision.models.loading import WeightsError
from circuits_vision.models.shapes import ShapesNet, default_weights_path, metadata_path, shapes
from circuits_vision.models.train_shapes import evaluate, train

CURVE_LAYER = "mixed3b"


@pytest.fixture(scope="module")
def model():
    return shapes()


@pytest.fixture(scope="module")
def metadata():
    return json.loads(metadata_path().read_text())


def test_checkpoint_is_a_plain_state_dict_loaded_with_weights_only(model):
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert not model.training and model.input_size == 64
    logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 32)
    assert {k: v.shape for k, v in ShapesNet.split_logits(logits).items()} == {"shape": (2, 24), "color": (2, 8)}


def test_reaches_its_recorded_heldout_accuracy_on_freshly_drawn_scenes(model, metadata):
    recorded = metadata["heldout"]["accuracy"]
    # A seed the training and the recorded held-out set never used; 512 scenes -> ~2% standard error.
    fresh = evaluate(model, 512, seed=424242)
    for head in ("shape", "color"):
        assert fresh[head] >= recorded[head] - 0.07, (head, fresh, recorded)
    assert recorded["shape"] > 0.5 and recorded["color"] > 0.5  # far above chance (1/24, 1/8)
    # Not below the checkpoint it replaced (shape 93.8%, colour 93.0% on the same held-out set).
    assert recorded["shape"] >= 0.9384 and recorded["color"] >= 0.9296


def test_metadata_describes_the_training(metadata):
    assert metadata["command"].startswith("python -m circuits_vision.models.train_shapes")
    for key in ("seed", "steps", "batch_size", "dataset", "heads"):
        assert key in metadata
    assert len(metadata["heads"]["shape"]) == 24


def test_shipped_model_has_a_curve_detector_family(model):
    """>= 8 curve detectors in mixed3b, preferring >= 7 distinct 45-degree sectors (measured: 21 over 7)."""
    search = find_curve_detectors(model, CURVE_LAYER)
    assert len(search.detectors) >= 8, search.detectors
    assert len(search.sectors()) >= 7, search.detectors


def test_an_untrained_network_has_no_such_family():
    """Control: the same search on the seed-0 initialisation finds no family, so the criterion is not free."""
    search = find_curve_detectors(shapes(pretrained=False), CURVE_LAYER)
    assert len(search.detectors) < 6 or len(search.sectors()) < 4


def test_short_training_run_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "tiny.pt"
    metadata = train(steps=2, batch_size=4, heldout=8, out=out, checkpoint_every=1, log=lambda line: None)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 2 == metadata["steps"]
    trained = shapes(out)
    initial = shapes(pretrained=False)
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, initial.state_dict()[k])]
    assert changed  # the optimiser steps changed the weights
    # The seed fixes the run: training again gives the same weights.
    again = tmp_path / "again.pt"
    train(steps=2, batch_size=4, heldout=8, out=again, log=lambda line: None)
    assert all(torch.equal(v, shapes(again).state_dict()[k]) for k, v in trained.state_dict().items())


def test_half_precision_checkpoint_is_upcast(tmp_path, model):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    half = shapes(path)
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(half(x), model(x), atol=0.05, rtol=0.02)


def test_checkpoint_of_another_architecture_names_the_differing_keys(tmp_path):
    other = InceptionNet(
        InceptionSpec(
            stem=[ConvSpec("conv2d0", 8, 7, stride=2), MaxPoolSpec("maxpool0")],
            blocks=[BlockSpec("mixed3a", 4, 4, 4, 4, 4, 4)],
            num_classes=32,
            input_size=64,
            softmax_name=None,
        )
    )
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(WeightsError) as error:
        shapes(path)
    message = str(error.value)
    assert "conv2d0_pre_relu_conv.weight: file [8, 3, 7, 7], model [16, 3, 7, 7]" in message
    assert "missing keys" in message and "mixed3b_1x1_pre_relu_conv.weight" in message


def test_spec_is_an_inceptionv1_style_network():
    spec = shapes_module.shapes_spec()
    assert [b.name for b in spec.blocks] == ["mixed3a", "mixed3b", "mixed4a"]
    model = ShapesNet()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 1_000_000  # a few MB at most


def _train_twice(tmp_path, **heads):
    """Two 3-step runs from seed 0 with the given training heads -> (their records, their two state dicts)."""
    records = [
        train(steps=3, batch_size=6, heldout=8, out=tmp_path / name, aux_start=1, log=lambda line: None, **heads)
        for name in ("a.pt", "b.pt")
    ]
    return records, shapes(tmp_path / "a.pt").state_dict(), shapes(tmp_path / "b.pt").state_dict()


def test_auxiliary_heads_train_deterministically_and_are_not_shipped(tmp_path):
    from circuits_vision.models.train_shapes import OrientationHeads

    records, a, b = _train_twice(tmp_path, aux={"mixed3b": 0.5})
    metadata = records[-1]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert set(a) == set(ShapesNet().state_dict())  # the heads stay out of the checkpoint
    assert metadata["auxiliary_heads"]["mixed3b"] == {
        "weight": 0.5,
        "bins": 16,
        "off_steps": 1,
        "ramp_steps": 1,
        "reads": "global average pool, linear",
        "shipped": False,
    }
    # Without the heads the same seed gives other weights: they did take part in training.
    plain = train(steps=3, batch_size=6, heldout=8, out=tmp_path / "plain.pt", log=lambda line: None)
    assert "auxiliary_heads" in plain and not plain["auxiliary_heads"]
    assert not all(torch.equal(v, shapes(tmp_path / "plain.pt").state_dict()[k]) for k, v in a.items())
    # The loss counts scenes with an orientation: orientation 10 -> bin 0, 350 -> bin 0, 30 -> bin 1; NaN (no curve) ignored.
    model = ShapesNet()
    heads = OrientationHeads(model, {"mixed3b": 1.0}, torch.Generator().manual_seed(0))
    model(torch.rand(4, 3, 64, 64))
    logits = heads.heads["mixed3b"](heads.outputs["mixed3b"].mean(dim=(2, 3)))
    expected = torch.nn.functional.cross_entropy(logits[:3], torch.tensor([0, 0, 1]))
    assert torch.allclose(heads.loss(torch.tensor([10.0, 350.0, 30.0, float("nan")])), expected)
    heads.remove()


@pytest.mark.parametrize("text", ["mixed3b", "mixed3b:x", "mixed3b:-1"])
def test_bad_auxiliary_head_spec_is_named(text):
    from circuits_vision.models.train_shapes import parse_aux

    with pytest.raises(ValueError, match="LAYER:WEIGHT"):
        parse_aux(text)


def test_local_curve_heads_train_deterministically_and_score_the_facing_of_each_cell(tmp_path):
    from circuits_vision.models.train_shapes import NO_CURVE_WEIGHT, LocalCurveHeads

    runs, a, b = _train_twice(tmp_path, local_curves={"mixed3a": 0.5}, curve_centres={"mixed3b": 0.25})
    assert all(torch.equal(v, b[k]) for k, v in a.items()) and set(a) == set(ShapesNet().state_dict())
    assert runs[0]["local_curve_heads"]["mixed3a"]["weight"] == 0.5
    assert runs[0]["curve_centre_heads"]["mixed3b"]["weight"] == 0.25
    assert "local curve facing" in runs[0]["loss"] and "curve midpoint cell" in runs[0]["loss"]
    # The loss: a curve facing up through the centre; its cells' targets are their facing bins, the rest "none".
    model = ShapesNet()
    heads = LocalCurveHeads(model, {"mixed3a": 1.0}, torch.Generator().manual_seed(0))
    model(torch.rand(1, 3, 64, 64))
    logits = heads.heads["mixed3a"](heads.outputs["mixed3a"])  # [1, 17, 8, 8]
    orientation, arc = torch.tensor([90.0]), torch.tensor([[16.0, 120.0, 0.0, 0.0]])
    from circuits_vision.stimuli import scenes

    facing = scenes.local_curve_facing(orientation, arc, 8)
    target = torch.full((1, 8, 8), 16, dtype=torch.long)
    marked = ~torch.isnan(facing)
    target[marked] = torch.floor(facing[marked] / 22.5 + 0.5).long() % 16
    assert target[0, 4, 3] == 5 and target[0, 4, 4] == 3  # 108 degrees -> bin 5, 72 -> bin 3
    weight = torch.ones(17)
    weight[16] = NO_CURVE_WEIGHT
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    assert torch.allclose(heads.loss(orientation, arc, 64), expected)
    heads.remove()


def test_unit_curve_heads_read_single_units_and_are_recorded(tmp_path):
    from circuits_vision.models.train_shapes import (
        NO_CURVE_WEIGHT,
        UnitCurveHeads,
        curve_unit_facings,
        curve_unit_indices,
        main,
    )
    from circuits_vision.stimuli import scenes

    assert curve_unit_indices(104) == [6, 19, 32, 45, 58, 71, 84, 97]
    assert curve_unit_facings() == [0.0, 180.0, 45.0, 225.0, 90.0, 270.0, 135.0, 315.0]
    model = ShapesNet()
    heads = UnitCurveHeads(model, {"mixed3a": 1.0})
    model(torch.rand(1, 3, 64, 64))
    assert bool((heads.outputs["mixed3a"] < 0).any())  # read before the ReLU, so a silenced unit still learns
    out = heads.outputs["mixed3a"].detach().requires_grad_(True)
    heads.outputs["mixed3a"] = out
    orientation, arc = torch.tensor([90.0]), torch.tensor([[16.0, 120.0, 0.0, 0.0]])
    loss = heads.loss(orientation, arc, 64)
    (grad,) = torch.autograd.grad(loss, out)
    # Only the 8 chosen units carry the loss; every other unit of the layer is left to the task.
    touched = grad.abs().flatten(2).sum(2)[0].nonzero().flatten().tolist()
    assert touched == curve_unit_indices(104)
    # By hand: gains start at softplus(0) = ln 2, biases at 0; bin k reads the unit asked for k * 45 degrees.
    facing = scenes.local_curve_facing(orientation, arc, 8)
    target = torch.full((1, 8, 8), 8, dtype=torch.long)
    marked = ~torch.isnan(facing)
    target[marked] = torch.floor(facing[marked] / 45.0 + 0.5).long() % 8
    by_bin = {int(f // 45): u for u, f in zip(curve_unit_indices(104), curve_unit_facings())}
    act = out.detach()[:, [by_bin[k] for k in range(8)]]
    logits = torch.cat([torch.log(torch.tensor(2.0)) * act, torch.zeros_like(act[:, :1])], 1)
    weight = torch.ones(9)
    weight[8] = NO_CURVE_WEIGHT
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    assert torch.allclose(loss.detach(), expected)
    heads.remove()
    # Deterministic from the seed, like the other heads.
    runs, a, b = _train_twice(tmp_path, unit_curves={"mixed3a": 0.5}, unit_centres={"mixed3b": 0.5})
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert runs[0]["unit_curve_heads"] == runs[1]["unit_curve_heads"]
    # The command line reaches the heads and the record names the units.
    main(
        ["--steps", "1", "--batch-size", "2", "--heldout", "2", "--out", str(tmp_path / "u.pt")]
        + ["--unit-curves", "mixed3a:0.5", "--unit-centres", "mixed3b:0.25"]
    )
    record = json.loads((tmp_path / "u.json").read_text())["unit_curve_heads"]
    assert record["mixed3a"]["units"] == curve_unit_indices(104) and record["mixed3a"]["labels"] == "local curve facing"
    assert (
        record["mixed3b"]["units"] == curve_unit_indices(160) and record["mixed3b"]["labels"] == "curve midpoint cell"
    )
    assert record["mixed3b"]["weight"] == 0.25


def test_unit_bins_train_one_unit_per_finer_facing(tmp_path):
    from circuits_vision.models.train_shapes import UnitCurveHeads, curve_unit_facings, curve_unit_indices, main
    from circuits_vision.stimuli import scenes

    facings = curve_unit_facings(16)
    assert sorted(facings) == [22.5 * k for k in range(16)] and facings[:4] == [0.0, 180.0, 22.5, 202.5]
    units = curve_unit_indices(48, bins=16)
    assert units == sorted(set(units)) and len(units) == 16 and units[0] == 1 and units[-1] == 46
    for bad in (3, 7):
        with pytest.raises(ValueError, match="--unit-bins"):
            curve_unit_facings(bad)
    model = ShapesNet()
    heads = UnitCurveHeads(
        model, {"mixed3b": 1.0}, labels=scenes.curve_midpoint_cells, bins=16, branches={"mixed3b": "1x1"}
    )
    assert heads.units["mixed3b"] == curve_unit_indices(160, (0, 48), 16)
    model(torch.rand(1, 3, 64, 64))
    out = heads.outputs["mixed3b"].detach().requires_grad_(True)
    heads.outputs["mixed3b"] = out
    # a curve facing 22.5 degrees is bin 1 of 16: its midpoint cell's target is the unit asked for 22.5 degrees
    orientation, arc = torch.tensor([22.5]), torch.tensor([[16.0, 120.0, 0.0, 0.0]])
    (grad,) = torch.autograd.grad(heads.loss(orientation, arc, 64), out)
    cell = scenes.curve_midpoint_cells(orientation, arc, out.shape[-1], size=64)[0]
    y, x = (~torch.isnan(cell)).nonzero()[0].tolist()
    asked = heads.units["mixed3b"][facings.index(22.5)]
    assert float(grad[0, asked, y, x]) < 0  # raising that unit there lowers the loss
    others = [u for u in heads.units["mixed3b"] if u != asked]
    assert bool((grad[0, others, y, x] > 0).all())
    heads.remove()
    main(
        ["--steps", "1", "--batch-size", "2", "--heldout", "2", "--out", str(tmp_path / "u.pt")]
        + ["--unit-centres", "mixed3b:0.5", "--unit-bins", "16", "--curve-branch", "mixed3b:1x1"]
    )
    record = json.loads((tmp_path / "u.json").read_text())["unit_curve_heads"]["mixed3b"]
    assert record["units"] == curve_unit_indices(160, (0, 48), 16) and record["facings_deg"] == facings
    assert record["no_curve_weight"] == 0.1


def test_unit_no_curve_weight_sets_the_weight_of_cells_without_a_curve(tmp_path):
    from circuits_vision.models.train_shapes import UnitCurveHeads, main
    from circuits_vision.stimuli import scenes

    heads = UnitCurveHeads(ShapesNet(), {"mixed3b": 1.0}, labels=scenes.curve_midpoint_cells, no_curve_weight=0.02)
    assert heads.class_weights.tolist() == pytest.approx([1.0] * 8 + [0.02])
    heads.remove()
    with pytest.raises(ValueError, match="'no curve' class weight must be > 0"):
        UnitCurveHeads(ShapesNet(), {"mixed3b": 1.0}, no_curve_weight=0.0)
    main(
        ["--steps", "1", "--batch-size", "2", "--heldout", "2", "--out", str(tmp_path / "n.pt")]
        + ["--unit-centres", "mixed3b:0.5", "--unit-no-curve-weight", "0.02"]
    )
    record = json.loads((tmp_path / "n.json").read_text())
    assert record["unit_curve_heads"]["mixed3b"]["no_curve_weight"] == 0.02
    assert record["curve_centre_heads"] == {}
    with pytest.raises(ValueError, match="--rotation-tie ties 8"):
        train(
            steps=1,
            batch_size=2,
            heldout=2,
            out=tmp_path / "t.pt",
            unit_curves={"mixed3a": 1.0},
            unit_centres={"mixed3b": 1.0},
            curve_branches={"mixed3b": "5x5"},
            rotation_tie=1.0,
            unit_bins=16,
            log=lambda line: None,
        )


def test_unit_zero_bias_keeps_only_the_chosen_units_biases_at_zero(tmp_path):
    from circuits_vision.models.shapes import shapes
    from circuits_vision.models.train_shapes import curve_unit_indices, main

    main(
        ["--steps", "3", "--batch-size", "2", "--heldout", "2", "--lr", "0.05", "--out", str(tmp_path / "z.pt")]
        + ["--unit-centres", "mixed3b:0.5", "--curve-branch", "mixed3b:1x1", "--unit-zero-bias", "mixed3b"]
    )
    record = json.loads((tmp_path / "z.json").read_text())["unit_curve_heads"]["mixed3b"]
    assert record["zero_bias"] is True and record["units"] == curve_unit_indices(160, (0, 48))
    bias = shapes(weights=tmp_path / "z.pt").mixed3b_1x1_pre_relu_conv.bias.detach()
    others = [u for u in range(48) if u not in record["units"]]
    assert bool((bias[record["units"]] == 0).all()) and bool((bias[others] != 0).all())
    with pytest.raises(ValueError, match="--unit-zero-bias mixed3a: mixed3a has no single curve units"):
        train(
            steps=1, batch_size=2, heldout=2, out=tmp_path / "y.pt", unit_zero_bias=["mixed3a"], log=lambda line: None
        )


def test_weight_decay_shrinks_the_conv_weights_and_is_recorded(tmp_path):
    plain = train(steps=2, batch_size=4, heldout=4, out=tmp_path / "plain.pt", log=lambda line: None)
    decayed = train(steps=2, batch_size=4, heldout=4, out=tmp_path / "wd.pt", weight_decay=50.0, log=lambda line: None)
    assert plain["weight_decay"] == 0.0 and decayed["weight_decay"] == 50.0 and decayed["optimizer"].startswith("AdamW")
    a, b = shapes(tmp_path / "plain.pt").state_dict(), shapes(tmp_path / "wd.pt").state_dict()
    conv = [k for k, v in a.items() if v.dim() == 4]
    bias = [k for k, v in a.items() if k.endswith("bias")]
    # lr * decay = 50 * (warm-up lr) shrinks every conv weight; biases are not decayed.
    assert all(b[k].norm() < a[k].norm() for k in conv)
    assert all(torch.allclose(a[k], b[k], atol=1e-2) for k in bias)


def test_l1_penalty_reaches_only_its_blocks_weights_and_is_recorded(tmp_path):
    from circuits_vision.models.train_shapes import block_weights, l1_penalty, parse_aux

    plain = train(steps=1, batch_size=4, heldout=4, out=tmp_path / "plain.pt", log=lambda line: None)
    sparse = train(steps=1, batch_size=4, heldout=4, out=tmp_path / "l1.pt", l1={"mixed3b": 1e3}, log=lambda line: None)
    assert (
        plain["l1"] == {} and sparse["l1"] == {"mixed3b": 1e3} and "sum |mixed3b convolution weights|" in sparse["loss"]
    )
    a, b = shapes(tmp_path / "plain.pt"), shapes(tmp_path / "l1.pt")
    names = {name for name, p in a.named_parameters() if name.startswith("mixed3b_") and p.dim() == 4}
    assert len(names) == 6  # 1x1, two bottlenecks, 3x3, 5x5, pool reduce
    sa, sb = a.state_dict(), b.state_dict()
    # one Adam step moves each weight by about lr against its gradient's sign: the penalty's sign wins in mixed3b
    assert all(sb[k].abs().sum() < sa[k].abs().sum() for k in names)
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k not in names)  # the first step leaves the rest alone
    with torch.no_grad():
        expected = 0.5 * sum(float(w.abs().sum()) for w in block_weights(a, "mixed3b"))
        assert float(l1_penalty(a, {"mixed3b": 0.5})) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no convolution weights in that block"):
        train(steps=1, batch_size=4, heldout=4, out=tmp_path / "bad.pt", l1={"mixed9z": 1.0}, log=lambda line: None)
    with pytest.raises(ValueError, match="--l1 penalty 'mixed3b': expected LAYER:WEIGHT"):
        parse_aux("mixed3b", "--l1 penalty")


def test_other_mixed3b_bottleneck_widths_train_and_load_back_with_their_widths(tmp_path):
    from circuits_vision.models.shapes import MIXED3B_BOTTLENECKS
    from circuits_vision.models.train_shapes import parse_widths

    metadata = train(
        steps=2, batch_size=4, heldout=4, out=tmp_path / "wide.pt", mixed3b_bottlenecks=(8, 4), log=lambda line: None
    )
    assert metadata["mixed3b_bottlenecks"] == [8, 4] and "mixed3b_bottlenecks=(8, 4)" in metadata["architecture"]
    model = shapes(tmp_path / "wide.pt")
    assert model.mixed3b_bottlenecks == (8, 4)
    state = model.state_dict()
    assert state["mixed3b_3x3_bottleneck_pre_relu_conv.weight"].shape[0] == 8
    assert state["mixed3b_5x5_bottleneck_pre_relu_conv.weight"].shape[0] == 4
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 32)
    assert shapes(state).mixed3b_bottlenecks == (8, 4)  # a state dict too
    assert shapes().mixed3b_bottlenecks == MIXED3B_BOTTLENECKS == (64, 32)  # the shipped checkpoint's widths
    # The command line passes the widths through.
    from circuits_vision.models.train_shapes import main

    main(
        [
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--heldout",
            "2",
            "--out",
            str(tmp_path / "cli.pt"),
            "--mixed3b-bottlenecks",
            "6,3",
        ]
    )
    assert shapes(tmp_path / "cli.pt").mixed3b_bottlenecks == (6, 3)
    assert parse_widths("64,32") == (64, 32)
    with pytest.raises(ValueError, match="two widths"):
        parse_widths("64")
    with pytest.raises(ValueError, match=">= 1 channels"):
        ShapesNet(mixed3b_bottlenecks=(0, 4))


def test_curve_units_can_sit_in_one_branch():
    from circuits_vision.models.train_shapes import UnitCurveHeads, curve_unit_indices, parse_branches

    assert curve_unit_indices(160, (112, 144)) == [114, 118, 122, 126, 130, 134, 138, 142]
    heads = UnitCurveHeads(ShapesNet(), {"mixed3b": 1.0}, branches={"mixed3b": "5x5"})
    assert heads.units["mixed3b"] == [114, 118, 122, 126, 130, 134, 138, 142]
    heads.remove()
    assert parse_branches("mixed3b:5x5, mixed3a:3x3") == {"mixed3b": "5x5", "mixed3a": "3x3"}
    with pytest.raises(ValueError, match="expected LAYER:BRANCH"):
        parse_branches("mixed3b")
    with pytest.raises(ValueError, match="mixed3b has branches"):
        UnitCurveHeads(ShapesNet(), {"mixed3b": 1.0}, branches={"mixed3b": "7x7"})
    with pytest.raises(ValueError, match="at least 8 channels"):
        curve_unit_indices(160, (0, 4))


def test_rotate_kernels_turns_counter_clockwise_on_screen():
    from circuits_vision.models.train_shapes import rotate_kernels

    kernel = torch.zeros(1, 1, 5, 5)
    kernel[0, 0, 2, 4] = 1.0  # right of the centre
    assert rotate_kernels(kernel, 90.0)[0, 0, 0, 2] == 1.0  # y up: a quarter turn counter-clockwise is the top
    turned = rotate_kernels(kernel, 45.0)[0, 0]
    assert turned[0, 3] > 0 and turned[4, 3] == 0 and turned[0, 1] == 0  # up and right
    twice = rotate_kernels(rotate_kernels(kernel, 45.0), 45.0)[0, 0]
    assert divmod(int(twice.argmax()), 5) == (0, 2)  # two eighth turns land where one quarter turn does
    # the copy the models package keeps of the analysis package's kernel rotation (models may not import analysis)
    from circuits_vision.analysis.equivariance import transforms

    random = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    for angle in (45.0, -45.0, 90.0, 135.0, 30.0):
        assert torch.equal(rotate_kernels(random, angle), transforms.rotate(random, angle)), angle


def _tied_model(tap) -> ShapesNet:
    """A model whose mixed3b 5x5 curve units read mixed3a's curve units through centre taps only: the unit
    asked for facing f takes ``tap(g, f)`` from the mixed3a unit asked for facing g."""
    from circuits_vision.models.train_shapes import curve_unit_facings, curve_unit_indices

    model = ShapesNet()
    sources, facings = curve_unit_indices(104), curve_unit_facings()
    bottleneck = model.layer("mixed3b_5x5_bottleneck_pre_relu_conv").weight
    kernel = model.layer("mixed3b_5x5_pre_relu_conv").weight
    with torch.no_grad():
        bottleneck.zero_()
        kernel.zero_()
        for j, u in enumerate(sources):
            bottleneck[j, u] = 1.0
        for k, unit in enumerate(curve_unit_indices(160, (112, 144))):
            for j, g in enumerate(facings):
                kernel[unit - 112, j, 2, 2] = tap(g, facings[k])
    return model


def test_rotation_tie_is_zero_for_rotated_copies_and_drives_training(tmp_path):
    import math

    from circuits_vision.models.train_shapes import RotationTie

    def template(d):  # not symmetric about 0, so reading it the wrong way round is not a rotation
        return math.cos(math.radians(d)) + 0.5 * math.sin(math.radians(d))

    # rotated copies: the unit of facing f takes template(g - f) from the mixed3a unit of facing g; zero up to the
    # blur of turning a centre tap by 45 degrees (bilinear), against the same taps read the wrong way round
    with torch.no_grad():
        assert float(RotationTie(_tied_model(lambda g, f: template(g - f)), "5x5").loss()) < 0.01
        assert float(RotationTie(_tied_model(lambda g, f: template(g + f)), "5x5").loss()) > 0.1
        random_init = float(RotationTie(ShapesNet(), "5x5").loss())
    # 8 random kernels: cos to their mean about 1/sqrt(8), and 96 of mixed3a's 104 channels off the curve units
    assert 1.2 < random_init < 1.9, random_init
    with torch.no_grad():  # the tied template spread onto the other channels costs their share of the energy
        spread = _tied_model(lambda g, f: template(g - f))
        spread.layer("mixed3b_5x5_bottleneck_pre_relu_conv").weight[0, 0] = 1.0  # channel 0 copies curve unit 6
        assert float(RotationTie(spread, "5x5").loss()) > 0.1  # about a ninth of the energy moved off
    common = dict(steps=4, batch_size=4, heldout=4, aux_start=1, lr=2e-2, log=lambda line: None)
    heads = dict(unit_curves={"mixed3a": 0.5}, unit_centres={"mixed3b": 0.5}, curve_branches={"mixed3b": "5x5"})
    tied = train(out=tmp_path / "tied.pt", rotation_tie=10.0, **heads, **common)
    free = train(out=tmp_path / "free.pt", **heads, **common)
    assert tied["rotation_tie"]["units"] == [114, 118, 122, 126, 130, 134, 138, 142]
    assert tied["rotation_tie"]["mixed3a_units"] == [6, 19, 32, 45, 58, 71, 84, 97]
    assert free["rotation_tie"] is None and "rotation tie" in tied["loss"]
    with torch.no_grad():
        after = {name: float(RotationTie(shapes(tmp_path / f"{name}.pt"), "5x5").loss()) for name in ("tied", "free")}
    assert after["tied"] < after["free"] - 0.05, after
    # mixed3a's curve units in one branch too: the tie reads the units the heads train
    both = {**heads, "curve_branches": {"mixed3b": "5x5", "mixed3a": "3x3"}}
    record = train(out=tmp_path / "both.pt", rotation_tie=1.0, **both, **{**common, "steps": 1})["rotation_tie"]
    assert record["mixed3a_units"] == [27, 33, 39, 45, 51, 57, 63, 69]
    with pytest.raises(ValueError, match="--unit-curves mixed3a"):
        train(out=tmp_path / "bad.pt", rotation_tie=1.0, curve_branches={"mixed3b": "5x5"}, **common)
    with pytest.raises(ValueError, match="3x3 or 5x5 branch"):
        train(out=tmp_path / "bad.pt", rotation_tie=1.0, **{**heads, "curve_branches": {}}, **common)
