"""Loading weights from a path or an http(s) URL, with clear errors for wrong files.

- URLs are downloaded once into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), checked against
  ``sha256=`` when given, and against the hash prefix in the file name when it follows torch.hub's
  ``name-<hex>.ext`` convention (8 or more hex digits).
- Files are always read with ``torch.load(..., weights_only=True)``.
- A file that cannot be read, or whose keys/shapes do not fit the model, raises :class:`WeightsError`
  naming the file and listing the missing, unexpected and wrongly shaped keys; so do NaN/Inf values
  and integer tensors for floating-point weights.
- A download is written to a temporary file and cached only once complete: its length matches the
  declared ``Content-Length`` and its hash the expected one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from circuits_vision._utils import first_line

INCEPTIONV1_ENV = "CIRCUITS_VISION_INCEPTIONV1"
"""Environment variable holding the path (or URL) of lucid's InceptionV1 weights (inception5h.pth)."""

_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,64})\.")
_MAX_LISTED = 20


class WeightsError(ValueError):
    """A weight file that cannot be used: unreadable, wrong hash, or keys/shapes that do not fit."""


def is_url(weights: str | os.PathLike) -> bool:
    return isinstance(weights, str) and weights.split("://", 1)[0].lower() in ("http", "https")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloaded weights live: torch.hub's checkpoint folder (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(weights: str | os.PathLike, *, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """The local file for ``weights`` (a path, or a URL downloaded into :func:`cache_dir`), hash-checked."""
    if is_url(weights):
        return _download(str(weights), sha256=sha256, timeout=timeout)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist"
            + (" (it is a directory)" if path.is_dir() else "")
            + ": pass the path of a .pth state dict, or an http(s) URL"
        )
    if sha256 is not None:
        _check_sha256(path, sha256, str(path))
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` as a flat ``{key: tensor}`` dict, or :class:`WeightsError`.

    A checkpoint that wraps its weights as ``{"state_dict": {...}}`` is unwrapped.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        raise WeightsError(
            f"could not read weights file {str(path)!r} ({type(error).__name__}: {first_line(error)}). "
            "It is not a complete torch checkpoint: a truncated download or a different file format. "
            "Delete it and download or save it again (torch.save(model.state_dict(), path))."
        ) from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise WeightsError(
            f"weights file {str(path)!r} holds a {type(loaded).__name__}, not a state dict "
            "(a dict of parameter name -> tensor, as saved by torch.save(model.state_dict(), path))"
        )
    not_tensors = sorted(str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise WeightsError(
            f"weights file {str(path)!r} is not a state dict: these entries are not tensors: {_listing(not_tensors)}"
        )
    return dict(loaded)


def state_dict_problems(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Lines describing how ``state_dict`` fails to fit ``model`` (empty when it fits exactly)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {list(state_dict[k].shape)}, model {list(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        shown = [f"{k} {list(expected[k].shape)}" for k in missing]
        problems.append(f"missing keys ({len(missing)}): {_listing(shown)}")
    if unexpected:
        shown = [f"{k} {list(state_dict[k].shape)}" for k in unexpected]
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(shown)}")
    if wrong_shape:
        problems.append(f"wrongly shaped keys ({len(wrong_shape)}): {_listing(wrong_shape)}")
    return problems


def value_problems(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Lines describing values ``model`` cannot use: NaN/Inf, or integer tensors for floating-point weights.

    ``load_state_dict`` would copy both silently: NaN weights then fail much later (as a non-finite
    render), and integers are loaded as whole numbers, which no trained float model has.
    """
    expected = model.state_dict()
    wrong_dtype, non_finite = [], []
    for key, value in state_dict.items():
        if key not in expected or value.shape != expected[key].shape:
            continue
        if expected[key].is_floating_point() and not (value.is_floating_point() or value.is_complex()):
            wrong_dtype.append(f"{key}: file {value.dtype}, model {expected[key].dtype}")
        elif value.is_floating_point() and value.numel():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                non_finite.append(f"{key} ({bad} of {value.numel()} values)")
    problems = []
    if wrong_dtype:
        problems.append(
            f"integer tensors for floating-point weights ({len(wrong_dtype)}): {_listing(wrong_dtype)}; "
            "the file was saved from a converted or quantised model: save the float state dict"
        )
    if non_finite:
        problems.append(
            f"NaN or infinite values ({len(non_finite)} tensors): {_listing(non_finite)}; the file "
            "comes from a diverged training run or is damaged: use an earlier checkpoint"
        )
    return problems


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    sha256: str | None = None,
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """Load ``weights`` (a path, URL or state dict) into ``model`` strictly; returns ``model``.

    ``convert`` renames keys of other formats (e.g. captum's) before the check. Nothing is loaded
    unless every key and shape fits and every value is usable (:func:`value_problems`: no NaN/Inf, no
    integer tensors for floating-point weights).
    """
    if isinstance(weights, Mapping):
        source, state_dict = "the given state dict", dict(weights)
    else:
        path = resolve_weights(weights, sha256=sha256)
        source, state_dict = repr(str(path)), read_state_dict(path)
    if convert is not None:
        state_dict = convert(state_dict)
    problems = state_dict_problems(model, state_dict)
    if problems:
        raise WeightsError(f"weights file {source} does not fit {type(model).__name__}:\n  " + "\n  ".join(problems))
    problems = value_problems(model, state_dict)
    if problems:
        raise WeightsError(f"weights file {source} cannot be used:\n  " + "\n  ".join(problems))
    model.load_state_dict(state_dict)
    return model


def inceptionv1_weights_from_env() -> str:
    """The InceptionV1 weights named by ``$CIRCUITS_VISION_INCEPTIONV1`` (a path or URL).

    Raises ``RuntimeError`` saying what to set when the variable is unset or names no file.
    """
    value = os.environ.get(INCEPTIONV1_ENV, "").strip()
    if not value:
        raise RuntimeError(
            f"set {INCEPTIONV1_ENV} to the path of lucid's InceptionV1 weights "
            "(inception5h.pth, as shipped with lucent or captum)"
        )
    if not is_url(value) and not Path(value).expanduser().is_file():
        raise RuntimeError(f"{INCEPTIONV1_ENV}={value!r} is not a file: point it at inception5h.pth")
    return value


# --------------------------------------------------------------------------------------- internals
def _download(url: str, *, sha256: str | None, timeout: float) -> Path:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        name = hashlib.sha256(url.encode()).hexdigest()[:16] + ".pth"
    target = cache_dir() / name
    prefix_match = _HASH_PREFIX.search(name)
    expected = sha256.lower() if sha256 else None
    if target.is_file() and _hash_ok(sha256_of(target), expected, prefix_match):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".partial")
    try:
        digest, received, declared = hashlib.sha256(), 0, None
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                declared = _content_length(response)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:  # URLError and HTTPError are OSErrors
            raise WeightsError(f"could not download weights from {url}: {error}") from error
        if declared is not None and received != declared:
            # http.client returns a short body without complaint when the connection closes early
            raise WeightsError(
                f"the download from {url} stopped after {received} of {declared} bytes (the connection closed "
                "early); nothing was cached: try again"
            )
        actual = digest.hexdigest()
        if not _hash_ok(actual, expected, prefix_match):
            want = expected or f"a hash starting with {prefix_match.group(1)} (from the file name)"
            raise WeightsError(
                f"SHA-256 of the file downloaded from {url} is {actual}, expected {want}: the download is "
                "corrupt or the URL serves a different file. Nothing was cached."
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def _content_length(response) -> int | None:
    """The body length the server declared, or None (no header, a compressed or chunked body)."""
    value = response.headers.get("Content-Length")
    if value is None or response.headers.get("Content-Encoding") not in (None, "identity"):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _hash_ok(actual: str, expected: str | None, prefix_match: re.Match | None) -> bool:
    if expected is not None:
        return actual == expected
    return prefix_match is None or actual.startswith(prefix_match.group(1))


def _check_sha256(path: Path, expected: str, source: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise WeightsError(
            f"SHA-256 of weights file {source!r} is {actual}, expected {expected.lower()}: "
            "the file is corrupt or not the one meant"
        )


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
