"""Measure a ``shapes`` checkpoint against the Circuits targets the shipped model must meet.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/measure_shapes.py /tmp/model_runs/r1.pt [--write-json]

Prints, with the toolkit's default settings:

- held-out accuracy of both heads (2048 scenes, the training record's held-out seed);
- curve detectors of mixed3a and mixed3b (``find_curve_detectors`` defaults): count, sectors, branches;
  edge-orientation-tuned units of mixed3a (the other kind of precursor);
- the mixed3a -> mixed3b curve circuit (``analysis.curve_circuits.curve_circuit``): correlation of the
  net expanded weight with cos(orientation difference), permutation p, aligned and opposite means;
- the echo edit (on the most inhibited detector, and on every detector beside its control) and the
  hand-built replacement of the mixed3b curve detectors (``analysis.curve_experiments``);
- branch specialization of mixed3a and mixed3b for colour and orientation categories (best cell,
  Bonferroni p) and for the curve detectors;
- the checkpoint's size.

``--write-json`` merges the figures into the checkpoint's ``.json`` (the training record) under
``"measured"``, and the curve detectors of mixed3a, mixed3b and mixed4a under ``"curve_detectors"``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from circuits_vision import stimuli
from circuits_vision.analysis import branches, curve_circuits, curve_experiments, tuning
from circuits_vision.models import shapes as shapes_module
from circuits_vision.models.train_shapes import HELDOUT_SEED_OFFSET, atomic_save, evaluate

TARGETS = {
    "curve_detectors_mixed3b": 8,
    "sectors_mixed3b": 8,
    "correlation": 0.35,
    "p": 0.01,
    "shape_accuracy": 0.9384765625,
    "color_accuracy": 0.9296875,
}


def branch_of(model, layer: str, unit: int) -> str:
    for name, (start, stop) in model.branch_ranges(layer).items():
        if start <= unit < stop:
            return name
    return "?"


def trained_units_found(path: Path, detectors: dict) -> dict:
    """For a checkpoint trained with unit curve targets (``train_shapes --unit-curves/--unit-centres``): per
    layer, which of the trained units ``find_curve_detectors`` finds and how far its preferred orientation
    lies from the facing the unit was trained for."""
    record_path = path.with_suffix(".json")
    heads = json.loads(record_path.read_text()).get("unit_curve_heads", {}) if record_path.is_file() else {}
    out = {}
    for layer, head in heads.items():
        found = {d.unit: d.preferred_orientation for d in detectors.get(layer, [])}
        errors = {
            u: round(abs(float(curve_circuits.orientation_difference(torch.tensor(found[u]), torch.tensor(facing)))), 1)
            for u, facing in zip(head["units"], head["facings_deg"])
            if u in found
        }
        out[layer] = {"trained": head["units"], "found": sorted(errors), "orientation_error_deg": errors}
    return out


def measure(path: Path, seed: int = 0, heldout: int = 2048, quick: bool = False) -> dict:
    model = shapes_module.shapes(path)
    figures: dict = {"checkpoint_bytes": path.stat().st_size}
    started = time.time()
    figures["heldout_accuracy"] = evaluate(model, heldout, seed + HELDOUT_SEED_OFFSET)
    detectors = {}
    for layer in ("mixed3a", "mixed3b"):
        search = tuning.find_curve_detectors(model, layer)
        detectors[layer] = search.detectors
        per_branch: dict[str, int] = {}
        for d in search.detectors:
            per_branch[branch_of(model, layer, d.unit)] = per_branch.get(branch_of(model, layer, d.unit), 0) + 1
        figures[f"curve_detectors_{layer}"] = {
            "units": search.units,
            "preferred_orientation_deg": [d.preferred_orientation for d in search.detectors],
            "sectors_45deg": sorted(search.sectors()),
            "branches": per_branch,
        }
    # Oriented-edge precursors in mixed3a: units tuned to edge orientation (360-degree period, so polarity counts).
    edges = tuning.tuning_curves(model, "mixed3a", None, stimuli.edges, {"orientation": list(range(0, 360, 5))})
    peak, osi, preferred = edges.peak_response(), edges.selectivity_index(), edges.preferred_orientation()
    tuned = [i for i in range(len(edges.units)) if peak[i] >= 2.0 and osi[i] >= 0.15]
    figures["edge_units_mixed3a"] = {
        "units": [edges.units[i] for i in tuned],
        "sectors_45deg": sorted({int(preferred[i] // 45) % 8 for i in tuned}),
        "criteria": "edges at every 5 deg, peak >= 2 noise std, selectivity >= 0.15",
    }
    figures["trained_curve_units"] = trained_units_found(path, detectors)
    try:
        circuit = curve_circuits.curve_circuit(
            model, "mixed3a", "mixed3b", source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"]
        )
        figures["curve_circuit"] = circuit.summary()
        print(circuit)
    except ValueError as error:
        figures["curve_circuit"] = {"not_computed": str(error)}
    if quick:
        figures["branch_specialization_best"] = {}
        return figures
    if len(detectors["mixed3a"]) >= 2 and len(detectors["mixed3b"]) >= 2:
        result = curve_experiments.echo(
            model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"]
        )
        figures["echo"] = result.summary()
        print(result)
        survey = curve_experiments.echo_survey(
            model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"]
        )
        figures["echo_survey"] = survey.summary()
        print(survey.title())
        # The report's experiment, on its scenes (disjoint from training and held-out draws).
        replaced = curve_experiments.replace_curve_detectors_on_scenes(
            model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"]
        )
        figures["replacement"] = replaced.summary()
        print(replaced)
    specialization = {}
    for layer in ("mixed3a", "mixed3b"):
        cats = {
            "color": "color",
            "orientation": "orientation",
            "curve": {
                "curve_detector": [d.unit for d in detectors[layer]],
                "other": [
                    u
                    for u in range(shapes_module.ShapesNet().branch_ranges(layer)["pool_reduce"][1])
                    if u not in {d.unit for d in detectors[layer]}
                ],
            },
        }
        for name, categories in cats.items():
            found = branches.report(model, layer, categories)
            # For the curve split, the curve detectors' own best branch (what the shapes claims test); for the
            # others, the most enriched cell of any category.
            best = (
                found.best_branch("curve_detector")
                if name == "curve"
                else min((r for r in found.rows if r.tested), key=lambda r: r.p_bonferroni)
            )
            specialization[f"{layer}/{name}"] = {
                "category": best.category,
                "branch": best.branch,
                "count": f"{best.count}/{best.category_size}",
                "branch_size": best.branch_size,
                "p_bonferroni": best.p_bonferroni,
            }
    figures["branch_specialization_best"] = specialization
    figures["measure_seconds"] = round(time.time() - started, 1)
    return figures


def verdict(figures: dict) -> list[str]:
    lines = []
    acc = figures["heldout_accuracy"]
    d3b = figures["curve_detectors_mixed3b"]
    d3a = figures["curve_detectors_mixed3a"]
    cc = figures["curve_circuit"]
    lines.append(
        f"accuracy shape {acc['shape']:.4f} (today {TARGETS['shape_accuracy']:.4f}) "
        f"colour {acc['color']:.4f} (today {TARGETS['color_accuracy']:.4f})"
    )
    lines.append(
        f"mixed3b curve detectors {len(d3b['units'])} (>= 8) sectors {len(d3b['sectors_45deg'])}/8 {d3b['branches']}"
    )
    lines.append(f"mixed3a curve detectors {len(d3a['units'])} sectors {len(d3a['sectors_45deg'])}/8 {d3a['branches']}")
    e3a = figures["edge_units_mixed3a"]
    for layer, row in figures.get("trained_curve_units", {}).items():
        lines.append(
            f"{layer} trained curve units found {len(row['found'])}/{len(row['trained'])}, errors (deg) "
            f"{row['orientation_error_deg']}"
        )
    lines.append(f"mixed3a edge-tuned units {len(e3a['units'])} sectors {len(e3a['sectors_45deg'])}/8")
    if "correlation_net_vs_cos_delta" in cc:
        lines.append(
            f"curve circuit r {cc['correlation_net_vs_cos_delta']:.3f} (>= 0.35) p {cc['permutation_p']:.2g} "
            f"aligned {cc['aligned_mean_net']:+.4g} opposite {cc['opposite_mean_net']:+.4g}"
        )
    else:
        lines.append(f"curve circuit: {cc['not_computed']}")
    for key, row in figures["branch_specialization_best"].items():
        lines.append(
            f"branches {key}: best {row['category']} in {row['branch']} {row['count']} "
            f"(branch {row['branch_size']}) p_bonf {row['p_bonferroni']:.2g}"
        )
    lines.append(f"checkpoint {figures['checkpoint_bytes'] / 1e6:.2f} MB")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default=str(shapes_module.default_weights_path()))
    parser.add_argument("--seed", type=int, default=0, help="the training seed (fixes the held-out seed)")
    parser.add_argument("--write-json", action="store_true", help="merge the figures into the checkpoint's .json")
    parser.add_argument("--quick", action="store_true", help="accuracy, curve detectors and the circuit only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = Path(args.checkpoint)
    figures = measure(path, args.seed, quick=args.quick)
    print("\n".join(verdict(figures)))
    if args.write_json:
        record_path = path.with_suffix(".json")
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        record["measured"] = figures
        # The curve detectors per layer in the form the atlas tests and notebooks read.
        model = shapes_module.shapes(path)
        record["curve_detectors"] = {
            "found_by": "circuits_vision.analysis.tuning.find_curve_detectors(shapes(), layer) with its defaults"
        }
        for layer in ("mixed3a", "mixed3b", "mixed4a"):
            search = tuning.find_curve_detectors(model, layer)
            record["curve_detectors"][layer] = {
                "units": search.units,
                "preferred_orientation_deg": [d.preferred_orientation for d in search.detectors],
                "sectors_45deg": sorted(search.sectors()),
            }
        atomic_save(record, record_path)
        print(f"wrote {record_path}")


if __name__ == "__main__":
    main()
