"""Masks drawn over images: the audit's grid (and anything else that shows a mask) uses this one rule."""

from __future__ import annotations

import numpy as np

from .masks import VOC_IGNORE_COLOR, voc_palette


def mask_colors(
    mask: np.ndarray, palette: np.ndarray | None, ignore_index: int = 255
) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours of a mask: the dataset's palette (VOC's when None), ignore in VOC's void colour."""
    full = voc_palette()
    if palette is not None:
        full[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    full[ignore_index] = VOC_IGNORE_COLOR
    return full[np.asarray(mask, np.uint8)]


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    palette: np.ndarray | None = None,
    ignore_index: int = 255,
    alpha: float = 0.5,
    background: int | None = 0,
) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8) with ``mask``'s colours blended in at ``alpha``.

    Pixels of class ``background`` are left as they are (None: blend every
    class), so the objects stand out; ignored pixels are blended in the void colour.
    """
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, 2)
    colors = mask_colors(mask, palette, ignore_index).astype(np.float32)
    blend = image.astype(np.float32) * (1 - alpha) + colors * alpha
    if background is not None:
        keep = np.asarray(mask) == background
        blend[keep] = image[keep]
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


__all__ = ["mask_colors", "overlay"]
