"""Audit figures as PNG bytes, readable at 10 classes and at 500.

Every function returns the encoded PNG and closes its figure, so a long audit
(or a test suite) never accumulates open matplotlib figures. Only the sample
grid touches image files, and only the few it shows.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # must precede the pyplot import: audits run on headless servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from PIL import Image  # noqa: E402

from ..data.samples import SampleTable  # noqa: E402
from ..data.scan import open_for_preview  # noqa: E402
from ..errors import ImageLoadError  # noqa: E402

#: Above this many classes the bar chart drops its tick labels (the table has the names).
MAX_TICK_LABELS = 60
#: Scatter plots of 100k points are slow and unreadable; a random sample shows the same.
MAX_SCATTER_POINTS = 20_000
#: Grid rows beyond this make the page unreadable; the smallest classes are shown.
MAX_GRID_CLASSES = 30
#: Fonts with Hangul/CJK glyphs, used as fallbacks when installed (class names are often Korean).
_CJK_FONTS = (
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "NanumGothic",
    "Malgun Gothic",
    "AppleGothic",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "WenQuanYi Zen Hei",
)
_DPI = 100


@dataclass
class GridSelection:
    """Which samples the sample grid shows: ``rows`` are (row label, paths)."""

    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    note: str = ""

    @property
    def classes(self) -> list[str]:
        return [label for label, _ in self.rows]

    @property
    def n_images(self) -> int:
        return sum(len(paths) for _, paths in self.rows)


@contextmanager
def _style():
    """Plot settings for one figure: CJK fallback fonts if present, no glyph warnings."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    family = ["DejaVu Sans", *[f for f in _CJK_FONTS if f in installed]]
    with plt.rc_context({"font.family": family, "font.size": 9}), warnings.catch_warnings():
        # Without a CJK font, Hangul renders as boxes; the HTML lists the names as text.
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing from.*")
        yield


def _label(text: str) -> str:
    """Class names go through mathtext otherwise: 'a$b$' would be typeset (or crash)."""
    return str(text).replace("$", r"\$")


