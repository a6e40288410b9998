"""The result contract (circuits_vision.results) and the unknown-name errors (circuits_vision.errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass

import pytest
import torch

import circuits_vision
import circuits_vision.analysis
from circuits_vision.errors import UnknownNameError, close_names, did_you_mean
from circuits_vision.results import Result, format_table, short


@dataclass(repr=False)
class Toy(Result):
    layer: str
    scores: torch.Tensor

    def table(self):
        return [{"unit": u, "score": float(s)} for u, s in enumerate(self.scores)]


def test_repr_is_short_and_shows_tensors_by_shape():
    toy = Toy("mixed3b", torch.arange(1000.0))
    assert repr(toy) == "Toy(layer='mixed3b', scores=tensor[1000])"


def test_str_is_an_aligned_table_cut_after_forty_rows():
    text = str(Toy("conv", torch.tensor([0.5, 0.25, 12.0])))
    assert text.splitlines() == [
        "Toy(layer='conv', scores=tensor[3])",
        "unit  score",
        "   0    0.5",
        "   1   0.25",
        "   2     12",
    ]
    long = format_table([{"unit": i} for i in range(45)])
    assert long.splitlines()[-1] == "... 5 more rows" and len(long.splitlines()) == 42
    assert format_table([]) == "(no rows)"
    assert format_table([{"name": "a", "value": None}, {"name": "bb", "extra": True}]).splitlines() == [
        "name  value  extra",
        "a         -      -",
        "bb        -   True",
    ]


def test_short_texts():
    assert short([1, 2]) == "[1, 2]" and short(list(range(10))) == "[10 int]" and short(0.123456) == "0.1235"
    assert short({"a": 1}) == "{'a': 1}" and short({i: i for i in range(9)}) == "{9 items}"


def _result_classes():
    found = []
    for info in pkgutil.walk_packages(circuits_vision.analysis.__path__, "circuits_vision.analysis."):
        module = importlib.import_module(info.name)
        found += [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Result) and c.__module__ == module.__name__
        ]
    return found


def test_every_analysis_result_follows_the_contract():
    classes = {c.__name__ for c in _result_classes()}
    assert {
        "TuningCurves",
        "CurveDetectorSearch",
        "BranchReport",
        "BranchRouting",
        "WeightSVD",
        "CircuitEquivariance",
        "CurvePattern",
        "EchoResult",
        "CurveCircuit",
        "EquivarianceResult",
        "AblationReport",
        "Polysemanticity",
        "DatasetExamples",
        "Dictionary",
        "AgreementResult",
    } <= classes
    for cls in _result_classes():
        assert cls.table is not Result.table, f"{cls.__name__} has no table()"
        assert inspect.signature(cls.table).return_annotation in ("list[dict]", list[dict]), cls.__name__


def test_branch_report_rows_and_text():
    from circuits_vision.analysis import branches
    from circuits_vision.models import planted

    pm = planted.branch_block()
    report = branches.specialization(pm.model, "block", pm.truth["categories"])
    rows = report.table()
    assert len(rows) == 2 * 4 and rows[0]["category"] == "color" and isinstance(rows[0]["units"], list)
    assert {r["branch"] for r in rows} == {"1x1", "3x3", "5x5", "pool"}
    assert str(report).startswith("branch specialization of layer 'block'")
    assert "tensor(" not in repr(report) and repr(report).startswith("BranchReport(layer='block'")


def test_unknown_name_errors_share_one_base():
    from circuits_vision.hooks import UnknownLayerError
    from circuits_vision.models import UnknownModelError
    from circuits_vision.models.facts import UnknownFactError, layer_width

    with pytest.raises(UnknownModelError) as model_error:
        circuits_vision.models.load("resnet05")
    assert model_error.value.suggestions[0] == "resnet50" and str(model_error.value).startswith("unknown model")
    with pytest.raises(UnknownFactError, match=r"no layer 'mixed3c' \(did you mean 'mixed4c', 'mixed3b'") as fact_error:
        layer_width("mixed3c")
    assert "mixed3b" in fact_error.value.suggestions
    for error in (model_error.value, fact_error.value):
        assert isinstance(error, UnknownNameError) and isinstance(error, KeyError) and isinstance(error, ValueError)
    assert issubclass(UnknownLayerError, UnknownNameError)
    assert close_names("mixd3a", ["mixed3a", "mixed4a", "conv2d0"], n=1) == ["mixed3a"]
    assert did_you_mean(["a", "b"]) == "did you mean 'a', 'b'?" and did_you_mean([]) == ""
