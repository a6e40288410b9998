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
initial directions, the minibatches) comes from a ``torch.Generator`` seeded by ``seed``: the same
data and seed give the same dictionary.

    found = train(model, "mixed3b", scenes, n_features=640)
    found.directions          # [F, C] unit vectors in mixed3b's activation space
    found.encode(acts)        # [P, C] -> [P, F]
    found.fraction_unexplained, found.l0
    found.save("atlas/dictionary_mixed3b.pt"); Dictionary.load(...)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from circuits_vision.analysis._inputs import for_model
from circuits_vision.hooks import eval_mode, model_device, run_with_cache
from circuits_vision.results import Result

__all__ = ["Dictionary", "activations", "train"]


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

    def strongest_neurons(self, feature: int, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` units of the layer with the largest weight in ``feature``'s direction: ``[(unit, weight)]``."""
        d = self.directions[int(feature)]
        order = d.abs().argsort(descending=True)[:k]
        return [(int(u), round(float(d[u]), 4)) for u in order]

    def table(self) -> list[dict]:
        return [{"feature": i, "strongest_neurons": self.strongest_neurons(i, 3)} for i in range(self.n_features)]

    def __repr__(self) -> str:
        return (f"Dictionary({self.layer!r}, features={self.n_features}, l0={self.l0:.2f}, "
                f"fraction_unexplained={self.fraction_unexplained:.3f}, dead={self.dead})")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tensors and settings (loadable with ``weights_only=True``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"layer": self.layer, "directions": self.directions, "encoder": self.encoder,
                    "encoder_bias": self.encoder_bias, "decoder_bias": self.decoder_bias, "scale": self.scale,
                    "l1": self.l1, "seed": self.seed, "fraction_unexplained": self.fraction_unexplained,
                    "l0": self.l0, "dead": self.dead}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dictionary:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(**state)


@torch.no_grad()
def activations(model: nn.Module, layer: str, data: Iterable[torch.Tensor]) -> torch.Tensor:
    """Every position's activation vector of ``layer`` on the batches of ``data`` -> ``[P, C]`` float32 (CPU)."""
    device = model_device(model)
    chunks = []
    with eval_mode(model):
        for batch in data:
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
                raise TypeError("data must yield input batches [N, channels, H, W], got "
                                + (f"shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__))
            act = run_with_cache(model, for_model(model, batch.to(device)), [layer])[layer]
            chunks.append(act.float().permute(0, 2, 3, 1).reshape(-1, act.shape[1]).cpu())
    if not chunks:
        raise ValueError("data yielded no batches")
    return torch.cat(chunks)


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
) -> Dictionary:
    """Train a sparse autoencoder with ``n_features`` features on ``layer``'s activations over ``data``.

    Args:
        data: input batches for ``model`` (an iterable of ``[N, channels, H, W]``; every position is one
            training vector), or a tensor ``[P, C]`` of activation vectors already collected.
        l1: sparsity weight (activations are normalised to mean norm 1 first).
        steps, batch_size, lr: Adam steps on minibatches drawn (with replacement) from the vectors.
        seed: seeds the ``torch.Generator`` of the initial directions and the minibatches.
    """
    if int(n_features) < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if l1 < 0 or steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need l1 >= 0, steps >= 1, batch_size >= 1, lr > 0; got l1={l1}, steps={steps}, "
                         f"batch_size={batch_size}, lr={lr}")
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
    for _ in range(int(steps)):
        batch = x[torch.randint(n, (min(int(batch_size), n),), generator=g)]
        f = torch.relu((batch - b_dec) @ W_enc.T + b_enc)
        loss = ((f @ W_dec + b_dec - batch) ** 2).sum(1).mean() + l1 * f.sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # unit directions: the L1 term cannot shrink f by growing W_dec
            W_dec.copy_(torch.nn.functional.normalize(W_dec, dim=1))
    found = Dictionary(layer=layer, directions=W_dec.detach().clone(), encoder=W_enc.detach().clone(),
                       encoder_bias=b_enc.detach().clone(), decoder_bias=b_dec.detach().clone(), scale=scale,
                       l1=float(l1), seed=int(seed))
    with torch.no_grad():
        f = found.encode(x * scale)
        residual = ((found.decode(f) / scale - x) ** 2).sum()
        found.fraction_unexplained = float(residual / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12))
        found.l0 = float((f > 0).float().sum(1).mean())
        found.dead = int(((f > 0).sum(0) == 0).sum())
    return found
