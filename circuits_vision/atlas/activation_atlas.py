"""Activation atlases (Carter et al., 2019): many activations of a layer laid out in 2-D, each grid cell
drawn by feature visualization of its mean activation.

    result = activation_atlas(model, "mixed3b", grid=12)        # held-out scenes of the shipped model
    result.reducer                                               # "umap", "tsne" or "pca": which ran
    result.images                                                # [K, 3, S, S], one per occupied cell
    result.save("atlas/")                                        # atlas/activation_atlas_mixed3b.html

1. Collect: images stream through the model in batches (no more than one batch of activations is
   held); at ``positions_per_image`` random positions of each (drawn from a ``torch.Generator``) the
   activation vector ``[C]`` is kept: memory is ``samples x C`` floats plus one batch.
2. Reduce to 2-D with UMAP (``umap-learn``, if importable) or else t-SNE from scikit-learn (cosine
   metric, as lucid's atlas), or PCA with ``reducer="pca"``; the layout is clipped to its 1st..99th
   percentiles and scaled to [0, 1].
3. Bin into ``grid x grid`` cells; every cell with at least ``min_count`` activations gets the mean of its
   activations as a direction.
4. Render every occupied cell with a ``direction`` objective, all in ONE :func:`circuits_vision.optvis.render`
   call (``batch_size`` = number of cells unless ``render_kwargs`` says otherwise).

Class-filtered atlas (``class_target=``): each sampled activation is scored by its gradient x
activation attribution toward the target (a logit, a later unit or an attribution ``Target``); only the
``class_keep`` fraction with the largest positive attribution is laid out, and each cell's direction is
the attribution-weighted mean of its activations ("which activations push toward this class").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision.analysis import attribute
from circuits_vision.models.train_shapes import HELDOUT_SEED_OFFSET
from circuits_vision.optvis import objectives as obj
from circuits_vision.optvis import render

__all__ = [
    "ActivationAtlas",
    "BACKGROUND",
    "OBJECTIVES",
    "REDUCERS",
    "SAMPLINGS",
    "activation_atlas",
    "collect_activations",
    "heldout_scenes",
    "layout_2d",
    "object_mask",
]

REDUCERS = ("auto", "umap", "tsne", "pca")
SAMPLINGS = ("uniform", "norm", "object")
BACKGROUND = "background"
"""Label name of activations whose position sees none of its scene's object (see :func:`collect_activations`)."""
OBJECT_SHARE = 0.02
"""A position sees the object when object pixels are more than this share of its window (two layer strides wide)."""
OBJECTIVES = {
    "direction": obj.direction,
    "direction_neuron": obj.direction_neuron,
    "direction_neuron_cossim": obj.direction_neuron_cossim,
}
HELDOUT_SEED = 0 + HELDOUT_SEED_OFFSET
"""Seed of the shipped model's held-out scenes: its training seed (0) plus the held-out offset."""


@dataclass
class Samples:
    """Activation vectors collected at random positions: ``vectors [M, C]``, where they came from
    (``sources [M]`` image index in the stream, ``positions [M, 2]`` (row, col) in the feature map),
    ``labels [M]`` (-1 when unknown) and, for a class-filtered atlas, ``scores [M]`` (attribution).
    With scene details (object masks, orientations): ``on_object [M]`` whether the position's window sees
    the object (True where no mask was given) and ``orientations [M]`` the object's drawn orientation in
    degrees (NaN where unknown)."""

    vectors: torch.Tensor
    sources: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor | None
    n_images: int
    on_object: torch.Tensor | None = None
    orientations: torch.Tensor | None = None


