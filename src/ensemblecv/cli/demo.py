"""``ensemblecv demo``: the README's main command, offline, on a built-in dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console


def demo(
    workspace: Path | None = typer.Option(
        None, "--workspace", "-w", help="Where everything is written (default runs/demo[-TASK])."
    ),
    fast: bool = typer.Option(
        False,
        help="classify: 5,000 training images, 2,000 test images, 4 epochs (about 3.5 minutes "
        "on 2 CPU cores); domains: 150 images per domain, 2 folds, 4 epochs (about 4.3 CPU-minutes); "
        "segment: 120 training images, 8 epochs.",
    ),
    task: str = typer.Option(
        "classify",
        "--task",
        help="classify (audit, 3 models, ensembles, predict) | domains (leave-one-domain-out: "
        "ERM vs MixStyle vs weight averaging vs the ensemble of averages) | segment (shapes and "
        "digits, 3 segmenters, map ensembles, test mIoU).",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Run a task's end-to-end demo offline on a built-in dataset (default: classification)."""
    from ..demo import list_demo_tasks, run_task_demo
    from ..errors import ConfigError

    if task not in list_demo_tasks():
        raise ConfigError(
            f"Unknown demo --task {task!r}; choose one of {', '.join(list_demo_tasks())}."
        )
    if workspace is None:
        workspace = Path("runs/demo" if task == "classify" else f"runs/demo-{task}")
    run_task_demo(task, workspace, fast=fast, console=console, progress=progress)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
