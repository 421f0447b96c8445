"""``ensemblecv augment-preview``: draw originals next to augmented samples (boxes for detection)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console


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
    from ..config import load_config
    from ..tasks import get_task, resolve_config

    cfg = resolve_config(load_config(config, overrides or []))
    where = get_task(cfg.task).augment_preview(
        cfg, out, n, n_aug, seed, note=lambda msg: console.print(f"[yellow]note:[/] {msg}")
    )
    console.print(f"Wrote [bold]{where}[/]")


def register(app: typer.Typer) -> None:
    app.command("augment-preview")(augment_preview)
