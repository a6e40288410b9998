"""Atlas throughput: the shipped model's whole atlas on the CPU, against lucent one unit at a time.

Ours: ``circuits_vision.atlas.build`` of every unit of the default layers of the ``shapes`` model
(batched renders, resumable store, per-unit analyses, viewer). The wall time of the render phase
(from the start to the last stored chunk) and of the whole build are measured in full, unless
``--units-per-layer`` restricts it (then the figures are for that many units and say so).

lucent: ``render_vis`` one unit per call (its documented use) with the same steps and image size, on
one unit per layer, in ``--rounds`` rounds alternating with one batched render of a 32-unit chunk
spread over the same layers (per-unit times side by side; this machine's load drifts several-fold
within minutes, so only same-round figures are compared). lucent's time for the whole atlas is an
extrapolation from its per-unit time and is printed as one. lucent renders at 224 px (it upsamples
smaller images) and runs the whole network every step; that is its behaviour, not a setting we chose.

    python benchmarks/atlas.py                                   # full atlas, 64 steps, 64 px
    python benchmarks/atlas.py --steps 32 --units-per-layer 8    # a quick look
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from circuits_vision import atlas, hooks, models, optvis


def _lucent_name(model: torch.nn.Module, layer: str) -> str:
    """lucent's name of a layer: its module path joined with underscores."""
    target = hooks.get_layer(model, layer)
    path = next(name for name, module in model.named_modules() if module is target)
    return path.replace(".", "_")


def lucent_seconds(model, units: list[tuple[str, int]], steps: int, size: int) -> float:
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    first = f"{_lucent_name(model, units[0][0])}:{units[0][1]}"
    lucent_render.render_vis(
        model, first, param_f=lambda: lucent_param.image(size), thresholds=(1,), progress=False, show_image=False
    )  # warm-up: first-call imports
    start = time.perf_counter()
    for layer, unit in units:
        np.random.seed(unit)
        torch.manual_seed(unit)
        lucent_render.render_vis(
            model,
            f"{_lucent_name(model, layer)}:{unit}",
            param_f=lambda: lucent_param.image(size),
            thresholds=(steps,),
            progress=False,
            show_image=False,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--units-per-layer", type=int, default=None, help="default: every unit (the full atlas)")
    parser.add_argument("--lucent-sample", type=int, default=6, help="units lucent renders per round (one per layer)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/lucent rounds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-lucent", action="store_true")
    parser.add_argument("--out", default=None, help="atlas directory (default: a temporary one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = models.load("shapes")
    layers = atlas.default_layers(model)
    widths = {layer: int(hooks.layer_shape(model, layer)[0]) for layer in layers}
    counts = {layer: min(w, args.units_per_layer or w) for layer, w in widths.items()}
    total = sum(counts.values())
    scope = "full atlas" if args.units_per_layer is None else f"first {args.units_per_layer} units per layer"
    print(
        f"shapes model, layers {layers} ({sum(widths.values())} units; measuring {total}: {scope}), "
        f"{args.steps} steps, {args.size} px, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or str(pathlib.Path(scratch) / "atlas")
        last_chunk = []
        start = time.perf_counter()
        result = atlas.build(
            model,
            layers,
            out,
            steps=args.steps,
            size=args.size,
            units_per_layer=args.units_per_layer,
            progress=False,
            config=atlas.AtlasConfig(
                log=lambda message: None, on_progress=lambda done, of: last_chunk.append(time.perf_counter())
            ),
        )
        whole = time.perf_counter() - start
        render_time = (last_chunk[-1] if last_chunk else time.perf_counter()) - start
    print(
        f"circuits_vision atlas: {result.rendered} units rendered in {render_time:.1f} s "
        f"({result.rendered / render_time:.2f} units/s, {result.rendered * args.steps / render_time:.1f} unit*steps/s); "
        f"whole build with analyses, viewer and circuit report {whole:.1f} s"
    )

    if args.skip_lucent:
        return
    # Side by side, alternating, because this machine's load drifts by several times within minutes:
    # ours renders a 32-unit chunk spread over all layers in one call (as the atlas does, with the forward
    # reaching the deepest layer of the chunk), lucent renders one unit per layer, one call each.
    chunk = []
    for layer in layers:
        chunk += [(layer, u) for u in np.linspace(0, counts[layer] - 1, 6).round().astype(int).tolist()]
    chunk = chunk[:32]
    sample = [(layer, 0) for layer in layers][: max(args.lucent_sample, 1)]
    ratios = []
    for round_ in range(args.rounds):
        start = time.perf_counter()
        optvis.render(
            model, [f"{layer}:{unit}" for layer, unit in chunk], steps=args.steps, size=args.size, progress=False
        )
        ours = (time.perf_counter() - start) / len(chunk)
        theirs = lucent_seconds(model, sample, args.steps, args.size) / len(sample)
        ratios.append(theirs / ours)
        print(
            f"round {round_ + 1}: ours {ours:.3f} s/unit (batched chunk of {len(chunk)}), lucent {theirs:.3f} s/unit "
            f"(one call per unit, {len(sample)} units): {theirs / ours:.1f}x"
        )
    median = float(np.median(ratios))
    print(
        f"median ratio lucent/ours per unit: {median:.1f}x; lucent for all {total} units, extrapolated from its "
        f"per-unit time in the last round: ~{theirs * total:.0f} s (renders only, not measured in full)"
    )


if __name__ == "__main__":
    main()