@dataclass
class ActivationAtlas:
    """An activation atlas of ``layer`` (all tensors on the CPU).

    Attributes:
        reducer: the 2-D reduction that ran (``"umap"``, ``"tsne"`` or ``"pca"``).
        coordinates: ``[M, 2]`` (x, y) in [0, 1] of every laid-out activation.
        sample_cell: ``[M]`` index into ``cells`` of each activation (-1: in a cell below ``min_count``).
        cells: ``[K, 2]`` (row, col) of each rendered cell; ``counts [K]`` activations in it.
        directions: ``[K, C]`` each cell's (weighted) mean activation, the ``direction`` it was rendered with.
        images: ``[K, 3, S, S]`` the rendered cells.
        labels: ``[M]`` int64 label of each activation's image (-1 if unknown); ``label_names`` their names.
            With object masks (the held-out scenes), an activation whose position sees none of the object
            gets the label named ``"background"`` instead of its scene's: a position beside a curve is not
            a curve activation.
        cell_label / cell_purity: ``[K]`` the most common label in each cell (-1 none) and its share.
        class_target: the target of a class-filtered atlas, else ``None``.
        orientations: ``[M]`` the drawn orientation (degrees) of each activation's object (NaN: unknown or
            none), or ``None`` without scene details.
    """

    layer: str
    grid: int
    reducer: str
    coordinates: torch.Tensor
    sample_cell: torch.Tensor
    cells: torch.Tensor
    counts: torch.Tensor
    directions: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    cell_label: torch.Tensor
    cell_purity: torch.Tensor
    n_images: int
    label_names: list[str] = field(default_factory=list)
    class_target: str | None = None
    settings: dict = field(default_factory=dict)
    orientations: torch.Tensor | None = None

    def top_units(self, cell: int, k: int = 5) -> list[tuple[int, float]]:
        """The units with the largest share of cell ``cell``'s direction: ``[(unit, value)]``."""
        d = self.directions[cell]
        order = d.argsort(descending=True)[: int(k)]
        return [(int(u), float(d[u])) for u in order]

    def cell_at(self, row: int, col: int) -> int | None:
        """Index of the rendered cell at (row, col), or ``None`` if that cell is empty."""
        hit = ((self.cells[:, 0] == row) & (self.cells[:, 1] == col)).nonzero()
        return int(hit[0, 0]) if hit.numel() else None

    def label_name(self, label: int) -> str:
        if label < 0:
            return ""
        return self.label_names[label] if label < len(self.label_names) else str(label)

    def mosaic(self, background: float = 1.0) -> torch.Tensor:
        """``[3, grid*S, grid*S]``: every rendered cell at its place (row 0 on top), empty cells ``background``."""
        s = self.images.shape[-1]
        canvas = torch.full((3, self.grid * s, self.grid * s), float(background))
        for (row, col), image in zip(self.cells.tolist(), self.images):
            canvas[:, row * s : (row + 1) * s, col * s : (col + 1) * s] = image[:3]
        return canvas

    def table(self, k: int = 5) -> list[dict]:
        """One row per rendered cell: place, count, label and purity, strongest units."""
        return [
            {
                "cell": i,
                "row": int(r),
                "col": int(c),
                "count": int(self.counts[i]),
                "label": self.label_name(int(self.cell_label[i])),
                "purity": float(self.cell_purity[i]),
                "top_units": [u for u, _ in self.top_units(i, k)],
            }
            for i, (r, c) in enumerate(self.cells.tolist())
        ]

    def save(self, directory: str | os.PathLike, **page_kwargs) -> Path:
        """Write the zoomable static page (and its cell images) into ``directory``; returns the page's path."""
        from circuits_vision.atlas.activation_atlas_page import write_activation_atlas_page

        return write_activation_atlas_page(self, directory, **page_kwargs)

    def __str__(self) -> str:
        kind = f"class-filtered ({self.class_target}) " if self.class_target else ""
        lines = [
            f"{kind}activation atlas of {self.layer}: {self.coordinates.shape[0]} activations from "
            f"{self.n_images} images, {self.reducer} layout, {len(self.cells)} of {self.grid}x{self.grid} cells rendered"
        ]
        for row in self.table(3)[:8]:
            label = f", {row['label']} ({row['purity']:.0%})" if row["label"] else ""
            lines.append(
                f"  cell ({row['row']}, {row['col']}): {row['count']} activations{label}, top units {row['top_units']}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ActivationAtlas(layer={self.layer!r}, grid={self.grid}, reducer={self.reducer!r}, cells={len(self.cells)})"


def activation_atlas(
    model: nn.Module,
    layer: str,
    images=None,
    *,
    grid: int = 16,
    n_images: int = 2048,
    positions_per_image: int = 2,
    sampling: str | None = None,
    batch_size: int = 128,
    reducer: str = "auto",
    objective: str = "direction_neuron_cossim",
    min_count: int = 3,
    class_target=None,
    class_keep: float = 0.25,
    labels: torch.Tensor | None = None,
    label_names: list[str] | None = None,
    steps: int = 256,
    size: int = 64,
    seed: int = 0,
    render_kwargs: dict | None = None,
) -> ActivationAtlas:
    """An activation atlas of ``layer``: collect, lay out in 2-D, bin to ``grid x grid``, render every cell once.

    Args:
        images: ``[N, 3, H, W]``, an iterable of such batches (or of ``(batch, labels)`` pairs, or of
            ``(batch, labels, details)`` as :func:`heldout_scenes` with ``details=True`` yields), or
            ``None``: ``n_images`` held-out scenes of the shipped model's training distribution
            (:func:`heldout_scenes`, labelled by shape class, positions off the object ``"background"``).
        grid: cells per side.
        positions_per_image: random positions sampled per image (``torch.Generator`` seeded by ``seed``).
        sampling: ``None`` (default: ``"object"`` for the held-out scenes, ``"uniform"`` for given images),
            ``"uniform"`` (every position equally likely, as lucid), ``"norm"`` (in proportion to
            the activation vector's norm) or ``"object"`` (in proportion to how much of the object each
            position's window sees; needs object masks, as the held-out scenes have: for images of one
            object on a plain background, where most positions see only background).
        objective: ``"direction_neuron_cossim"`` (the default, lucid's atlas objective: dot product times
            cosine to the 4th power at the centre position; on the shipped model's curve cells the one whose
            pictures follow the cells' orientation: median error 14.3 degrees against 42.5 for
            ``"direction"``, see ``notebooks/activation_atlas.ipynb``), ``"direction"`` (cosine with the
            cell's direction at every position of the picture) or ``"direction_neuron"`` (the cosine at the
            centre position only).
        reducer: ``"auto"`` (UMAP if importable, else t-SNE), ``"umap"``, ``"tsne"`` or ``"pca"``.
        min_count: cells with fewer activations are not rendered.
        class_target: a logit index, ``"layer:channel"`` or an attribution ``Target`` for a class-filtered atlas.
        class_keep: the fraction of activations (largest positive attribution) a class-filtered atlas keeps.
        labels: ``[N]`` int labels of tensor ``images`` (for each cell's most common label).
        steps, size, seed, render_kwargs: passed to ``render`` (``render_kwargs`` may override ``batch_size``).
    """
    grid, min_count = int(grid), int(min_count)
    if grid < 1:
        raise ValueError(f"grid must be >= 1 cells per side, got {grid}")
    if reducer not in REDUCERS:
        raise ValueError(f"reducer must be one of {REDUCERS}, got {reducer!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    if not 0 < float(class_keep) <= 1:
        raise ValueError(f"class_keep must be in (0, 1], got {class_keep}")
    canonical = hooks.resolve_layer(model, layer)[0]
    if sampling is None:  # the held-out scenes carry object masks; most of their positions see only background
        sampling = "object" if images is None else "uniform"
    if images is None:
        size_in = int(hooks.model_input_size(model, default=64))
        stream = heldout_scenes(n_images, batch_size=batch_size, size=size_in, details=True)
        if label_names is None:
            from circuits_vision.stimuli.scenes import SHAPE_CLASSES

            label_names = list(SHAPE_CLASSES)
    else:
        stream = _batches(images, labels, batch_size)
    generator = torch.Generator().manual_seed(int(seed))
    samples = collect_activations(
        model,
        canonical,
        stream,
        positions_per_image=positions_per_image,
        sampling=sampling,
        generator=generator,
        class_target=class_target,
    )
    label_names = list(label_names or [])
    if samples.on_object is not None and not bool(samples.on_object.all()):
        # off-object positions are background, whatever the scene shows elsewhere
        if BACKGROUND not in label_names:
            label_names.append(BACKGROUND)
        samples.labels = torch.where(samples.on_object, samples.labels, label_names.index(BACKGROUND))
    vectors, weights, keep = samples.vectors, None, torch.arange(samples.vectors.shape[0])
    target_name = None
    if class_target is not None:
        from circuits_vision.analysis.attribution import as_target

        target_name = as_target(class_target).description
        scores = samples.scores
        count = max(1, int(round(float(class_keep) * scores.numel())))
        keep = scores.argsort(descending=True)[:count]
        keep = keep[scores[keep] > 0]
        if keep.numel() == 0:
            raise ValueError(f"no sampled activation of {canonical!r} has positive attribution to {target_name}")
        vectors, weights = vectors[keep], scores[keep]
    coords, used = layout_2d(vectors, reducer, generator=generator)
    cells, counts, directions, sample_cell = _bin(coords, vectors, weights, grid, min_count)
    if len(cells) == 0:
        raise ValueError(
            f"no cell of the {grid}x{grid} grid holds {min_count} activations ({vectors.shape[0]} laid out): "
            "use more images, more positions_per_image, a smaller grid or a smaller min_count"
        )
    kept_labels = samples.labels[keep]
    cell_label, purity = _cell_labels(kept_labels, sample_cell, len(cells))
    options = {"steps": steps, "size": size, "seed": seed, "batch_size": len(cells), "progress": False}
    options.update(render_kwargs or {})
    rendered = render(model, [OBJECTIVES[objective](canonical, d) for d in directions], **options)
    return ActivationAtlas(
        canonical,
        grid,
        used,
        coords,
        sample_cell,
        cells,
        counts,
        directions,
        rendered.images,
        kept_labels,
        cell_label,
        purity,
        samples.n_images,
        label_names,
        target_name,
        {
            "positions_per_image": positions_per_image,
            "sampling": sampling,
            "objective": objective,
            "min_count": min_count,
            "steps": steps,
            "size": size,
            "seed": seed,
            "class_keep": class_keep if class_target is not None else None,
        },
        None if samples.orientations is None else samples.orientations[keep],
    )


def heldout_scenes(
    n: int, *, batch_size: int = 128, size: int = 64, seed: int = HELDOUT_SEED, details: bool = False
) -> Iterator[tuple]:
    """``n`` scenes from :func:`circuits_vision.stimuli.scenes.random_scenes` in batches ``(images, shape labels)``,
    drawn from the held-out seed (never the training stream of the shipped model).

    With ``details=True`` each batch is ``(images, shape labels, {"orientation": [B] degrees (NaN for kinds
    without one), "object": [B, H, W] bool mask})`` (:func:`object_mask`); the images are the same."""
    from circuits_vision.stimuli.scenes import random_scenes

    if int(n) < 1:
        raise ValueError(f"n_images must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(int(seed))
    for start in range(0, int(n), int(batch_size)):
        batch, labels = random_scenes(min(int(batch_size), int(n) - start), generator, size=size)
        if details:
            yield batch, labels["shape"], {"orientation": labels["orientation"], "object": object_mask(batch)}
        else:
            yield batch, labels["shape"]


def object_mask(images: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """``[N, 3, H, W]`` scenes of one object on a plain background -> ``[N, H, W]`` bool: pixels farther than
    ``threshold`` (RGB distance) from the image's median colour, which is the background's. The scenes
    draw objects at least 0.45 from their background and add 0.03 pixel noise, so 0.25 separates them."""
    median = images.flatten(2).median(2).values[:, :, None, None]
    return (images - median).norm(dim=1) > float(threshold)


def _window_share(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[B, H, W]`` object mask -> ``[B, h, w]``: the object's share of each position's window, two strides
    of the ``h x w`` map wide and centred on the position's cell (the centre of its receptive field)."""
    stride_y, stride_x = mask.shape[1] / h, mask.shape[2] / w
    ky, kx = max(1, round(2 * stride_y)), max(1, round(2 * stride_x))
    # half a stride of padding each side: window r spans [(r - 1/2) * stride, (r + 3/2) * stride)
    padded = torch.nn.functional.pad(mask[:, None].float(), (kx // 4, kx // 4, ky // 4, ky // 4))
    share = torch.nn.functional.avg_pool2d(padded, (ky, kx), stride=(max(1, round(stride_y)), max(1, round(stride_x))))
    if share.shape[-2:] != (h, w):
        share = torch.nn.functional.interpolate(share, size=(h, w), mode="nearest")
    return share[:, 0]


def collect_activations(
    model: nn.Module,
    layer: str,
    batches: Iterable,
    *,
    positions_per_image: int = 2,
    sampling: str = "uniform",
    generator: torch.Generator,
    class_target=None,
) -> Samples:
    """Activation vectors at ``positions_per_image`` random positions of every image of ``batches``.

    ``batches`` yields ``[B, 3, H, W]`` tensors, ``(tensor, labels [B])`` pairs or ``(tensor, labels,
    details)`` with ``details`` a dict of ``"object"`` (``[B, H, W]`` bool object mask) and/or
    ``"orientation"`` (``[B]`` degrees). Only one batch of activations is alive at a time.
    ``sampling="norm"`` draws positions in proportion to the norm of their activation vector,
    ``sampling="object"`` in proportion to the object's share of the position's window (both uniformly
    in an image where that is zero everywhere). With an object mask, a position ``sees the object`` when
    the object covers more than ``OBJECT_SHARE`` of its window (two strides of the layer's map, centred
    on the position). With ``class_target``, each kept vector also gets its attribution score
    ``sum_c A_c dt/dA_c`` at that position.
    """
    per = int(positions_per_image)
    if per < 1:
        raise ValueError(f"positions_per_image must be >= 1, got {positions_per_image}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    device = hooks.model_device(model)
    vectors, sources, positions, labels, scores, on_object, orientations = [], [], [], [], [], [], []
    seen, any_details = 0, False
    with hooks.eval_mode(model):
        for item in batches:
            batch, batch_labels, details = _unpack(item)
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
                raise ValueError(
                    f"each batch of images must be a [B, 3, H, W] tensor, got {getattr(batch, 'shape', type(batch))}"
                )
            if class_target is None:
                with torch.no_grad():
                    acts = hooks.run_with_cache(model, batch.to(device), [layer])[layer].float().cpu()
                attr = None
            else:
                result = attribute(model, batch, layer, class_target, batch_size=batch.shape[0])
                acts, attr = result.activations, result.values
            if acts.dim() != 4:
                raise ValueError(
                    f"layer {layer!r} gives a {acts.dim()}-d output; an activation atlas needs [N, C, H, W] maps"
                )
            b, c, h, w = acts.shape
            mask = details.get("object")
            share = None
            if mask is not None:
                mask = torch.as_tensor(mask).cpu()
                if mask.shape != (b, batch.shape[2], batch.shape[3]):
                    raise ValueError(
                        f"the object mask must be [B, H, W] = {(b, batch.shape[2], batch.shape[3])}, got {tuple(mask.shape)}"
                    )
                share = _window_share(mask.bool(), h, w).flatten(1)  # [b, h*w]
            if sampling == "uniform":
                flat = torch.randint(h * w, (b, per), generator=generator)
            else:
                if sampling == "norm":
                    weight = acts.flatten(2).norm(dim=1).double()  # [b, h*w]
                elif share is None:
                    raise ValueError(
                        "sampling='object' needs object masks: pass (batch, labels, {'object': mask}) batches "
                        "(heldout_scenes(..., details=True) yields them)"
                    )
                else:
                    weight = share.double() * (share > OBJECT_SHARE)
                weight[weight.sum(1) == 0] = 1.0
                flat = torch.multinomial(weight, per, replacement=True, generator=generator)
            rows = torch.arange(b).repeat_interleave(per)
            where = flat.flatten()
            vectors.append(acts.flatten(2)[rows, :, where])
            any_details = any_details or bool(details)
            on_object.append(
                share[rows, where] > OBJECT_SHARE if share is not None else torch.ones(b * per, dtype=torch.bool)
            )
            angle = details.get("orientation")
            orientations.append(
                torch.as_tensor(angle).float().cpu().repeat_interleave(per)
                if angle is not None
                else torch.full((b * per,), float("nan"))
            )
            if attr is not None:
                scores.append(attr.flatten(2)[rows, :, where].sum(1))
            sources.append(rows + seen)
            positions.append(torch.stack([where // w, where % w], 1))
            if batch_labels is not None:
                labels.append(torch.as_tensor(batch_labels).long().cpu().repeat_interleave(per))
            else:
                labels.append(torch.full((b * per,), -1, dtype=torch.long))
            seen += b
    if seen == 0:
        raise ValueError("no images: the image stream was empty")
    return Samples(
        torch.cat(vectors),
        torch.cat(sources),
        torch.cat(positions),
        torch.cat(labels),
        torch.cat(scores) if scores else None,
        seen,
        torch.cat(on_object) if any_details else None,
        torch.cat(orientations) if any_details else None,
    )


def _unpack(item) -> tuple:
    """A stream item -> ``(batch, labels or None, details dict)``."""
    if not isinstance(item, tuple):
        return item, None, {}
    if len(item) == 2:
        return item[0], item[1], {}
    if len(item) == 3 and isinstance(item[2], dict):
        unknown = set(item[2]) - {"object", "orientation"}
        if unknown:
            raise ValueError(f"scene details may hold 'object' and 'orientation', got {sorted(unknown)}")
        return item
    raise ValueError(
        f"each stream item must be a batch, (batch, labels) or (batch, labels, details dict), got a {len(item)}-tuple"
    )


def layout_2d(vectors: torch.Tensor, reducer: str = "auto", *, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """``[M, C]`` -> ``([M, 2]`` in [0, 1], the reducer that ran)``. Vectors are compared by direction
    (cosine), as the cells are rendered by direction."""
    if reducer not in REDUCERS:
        raise ValueError(f"reducer must be one of {REDUCERS}, got {reducer!r}")
    if vectors.shape[0] < 3:
        raise ValueError(f"a 2-D layout needs at least 3 activations, got {vectors.shape[0]}")
    x = torch.nn.functional.normalize(vectors.double(), dim=1).numpy()
    random_state = int(torch.randint(2**31 - 1, (1,), generator=generator))
    if reducer in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if reducer == "umap":
                raise ImportError("reducer='umap' needs the umap-learn package (pip install umap-learn)") from None
            reducer = "tsne"
        else:
            reducer = "umap"
            coords = umap.UMAP(n_components=2, metric="cosine", random_state=random_state).fit_transform(x)
    if reducer == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
        coords = TSNE(
            n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=random_state
        ).fit_transform(x)
    elif reducer == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=random_state).fit_transform(x)
    return _normalise_layout(np.asarray(coords, dtype=np.float64)), reducer


def _normalise_layout(coords: np.ndarray) -> torch.Tensor:
    """Clip each axis to its 1st..99th percentile (outliers would squeeze the rest into a few cells), scale to [0, 1]."""
    low, high = np.percentile(coords, 1, axis=0), np.percentile(coords, 99, axis=0)
    span = np.where(high > low, high - low, 1.0)
    return torch.from_numpy(np.clip((coords - low) / span, 0.0, 1.0)).float()


def _bin(coords, vectors, weights, grid: int, min_count: int):
    """Cells ``[K, 2]`` (row, col), ``counts [K]``, directions ``[K, C]`` and each vector's cell ``[M]`` (-1: dropped)."""
    col = (coords[:, 0] * grid).long().clamp(0, grid - 1)
    row = ((1 - coords[:, 1]) * grid).long().clamp(0, grid - 1)  # y up, row 0 on top
    flat = row * grid + col
    counts_all = torch.bincount(flat, minlength=grid * grid)
    occupied = (counts_all >= max(1, min_count)).nonzero().flatten()
    slot = torch.full((grid * grid,), -1, dtype=torch.long)
    slot[occupied] = torch.arange(occupied.numel())
    sample_cell = slot[flat]
    w = torch.ones(vectors.shape[0]) if weights is None else weights.float()
    sums = torch.zeros(occupied.numel(), vectors.shape[1])
    totals = torch.zeros(occupied.numel())
    mask = sample_cell >= 0
    sums.index_add_(0, sample_cell[mask], vectors[mask] * w[mask, None])
    totals.index_add_(0, sample_cell[mask], w[mask])
    directions = sums / totals.clamp_min(1e-12)[:, None]
    cells = torch.stack([occupied // grid, occupied % grid], 1)
    return cells, counts_all[occupied], directions, sample_cell


def _cell_labels(labels: torch.Tensor, sample_cell: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.full((k,), -1, dtype=torch.long)
    purity = torch.zeros(k)
    for cell in range(k):
        mine = labels[(sample_cell == cell) & (labels >= 0)]
        if mine.numel():
            counts = torch.bincount(mine)
            label[cell] = int(counts.argmax())
            purity[cell] = float(counts.max()) / float((sample_cell == cell).sum())
    return label, purity


def _batches(images, labels, batch_size: int) -> Iterator:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
        if labels is not None and len(labels) != images.shape[0]:
            raise ValueError(f"labels has {len(labels)} entries for {images.shape[0]} images")
        for start in range(0, images.shape[0], int(batch_size)):
            stop = start + int(batch_size)
            yield (images[start:stop], labels[start:stop]) if labels is not None else images[start:stop]
        return
    if labels is not None:
        raise ValueError("labels= goes with an images tensor; a stream yields (batch, labels) pairs instead")
    if not isinstance(images, Iterable):
        raise TypeError(f"images must be a tensor, an iterable of batches or None, got {type(images).__name__}")
    yield from images
