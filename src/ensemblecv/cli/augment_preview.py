"""``ensemblecv augment-preview``: draw originals next to augmented samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from ..config import load_config
from ..data.imageio import load_image
from ..data.samples import SampleTable, load_samples
from ..errors import DataError
from ._console import console


def pick_samples(table: SampleTable, n: int, seed: int = 0) -> list[int]:
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


def _stats_from_images(paths: list[str], channels: int) -> dict:
    """Mean/std of a handful of images: only for display, where it cancels out."""
    pixels = np.concatenate([load_image(p, channels).reshape(-1, channels) / 255.0 for p in paths])
    entry = {"mean": pixels.mean(0).tolist(), "std": np.maximum(pixels.std(0), 1e-3).tolist()}
    return {"gray" if channels == 1 else "rgb": entry}


def _normalization(cfg, paths: list[str]) -> tuple[tuple, tuple]:
    from ..augment import resolve_normalization
    from ..workspace import Workspace

    stats = None
    if cfg.data.normalize == "dataset":
        ws = Workspace(Path(cfg.workspace))
        if ws.stats_path.is_file():
            stats = ws.normalization()
        else:
            console.print(
                f"[yellow]note:[/] no {ws.stats_path}; normalising with the preview images' "
                "own mean/std (display only — training uses the workspace's)."
            )
            stats = _stats_from_images(paths, cfg.data.channels)
    return resolve_normalization(cfg.data.normalize, cfg.data.channels, stats)


def augment_preview(
    config: Path = typer.Argument(..., help="Experiment config (YAML)."),
    overrides: list[str] = typer.Argument(
        None, help="key.sub=value overrides, e.g. augment.preset=strong."
    ),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="PNG file to write."),
    n: int = typer.Option(8, "--n", "-n", min=1, help="Images (rows); one per class first."),
    n_aug: int = typer.Option(5, "--n-aug", min=1, help="Augmented versions per image (columns)."),
    seed: int = typer.Option(0, help="Seed for the choice of images and their augmentations."),
) -> None:
    """Draw each chosen image next to augmented versions, as the model would see them."""
    from ..augment import preview_grid
    from ..models import resolve_inputs

    cfg = resolve_inputs(load_config(config, overrides or []))
    table = load_samples(cfg.data.train)
    rows = pick_samples(table, n, seed)
    frame = table.frame.iloc[rows]
    paths = frame["path"].astype(str).tolist()
    mean, std = _normalization(cfg, paths)
    where = preview_grid(
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
    console.print(f"Wrote [bold]{where}[/]")


def register(app: typer.Typer) -> None:
    app.command("augment-preview")(augment_preview)
