"""``augment-preview`` for detection: each image letterboxed, then augmented, with its boxes drawn.

The boxes drawn are the ones the model is trained on after augmentation —
moved, clipped, or dropped under ``detect.min_visibility`` — so a crop that
loses objects or a rotation that inflates boxes shows before training does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError

_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def box_preview(cfg, out: Path, n: int = 8, n_aug: int = 5, seed: int = 0, note=None) -> Path:
    """Write a grid of ``n`` images (those with boxes first) × (original + ``n_aug``) to ``out``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .augment import build_box_transform
    from .data import DetectSource
    from .read import read_configured

    data = read_configured(cfg.data.train, cfg)
    if not len(data.images):
        raise DataError(f"{cfg.data.train} has no images to preview.")
    with_boxes = set(data.boxes["sample_id"])
    order = np.random.default_rng(seed).permutation(len(data.images))
    ids = data.images["sample_id"].to_numpy()
    order = sorted(order, key=lambda i: ids[i] not in with_boxes)[:n]  # stable: boxes first
    images = data.images.iloc[order].reset_index(drop=True)
    source = DetectSource(images, data.boxes, cfg.data.image_size, cfg.data.resize, 0)
    transform = build_box_transform(cfg.augment, cfg.detect, cfg.data.image_size)
    cols = 1 + n_aug
    fig = Figure(figsize=(1.8 * cols, 1.9 * len(images)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images), cols, squeeze=False))
    for i in range(len(images)):
        image = source.image(i)
        boxes, labels = source.targets(i)
        tiles = [(image, boxes, labels)] + [
            transform(image, boxes, labels, seed=seed + i * n_aug + j) for j in range(n_aug)
        ]
        for j, (ax, (img, bxs, lbs)) in enumerate(zip(axes[i], tiles, strict=True)):
            ax.imshow(img, interpolation="nearest")
            for (x1, y1, x2, y2), k in zip(np.asarray(bxs).reshape(-1, 4), lbs):
                colour = _COLOURS[int(k) % len(_COLOURS)]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=colour))
                ax.text(x1, y1, data.classes[int(k)][:10], fontsize=6, color=colour, va="bottom")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"aug {j}", fontsize=9)
        axes[i][0].set_ylabel(str(images["sample_id"][i])[-18:], fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
