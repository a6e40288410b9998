"""Feature visualization throughput: lucent's render_vis vs one batched circuits_vision render.

Both render channels of one InceptionV1 layer (random weights, the same state dict in both
models) with the same number of steps and image size. lucent renders one channel per call (its
documented use; batching does not speed it up: per image-step 0.188/0.195/0.189 s at batch
1/4/16 on this CPU), so it is timed on ``--lucent-channels`` channels and reported per image-step.
Ours renders ``--channels`` channels in one call. Also times the fused image-pipeline op against
its pure-PyTorch twin for one step's worth of images.

    python benchmarks/feature_vis.py                        # 32 channels, 32 steps, 128 px, mixed4a
    python benchmarks/feature_vis.py --steps 512 --lucent-channels 32

Also runs the same ``render_vis`` call (``--dropin-channels`` channels, one per call, lucent's
defaults: 128 px, standard transforms, upsampled to 224 px) through lucent and through the drop-in
``circuits_vision.compat.lucent``, side by side.

Prints images*steps/s for each and the ratio. Run it by hand on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from circuits_vision import hooks, ops
from circuits_vision.models import inceptionv1
from circuits_vision.optvis import param, render, transforms
from circuits_vision.optvis.pipeline import image_pipeline_torch


def _lucent_rate(ours_model, layer: str, channels: list[int], steps: int, size: int) -> float:
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    model = InceptionV1().eval()
    model.load_state_dict(ours_model.state_dict())
    lucent_render.render_vis(
        model, f"{layer}:0", param_f=lambda: lucent_param.image(size), thresholds=(1,), progress=False, show_image=False
    )  # warm-up: first-call imports
    start = time.perf_counter()
    for channel in channels:
        np.random.seed(channel)
        torch.manual_seed(channel)
        lucent_render.render_vis(
            model,
            f"{layer}:{channel}",
            param_f=lambda: lucent_param.image(size),
            thresholds=(steps,),
            progress=False,
            show_image=False,
        )
    return len(channels) * steps / (time.perf_counter() - start)


def _render_vis_rate(render_vis, image, model, layer: str, channels: list[int], steps: int, size: int) -> float:
    """images*steps/s of ``render_vis(model, "layer:c", param_f=lambda: image(size), thresholds=(steps,))``."""
    call = dict(param_f=lambda: image(size), progress=False, show_image=False)
    render_vis(model, f"{layer}:0", thresholds=(1,), **call)  # warm-up: first-call imports
    start = time.perf_counter()
    for channel in channels:
        np.random.seed(channel)
        torch.manual_seed(channel)
        render_vis(model, f"{layer}:{channel}", thresholds=(steps,), **call)
    return len(channels) * steps / (time.perf_counter() - start)


def _dropin_vs_lucent(ours_model, layer: str, channels: list[int], steps: int, size: int) -> tuple[float, float]:
    """The same render_vis call through lucent and through the drop-in, same weights, timed one
    after the other: (lucent, drop-in) rates."""
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    from circuits_vision.compat.lucent.modelzoo import inceptionv1 as dropin_inceptionv1
    from circuits_vision.compat.lucent.optvis import param as dropin_param
    from circuits_vision.compat.lucent.optvis import render as dropin_render

    lucent_model, dropin_model = LucentInceptionV1().eval(), dropin_inceptionv1().eval()
    lucent_model.load_state_dict(ours_model.state_dict())
    dropin_model.load_state_dict(ours_model.state_dict())
    theirs = _render_vis_rate(lucent_render.render_vis, lucent_param.image, lucent_model, layer, channels, steps, size)
    ours = _render_vis_rate(dropin_render.render_vis, dropin_param.image, dropin_model, layer, channels, steps, size)
    assert dropin_render.last_run() == "engine"
    return theirs, ours


def _ours_rate(model, layer: str, channels: list[int], steps: int, size: int, **kwargs) -> tuple[float, torch.Tensor]:
    render(model, [f"{layer}:0"], steps=1, size=size, progress=False, **kwargs)  # warm-up
    start = time.perf_counter()
    result = render(model, [f"{layer}:{c}" for c in channels], steps=steps, size=size, progress=False, **kwargs)
    return len(channels) * steps / (time.perf_counter() - start), result.history


def _pipeline_times(count: int, size: int, repeats: int = 20) -> tuple[float, float] | None:
    if not ops.extension_available():
        return None
    op = ops.image_pipeline
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(count, 3, size, size, generator=generator, requires_grad=True)
    chain = transforms.standard_transforms()
    out_size = chain.output_size((size, size))
    theta = transforms.affine_to_theta(chain.sample(count, (size, size), generator), (size, size), out_size).float()
    args = (param.imagenet_color_matrix(), theta, 0.5, out_size, torch.ones(3), torch.zeros(3))
    grad = torch.randn(count, 3, *out_size, generator=generator)
    times = []
    for fn in (op, image_pipeline_torch):
        for _ in range(3):
            fn(x, *args)[0].backward(grad)
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x, *args)[0].backward(grad)
        times.append((time.perf_counter() - start) / repeats)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="mixed4a")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--lucent-channels", type=int, default=2)
    parser.add_argument("--preset-lucent-channels", type=int, default=8)
    parser.add_argument(
        "--dropin-channels",
        type=int,
        default=2,
        help="channels rendered one per render_vis call by lucent and by the drop-in",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=32,
        help="preset lucid redirects ReLU gradients (a costlier backward) in the first 17 steps only",
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-lucent", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = inceptionv1(lrn="lucent", generator=torch.Generator().manual_seed(0))
    width = hooks.layer_shape(model, args.layer)[0]
    channels = list(range(min(args.channels, width)))
    print(
        f"{args.layer}, {len(channels)} channels, {args.steps} steps, {args.size} px, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    ours, history = _ours_rate(model, args.layer, channels, args.steps, args.size)
    print(
        f"circuits_vision preset=lucid  (batched, fused): {ours:7.2f} images*steps/s  "
        f"(mean objective {history[0].mean():.3f} -> {history[-1].mean():.3f})"
    )
    ours_lucent, _ = _ours_rate(
        model, args.layer, channels[: args.preset_lucent_channels], args.steps, args.size, preset="lucent"
    )
    print(
        f"circuits_vision preset=lucent (batched, 224 px, {args.preset_lucent_channels} channels): "
        f"{ours_lucent:7.2f} images*steps/s"
    )
    if not args.skip_lucent:
        theirs = _lucent_rate(model, args.layer, channels[: args.lucent_channels], args.steps, args.size)
        print(f"lucent render_vis (one channel per call):      {theirs:7.2f} images*steps/s")
        print(f"ratio preset=lucid / lucent:  {ours / theirs:5.1f}x")
        print(f"ratio preset=lucent / lucent: {ours_lucent / theirs:5.1f}x")
        lucent_call, dropin_call = _dropin_vs_lucent(
            model, args.layer, channels[: args.dropin_channels], args.steps, args.size
        )
        print(
            f"same render_vis call, {args.dropin_channels} channels one per call: lucent {lucent_call:7.2f}, "
            f"circuits_vision.compat.lucent {dropin_call:7.2f} images*steps/s ({dropin_call / lucent_call:5.1f}x)"
        )
    times = _pipeline_times(len(channels), args.size)
    if times is None:
        print("fused image_pipeline op: not built")
    else:
        print(
            f"image pipeline, {len(channels)} images, forward+backward: fused op {times[0] * 1e3:.2f} ms, "
            f"PyTorch twin {times[1] * 1e3:.2f} ms ({times[1] / times[0]:.1f}x)"
        )


if __name__ == "__main__":
    main()
