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
        help="classify: 5,000 training images, two seeds of resnet9_small, 8 epochs, the "
        "10,000 test images (4.5 minutes on 2 idle CPU cores); domains: 150 images per "
        "domain, 2 folds, 4 epochs (about 4.3 CPU-minutes); detect: 240 images, 6 epochs; "
        "segment: 120 training images at 32 px, 8 epochs (3.6 minutes).",
    ),
    task: str = typer.Option(
        "classify",
        "--task",
        help="classify (audit, small CNNs over 3 folds, ensembles, predict) | domains "
        "(leave-one-domain-out: ERM vs MixStyle vs weight averaging vs the ensemble of averages) | detect (digits on "
        "texture, 2 detectors, box ensembles, test mAP) | segment (shapes and digits, 3 "
        "segmenters, map ensembles, test mIoU).",
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
