"""Colour decorrelation: the image is optimised in a decorrelated colour space.

lucid's convention: a pixel ``x`` of the parameterization (3 numbers) becomes the RGB pixel
``sigmoid(M @ x)``, where ``M`` is a square root of the colour covariance of natural images
(``M @ M.T ~ cov(RGB)``) scaled so its largest column has unit norm. Gradient steps of equal
size in ``x`` then change the image along natural colour directions, not along R, G, B.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = [
    "IMAGENET_COLOR_CORRELATION_SVD_SQRT",
    "IMAGENET_COLOR_MEAN",
    "imagenet_color_matrix",
    "color_matrix_from_images",
    "decorrelate_color",
]

# lucid's constant: U * sqrt(S) of the SVD of the ImageNet RGB covariance (rows: R, G, B).
IMAGENET_COLOR_CORRELATION_SVD_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
# lucid adds this when an image is decorrelated but not squashed by a sigmoid.
IMAGENET_COLOR_MEAN = (0.48, 0.46, 0.41)


def _normalize_columns(matrix: torch.Tensor) -> torch.Tensor:
    """Divide by the largest column norm (lucid's ``max_norm_svd_sqrt``)."""
    return matrix / matrix.norm(dim=0).max()


def imagenet_color_matrix(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """lucid's ``color_correlation_normalized`` as a ``[3, 3]`` tensor: ``rgb = M @ x``."""
    matrix = torch.tensor(IMAGENET_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    return _normalize_columns(matrix).to(dtype=dtype, device=device)


def color_matrix_from_images(images: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
    """The decorrelation matrix of a data set, in lucid's form: ``[3, 3]``, float32.

    Args:
        images: a tensor ``[N, 3, H, W]`` or ``[3, H, W]``, or an iterable of such tensors (a
            ``DataLoader`` yielding image batches, or ``(images, labels)`` pairs), values in [0, 1].

    Returns:
        ``U @ diag(sqrt(S))`` of the RGB covariance ``U S U^T``, scaled so the largest column has
        norm 1, with each column's sign chosen so its largest entry is positive. Pass it as
        ``param.image(..., color_matrix=M)``.

    The covariance is accumulated in float64 over all pixels (a streaming sum, so the data set
    need not fit in memory).
    """
    batches = [images] if isinstance(images, torch.Tensor) else images
    count = 0
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"color_matrix_from_images expects image tensors, got {type(batch).__name__}")
        if batch.dim() == 3:
            batch = batch.unsqueeze(0)
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"color_matrix_from_images expects [N, 3, H, W] RGB images, got shape {tuple(batch.shape)}"
            )
        pixels = batch.detach().to(torch.float64).permute(0, 2, 3, 1).reshape(-1, 3).cpu()
        count += pixels.shape[0]
        total += pixels.sum(0)
        outer += pixels.T @ pixels
    if count < 2:
        raise ValueError("color_matrix_from_images needs at least two pixels")
    mean = total / count
    covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = eigenvalues.argsort(descending=True)
    eigenvalues, eigenvectors = eigenvalues[order].clamp_min(0), eigenvectors[:, order]
    signs = torch.sign(eigenvectors.gather(0, eigenvectors.abs().argmax(0, keepdim=True)))
    sqrt = eigenvectors * signs * eigenvalues.sqrt()
    if not torch.isfinite(sqrt).all() or sqrt.norm(dim=0).max() == 0:
        raise ValueError("color_matrix_from_images: the images have no colour variance (all pixels equal?)")
    return _normalize_columns(sqrt).float()


def decorrelate_color(x: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` decorrelated image -> ``[N, 3, H, W]`` correlated (pre-sigmoid) RGB."""
    return torch.einsum("ij,njhw->nihw", color_matrix.to(x), x)
