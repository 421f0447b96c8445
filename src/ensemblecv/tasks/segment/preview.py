"""``augment-preview`` for segmentation: each image resized, then augmented, its mask blended on.

The masks drawn are the ones the model trains on after augmentation — moved
with the pixels by nearest neighbour, new pixels ``ignore_index`` (drawn
grey) — so a scale or rotation that loses objects shows before training does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, ignore: int) -> np.ndarray:
    """Half image, half class colour; background (0) left as is, ignored pixels grey."""
    out = image.astype(np.float32)
    fg = (mask != 0) & (mask != ignore)
    out[fg] = 0.5 * out[fg] + 0.5 * colours[mask[fg]]
    out[mask == ignore] = 0.4 * out[mask == ignore] + 0.6 * 160
    return out.astype(np.uint8)


def mask_preview(cfg, out: Path, n: int = 8, n_aug: int = 5, seed: int = 0, note=None) -> Path:
    """Write a grid of ``n`` images × (original + ``n_aug`` augmented) with masks to ``out``."""
    from matplotlib.figure import Figure

    from .augment import build_mask_transform
    from .data import SegmentSource
    from .masks import voc_palette
    from .workspace import read_config_data

    data = read_config_data(cfg)
    if not len(data.images):
        raise DataError(f"{cfg.data.train} has no images to preview.")
    order = np.random.default_rng(seed).permutation(len(data.images))[:n]
    images = data.images.iloc[order].reset_index(drop=True)
    ig = data.ignore_index
    source = SegmentSource(images, cfg.data.image_size, cfg.data.resize, 0, ig, data.palette)
    transform = build_mask_transform(cfg.augment, cfg.data.image_size, ig)
    colours = voc_palette().astype(np.float32)
    if data.palette is not None:
        colours[: len(data.palette)] = data.palette
    cols = 1 + n_aug
    fig = Figure(figsize=(1.8 * cols, 1.9 * len(images)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images), cols, squeeze=False))
    for i in range(len(images)):
        image, mask = source.item(i)
        tiles = [(image, mask)] + [
            transform(image, mask, seed=seed + i * n_aug + j) for j in range(n_aug)
        ]
        for j, (ax, (img, msk)) in enumerate(zip(axes[i], tiles, strict=True)):
            ax.imshow(overlay(img, msk, colours, ig), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"aug {j}", fontsize=9)
        axes[i][0].set_ylabel(str(images["sample_id"][i])[-18:], fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


__all__ = ["mask_preview", "overlay"]
