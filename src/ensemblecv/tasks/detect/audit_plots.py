"""Figures of the detection audit, as PNG bytes (closed after encoding, like the classification audit's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

# audit.plots selects the headless Agg backend; it must be imported before pyplot.
from ...audit.plots import MAX_TICK_LABELS, _label, _style, to_png  # isort: skip
from ...data.scan import open_for_preview
from ...errors import ImageLoadError

import matplotlib.pyplot as plt  # noqa: E402  # isort: skip

#: COCO's box-size boundaries: area below 32² is small, below 96² medium.
SMALL, MEDIUM = 32**2, 96**2
_PALETTE = [
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
    (166, 86, 40), (247, 129, 191), (0, 190, 190), (200, 200, 0), (90, 90, 90),
]  # fmt: skip


def color(label: int) -> tuple[int, int, int]:
    return _PALETTE[int(label) % len(_PALETTE)]


def class_bars_png(boxes_per_class: dict[str, int], images_per_class: dict[str, int]) -> bytes:
    """Boxes and images per class side by side, classes sorted by box count."""
    names = sorted(boxes_per_class, key=lambda c: (-boxes_per_class[c], c))
    x = np.arange(len(names))
    with _style():
        fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.3 * len(names) + 2)), 4.0))
        ax.bar(x - 0.2, [boxes_per_class[c] for c in names], width=0.4, label="boxes")
        ax.bar(x + 0.2, [images_per_class[c] for c in names], width=0.4, label="images with it")
        if len(names) <= MAX_TICK_LABELS:
            ax.set_xticks(x, [_label(c) for c in names], rotation=60, ha="right")
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(names)} classes, sorted by box count")
        ax.set_title("Boxes and images per class")
        ax.legend(loc="upper right")
        return to_png(fig)


def boxes_per_image_png(counts: np.ndarray) -> bytes:
    counts = np.asarray(counts, dtype=np.int64)
    with _style():
        fig, ax = plt.subplots(figsize=(6.0, 3.5))
        top = int(counts.max()) if len(counts) else 0
        ax.hist(
            counts,
            bins=np.arange(-0.5, top + 1.5, 1 if top < 60 else max(1, top // 60)),
            color="#1f77b4",
        )
        ax.set_xlabel("boxes in the image (0 = background image)")
        ax.set_ylabel("images")
        ax.set_title("Boxes per image")
        return to_png(fig)


def _ratio_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks at powers of two of width/height, labelled as ratios ("1:2", "1:1", "2:1")."""
    ticks = list(range(int(np.floor(lo)), int(np.ceil(hi)) + 1))
    labels = [f"1:{2**-t:g}" if t < 0 else f"{2**t:g}:1" for t in ticks]
    return ticks, labels


def box_sizes_png(widths: np.ndarray, heights: np.ndarray) -> bytes:
    """Histograms of box size, sqrt(area), with COCO's small/medium/large limits, and of aspect ratio.

    Both are binned on log2 values and drawn on linear axes with hand-made
    ticks: matplotlib's log axes cost seconds per figure in minor-tick labels.
    """
    w, h = np.asarray(widths, float), np.asarray(heights, float)
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.6))
        if len(w):
            side = np.log2(np.maximum(np.sqrt(w * h), 0.5))
            lo, hi = min(side.min(), 4.0), max(side.max(), 7.0)  # always show the 16..128 px span
            axes[0].hist(side, bins=np.linspace(lo, hi, 41), color="#2ca02c")
            ticks = list(range(int(np.floor(lo)), int(np.ceil(hi)) + 1))
            axes[0].set_xticks(ticks, [f"{2**t:g}" for t in ticks])
            for edge, name in ((32, " small | medium"), (96, " medium | large")):
                axes[0].axvline(np.log2(edge), color="black", ls="--", lw=1)
                axes[0].annotate(
                    name,
                    (np.log2(edge), 0.97),
                    xycoords=("data", "axes fraction"),
                    fontsize=8,
                    va="top",
                )
            ratio = np.log2(w / np.where(h > 0, h, 1.0))
            rlo, rhi = min(ratio.min(), -1.0), max(ratio.max(), 1.0)
            axes[1].hist(ratio, bins=np.linspace(rlo, rhi, 41), color="#ff7f0e")
            axes[1].set_xticks(*_ratio_ticks(rlo, rhi))
            axes[1].axvline(0.0, color="black", ls="--", lw=1)
        axes[0].set_xlabel("box size: sqrt(width × height), px (log scale)")
        axes[0].set_ylabel("boxes")
        axes[0].set_title("Box sizes (COCO small < 32², medium < 96²)")
        axes[1].set_xlabel("box aspect ratio, width : height (log scale)")
        axes[1].set_title("Box aspect ratios")
        return to_png(fig)


