"""Dictionary features: a sparse autoencoder on a layer's activations (superposition).

If a layer stores more features than it has neurons, each as a direction in activation space, no
single neuron reads one feature, but a sparse dictionary can: activation vectors ``x [C]`` (every
position of every image) are written as a sparse, non-negative combination of ``n_features`` unit
directions. The method is the sparse autoencoder of Bricken et al. 2023 ("Towards Monosemanticity"),
chosen because it scales to millions of activation vectors with plain minibatch gradient steps and
gives an encoder (a feature's activation on new images) as well as directions:

    f = ReLU(W_enc (x - b_dec) + b_enc)         # [F] feature activations
    x_hat = W_dec f + b_dec                      # W_dec's columns: unit-norm feature directions [C]
    loss = mean ||x - x_hat||^2 + l1 * mean sum(f)

Activations are divided by their mean norm first (so ``l1`` does not depend on the layer's scale),
decoder directions are renormalised to unit length after every step, and all randomness (the
initial directions, the minibatches, the resampling draws) comes from a ``torch.Generator`` seeded by
``seed``: the same data and seed give the same dictionary.

Dead features (never active) waste the dictionary. As in Bricken et al. 2023, ``resample`` times
during training (evenly spaced over the first three quarters of the steps) the features that fired on
none of a sample of ``RESAMPLE_SAMPLE`` training vectors are re-initialised toward poorly
reconstructed inputs: inputs are drawn with probability proportional to their squared reconstruction
error, a dead feature's decoder direction becomes the drawn input (minus ``b_dec``, unit length), its
encoder row the same direction scaled to ``RESAMPLE_ENCODER_NORM`` times the mean encoder-row norm of
the live features, its encoder bias 0, and the Adam moments of those rows are reset. ``resampled``
records each round (``step``, ``dead`` features found, ``alive`` before it).

    found = train(model, "mixed3b", scenes, n_features=640)
    found.directions          # [F, C] unit vectors in mixed3b's activation space
    found.encode(acts)        # [P, C] -> [P, F]
    found.fraction_unexplained, found.l0
    found.resampled           # [{"step", "dead", "alive"}] per resampling round
    found.save("atlas/dictionary/mixed3b.pt"); Dictionary.load(...)
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from circuits_vision.analysis._inputs import for_model
from circuits_vision.hooks import eval_mode, model_device, run_with_cache
from circuits_vision.results import Result

__all__ = ["Dictionary", "FeatureEncoder", "activations", "attached", "quality", "resample_steps", "train"]

RESAMPLE_SAMPLE = 32768
"""Training vectors scored at each resampling round (dead = active on none of them)."""
RESAMPLE_ENCODER_NORM = 0.2
"""A resampled encoder row's norm, as a fraction of the live rows' mean norm (Bricken et al. 2023)."""
FEATURES_CHILD = "dictionary"
"""Name of the feature layer :func:`attached` adds under the dictionary's layer (``"mixed3b.dictionary"``)."""


