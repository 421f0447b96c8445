"""CLI verbs over a trained workspace: ``ensemble`` and ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from ..errors import EnsembleCVError
from ._console import console, progress_bar


def print_leaderboard(board: pd.DataFrame, metric: str, max_rows: int = 25) -> None:
    has_test = "test_accuracy" in board.columns
    cols = ["#", "name", "kind", "members", "accuracy", "balanced_acc", "log_loss"]
    table = Table(
        *cols, *(["test acc"] if has_test else []), title=f"Leaderboard (honest CV, by {metric})"
    )
    for i, r in board.head(max_rows).iterrows():
        members = r["members"] if len(str(r["members"])) < 40 else str(r["members"])[:37] + "..."
        cells = [
            str(i + 1),
            str(r["name"]),
            r["kind"],
            members,
            f"{r['accuracy']:.4f}",
            f"{r['balanced_accuracy']:.4f}",
            f"{r['log_loss']:.4f}",
        ]
        if has_test:
            cells.append("-" if pd.isna(r.get("test_accuracy")) else f"{r['test_accuracy']:.4f}")
        table.add_row(*cells, style="bold" if i == 0 else None)
    console.print(table)


def ensemble(
    workspace: Path = typer.Argument(..., help="Workspace with finished runs."),
    methods: str | None = typer.Option(None, help="Comma-separated methods (default: all)."),
    metric: str = typer.Option("accuracy", help="accuracy | balanced_accuracy | log_loss"),
    runs: str | None = typer.Option(None, help="Only these runs (comma-separated)."),
) -> None:
    """Fit ensembles on out-of-fold predictions; write leaderboard.csv and ensembles/*.yaml.

    On a leave-one-domain-out workspace: in every held-out domain's sub-workspace, then
    the domain table (domains.csv).
    """
    from ..domains import build_lodo_ensembles, is_lodo_workspace, print_domain_table
    from ..ensemble import build_ensembles

    if is_lodo_workspace(workspace):
        frame = build_lodo_ensembles(
            workspace,
            methods=methods.split(",") if methods else None,
            metric=metric,
            runs=runs.split(",") if runs else None,
        )
        print_domain_table(frame, console)
        console.print(
            f"Wrote {workspace / 'domains.csv'}, {workspace / 'leaderboard.csv'} and each "
            f"held-out domain's leaderboard under {workspace / 'domains'}/"
        )
        return

    board = build_ensembles(
        workspace,
        methods=methods.split(",") if methods else None,
        metric=metric,
        runs=runs.split(",") if runs else None,
    )
    print_leaderboard(board, metric)
    console.print(
        f"Wrote {workspace / 'leaderboard.csv'} and {workspace / 'ensembles'}/ (best = {board.loc[0, 'name']})"
    )


def predict_command(
    workspace: Path = typer.Argument(..., help="Workspace with runs and ensembles."),
    data: str = typer.Option(
        ..., "--data", help="Images to predict: folder, CSV or built-in name."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Submission CSV to write."),
    ensemble_name: str = typer.Option(
        "best", "--ensemble", help="best, an ensemble name or a run name."
    ),
    tta: str | None = typer.Option(None, help="Test-time augmentation: hflip"),
    probs: Path | None = typer.Option(None, help="Also write class probabilities (Parquet)."),
) -> None:
    """Predict new images with the best ensemble (or a named one) and write a submission CSV."""
    from ..data.samples import load_samples
    from ..inference import predict

    if out.exists() and out.is_dir():
        raise EnsembleCVError(f"--out {out} is a folder; give a CSV file path.")
    n = len(load_samples(data))
    with progress_bar("scan", n) as advance:
        frame, p, table, classes = predict(
            workspace, data, ensemble_name, tta.split(",") if tta else None, progress=advance
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    if probs is not None:
        pf = pd.DataFrame(p.astype(np.float32), columns=[str(c) for c in classes])
        pf.insert(0, "sample_id", table.frame["sample_id"].to_numpy())
        pf.to_parquet(probs, index=False)
    console.print(f"Wrote {len(frame)} predictions to [bold]{out}[/]")
    if table.labelled:
        truth = table.frame["label"].to_numpy()
        ok = ~np.isnan(p).any(1)
        acc = float((p[ok].argmax(1) == truth[ok]).mean())
        console.print(f"Accuracy on these labelled images: [bold]{acc:.4f}[/]")


def register(app: typer.Typer) -> None:
    app.command("ensemble")(ensemble)
    app.command("predict")(predict_command)
