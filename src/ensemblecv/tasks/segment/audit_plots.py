"""Figures of the segmentation audit, as PNG bytes (the classification audit's style and encoder)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# audit.plots selects the headless Agg backend; it must be imported before pyplot.
from ...audit.plots import MAX_TICK_LABELS, _label, _style, to_png  # isort: skip
from ...data.scan import open_for_preview
from ...errors import DataError, ImageLoadError
from .overlay import mask_colors, overlay

import matplotlib.pyplot as plt  # noqa: E402  # isort: skip


def class_pixels_png(classes: list[str], share: np.ndarray, images: np.ndarray) -> bytes:
    """Pixel share (left axis, log) and image count (right axis) per class, in class order."""
    x = np.arange(len(classes))
    with _style():
        fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.35 * len(classes) + 2)), 4.0))
        ax.bar(x - 0.2, np.maximum(share, 1e-6) * 100, width=0.4, label="pixel share (%)")
        ax.set_yscale("log")
        ax.set_ylabel("share of labelled pixels (%)")
        ax2 = ax.twinx()
        ax2.bar(x + 0.2, images, width=0.4, color="#ff7f0e", label="images with it")
        ax2.set_ylabel("images")
        if len(classes) <= MAX_TICK_LABELS:
            ax.set_xticks(x, [_label(c) for c in classes], rotation=60, ha="right")
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(classes)} classes in index order")
        ax.set_title("Pixels and images per class")
        lines = ax.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
        return to_png(fig)


def coverage_png(foreground: np.ndarray, ignored: np.ndarray) -> bytes:
    """Histograms of the per-image share of non-background and of ignored pixels."""
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.4))
        bins = np.linspace(0, 1, 21)
        axes[0].hist(foreground, bins=bins, color="#1f77b4")
        axes[0].set_xlabel("share of the image's pixels that are not background")
        axes[0].set_ylabel("images")
        axes[0].set_title("Mask coverage")
        axes[1].hist(ignored, bins=bins, color="#7f7f7f")
        axes[1].set_xlabel("share of the image's pixels at ignore_index")
        axes[1].set_title("Ignored pixels")
        return to_png(fig)


def pick_grid(presence: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """Up to ``n`` rows: one image per class first (rarest class first), then at random."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    per_class = presence.sum(0)
    for c in np.argsort(per_class, kind="stable"):
        if per_class[c] == 0 or len(chosen) >= n:
            continue
        options = [int(i) for i in np.flatnonzero(presence[:, c]) if int(i) not in chosen]
        if options:
            chosen.append(int(rng.choice(options)))
    rest = [i for i in range(len(presence)) if i not in set(chosen)]
    if rest and len(chosen) < n:
        chosen += [int(i) for i in rng.choice(rest, min(len(rest), n - len(chosen)), replace=False)]
    return chosen


def _tile(data, i: int, cell: int) -> Image.Image:
    canvas = Image.new("RGB", (cell, cell), "white")
    try:
        img = open_for_preview(data.images.at[i, "image_path"], 3)
        mask = data.load_mask(i)
    except (ImageLoadError, DataError):
        return canvas
    if mask.shape != (img.height, img.width):
        return canvas
    blended = Image.fromarray(overlay(np.asarray(img), mask, data.palette, data.ignore_index))
    scale = cell / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # Nearest when enlarging: tiny masks stay crisp and their borders honest.
    blended = blended.resize(
        size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
    )
    canvas.paste(blended, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return canvas


def sample_grid_png(data, n: int = 24, cell: int = 128, seed: int = 0) -> tuple[bytes, list[str]]:
    """Up to ``n`` images with their masks blended in class colours; the PNG and the ids shown."""
    rows_shown = pick_grid(data.presence(), n, seed)
    cols = min(6, max(1, len(rows_shown)))
    rows = max(1, -(-len(rows_shown) // cols))
    pad = 4
    canvas = Image.new("RGB", (cols * (cell + pad), rows * (cell + pad)), (235, 235, 235))
    for k, i in enumerate(rows_shown):
        canvas.paste(_tile(data, i, cell), ((k % cols) * (cell + pad), (k // cols) * (cell + pad)))
    colors = mask_colors(np.arange(256, dtype=np.uint8)[None], data.palette, data.ignore_index)[0]
    present = data.presence()[rows_shown].any(0) if rows_shown else np.zeros(0, bool)
    shown = [c for c in np.flatnonzero(present) if c != 0][:14]  # background is left clear
    with _style():
        scale = (cell + pad) / 80.0
        fig, ax = plt.subplots(figsize=(cols * scale + 0.5, rows * scale + 1.2))
        ax.imshow(np.asarray(canvas), interpolation="nearest")
        ax.set_axis_off()
        handles = [plt.Rectangle((0, 0), 1, 1, fc=colors[c] / 255) for c in shown]
        names = [_label(data.classes[c]) for c in shown]
        handles.append(plt.Rectangle((0, 0), 1, 1, fc=colors[data.ignore_index] / 255))
        names.append(f"ignore ({data.ignore_index})")
        ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.01),
                  ncol=min(6, len(handles)), fontsize=8)  # fmt: skip
        ax.set_title("Sample images with their masks (background left clear)")
        ids = [str(data.images.at[i, "sample_id"]) for i in rows_shown]
        return to_png(fig), ids
