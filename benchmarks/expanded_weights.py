"""Expanded weights of InceptionV1 (random weights), three ways, side by side in one process.

1. ours: the graph walker composing kernels with the compiled ``compose_kernels`` op;
2. twin: the same walker with the op's pure-PyTorch twin (``F.conv_transpose2d``);
3. backward: lucid/captum style, one backward pass per target channel from the target's centre unit
   to the source layer in the linearised model, twice: on the 224-px image captum and lucid use, and
   on the smallest input whose centre receptive field fits the source map (the cheapest the method
   can be). Timed on a subset of channels; the fastest pass times the channel count is reported
   (stated in the output).

ours and twin report the best of ``--repeats`` alternating runs, after one untimed warm-up call; both
include recording the model's graph (one forward on meta tensors), as a first call on a model does.

All three must agree; the script exits non-zero when they do not.

    PYTHONPATH=. .venv/bin/python benchmarks/expanded_weights.py    # CPU, both pairs
    PYTHONPATH=. .venv/bin/python benchmarks/expanded_weights.py --device cuda --backward-channels 16
"""

from __future__ import annotations

import argparse
import sys

import torch
from _timing import timed

from circuits_vision.hooks import layer_shape
from circuits_vision.models import inceptionv1
from circuits_vision.ops import compose_kernels, compose_kernels_reference, extension_available
from circuits_vision.weights import expand
from circuits_vision.weights.gradient import source_gradients

PAIRS = [("mixed3a", "mixed3b"), ("conv2d2", "mixed4a")]
CAPTUM_INPUT = 224  # the zero image captum's extract_expanded_weights and lucid's notebooks differentiate


def _timed(fn, device, repeats: int):
    """(best seconds over ``repeats`` runs, last result)."""
    timing = timed(fn, repeats, device=device)
    return timing.best, timing.result


def smallest_input(model, source: str, target: str, expansion) -> int:
    """Smallest multiple of 32 px whose target centre unit reads only pixels inside the source map."""
    for size in range(32, 1025, 32):
        h_source = layer_shape(model, source, size)[1]
        h_target = layer_shape(model, target, size)[1]
        rows, _ = expansion.source_window(h_target // 2, h_target // 2)
        if rows.start >= 0 and rows.stop <= h_source:
            return size
    raise RuntimeError(f"no input up to 1024 px fits the receptive field of {target} on {source}")


def run_pair(model, source: str, target: str, device: torch.device, repeats: int, backward_channels: int) -> bool:
    print(f"\n== {source} -> {target} on {device} ==")
    # one untimed call first: the graph recording warms torch's meta kernels on first use. The methods
    # then take turns in every round, so that load changes on a shared machine hit all alike.
    warm = expand(model, source, target, source_channels=[0])
    c_target = warm.weights.shape[0]
    # the backward method twice: as captum's extract_expanded_weights and lucid run it (a 224-px image),
    # and on the smallest input whose centre unit sees no border, the cheapest it can be
    sizes = {
        "as captum/lucid run it": CAPTUM_INPUT,
        "the smallest input that fits": smallest_input(model, source, target, warm),
    }
    channels = list(range(0, c_target, max(1, c_target // backward_channels)))[:backward_channels]
    t_ours = t_twin = float("inf")
    t_forward = dict.fromkeys(sizes, float("inf"))
    per_channel = dict.fromkeys(sizes, float("inf"))
    grads = {}
    for _ in range(repeats):
        t, ours = _timed(lambda: expand(model, source, target, compose=compose_kernels), device, 1)
        t_ours = min(t_ours, t)
        t, twin = _timed(lambda: expand(model, source, target, compose=compose_kernels_reference), device, 1)
        t_twin = min(t_twin, t)
        for label, size in sizes.items():
            timings: list[float] = []
            grads[label] = source_gradients(model, source, target, channels, input_size=size, seconds=timings)
            # the fastest pass stands for every channel: the baseline's best case, so ratios err low
            t_forward[label] = min(t_forward[label], timings[0])
            per_channel[label] = min(per_channel[label], *timings[1:])

    shapes: list[tuple] = []

    def counted(outer, inner, stride, dilation):
        shapes.append((tuple(outer.shape), tuple(inner.shape)))
        return compose_kernels(outer, inner, stride, dilation)

    expand(model, source, target, compose=counted)
    print(f"expanded weights {tuple(ours.weights.shape)}  stride {ours.stride}  offset {ours.offset}")
    print(
        f"compose_kernels calls per expansion: {len(shapes)} (a composition with a 1x1 kernel is a matrix product in both paths)"
    )
    print(f"ours (compose_kernels op)   {t_ours:9.3f} s   (best of {repeats})")
    print(f"twin (F.conv_transpose2d)   {t_twin:9.3f} s   (best of {repeats})   twin/ours = {t_twin / t_ours:6.2f}x")
    scale = float(ours.weights.abs().max())
    twin_error = float((ours.weights - twin.weights).abs().max()) / scale
    errors = [f"ours vs twin {twin_error:.2e}"]
    ok = twin_error < 1e-4
    for label, size in sizes.items():
        t_backward = t_forward[label] + c_target * per_channel[label]
        print(
            f"backward, one pass/channel  {t_backward:9.3f} s   ({size} px, {label}; estimated as the fastest forward "
            f"{t_forward[label]:.3f} s + {c_target} x {per_channel[label]:.4f} s, the fastest of {repeats} x "
            f"{len(channels)} timed backward passes)   backward/ours = {t_backward / t_ours:6.1f}x"
        )
        window, (y, x) = grads[label]
        rows, cols = ours.source_window(y, x)
        error = float((ours.weights[channels] - window[:, :, rows, cols]).abs().max()) / scale
        errors.append(f"ours vs backward at {size} px {error:.2e}")
        ok &= error < 1e-4
    print(f"agreement (max |diff| / max |E|): {', '.join(errors)}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--backward-channels", type=int, default=6, help="target channels timed for the backward method"
    )
    parser.add_argument("--pairs", nargs="*", default=[f"{s}:{t}" for s, t in PAIRS], help="source:target pairs")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, extension loaded: {extension_available()}")
    model = inceptionv1(generator=torch.Generator().manual_seed(0)).to(device).eval()
    ok = True
    for pair in args.pairs:
        source, target = pair.split(":")
        ok &= run_pair(model, source, target, device, args.repeats, args.backward_channels)
    print("\nall three methods agree" if ok else "\nMISMATCH between methods")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
