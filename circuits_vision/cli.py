"""``circuits-vision``: atlases, circuit reports and the demo from the shell.

    circuits-vision atlas [--model shapes|inceptionv1|<torchvision name>|model.py] [--weights PATH_OR_URL]
                          [--layers L ...] [--out DIR] [--steps N] [--size PX] [--batch-size N]
                          [--device DEV] [--seed N] [--images FOLDER] [--units-per-layer N]
    circuits-vision report SOURCE TARGET [--model ...] [--weights ...] [--out DIR] [--units-per-layer N]
                           [--threshold SIMILARITY] [--min-members N]
    circuits-vision serve DIR [--port N]
    circuits-vision reproduce [--model inceptionv1] [--weights FILE_OR_URL] [--claims PATTERN ...] [--out DIR]
                              [--size PX]
    circuits-vision demo --out DIR [--dictionary]

``--model`` also takes the path of a ``.py`` file defining ``model()`` (or ``build_model()`` /
``create_model()``), a function of no arguments returning an ``nn.Module`` that takes ``[N, 3, H, W]``
images in [0, 1]. Scale out with ``torchrun --nproc-per-node N -m circuits_vision.cli atlas ...``.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import sys
from pathlib import Path

FACTORY_NAMES = ("model", "build_model", "create_model")
PARTS = (
    "inputs",
    "outputs",
    "family",
    "branch",
    "tuning",
    "examples",
    "polysemanticity",
    "neuron",
    "facets",
)  # circuits_vision.atlas.analyses.PARTS
DICTIONARY_PART = "dictionary"  # circuits_vision.atlas.dictionary_units.PART: features of a sparse autoencoder
# The demo: the shipped model's default layers (the first 32 units of each) and the 3a -> 3b report,
# sized for ~2-4 minutes on a busy 2-core CPU.
DEMO = {"layers": None, "units_per_layer": 32, "steps": 96, "size": 64, "report": ("mixed3a", "mixed3b")}


class CommandError(Exception):
    """A problem with the command's input; printed as one message, exit status 2."""


def load_model_file(path: str | os.PathLike):
    """The model made by the factory function of the Python file ``path`` (see :data:`FACTORY_NAMES`)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"circuits_vision_user_model_{abs(hash(str(path.resolve())))}", path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in FACTORY_NAMES:
        factory = getattr(module, name, None)
        if callable(factory):
            return factory()
    raise CommandError(
        f"{path} defines none of {', '.join(n + '()' for n in FACTORY_NAMES)}: add a function returning the nn.Module"
    )


def load_model(spec: str, weights: str | None):
    """A model from a name known to :func:`circuits_vision.models.load` or a ``.py`` file, with ``weights``."""
    from circuits_vision import models

    if spec.endswith(".py") or os.sep in spec:
        if not Path(spec).is_file():
            raise CommandError(f"model file {spec!r} does not exist")
        model = load_model_file(spec)
        if weights is not None:
            models.load_weights(model, weights)
        return model.eval()
    try:
        return models.load(spec, weights).eval()
    except models.UnknownModelError as error:
        raise CommandError(str(error)) from None
    except models.WeightsError as error:
        hint = ""
        if spec.strip().lower() == "shapes" and weights is None:
            hint = (
                " (the packaged 'shapes' checkpoint circuits_vision/data/shapes.pt is missing from this "
                "installation; train it with python -m circuits_vision.models.train_shapes, or pass --weights)"
            )
        raise CommandError(f"{error}{hint}") from None


def _init_distributed(device: str | None) -> str | None:
    """Join the process group when started by ``torchrun``; returns the device this rank renders on."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch
    import torch.distributed as dist

    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def _model_label(spec: str) -> str:
    return Path(spec).name if spec.endswith(".py") else spec


