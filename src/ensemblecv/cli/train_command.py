"""``ensemblecv train CONFIG [key=value ...]``: one config over the workspace's folds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..config import load_config
from ..errors import ConfigError
from ._console import console


def _parse_folds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--folds must be comma-separated fold numbers like 0,2; got {text!r}."
        ) from None


def train_command(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    overrides: list[str] | None = typer.Argument(
        None, help="key.sub=value overrides, e.g. train.lr=0.01"
    ),
    folds: str | None = typer.Option(None, help="Only these folds, e.g. 0,2 (default: all)."),
    resume: bool = typer.Option(
        False, help="Continue unfinished folds from their last checkpoint."
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train one model config on every fold; store checkpoints, history and OOF/test probabilities."""
    from ..training import train

    cfg = load_config(config, overrides or [])
    console.print(f"Run [bold]{cfg.run_name}[/] in workspace [bold]{cfg.workspace}[/]")
    try:
        results = train(cfg, folds=_parse_folds(folds), resume=resume, progress=progress)
    except Exception as exc:
        from ..training import NonFiniteLossError

        if isinstance(exc, NonFiniteLossError) or isinstance(exc.__cause__, NonFiniteLossError):
            raise ConfigError(
                f"Training stopped: {exc}. The best checkpoint so far is kept."
            ) from None
        raise
    table = Table(
        "run",
        "fold",
        "status",
        "epochs",
        "best epoch",
        "val loss",
        "val acc",
        "seconds",
        title="Results",
    )

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for r in results:
        table.add_row(
            r.run,
            r.fold,
            r.status,
            str(r.epochs),
            str(r.best_epoch),
            fmt(r.val_loss),
            fmt(r.val_acc),
            f"{r.seconds:.1f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