def _tile(path: str, boxes: pd.DataFrame, cell: int) -> Image.Image:
    canvas = Image.new("RGB", (cell, cell), "white")
    try:
        img = open_for_preview(path, 3)
    except ImageLoadError:
        return canvas
    scale = cell / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    ox, oy = (cell - img.width) // 2, (cell - img.height) // 2
    canvas.paste(img, (ox, oy))
    draw = ImageDraw.Draw(canvas)
    for b in boxes.itertuples(index=False):
        xy = [ox + b.x1 * scale, oy + b.y1 * scale, ox + b.x2 * scale - 1, oy + b.y2 * scale - 1]
        draw.rectangle(xy, outline=color(b.label), width=2 if cell >= 96 else 1)
    return canvas


def sample_grid_png(
    images: pd.DataFrame,
    boxes: pd.DataFrame,
    classes: list[str],
    n: int = 24,
    cell: int = 128,
    seed: int = 0,
) -> tuple[bytes, list[str]]:
    """Up to ``n`` images with their boxes drawn in class colours; returns the PNG and the ids shown.

    Images are picked so every class is shown when it can be (one image per
    class first, rarest first), then at random; a background image is included
    when there is one, because those are worth a look too.
    """
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    by_class = (
        boxes.groupby("label")["sample_id"].unique() if len(boxes) else pd.Series(dtype=object)
    )
    for label in sorted(by_class.index, key=lambda c: len(by_class[c])):
        options = [s for s in by_class[label] if s not in chosen]
        if options and len(chosen) < n:
            chosen.append(str(rng.choice(options)))
    background = sorted(set(images["sample_id"]) - set(boxes["sample_id"]))
    if background and len(chosen) < n:
        chosen.append(str(rng.choice(background)))
    rest = [s for s in images["sample_id"] if s not in set(chosen)]
    if rest and len(chosen) < n:
        chosen += [str(s) for s in rng.choice(rest, min(len(rest), n - len(chosen)), replace=False)]
    path_of = dict(zip(images["sample_id"], images["path"]))
    by_image = dict(tuple(boxes.groupby("sample_id"))) if len(boxes) else {}
    empty = boxes.iloc[:0]
    cols = min(6, max(1, len(chosen)))
    rows = max(1, -(-len(chosen) // cols))
    pad = 4
    canvas = Image.new("RGB", (cols * (cell + pad), rows * (cell + pad)), (235, 235, 235))
    for i, sid in enumerate(chosen):
        tile = _tile(path_of[sid], by_image.get(sid, empty), cell)
        canvas.paste(tile, ((i % cols) * (cell + pad), (i // cols) * (cell + pad)))
    with _style():
        scale = (cell + pad) / 80.0
        fig, ax = plt.subplots(figsize=(cols * scale + 0.5, rows * scale + 1.2))
        ax.imshow(np.asarray(canvas), interpolation="nearest")
        ax.set_axis_off()
        shown = sorted({int(b) for b in boxes.loc[boxes["sample_id"].isin(chosen), "label"]})[:12]
        handles = [plt.Rectangle((0, 0), 1, 1, fc=np.array(color(c)) / 255) for c in shown]
        if handles:
            ax.legend(handles, [_label(classes[c]) for c in shown], loc="upper center",
                      bbox_to_anchor=(0.5, -0.01), ncol=min(6, len(handles)), fontsize=8)  # fmt: skip
        ax.set_title("Sample images with their boxes")
        return to_png(fig), chosen