def run_atlas(args) -> int:
    from circuits_vision import atlas

    device = _init_distributed(args.device)
    model = load_model(args.model, args.weights)
    if args.images is not None and not Path(args.images).is_dir():
        raise CommandError(f"--images {args.images!r} is not a folder of images")
    from circuits_vision.hooks import model_input_size

    size = args.size or min(model_input_size(model, default=128), 128)
    try:
        result = atlas.build(
            model,
            layers=args.layers,
            out=args.out,
            steps=args.steps,
            size=size,
            seed=args.seed,
            device=device,
            images=args.images,
            units_per_layer=args.units_per_layer,
            model_name=_model_label(args.model),
            report=not args.no_report,
            parts=args.parts,
            config=atlas.AtlasConfig(
                chunk_size=args.chunk_size,
                batch_size=args.batch_size,
                dictionary_layers=args.dictionary_layers,
                dictionary_features=args.dictionary_features,
            ),
        )
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"atlas of {result.units} units ({result.rendered} rendered now): {result.index.resolve()}")
    return 0


def run_report(args) -> int:
    from circuits_vision.atlas import circuit_report

    model = load_model(args.model, args.weights)
    index = circuit_report(
        model,
        args.source,
        args.target,
        args.out,
        units_per_layer=args.units_per_layer,
        threshold=args.threshold,
        min_members=args.min_members,
        progress=True,
        log=lambda message: None,
    )
    print(f"circuit report: {index.resolve()}")
    return 0


def run_serve(args) -> int:
    from circuits_vision.atlas.serve import serve

    serve(args.directory, args.port)
    return 0


def run_demo(args) -> int:
    """A small atlas and the circuit report of the shipped model, in a few minutes on a laptop CPU."""
    from circuits_vision import atlas

    model = load_model("shapes", None)
    from circuits_vision.atlas.analyses import DEFAULT_PARTS

    parts = (*DEFAULT_PARTS, DICTIONARY_PART) if args.dictionary else None
    result = atlas.build(
        model,
        layers=DEMO["layers"],
        out=args.out,
        steps=DEMO["steps"],
        size=DEMO["size"],
        units_per_layer=DEMO["units_per_layer"],
        model_name="shapes",
        report=DEMO["report"],
        parts=parts,
        config=atlas.AtlasConfig(report_whole_layers=True),
    )
    print(f"open {result.index.resolve()}")
    if result.report is not None:
        print(f"circuit report: {result.report.resolve()}")
    return 0


# --- reproduce: the published Circuits claims checked on the given weights ---------------------------


def run_reproduce(args) -> int:
    from circuits_vision.claims import reproduce

    model = load_model(args.model, args.weights)
    try:
        result = reproduce(model, args.claims, out=args.out, size=args.size, title=f"Circuits claims: {args.model}")
    except ValueError as error:  # an unknown claim pattern, a bad size
        raise CommandError(str(error)) from None
    print(result)
    print(f"report: {result.html_path.resolve()}")
    return 0


def _reproduce_parser(commands) -> None:
    parser = commands.add_parser("reproduce", help="check the published Circuits claims on these weights")
    parser.add_argument(
        "--model",
        default="inceptionv1",
        help="inceptionv1 (default; the published claims), shapes (the shipped model's claims, beside "
        "its recorded figures), or a .py file defining model()",
    )
    parser.add_argument("--weights", default=None, help="state dict path or http(s) URL (e.g. inception5h.pth)")
    parser.add_argument("--claims", nargs="+", default=None, help="claim names or globs (default: every claim)")
    parser.add_argument("--out", default="reproduction", help="output directory (rerun to reuse measured claims)")
    parser.add_argument(
        "--size", type=_positive, default=None, help="stimulus size in px (default the model's input size)"
    )
    parser.set_defaults(run=run_reproduce)


