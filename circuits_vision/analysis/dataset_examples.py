"""Dataset examples: the images (and image crops) that activate each unit most.

Images stream through the model in batches from a folder (recursively; files that are not readable
images are skipped and counted) or from any iterable of tensors; only a running top-k per unit is
kept, so memory stays bounded by ``units x k`` crops plus one batch, whatever the dataset size.

    examples = top_activating(model, "mixed3b", "images/", units=[37, 39], k=9)
    examples.values        # [U, k] activations, highest first
    examples.crops         # [U, k, 3, c, c] image patches around the most active position
    examples.save("examples/mixed3b")   # mixed3b.npz + mixed3b.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from circuits_vision.analysis._inputs import for_model
from circuits_vision.hooks import check_channel, eval_mode, layer_shape, model_device, model_input_size, run_with_cache
from circuits_vision.results import Result

__all__ = [
    "DatasetExamples",
    "top_activating",
]


@dataclass(repr=False)
class DatasetExamples(Result):
    """Top-k activating examples of ``units`` of ``layer`` (values and crops sorted high to low).

    Attributes:
        values: ``[U, k]`` spatial-max activation of each unit on its top images.
        indices: ``[U, k]`` position of each image in the stream (-1 where fewer than k images were seen).
        positions: ``[U, k, 2]`` (row, col) of the most active position in the layer's feature map.
        crops: ``[U, k, 3, c, c]`` image patches centred on that position (zero padding off the image).
        sources: stream index -> file path (folders) or ``"tensor:<i>"``, for the images in ``indices``.
        n_images: images read; skipped: files that could not be read as images.
        images: ``[U, k, 3, H, W]`` the whole top images (``keep_images=True`` only, else None), so a
            viewer can show each crop in its context; :meth:`boxes` gives where the crops lie in them.
        image_size: ``(H, W)`` of the images streamed; map_size: ``(h, w)`` of the layer's feature map.
    """

    layer: str
    units: list[int]
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    crops: torch.Tensor
    sources: dict[int, str] = field(default_factory=dict)
    n_images: int = 0
    skipped: list[str] = field(default_factory=list)
    images: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None
    map_size: tuple[int, int] | None = None

    def table(self) -> list[dict]:
        """One row per unit: its top activation and the image it came from."""
        rows = []
        for i, unit in enumerate(self.units):
            index = int(self.indices[i, 0]) if self.indices.numel() else -1
            rows.append(
                {
                    "unit": unit,
                    "top_value": float(self.values[i, 0]) if index >= 0 else None,
                    "top_image": self.sources.get(index, str(index)) if index >= 0 else None,
                }
            )
        return rows

    def boxes(self) -> torch.Tensor:
        """``[U, k, 4]`` (top, left, bottom, right) pixel box of each crop in its image (bottom/right
        exclusive; may reach past the image, where the crop is zero padding)."""
        if self.image_size is None or self.map_size is None:
            raise ValueError(
                "these examples do not record the image and feature-map sizes; recompute them with top_activating"
            )
        (H, W), (h, w), c = self.image_size, self.map_size, self.crops.shape[-1]
        rows = ((self.positions[..., 0].float() + 0.5) * H / h).long() - c // 2
        cols = ((self.positions[..., 1].float() + 0.5) * W / w).long() - c // 2
        return torch.stack([rows, cols, rows + c, cols + c], dim=-1)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (layer, units, sources, counts)."""
        base = Path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        npz, meta = base.with_suffix(".npz"), base.with_suffix(".json")
        np.savez_compressed(
            npz,
            values=self.values.numpy(),
            indices=self.indices.numpy(),
            positions=self.positions.numpy(),
            crops=self.crops.numpy(),
        )
        meta.write_text(
            json.dumps(
                {
                    "layer": self.layer,
                    "units": self.units,
                    "n_images": self.n_images,
                    "n_skipped": self.n_skipped,
                    "skipped": self.skipped,
                    "sources": {str(i): s for i, s in sorted(self.sources.items())},
                },
                indent=2,
            )
        )
        return npz, meta

    @classmethod
    def load(cls, path: str | os.PathLike) -> DatasetExamples:
        base = Path(path)
        meta = json.loads(base.with_suffix(".json").read_text())
        with np.load(base.with_suffix(".npz")) as arrays:
            tensors = {name: torch.from_numpy(arrays[name]) for name in ("values", "indices", "positions", "crops")}
        return cls(
            layer=meta["layer"],
            units=meta["units"],
            **tensors,
            sources={int(i): s for i, s in meta["sources"].items()},
            n_images=meta["n_images"],
            skipped=meta["skipped"],
        )