def to_png(fig, dpi: int = _DPI) -> bytes:
    """The figure as PNG bytes (closed afterwards, so long runs do not pile up figures)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def class_counts_png(
    counts: dict[str, int], small: Sequence[str] = (), min_per_class: int | None = None
) -> bytes:
    """Bar chart of images per class, sorted descending, with the mean (and K) marked.

    Classes in ``small`` (too few usable images for K-fold) are drawn in red.
    """
    small = set(small)
    names = sorted(counts, key=lambda c: (-counts[c], c))
    values = np.array([counts[c] for c in names], dtype=float)
    n = len(names)
    with _style():
        fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.25 * n + 2)), 4.0))
        colors = ["#d62728" if c in small else "#1f77b4" for c in names]
        ax.bar(np.arange(n), values, color=colors, width=0.85 if n < 200 else 1.0)
        if n:
            ax.axhline(
                values.mean(), color="black", ls="--", lw=1, label=f"mean {values.mean():.1f}"
            )
        if min_per_class and n:
            ax.axhline(
                min_per_class,
                color="#d62728",
                ls=":",
                lw=1,
                label=f"K = {min_per_class} (fewer fails K-fold)",
            )
        if n <= MAX_TICK_LABELS:
            ax.set_xticks(np.arange(n), [_label(c) for c in names], rotation=60, ha="right")
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{n} classes, sorted by count (names in the table below)")
        ax.set_ylabel("images")
        ax.set_xlim(-0.6, max(n, 1) - 0.4)
        ax.set_title("Images per class")
        if n:
            ax.legend(loc="upper right")
        return to_png(fig)


def size_scatter_png(widths: np.ndarray, heights: np.ndarray, seed: int = 0) -> bytes:
    """Width vs height, a random sample of at most ``MAX_SCATTER_POINTS`` images."""
    widths, heights = np.asarray(widths, float), np.asarray(heights, float)
    n = len(widths)
    if n > MAX_SCATTER_POINTS:
        pick = np.random.default_rng(seed).choice(n, MAX_SCATTER_POINTS, replace=False)
        widths, heights = widths[pick], heights[pick]
    with _style():
        fig, ax = plt.subplots(figsize=(5.5, 5.0))
        ax.scatter(widths, heights, s=6, alpha=0.25 if n > 500 else 0.7, edgecolors="none")
        if n:
            top = max(widths.max(), heights.max()) * 1.05
            ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":", label="square")
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
            ax.legend(loc="lower right")
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        shown = f" (random {len(widths)} of {n})" if n > MAX_SCATTER_POINTS else ""
        ax.set_title(f"Image sizes{shown}")
        return to_png(fig)


def aspect_ratio_png(ratios: np.ndarray) -> bytes:
    """Histogram of width/height on a log axis, so 1:2 and 2:1 are equally far from square."""
    ratios = np.asarray(ratios, float)
    with _style():
        fig, ax = plt.subplots(figsize=(6.0, 3.5))
        if len(ratios):
            lo, hi = ratios.min(), ratios.max()
            if np.isclose(lo, hi):
                lo, hi = lo / 1.1, hi * 1.1
            ax.hist(ratios, bins=np.geomspace(lo, hi, 41), color="#1f77b4")
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", ls="--", lw=1, label="square")
            ax.legend(loc="upper right")
        ax.set_xlabel("aspect ratio (width / height)")
        ax.set_ylabel("images")
        ax.set_title("Aspect ratio")
        return to_png(fig)


def brightness_contrast_png(brightness: np.ndarray, contrast: np.ndarray) -> bytes:
    """Side-by-side histograms of per-image mean grey level and grey-level std (0..1)."""
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.5))
        for ax, values, title in (
            (axes[0], brightness, "Brightness (mean grey level)"),
            (axes[1], contrast, "Contrast (grey-level std)"),
        ):
            values = np.asarray(values, float)
            if len(values):
                ax.hist(
                    values, bins=50, range=(0.0, max(1.0, float(values.max()))), color="#2ca02c"
                )
            ax.set_title(title)
            ax.set_xlabel("0 = black, 1 = white" if "Bright" in title else "0 = uniform")
            ax.set_ylabel("images")
        return to_png(fig)


def select_grid_samples(
    table: SampleTable,
    ok: np.ndarray,
    per_class: int = 8,
    max_classes: int = MAX_GRID_CLASSES,
    seed: int = 0,
) -> GridSelection:
    """Pick up to ``per_class`` decodable samples per class for the grid.

    With more than ``max_classes`` classes the smallest ones are shown: large
    classes are rarely where the surprises are, and a 500-row grid is unreadable.
    The choice is random but seeded, so the same audit shows the same images.
    """
    rng = np.random.default_rng(seed)
    frame = table.frame
    labels = frame["label"].to_numpy()
    paths = frame["path"].to_numpy()
    if not table.classes:
        idx = np.flatnonzero(ok)
        pick = np.sort(rng.choice(idx, min(len(idx), per_class * 4), replace=False))
        rows = [
            ("(unlabelled)", [str(p) for p in paths[pick[i : i + per_class]]])
            for i in range(0, len(pick), per_class)
        ]
        return GridSelection(rows, f"{len(pick)} random images of {len(idx)} (unlabelled data).")
    usable = np.bincount(labels[ok & (labels >= 0)], minlength=len(table.classes))
    order = list(range(len(table.classes)))
    note = f"All {len(order)} classes shown."
    if len(order) > max_classes:
        order = sorted(order, key=lambda c: (usable[c], c))[:max_classes]
        order.sort()  # smallest classes chosen, shown in class order
        note = (
            f"Showing the {max_classes} smallest of {len(table.classes)} classes "
            f"(by usable images): " + ", ".join(table.classes[c] for c in order) + "."
        )
    rows = []
    for c in order:
        idx = np.flatnonzero(ok & (labels == c))
        pick = np.sort(rng.choice(idx, min(len(idx), per_class), replace=False))
        rows.append((table.classes[c], [str(p) for p in paths[pick]]))
    return GridSelection(rows, note + f" Up to {per_class} random images per class.")


def _thumbnail(path: str, cell: int) -> Image.Image:
    """One grid cell: the image scaled to fit ``cell``×``cell``, letterboxed on white."""
    canvas = Image.new("RGB", (cell, cell), "white")
    try:
        img = open_for_preview(path, 3)
    except ImageLoadError:
        return canvas  # changed on disk since the scan; an empty cell, not a crash
    scale = cell / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # Small images (28×28 digits) are enlarged with hard pixel edges, large ones smoothed.
    img = img.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    canvas.paste(img, ((cell - img.width) // 2, (cell - img.height) // 2))
    return canvas


def sample_grid_png(selection: GridSelection, per_class: int, cell: int = 64) -> bytes:
    """One row per class with its name as the row label.

    The thumbnails are pasted into one canvas and drawn by a single ``imshow`` —
    hundreds of matplotlib axes would be slow — and only the selected files are
    opened.
    """
    n_rows = max(len(selection.rows), 1)
    n_cols = max(per_class, max((len(p) for _, p in selection.rows), default=1), 1)
    pad = 4
    canvas = Image.new("RGB", (n_cols * (cell + pad), n_rows * (cell + pad)), (235, 235, 235))
    for r, (_, paths) in enumerate(selection.rows):
        for c, path in enumerate(paths):
            canvas.paste(_thumbnail(path, cell), (c * (cell + pad), r * (cell + pad)))
    with _style():
        scale = (cell + pad) / 60.0
        fig, ax = plt.subplots(figsize=(n_cols * scale + 2.5, n_rows * scale + 0.6))
        ax.imshow(np.asarray(canvas), interpolation="nearest")
        ax.set_yticks(
            [r * (cell + pad) + cell / 2 for r in range(len(selection.rows))],
            [_label(_short(name)) for name in selection.classes],
        )
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title("Sample images per class")
        return to_png(fig)


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def all_plots(
    audit: dict,
    widths: Sequence[float],
    heights: Sequence[float],
    brightness: Sequence[float],
    contrast: Sequence[float],
) -> dict[str, bytes]:
    """Every figure except the sample grid, keyed by the name used in the HTML and plots/."""
    w, h = np.asarray(widths, float), np.asarray(heights, float)
    out = {
        "size_scatter": size_scatter_png(w, h),
        "aspect_ratio": aspect_ratio_png(w / np.where(h > 0, h, 1.0)),
        "brightness_contrast": brightness_contrast_png(
            np.asarray(brightness), np.asarray(contrast)
        ),
    }
    if audit["classes"]:
        out = {
            "class_counts": class_counts_png(
                audit["class_counts"], audit["small_classes"], audit["min_per_class"]
            ),
            **out,
        }
    return out
