"""``ensemblecv demo``: the README's main command, offline, on a built-in dataset.

Until the training chain lands it audits the dataset, writes the workspace's
fold table and says what comes next.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..data import builtin
from ..data.samples import load_samples
from ..data.scan import scan_table
from ..workspace import prepare_workspace
from ._console import console, progress_bar


def demo_dataset() -> str:
    """Fashion-MNIST when its files are installed, else scikit-learn's digits."""
    return "fashion-mnist" if builtin.fashion_mnist_available() else "digits"


def demo(
    workspace: Path = typer.Option(
        Path("runs/demo"), "--workspace", "-w", help="Where everything is written."
    ),
    fast: bool = typer.Option(False, help="Use a 6,000-image subset (finishes in about a minute)."),
    folds: int = typer.Option(3, min=2, help="Cross-validation folds."),
) -> None:
    """Run the whole chain on a built-in dataset, offline."""
    from ..audit import run_audit, summarize

    name = demo_dataset()
    console.rule(f"[bold]ensemblecv demo[/] on {name}")
    if name == "digits":
        console.print(
            "[yellow]Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); using digits."
        )
    table = load_samples(name)
    if fast and len(table) > 6000:
        from ..data.export import balanced_subset

        keep = balanced_subset(table.frame["label"].to_numpy(), 6000)
        mask = table.frame.index.isin(keep)
        table = table.subset(mask)
    with progress_bar("scan", len(table)) as advance:
        scan = scan_table(table, progress=advance)
    result = run_audit(scan, workspace / "audit", progress=False, console=console)
    summarize(result.audit, console)
    ws = prepare_workspace(workspace, table, folds=folds, scan=scan)
    console.print(f"Workspace ready: [bold]{ws.root}[/] ({len(table)} samples, {folds} folds).")
    console.print(
        "Next: train models on these folds and ensemble them "
        "(`ensemblecv train`, `ensemblecv ensemble` — arriving with the training engine)."
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
