"""CLI verbs over a trained workspace: ``ensemble`` and ``predict``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, progress_bar


def ensemble(
    workspace: Path = typer.Argument(..., help="Workspace with finished runs."),
    methods: str | None = typer.Option(None, help="Comma-separated methods (default: all)."),
    metric: str | None = typer.Option(
        None, help="Ranking metric (classification: accuracy | balanced_accuracy | log_loss)."
    ),
    runs: str | None = typer.Option(None, help="Only these runs (comma-separated)."),
) -> None:
    """Fit ensembles on out-of-fold predictions; write leaderboard.csv and ensembles/*.yaml.

    On a leave-one-domain-out workspace: in every held-out domain's sub-workspace, then
    the domain table (domains.csv).
    """
    from .._tables import print_leaderboard
    from ..domains import build_lodo_ensembles, is_lodo_workspace, print_domain_table
    from ..tasks import workspace_task

    if is_lodo_workspace(workspace):
        frame = build_lodo_ensembles(
            workspace,
            methods=methods.split(",") if methods else None,
            metric=metric or "accuracy",
            runs=runs.split(",") if runs else None,
        )
        print_domain_table(frame, console)
        console.print(
            f"Wrote {workspace / 'domains.csv'}, {workspace / 'leaderboard.csv'} and each "
            f"held-out domain's leaderboard under {workspace / 'domains'}/"
        )
        return

    task = workspace_task(workspace)
    board = task.build_ensembles(
        workspace,
        methods.split(",") if methods else None,
        metric,
        runs.split(",") if runs else None,
    )
    print_leaderboard(task.leaderboard_view(board), metric, console)
    console.print(
        f"Wrote {workspace / 'leaderboard.csv'} and {workspace / 'ensembles'}/ (best = {board.loc[0, 'name']})"
    )


def predict_command(
    workspace: Path = typer.Argument(..., help="Workspace with runs and ensembles."),
    data: str = typer.Option(
        ..., "--data", help="Images to predict: folder, CSV or built-in name."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Where to write (classification: a submission CSV)."
    ),
    ensemble_name: str = typer.Option(
        "best", "--ensemble", help="best, an ensemble name or a run name."
    ),
    tta: str | None = typer.Option(None, help="Test-time augmentation: hflip"),
    probs: Path | None = typer.Option(None, help="Also write class probabilities (Parquet)."),
    format: str | None = typer.Option(
        None, "--format", help="Output format where a task has several (default: from --out)."
    ),
) -> None:
    """Predict new images with the best ensemble (or a named one) and write them to --out."""
    from ..tasks import workspace_task

    options = {"tta": tta, "probs": probs, "format": format}
    task = workspace_task(workspace)
    for line in task.predict(workspace, data, out, ensemble_name, options, progress_bar):
        console.print(line)


def register(app: typer.Typer) -> None:
    app.command("ensemble")(ensemble)
    app.command("predict")(predict_command)
