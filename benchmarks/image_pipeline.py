"""image_pipeline: the fused op against its pure-PyTorch twin, forward + backward per step.

Run by hand:  python benchmarks/image_pipeline.py [--batch 32] [--size 160] [--out 128] [--steps 10] [--threads T]
Times one optimisation step's worth of pipeline work (forward of both outputs, backward from
a fixed upstream gradient of the model input to x, as a render does) at roughly lucid's render
sizes, on CPU and, when available, CUDA. Reports the median wall time per step and, on CPU, the
process CPU time per step (steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import math

import torch
from _timing import timed

from circuits_vision.ops import extension_available, image_pipeline, image_pipeline_reference


def _inputs(batch: int, size: int, device: str, generator: torch.Generator):
    x = torch.randn(batch, 3, size, size, generator=generator).to(device).requires_grad_()
    color = (torch.randn(3, 3, generator=generator) * 0.5).to(device)
    angles = (torch.rand(batch, generator=generator) - 0.5) * (math.pi / 9)
    scales = 0.9 + 0.2 * torch.rand(batch, generator=generator)
    shifts = (torch.rand(batch, 2, generator=generator) - 0.5) * 0.1
    cos, sin = torch.cos(angles) / scales, torch.sin(angles) / scales
    theta = torch.stack([torch.stack([cos, -sin, shifts[:, 0]], 1), torch.stack([sin, cos, shifts[:, 1]], 1)], 1)
    norm_scale = torch.tensor([1 / 0.229, 1 / 0.224, 1 / 0.225])
    norm_shift = -torch.tensor([0.485, 0.456, 0.406]) * norm_scale
    return x, color, theta.to(device), norm_scale.to(device), norm_shift.to(device)


def _step(fn, x, color, theta, out_size, norm_scale, norm_shift, grad_out):
    out, _ = fn(x, color, theta, 0.5, out_size, norm_scale, norm_shift)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    return grad


def _time(fn, args, steps: int, device: str) -> tuple[float, float]:
    """(median wall seconds, mean process CPU seconds) per step."""
    timing = timed(lambda: _step(fn, *args), steps, warmup=2, device=device)
    return timing.median, timing.mean_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--out", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not extension_available():
        raise SystemExit("the compiled extension is not built; nothing to compare")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"N={args.batch}, 3x{args.size}x{args.size} -> 3x{args.out}x{args.out}"
    )
    for device in devices:
        inputs = _inputs(args.batch, args.size, device, torch.Generator().manual_seed(0))
        x, color, theta, scale, shift = inputs
        grad_out = torch.randn(args.batch, 3, args.out, args.out, generator=torch.Generator().manual_seed(1))
        step_args = (x, color, theta, (args.out, args.out), scale, shift, grad_out.to(device))
        grad_op = _step(image_pipeline, *step_args)
        grad_twin = _step(image_pipeline_reference, *step_args)
        error = (grad_op - grad_twin).abs().max().item()
        op_wall, op_cpu = _time(image_pipeline, step_args, args.steps, device)
        twin_wall, twin_cpu = _time(image_pipeline_reference, step_args, args.steps, device)
        line = (
            f"{device:4s}  wall: op {op_wall * 1e3:8.2f} ms/step  twin {twin_wall * 1e3:8.2f} ms/step  "
            f"twin/op {twin_wall / op_wall:5.2f}x"
        )
        if device == "cpu":
            line += (
                f" | cpu time: op {op_cpu * 1e3:8.2f} ms  twin {twin_cpu * 1e3:8.2f} ms  "
                f"twin/op {twin_cpu / op_cpu:5.2f}x"
            )
        print(f"{line} | max |grad op - grad twin| {error:.2e}")


if __name__ == "__main__":
    main()
