"""``ensemblecv demo``: the README's main command, offline, on a built-in dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console


def demo(
    workspace: Path = typer.Option(
        Path("runs/demo"), "--workspace", "-w", help="Where everything is written."
    ),
    fast: bool = typer.Option(
        False,
        help="5,000 training images, 2,000 test images, 4 epochs (about 3.5 minutes on 2 CPU cores).",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Audit, train three small models × 3 folds, ensemble them and predict the test set, offline."""
    from ..demo import run_demo

    run_demo(workspace, fast=fast, console=console, progress=progress)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
