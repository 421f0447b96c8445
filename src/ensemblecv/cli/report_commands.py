"""CLI verbs that look at results: ``report`` (static HTML) and ``explain`` (Grad-CAM)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import EnsembleCVError
from ._console import console


def report(
    workspace: Path = typer.Argument(..., help="Workspace with finished runs."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder (default WORKSPACE/report)."),
    gradcam: bool = typer.Option(True, help="Grad-CAM of the best run's worst samples."),
    max_gallery: int = typer.Option(24, min=0, help="Wrong images shown in the gallery."),
) -> None:
    """Write one static HTML report: leaderboard, curves, errors, Grad-CAM, audit, configs."""
    from ..tasks import workspace_task

    options = {"gradcam": gradcam, "max_gallery": max_gallery}
    page = workspace_task(workspace).build_report(workspace, out, options)
    console.print(f"Wrote [bold]{page}[/] (figures in {page.parent / 'img'})")


def explain(
    workspace: Path = typer.Argument(..., help="Workspace with the trained run."),
    paths: list[str] | None = typer.Argument(None, help="More images or sample ids."),
    run: str = typer.Option(..., "--run", help="Run whose checkpoints explain the images."),
    images: list[str] | None = typer.Option(
        None, "--images", "-i", help="Image files or workspace sample ids (repeatable)."
    ),
    worst: int = typer.Option(0, min=0, help="Also the run's N most confidently wrong samples."),
    target: str = typer.Option("pred", help="Class to explain: pred, true or a class index."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder (default WORKSPACE/explain/RUN)."
    ),
) -> None:
    """Grad-CAM overlays (input | heat-map) for chosen images and/or a run's worst samples.

    ``--images a.png b.png`` works: values after the first are taken as extra arguments.
    """
    from ..explain import gradcam_overlays, worst_samples

    items = [*(images or []), *(paths or [])]
    if worst:
        items += worst_samples(workspace, run, worst)
    if not items:
        raise EnsembleCVError("Nothing to explain: give --images PATHS... and/or --worst N.")
    folder = out if out is not None else workspace / "explain" / run
    written = gradcam_overlays(
        workspace, run, items, folder, target=int(target) if target.isdigit() else target
    )
    console.print(f"Wrote {len(written)} Grad-CAM overlay(s) to [bold]{folder}[/]")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("explain")(explain)