def _load_image(path: Path, size: int) -> torch.Tensor:
    """An image file -> [3, size, size] in [0, 1]: shorter side resized to ``size``, centre crop."""
    from PIL import Image  # only folder inputs need pillow

    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = size / min(img.size)
        w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((w, h), Image.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _folder_batches(folder: Path, size: int, batch_size: int, skipped: list[str], progress: bool):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    batch, names = [], []
    for path in tqdm(files, desc=f"images in {folder.name}", unit="file", disable=not progress):
        try:
            batch.append(_load_image(path, size))
            names.append(str(path))
        except Exception:  # pillow raises many types (UnidentifiedImageError, OSError, ...) for bad files
            skipped.append(str(path))
            continue
        if len(batch) == batch_size:
            yield torch.stack(batch), names
            batch, names = [], []
    if batch:
        yield torch.stack(batch), names


def _tensor_batches(images: Iterable[torch.Tensor], batch_size: int, progress: bool):
    pending, count = [], 0
    for item in tqdm(images, desc="batches", unit="batch", disable=not progress):
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"images must yield tensors [3, H, W] or [N, 3, H, W], got {type(item).__name__}")
        item = item.unsqueeze(0) if item.dim() == 3 else item
        if item.dim() != 4 or item.shape[1] != 3:
            raise ValueError(f"images must be [3, H, W] or [N, 3, H, W], got shape {tuple(item.shape)}")
        pending.extend(item)
        while len(pending) >= batch_size:
            chunk, pending = pending[:batch_size], pending[batch_size:]
            yield torch.stack(chunk), [f"tensor:{count + i}" for i in range(len(chunk))]
            count += len(chunk)
    if pending:
        yield torch.stack(pending), [f"tensor:{count + i}" for i in range(len(pending))]


def _crops(
    images: torch.Tensor, batch_index: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, crop: int
) -> torch.Tensor:
    """Patches ``[n, 3, crop, crop]`` of ``images`` [B, 3, H, W] centred on pixel (rows, cols) [n]."""
    half = crop // 2
    padded = torch.nn.functional.pad(images, (half, crop, half, crop))
    offsets = torch.arange(crop, device=images.device)
    r = (rows[:, None] + offsets)[:, :, None]  # [n, c, 1] in padded coordinates (top = row - half)
    c = (cols[:, None] + offsets)[:, None, :]  # [n, 1, c]
    return padded[batch_index[:, None, None], :, r, c].permute(0, 3, 1, 2)