# ------------------------------------------------------------------------------------------------------


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="shapes",
        help="shapes (default), inceptionv1, a torchvision model name, or a .py file defining model()",
    )
    parser.add_argument("--weights", default=None, help="state dict path or http(s) URL")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuits-vision", description="Reverse-engineer vision conv nets.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("atlas", help="render every unit of the chosen layers into a browsable atlas")
    _model_arguments(build)
    build.add_argument("--layers", nargs="+", default=None, help="layer names (default: the model's main layers)")
    build.add_argument("--out", default="atlas", help="output directory (rerun to continue an interrupted atlas)")
    build.add_argument("--steps", type=_positive, default=256, help="optimisation steps per image (256)")
    build.add_argument(
        "--size", type=_positive, default=None, help="image size (default the model's input size, at most 128)"
    )
    build.add_argument(
        "--batch-size", type=_positive, default=None, help="images per batch (default: from free memory)"
    )
    build.add_argument(
        "--chunk-size", type=_positive, default=None, help="units per checkpoint (default batch size or 32)"
    )
    build.add_argument("--units-per-layer", type=_positive, default=None, help="only the first N units of each layer")
    build.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cpu)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--images",
        default=None,
        help="folder of images for dataset examples (default: 2048 scenes of the shipped model's "
        "training distribution, outside its training and held-out sets)",
    )
    build.add_argument("--no-report", action="store_true", help="skip the circuit report")
    build.add_argument(
        "--parts",
        nargs="+",
        default=None,
        choices=(*PARTS, DICTIONARY_PART),
        help="per-unit analyses to compute (default all but facets and dictionary)",
    )
    build.add_argument(
        "--dictionary-layers",
        nargs="+",
        default=None,
        help="layers whose sparse-autoencoder features the dictionary part shows (default: the "
        "report pair's target, e.g. mixed3b)",
    )
    build.add_argument(
        "--dictionary-features", type=_positive, default=None, help="features per dictionary (default 4 per neuron)"
    )
    build.set_defaults(run=run_atlas)

    report = commands.add_parser("report", help="circuit report of a layer pair (families, motifs, branches)")
    report.add_argument("source")
    report.add_argument("target")
    _model_arguments(report)
    report.add_argument("--out", default="report")
    report.add_argument(
        "--units-per-layer",
        type=_positive,
        default=None,
        help="families among the first N units of each layer only (faster on wide layers)",
    )
    report.add_argument(
        "--threshold",
        type=_similarity,
        default=None,
        help="join pairs by this cosine similarity in (0, 1] instead of the default rule "
        "(pairs and families significant against their null at q < 0.05)",
    )
    report.add_argument("--min-members", type=_positive, default=None, help="smallest family reported (default 3)")
    report.set_defaults(run=run_report)

    serve = commands.add_parser("serve", help="serve an atlas directory on 127.0.0.1")
    serve.add_argument("directory")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=run_serve)

    demo = commands.add_parser("demo", help="a small atlas + circuit report of the shipped model (a few minutes)")
    demo.add_argument("--out", default="atlas")
    demo.add_argument(
        "--dictionary",
        action="store_true",
        help="also the mixed3b dictionary features as units (trains a sparse autoencoder: minutes)",
    )
    demo.set_defaults(run=run_demo)
    _reproduce_parser(commands)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another --out",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another --out",
    errno.EACCES: "no permission to write there: choose another --out or fix its permissions",
    errno.EPERM: "no permission to write there: choose another --out or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.EEXIST: "a file is where a folder should be: move it away or choose another --out",
    errno.ENOTDIR: "a file is where a folder should be: move it away or choose another --out",
    errno.EISDIR: "a folder is where a file should be: move it away or choose another --out",
}


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: what failed, on which path, and what to do."""
    reason = error.strerror or str(error)
    where = "" if error.filename is None else f": {error.filename}"
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    hint = _OS_HINTS.get(error.errno)
    return f"{reason}{where}" + (f" ({hint})" if hint else "")


def _similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a cosine similarity in (0, 1], got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from circuits_vision.atlas import AtlasLockedError, CorruptAtlasFileError, LayerOrderError, SettingsMismatchError
    from circuits_vision.atlas.serve import PortUnavailableError
    from circuits_vision.hooks import UnknownLayerError
    from circuits_vision.models import WeightsError

    try:
        return args.run(args)
    except (
        CommandError,
        AtlasLockedError,
        SettingsMismatchError,
        CorruptAtlasFileError,
        LayerOrderError,
        PortUnavailableError,
        UnknownLayerError,
        WeightsError,
        FileNotFoundError,
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"circuits-vision {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # read-only output, a full disk, a file where a folder should be, a busy port
        print(f"circuits-vision {args.command}: error: {os_error_message(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ncircuits-vision {args.command}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
