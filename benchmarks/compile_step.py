"""Does torch.compile pay for render's optimisation step? Eager against compiled, same step.

The step is what ``render`` runs for each of its ``steps`` on the fused default path: the FFT
parameterisation's decorrelated image, ``ops.image_pipeline`` (colour, sigmoid, the standard
transforms as one resample), the model truncated at ``--layer`` through ``hooks.run_with_cache``, a
channel objective per image, backward, and an Adam update. The compiled variant wraps everything up
to the loss in ``torch.compile`` (graph breaks allowed, as a ``compile=True`` option would have to);
the backward and Adam are the same in both. The script reports the one-off compile time, the
graphs dynamo made and the steady per-step times (median over interleaved rounds, so that a
busy machine slows both alike).

    python benchmarks/compile_step.py                             # InceptionV1 (random weights) to mixed4a, 8 x 128 px
    python benchmarks/compile_step.py --model shapes --layer mixed3b --size 64 --backend inductor

Run it by hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch
from _timing import timed

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from circuits_vision import hooks, models, ops
from circuits_vision.optvis import param, transforms


def _step_parts(model, layer: str, count: int, size: int, capture: str):
    """(params, loss function) of one render chunk of ``count`` images, each on its own channel.

    ``capture="render"`` reads the layer as render does (``hooks.run_with_cache``, truncated forward);
    ``capture="hook"`` runs the whole model with a plain forward hook on the layer, which dynamo can trace
    as one graph (more work per step, fewer graph breaks)."""
    generators = [torch.Generator().manual_seed(i) for i in range(count)]
    params, image_f = param.FFT()(batch=count, height=size, width=size, generator=generators, device=None)
    chain = transforms.standard_transforms()
    out_size = chain.output_size((size, size))
    theta = transforms.affine_to_theta(chain.sample(count, (size, size), generators[0]), (size, size), out_size).float()
    color = image_f.matrix(image_f.raw())
    scale, shift = torch.ones(3), torch.zeros(3)
    channels = torch.arange(count) % hooks.layer_shape(model, layer)[0]

    captured = {}
    if capture == "hook":
        module = hooks.resolve_layer(model, layer)[1]
        module.register_forward_hook(lambda mod, inputs, output: captured.__setitem__("acts", output))

    def loss() -> torch.Tensor:
        out, _ = ops.image_pipeline(image_f.raw(), color, theta, 0.5, out_size, scale, shift)
        if capture == "hook":
            model(out)
            acts = captured.pop("acts")
        else:
            acts = hooks.run_with_cache(model, out, [layer], truncate=True)[layer]
        return -acts[torch.arange(count), channels].mean(dim=(1, 2)).sum()

    return params, loss


def _timed_steps(params, loss_fn, optimizer, steps: int) -> float:
    """Mean wall seconds of one optimisation step over ``steps`` steps."""

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss_fn().backward()
        optimizer.step()

    return statistics.fmean(timed(step, steps).walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="inceptionv1", choices=["inceptionv1", "shapes"])
    parser.add_argument("--layer", default="mixed4a")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor, aot_eager, ...)")
    parser.add_argument(
        "--capture",
        default="render",
        choices=["render", "hook"],
        help="render: hooks.run_with_cache, truncated (as render runs); hook: whole model, plain hook",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "inceptionv1":
        model = models.inceptionv1(lrn="lucent", generator=torch.Generator().manual_seed(0))
    else:
        model = models.load("shapes")
    model.eval().requires_grad_(False)
    print(
        f"{args.model} to {args.layer} (capture: {args.capture}), {args.images} images x {args.size} px, "
        f"backend {args.backend}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, fused op: {ops.extension_available()}"
    )

    params, loss = _step_parts(model, args.layer, args.images, args.size, args.capture)
    explanation = torch._dynamo.explain(loss)()
    print(f"dynamo: {explanation.graph_count} graphs, {explanation.graph_break_count} graph breaks")
    for reason in explanation.break_reasons[:5]:
        print(f"  break: {reason.reason.splitlines()[0][:160]}")
    torch.compiler.reset()

    compiled = torch.compile(loss, backend=args.backend)
    optimizer = torch.optim.Adam(params, lr=0.05)
    eager_first = _timed_steps(params, loss, optimizer, 1)
    start = time.perf_counter()
    _timed_steps(params, compiled, optimizer, 1)  # compiles forward and backward graphs
    compile_seconds = time.perf_counter() - start
    _timed_steps(params, compiled, optimizer, 1)
    eager, fast = [], []
    for _ in range(args.rounds):
        eager.append(_timed_steps(params, loss, optimizer, args.steps))
        fast.append(_timed_steps(params, compiled, optimizer, args.steps))
    e, c = statistics.median(eager), statistics.median(fast)
    print(f"first step: eager {eager_first:.3f} s, compiled {compile_seconds:.1f} s (compilation included)")
    print(
        f"per step (median of {args.rounds} rounds x {args.steps}): eager {e * 1e3:.1f} ms, compiled {c * 1e3:.1f} ms "
        f"({e / c:.2f}x)"
    )
    saved = e - c
    if saved > 0:
        print(f"break-even after {compile_seconds / saved:.0f} steps of {args.images} images")
    else:
        print("compiled steps are not faster: compiling does not pay on this machine for this step")


if __name__ == "__main__":
    main()