@torch.no_grad()
def top_activating(
    model: nn.Module,
    layer: str,
    images: str | os.PathLike | Iterable[torch.Tensor],
    *,
    units: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int = 32,
    size: int | None = None,
    crop_size: int | None = None,
    border: int = 0,
    keep_images: bool = False,
    progress: bool = True,
) -> DatasetExamples:
    """Stream ``images`` through ``model`` and keep the ``k`` most activating images of each unit.

    Args:
        images: a folder (read recursively; unreadable / non-image files skipped and listed in
            ``result.skipped``) or an iterable of tensors ``[3, H, W]`` / ``[N, 3, H, W]`` in [0, 1].
        units: channels of ``layer`` (default all).
        size: folder images are resized/centre-cropped to ``size`` (default the model's ``input_size``).
        crop_size: side of the saved crops (default half the image size).
        border: feature-map positions this close to the edge are ignored. Units at the edge see the
            padding as an edge of their own, which can dominate their top examples in small maps.
        keep_images: also keep each top image whole (``result.images``), which costs ``U x k`` images
            of memory (four times the default crops).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if border < 0:
        raise ValueError(f"border must be >= 0 feature-map positions, got {border}")
    size = size or model_input_size(model)
    channels = layer_shape(model, layer, size)[0]
    units = list(range(channels)) if units is None else [int(u) for u in units]
    for unit in units:
        check_channel(model, layer, unit)
    unit_index = torch.tensor(units, dtype=torch.long)
    device = model_device(model)
    skipped: list[str] = []
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise NotADirectoryError(f"{str(folder)!r} is not a folder of images")
        batches: Iterator = _folder_batches(folder, size, batch_size, skipped, progress)
    else:
        batches = _tensor_batches(images, batch_size, progress)

    n_units = len(units)
    values = torch.full((n_units, k), float("-inf"))
    indices = torch.full((n_units, k), -1, dtype=torch.long)
    positions = torch.zeros(n_units, k, 2, dtype=torch.long)
    crops = None
    kept = None
    image_size = map_size = None
    sources: dict[int, str] = {}
    seen = 0
    with eval_mode(model):
        for batch, names in batches:
            batch = batch.to(device)
            crop = crop_size or max(1, batch.shape[-1] // 2)
            if crops is None:
                crops = torch.zeros(n_units, k, 3, crop, crop)
                kept = torch.zeros(n_units, k, 3, *batch.shape[-2:]) if keep_images else None
                image_size = tuple(int(d) for d in batch.shape[-2:])
            elif image_size is not None and tuple(batch.shape[-2:]) != image_size:
                if keep_images:
                    raise ValueError(
                        f"keep_images needs images of one size; got {tuple(batch.shape[-2:])} after "
                        f"{image_size}: resize them first"
                    )
                image_size = None  # mixed sizes: no single pixel box per feature-map position
            act = run_with_cache(model, for_model(model, batch), [layer])[layer][
                :, unit_index.to(device)
            ].float()  # [B, U, h, w]
            b, _, h, w = act.shape
            map_size = (int(h), int(w)) if image_size is not None else None
            if border:
                if 2 * border >= min(h, w):
                    raise ValueError(f"border={border} leaves no position of the {h}x{w} map of {layer!r}")
                inside = torch.full_like(act, float("-inf"))
                inside[:, :, border : h - border, border : w - border] = act[
                    :, :, border : h - border, border : w - border
                ]
                act = inside
            best, where = act.flatten(2).max(dim=2)  # [B, U]
            merged_values = torch.cat([values, best.T.cpu()], dim=1)  # [U, k + B]
            top_values, top = merged_values.topk(min(k, merged_values.shape[1]), dim=1)
            new = top >= k  # entries that come from this batch
            from_batch = (top - k).clamp_min(0)
            new_positions = torch.stack([where.T.cpu() // w, where.T.cpu() % w], dim=-1)  # [U, B, 2]
            merged_positions = torch.cat([positions, new_positions], dim=1)
            merged_indices = torch.cat([indices, (seen + torch.arange(b)).expand(n_units, b)], dim=1)
            old_crops = crops
            crops = torch.zeros_like(old_crops)
            keep = ~new
            crops[keep] = old_crops[torch.nonzero(keep)[:, 0], top[keep]]
            if kept is not None:
                old_kept = kept
                kept = torch.zeros_like(old_kept)
                kept[keep] = old_kept[torch.nonzero(keep)[:, 0], top[keep]]
            if new.any():
                u_idx, slot = torch.nonzero(new, as_tuple=True)
                img_idx = from_batch[u_idx, slot]
                pos = new_positions[u_idx, img_idx]
                # Centre of feature-map cell (i, j) in image pixels.
                rows = ((pos[:, 0].float() + 0.5) * batch.shape[-2] / h).long()
                cols = ((pos[:, 1].float() + 0.5) * batch.shape[-1] / w).long()
                crops[u_idx, slot] = _crops(batch.cpu().float(), img_idx, rows, cols, crop)
                if kept is not None:
                    kept[u_idx, slot] = batch.cpu().float()[img_idx]
            values = top_values
            positions = torch.gather(merged_positions, 1, top[..., None].expand(-1, -1, 2))
            indices = torch.gather(merged_indices, 1, top)
            for i, name in enumerate(names):
                if bool((indices == seen + i).any()):
                    sources[seen + i] = name
            seen += b
    if seen == 0:
        raise ValueError("no images were read" + (f" ({len(skipped)} unreadable files skipped)" if skipped else ""))
    live = set(indices[indices >= 0].tolist())
    return DatasetExamples(
        layer=layer,
        units=units,
        values=values,
        indices=indices,
        positions=positions,
        crops=crops if crops is not None else torch.zeros(n_units, k, 3, 1, 1),
        sources={i: s for i, s in sources.items() if i in live},
        n_images=seen,
        skipped=skipped,
        images=kept,
        image_size=image_size,
        map_size=map_size,
    )
