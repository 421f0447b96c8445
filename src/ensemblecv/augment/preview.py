"""A PNG grid of originals next to their augmentations, to eyeball a config.

Seeing the augmented images is the cheapest check that an op list is sane
(a rotation too wide for digits, dropout that erases the whole sketch) before
hours of training. Each row is one image: the resized original, then
``n_aug`` augmented versions, drawn from the tensors the model would receive
(de-normalised), so normalisation mistakes show up too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import AugmentConfig, DataConfig
from ..data.imageio import load_image
from ..errors import DataError
from .pipeline import build_transforms


def _display(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised (C, H, W) tensor → (H, W) or (H, W, 3) floats in [0, 1]."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    img = (x * s + m).clamp_(0, 1).permute(1, 2, 0).numpy()
    return img[:, :, 0] if img.shape[2] == 1 else img


def preview_grid(
    table_paths: Sequence[str],
    data_cfg: DataConfig,
    augment_cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    out: Path,
    n_images: int = 8,
    n_aug: int = 5,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write the grid for the first ``n_images`` of ``table_paths`` to ``out`` (PNG).

    ``labels`` (optional, aligned with ``table_paths``) titles each row;
    augmentation ``j`` of image ``i`` uses seed ``seed + i * n_aug + j``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    paths = list(table_paths)[:n_images]
    if not paths:
        raise DataError("No images to preview.")
    train_tf, eval_tf = build_transforms(data_cfg, augment_cfg, mean, std)
    cmap = "gray" if data_cfg.channels == 1 else None
    cols = 1 + n_aug
    fig = Figure(figsize=(1.5 * cols, 1.6 * len(paths)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(paths), cols, squeeze=False))
    for i, path in enumerate(paths):
        image = load_image(path, data_cfg.channels)
        tiles = [eval_tf(image)] + [
            train_tf(image, seed=seed + i * n_aug + j) for j in range(n_aug)
        ]
        for j, (ax, tile) in enumerate(zip(axes[i], tiles, strict=True)):
            ax.imshow(_display(tile, mean, std), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"aug {j}", fontsize=9)
        row = labels[i] if labels is not None else Path(str(path)).name
        axes[i][0].set_ylabel(str(row)[:18], fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def pick_samples(table, n: int, seed: int = 0) -> list[int]:
    """Row indices of ``n`` samples: one per class first (in class order), then at random."""
    if len(table) == 0:
        raise DataError(f"{table.source} has no samples to preview.")
    order = np.random.default_rng(seed).permutation(len(table))
    labels = table.frame["label"].to_numpy()[order]
    _, first = np.unique(labels, return_index=True)
    firsts = [int(order[i]) for i in sorted(first, key=lambda i: labels[i])]
    chosen = firsts[:n]
    taken = set(chosen)
    rest = [int(i) for i in order if int(i) not in taken]
    return chosen + rest[: n - len(chosen)]


def stats_from_images(paths: list[str], channels: int) -> dict:
    """Mean/std of a handful of images: only for display, where it cancels out."""
    pixels = np.concatenate([load_image(p, channels).reshape(-1, channels) / 255.0 for p in paths])
    entry = {"mean": pixels.mean(0).tolist(), "std": np.maximum(pixels.std(0), 1e-3).tolist()}
    return {"gray" if channels == 1 else "rgb": entry}


def preview_normalization(
    cfg, paths: list[str], channels: int, note: Callable[[str], None] | None = None
) -> tuple[tuple, tuple]:
    """The config's mean/std; ``dataset`` without a workspace uses the previewed images'."""
    from ..workspace import Workspace
    from .pipeline import resolve_normalization

    stats = None
    if cfg.data.normalize == "dataset":
        ws = Workspace(Path(cfg.workspace))
        if ws.stats_path.is_file():
            stats = ws.normalization()
        else:
            if note is not None:
                note(
                    f"no {ws.stats_path}; normalising with the preview images' own mean/std "
                    "(display only — training uses the workspace's)."
                )
            stats = stats_from_images(paths, channels)
    return resolve_normalization(cfg.data.normalize, channels, stats)


def preview_for_config(
    cfg, out: Path, n: int = 8, n_aug: int = 5, seed: int = 0, note=None
) -> Path:
    """Classification preview of ``cfg``: ``n`` images (one per class first), ``n_aug`` each."""
    from ..data.samples import load_samples

    table = load_samples(cfg.data.train)
    rows = pick_samples(table, n, seed)
    frame = table.frame.iloc[rows]
    paths = frame["path"].astype(str).tolist()
    mean, std = preview_normalization(cfg, paths, cfg.data.channels, note)
    return preview_grid(
        paths,
        cfg.data,
        cfg.augment,
        mean,
        std,
        out,
        n_images=len(paths),
        n_aug=n_aug,
        seed=seed,
        labels=frame["class_name"].astype(str).tolist(),
    )