@dataclass
class Dictionary(Result):
    """A trained sparse autoencoder of ``layer`` (see the module docstring for the model).

    Attributes:
        directions: ``[F, C]`` unit-norm decoder directions (the dictionary features).
        encoder: ``[F, C]``, encoder_bias ``[F]``, decoder_bias ``[C]``: in units of ``scale``.
        scale: the mean activation-vector norm the data were divided by.
        fraction_unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean x||^2`` on the training activations.
        l0: mean number of features active (> 0) per activation vector.
        dead: features never active on the training activations.
        resample: resampling rounds asked for; resampled: ``[{"step", "dead", "alive"}]`` one per round
            (``alive`` = features active on the round's sample before it; ``dead`` = those re-initialised).
        steps, n_vectors: training steps and training vectors (for reports and cache checks).
    """

    layer: str
    directions: torch.Tensor
    encoder: torch.Tensor
    encoder_bias: torch.Tensor
    decoder_bias: torch.Tensor
    scale: float
    l1: float
    seed: int
    fraction_unexplained: float = float("nan")
    l0: float = float("nan")
    dead: int = 0
    resample: int = 0
    resampled: list = field(default_factory=list)
    steps: int = 0
    n_vectors: int = 0

    @property
    def n_features(self) -> int:
        return int(self.directions.shape[0])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Activation vectors ``[P, C]`` (the layer's own units) -> feature activations ``[P, F]``."""
        x = x.to(self.encoder.dtype) / self.scale
        return torch.relu((x - self.decoder_bias) @ self.encoder.T + self.encoder_bias)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[P, F]`` -> reconstructed activation vectors ``[P, C]`` (the layer's units)."""
        return (f @ self.directions + self.decoder_bias) * self.scale

    @property
    def alive(self) -> int:
        """Features active on at least one training vector."""
        return self.n_features - int(self.dead)

    @property
    def alive_before_resampling(self) -> int | None:
        """Features active on the first resampling round's sample, before any resampling (None without rounds)."""
        return int(self.resampled[0]["alive"]) if self.resampled else None

    def strongest_neurons(self, feature: int, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` units of the layer with the largest weight in ``feature``'s direction: ``[(unit, weight)]``."""
        d = self.directions[int(feature)]
        order = d.abs().argsort(descending=True)[:k]
        return [(int(u), round(float(d[u]), 4)) for u in order]

    def table(self) -> list[dict]:
        return [{"feature": i, "strongest_neurons": self.strongest_neurons(i, 3)} for i in range(self.n_features)]

    def __repr__(self) -> str:
        return (
            f"Dictionary({self.layer!r}, features={self.n_features}, l0={self.l0:.2f}, "
            f"fraction_unexplained={self.fraction_unexplained:.3f}, dead={self.dead})"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tensors and settings (loadable with ``weights_only=True``), atomically: a temporary file
        in the same folder, moved over ``path``, so a reader never sees half a dictionary."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(asdict(self), buffer)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dictionary:
        """A saved dictionary (``weights_only=True``); ``ValueError`` naming the file when it holds none."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        known = set(cls.__dataclass_fields__)
        if not isinstance(state, dict) or not {"layer", "directions", "encoder"} <= set(state):
            raise ValueError(f"{path} holds no saved Dictionary; delete it, or train one with dictionary.train")
        return cls(**{k: v for k, v in state.items() if k in known})


class FeatureEncoder(nn.Module):
    """A dictionary's encoder as a layer: ``[N, C, H, W]`` activations -> ``[N, F, H, W]`` feature activations."""

    def __init__(self, found: Dictionary):
        super().__init__()
        self.register_buffer("encoder", found.encoder.detach().clone().float())
        self.register_buffer("encoder_bias", found.encoder_bias.detach().clone().float())
        self.register_buffer("decoder_bias", found.decoder_bias.detach().clone().float())
        self.scale = float(found.scale)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        x = acts.permute(0, 2, 3, 1) / self.scale  # [N, H, W, C]
        f = torch.relu((x - self.decoder_bias.to(x)) @ self.encoder.to(x).T + self.encoder_bias.to(x))
        return f.permute(0, 3, 1, 2)


@contextlib.contextmanager
def attached(model: nn.Module, found: Dictionary) -> Iterator[str]:
    """``with attached(model, found) as name:`` the dictionary's features become a layer of ``model``.

    A :class:`FeatureEncoder` is added as the child ``dictionary`` of ``found.layer``'s module and run on
    that layer's output by a forward hook, so ``name`` (``"<layer>.dictionary"``, ``[N, F, H, W]``) works with
    every by-name tool (dataset examples, polysemanticity, attribution), and gradients flow through it.
    The layer's own output is unchanged; the child and the hook are removed when the block ends.
    """
    from circuits_vision.hooks import get_layer

    module = get_layer(model, found.layer)
    if hasattr(module, FEATURES_CHILD):
        raise ValueError(
            f"layer {found.layer!r} already has an attribute {FEATURES_CHILD!r}; is a dictionary attached already?"
        )
    encoder = FeatureEncoder(found).to(model_device(model))
    module.add_module(FEATURES_CHILD, encoder)

    def run_encoder(_module, _inputs, output):
        encoder(output)  # its own forward hooks (captures, truncation) see the features; the output stays
        return None

    handle = module.register_forward_hook(run_encoder)
    try:
        yield f"{found.layer}.{FEATURES_CHILD}"
    finally:
        handle.remove()
        delattr(module, FEATURES_CHILD)


@torch.no_grad()
def activations(model: nn.Module, layer: str, data: Iterable[torch.Tensor]) -> torch.Tensor:
    """Every position's activation vector of ``layer`` on the batches of ``data`` -> ``[P, C]`` float32 (CPU)."""
    device = model_device(model)
    chunks = []
    with eval_mode(model):
        for batch in data:
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
                raise TypeError(
                    "data must yield input batches [N, channels, H, W], got "
                    + (f"shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__)
                )
            act = run_with_cache(model, for_model(model, batch.to(device)), [layer])[layer]
            chunks.append(act.float().permute(0, 2, 3, 1).reshape(-1, act.shape[1]).cpu())
    if not chunks:
        raise ValueError("data yielded no batches")
    return torch.cat(chunks)


def resample_steps(steps: int, rounds: int) -> list[int]:
    """The steps after which resampling runs: ``rounds`` evenly spaced over the first three quarters."""
    return sorted({max(1, round(i * 0.75 * steps / rounds)) for i in range(1, rounds + 1)}) if rounds else []


@torch.no_grad()
def _resample(x: torch.Tensor, params: tuple, optimizer: torch.optim.Optimizer, g: torch.Generator) -> tuple[int, int]:
    """One resampling round (module docstring) on ``x [P, C]`` (normalised); returns ``(alive, dead)`` before it."""
    W_dec, W_enc, b_enc, b_dec = params
    sample = x[torch.randint(x.shape[0], (min(RESAMPLE_SAMPLE, x.shape[0]),), generator=g)]
    f = torch.relu((sample - b_dec) @ W_enc.T + b_enc)  # [S, F]
    active = (f > 0).any(0)
    dead = torch.nonzero(~active).flatten()
    if dead.numel() == 0:
        return int(active.sum()), 0
    error = ((f @ W_dec + b_dec - sample) ** 2).sum(1)  # [S] squared reconstruction error per input
    weights = error if float(error.sum()) > 0 else torch.ones_like(error)
    enough = int((weights > 0).sum()) >= dead.numel()
    picks = torch.multinomial(weights, dead.numel(), replacement=not enough, generator=g)
    new = torch.nn.functional.normalize(sample[picks] - b_dec, dim=1)  # [D, C]
    live_norm = float(W_enc[active].norm(dim=1).mean()) if bool(active.any()) else 1.0
    W_dec[dead] = new
    W_enc[dead] = new * (RESAMPLE_ENCODER_NORM * live_norm)
    b_enc[dead] = 0.0
    for param in (W_dec, W_enc, b_enc):  # Adam's moments of the old rows would drag the new ones back
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][dead] = 0.0
    return int(active.sum()), int(dead.numel())


def train(
    model: nn.Module,
    layer: str,
    data: Iterable[torch.Tensor] | torch.Tensor,
    *,
    n_features: int,
    l1: float = 0.5,
    steps: int = 4000,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
    resample: int = 3,
) -> Dictionary:
    """Train a sparse autoencoder with ``n_features`` features on ``layer``'s activations over ``data``.

    Args:
        data: input batches for ``model`` (an iterable of ``[N, channels, H, W]``; every position is one
            training vector), or a tensor ``[P, C]`` of activation vectors already collected.
        l1: sparsity weight (activations are normalised to mean norm 1 first).
        steps, batch_size, lr: Adam steps on minibatches drawn (with replacement) from the vectors.
        seed: seeds the ``torch.Generator`` of the initial directions, the minibatches and the resampling.
        resample: rounds of dead-feature resampling (module docstring; :func:`resample_steps` says when); 0: none.
    """
    if int(n_features) < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if l1 < 0 or steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need l1 >= 0, steps >= 1, batch_size >= 1, lr > 0; got l1={l1}, steps={steps}, "
            f"batch_size={batch_size}, lr={lr}"
        )
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 0:
        raise ValueError(f"resample is a number of rounds >= 0, got {resample!r}")
    x = data.float().cpu() if isinstance(data, torch.Tensor) else activations(model, layer, data)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 activation vectors [P, C], got shape {tuple(x.shape)}")
    scale = float(x.norm(dim=1).mean())
    if scale == 0:
        raise ValueError(f"layer {layer!r} is zero on every position of the data: nothing to learn")
    x = x / scale
    g = torch.Generator().manual_seed(int(seed))
    n, c = x.shape
    directions = torch.nn.functional.normalize(torch.randn(n_features, c, generator=g), dim=1)
    W_dec = directions.clone().requires_grad_(True)
    W_enc = directions.clone().requires_grad_(True)
    b_enc = torch.zeros(n_features, requires_grad=True)
    b_dec = x.mean(0).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([W_dec, W_enc, b_enc, b_dec], lr=lr)
    rounds, resampled = set(resample_steps(int(steps), resample)), []
    for step in range(1, int(steps) + 1):
        batch = x[torch.randint(n, (min(int(batch_size), n),), generator=g)]
        f = torch.relu((batch - b_dec) @ W_enc.T + b_enc)
        loss = ((f @ W_dec + b_dec - batch) ** 2).sum(1).mean() + l1 * f.sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # unit directions: the L1 term cannot shrink f by growing W_dec
            W_dec.copy_(torch.nn.functional.normalize(W_dec, dim=1))
        if step in rounds and step < steps:
            alive, dead = _resample(x, (W_dec, W_enc, b_enc, b_dec), optimizer, g)
            resampled.append({"step": step, "dead": dead, "alive": alive})
    found = Dictionary(
        layer=layer,
        directions=W_dec.detach().clone(),
        encoder=W_enc.detach().clone(),
        encoder_bias=b_enc.detach().clone(),
        decoder_bias=b_dec.detach().clone(),
        scale=scale,
        l1=float(l1),
        seed=int(seed),
        resample=int(resample),
        resampled=resampled,
        steps=int(steps),
        n_vectors=int(n),
    )
    found.fraction_unexplained, found.l0, found.dead = _quality(found, x * scale)
    return found


@torch.no_grad()
def _quality(found: Dictionary, x: torch.Tensor, chunk: int = 16384) -> tuple[float, float, int]:
    """``(fraction of variance unexplained, mean L0, dead features)`` of ``found`` on ``x [P, C]`` (layer units),
    in chunks so that ``[P, F]`` is never held at once."""
    mean = x.mean(0)
    residual = total = active = 0.0
    fired = torch.zeros(found.n_features, dtype=torch.bool)
    for part in x.split(chunk):
        f = found.encode(part)
        residual += float(((found.decode(f) - part) ** 2).sum())
        total += float(((part - mean) ** 2).sum())
        active += float((f > 0).sum())
        fired |= (f > 0).any(0)
    return residual / max(total, 1e-12), active / x.shape[0], int((~fired).sum())


def quality(found: Dictionary, acts: torch.Tensor) -> dict:
    """``{"fraction_unexplained", "l0", "dead", "alive"}`` of ``found`` on activation vectors ``acts [P, C]``
    (e.g. held-out images': :func:`activations`)."""
    fvu, l0, dead = _quality(found, acts.float().cpu())
    return {"fraction_unexplained": fvu, "l0": l0, "dead": dead, "alive": found.n_features - dead}
