"""Report figures as PNG bytes (matplotlib Agg), readable at 10 classes and at 500.

Every function returns the encoded PNG and closes its figure. Sizes and dpi
are kept moderate (a report holds dozens of figures and must open fast); the
HTML carries the exact numbers and the class names as text, so figures may
shorten labels. Only the gallery reads image files, and only those it shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # must precede the pyplot import: reports are built on headless servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from ..audit.plots import _label, _style, to_png  # noqa: E402  (CJK fonts, no glyph warnings)
from ..data.imageio import load_image  # noqa: E402
from ..errors import ImageLoadError  # noqa: E402

DPI = 90
#: The confusion-matrix figure shows at most this many classes (the most confused ones).
MAX_CONFUSION_CLASSES = 30
#: The recall heat-map shows at most this many classes (the hardest ones).
MAX_HEATMAP_CLASSES = 100
_FOLD_COLORS = plt.get_cmap("tab10").colors


def _short(name: str, limit: int = 18) -> str:
    name = str(name)
    return _label(name if len(name) <= limit else name[: limit - 1] + "…")


# ---------------------------------------------------------------- training curves


def training_curves_png(histories: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """Loss and accuracy per epoch; one colour per fold, train dashed, validation solid.

    ``histories`` maps a fold name (``fold_0``, ``full``) to its ``history.csv``
    frame; missing or all-NaN columns are skipped (a refit has no validation).
    """
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(8.0, 2.8))
        for i, (fold, h) in enumerate(histories.items()):
            color = _FOLD_COLORS[i % len(_FOLD_COLORS)]
            epoch = h["epoch"] if "epoch" in h else np.arange(len(h))
            for ax, metric in zip(axes, ("loss", "acc")):
                for split, style in (("train", "--"), ("val", "-")):
                    col = f"{split}_{metric}"
                    if col in h and h[col].notna().any():
                        ax.plot(epoch, h[col], style, color=color, lw=1.3, label=f"{fold} {split}")
        for ax, name in zip(axes, ("loss", "accuracy")):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            axes[1].legend(
                handles, labels, fontsize=7, loc="best", ncol=2 if len(labels) > 6 else 1
            )
        fig.suptitle(_label(title), fontsize=10)
        return to_png(fig, DPI)


# ---------------------------------------------------------------- confusion


def most_confused_classes(confusion: np.ndarray, k: int = MAX_CONFUSION_CLASSES) -> list[int]:
    """Up to ``k`` class indices taken from the largest off-diagonal cells, in class order.

    With at most ``k`` classes that make any error, all classes are returned.
    """
    if len(confusion) <= k and (confusion.sum() - np.trace(confusion)) > 0:
        return list(range(len(confusion)))
    off = confusion.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    chosen: list[int] = []
    for flat in np.argsort(off, axis=None)[::-1]:
        if off.flat[flat] == 0 or len(chosen) >= k:
            break
        for c in np.unravel_index(flat, off.shape):
            if int(c) not in chosen and len(chosen) < k:
                chosen.append(int(c))
    return sorted(chosen)


def confusion_png(confusion: np.ndarray, classes: Sequence[str], shown: Sequence[int]) -> bytes:
    """Row-normalised confusion of the ``shown`` classes (counts written when they fit)."""
    shown = list(shown)
    sub = confusion[np.ix_(shown, shown)].astype(float)
    rows = confusion[shown].sum(1, keepdims=True).astype(float)
    norm = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
    k = len(shown)
    size = min(11.0, max(4.0, 0.34 * k + 2.0))
    with _style():
        fig, ax = plt.subplots(figsize=(size + 1.0, size))
        # The scale follows the off-diagonal cells (the diagonal saturates): confusions of a
        # few percent would otherwise be invisible next to recalls near 1.
        off = norm[~np.eye(k, dtype=bool)]
        vmax = float(off.max()) if off.size and off.max() > 0 else max(float(norm.max()), 1e-9)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=vmax)
        names = [_short(classes[c]) for c in shown]
        ax.set_xticks(np.arange(k), names, rotation=70, ha="right", fontsize=7)
        ax.set_yticks(np.arange(k), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            for i, j in zip(*np.nonzero(sub)):
                white = norm[i, j] > 0.5 * vmax
                ax.text(
                    j,
                    i,
                    int(sub[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if white else "black",
                )
        fig.colorbar(
            im, ax=ax, fraction=0.04, label="share of the true class's row (diagonal clipped)"
        )
        n = len(classes)
        what = f"{k} most confused of {n} classes" if k < n else f"all {n} classes"
        ax.set_title(f"Confusion matrix ({what})", fontsize=10)
        return to_png(fig, DPI)


# ---------------------------------------------------------------- recall heat-map


def recall_heatmap_png(
    recall: np.ndarray,
    models: Sequence[str],
    classes: Sequence[str],
    max_classes: int = MAX_HEATMAP_CLASSES,
) -> bytes:
    """Models × classes recall, classes sorted by mean recall (hardest on the left).

    With more than ``max_classes`` classes only the hardest ``max_classes`` are drawn.
    """
    recall = np.asarray(recall, dtype=float)
    order = np.argsort(np.nanmean(recall, axis=0), kind="stable")[:max_classes]
    sub = recall[:, order]
    m, k = sub.shape
    with _style():
        fig, ax = plt.subplots(figsize=(min(18.0, max(6.0, 0.16 * k + 3.0)), 0.3 * m + 1.8))
        im = ax.imshow(sub, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(np.arange(m), [_short(n, 28) for n in models], fontsize=7)
        ax.set_xticks(
            np.arange(k),
            [_short(classes[c], 14) for c in order],
            rotation=90,
            fontsize=6 if k > 50 else 7,
        )
        fig.colorbar(im, ax=ax, fraction=0.03, label="recall")
        total = recall.shape[1]
        what = f"the {k} hardest of {total} classes" if k < total else f"{total} classes"
        ax.set_title(f"Recall per model and class ({what}, hardest first)", fontsize=10)
        return to_png(fig, DPI)


# ---------------------------------------------------------------- gallery


@dataclass
class GalleryItem:
    path: str
    true: str
    pred: str
    prob: float


def thumbnail(path: str, cell: int = 96) -> np.ndarray:
    """An RGB thumbnail of at most ``cell`` px, or a grey square when the file cannot be read."""
    try:
        img = Image.fromarray(load_image(path, channels=3))
    except ImageLoadError:
        return np.full((cell, cell, 3), 200, dtype=np.uint8)
    img.thumbnail((cell, cell))
    return np.asarray(img)


def gallery_png(items: Sequence[GalleryItem], cols: int = 6, cell: int = 96) -> bytes:
    """A grid of the given images titled ``true → pred (p)``."""
    n = max(1, len(items))
    cols = min(cols, n)
    rows = -(-n // cols)
    with _style():
        fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, item in zip(axes.flat, items):
            ax.imshow(thumbnail(item.path, cell), interpolation="nearest")
            ax.set_title(
                f"{_short(item.true, 12)} → {_short(item.pred, 12)}\n({item.prob:.2f})", fontsize=7
            )
        fig.tight_layout()
        return to_png(fig, DPI)
