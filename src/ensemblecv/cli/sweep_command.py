"""``ensemblecv sweep CONFIG --space SPACE.yaml --trials N``: an Optuna study of runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ._console import console
from .train_command import _parse_folds, split_args


def sweep_command(
    args: list[str] = typer.Argument(
        ..., metavar="CONFIG [KEY=VALUE...]", help="Base experiment YAML and overrides."
    ),
    space: Path = typer.Option(
        ..., help="Search space YAML: dotted.key: {low, high[, log]} or [choices]."
    ),
    trials: int = typer.Option(
        ..., help="Finished trials the study should hold (a re-run resumes)."
    ),
    storage: str | None = typer.Option(
        None,
        help="Optuna storage URL (default sqlite:///WORKSPACE/optuna.db, or $ENSEMBLECV_OPTUNA_STORAGE); "
        "postgresql://user@host/db for many workers.",
    ),
    study: str | None = typer.Option(
        None, help="Study name (default: the run name); trials are runs NAME_tNNN."
    ),
    metric: str = typer.Option(
        "accuracy", help="Objective on OOF predictions: accuracy or log_loss."
    ),
    folds: str | None = typer.Option(
        None, help="Train trials on these folds only (faster; trials then do not enter ensembles)."
    ),
    prune: bool = typer.Option(True, help="Stop poor trials early (median of fold 0's val_loss)."),
    launcher: str = typer.Option("local", help="local, or ray: --parallel trials at once."),
    parallel: int = typer.Option(2, help="Trials at once with --launcher ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (auto, ray://HOST:10001)."),
    cpus_per_job: float = typer.Option(1.0, help="CPUs per parallel trial (Ray)."),
    gpus_per_job: float = typer.Option(0.0, help="GPUs per parallel trial (Ray)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Tune a config with Optuna (TPE + pruning); every trial is a normal run the ensembles can use."""
    from ..config import load_config
    from ..launch.sweep import load_space, run_sweep

    paths, overrides = split_args(args)
    if len(paths) != 1:
        raise typer.BadParameter("sweep takes exactly one config file.")
    cfg = load_config(paths[0], overrides)
    result = run_sweep(
        cfg,
        load_space(space),
        trials,
        storage=storage,
        study_name=study,
        metric=metric,
        folds=_parse_folds(folds),
        prune=prune,
        launcher=launcher,
        parallel=parallel,
        address=address,
        cpus_per_job=cpus_per_job,
        gpus_per_job=gpus_per_job,
        progress=progress,
    )
    table = Table("trial", "state", metric, "run", "params", title=f"Study {result.study_name}")
    for t in sorted(result.trials, key=lambda t: t.number):
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        value = "-" if t.value is None else f"{t.value:.4f}"
        table.add_row(str(t.number), t.state.name, value, t.user_attrs.get("run", "-"), params)
    console.print(table)
    try:
        best = result.best_trial
        console.print(
            f"Best: trial {best.number} ({best.user_attrs.get('run')}) {metric} = {best.value:.4f}. "
            f"Combine the trials: [bold]ensemblecv ensemble {cfg.workspace}[/]"
        )
    except ValueError:
        console.print("[yellow]No trial has finished yet.")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
