"""``ensemblecv train CONFIG... [key=value ...]``: configs over the workspace's folds.

One or many configs; ``--launcher ray`` spreads every (config, fold) job over
a Ray cluster instead of running them here one by one.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

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


def split_args(args: list[str]) -> tuple[list[Path], list[str]]:
    """Config files and ``key=value`` overrides, in any order; overrides apply to every config."""
    configs, overrides = [], []
    for arg in args:
        if "=" in arg and not Path(arg).is_file():
            overrides.append(arg)
        else:
            configs.append(Path(arg))
    if not configs:
        raise ConfigError("Give at least one config file, e.g. `ensemblecv train cfg.yaml`.")
    return configs, overrides


def print_results(results: list) -> None:
    from ..training.distributed import is_rank_zero

    if not is_rank_zero():  # under torchrun/srun every rank returns the same results
        return
    table = Table(
        "run",
        "fold",
        "status",
        "epochs",
        "best epoch",
        "val loss",
        "val acc",
        "seconds",
        "scores",
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
            # The task's own validation scores (e.g. detection mAP), where it has any.
            " ".join(f"{k} {v:.4f}" for k, v in list((r.metrics or {}).items())[:2]) or "-",
        )
    console.print(table)


def train_command(
    args: list[str] = typer.Argument(
        ...,
        metavar="CONFIG... [KEY=VALUE...]",
        help="Experiment YAML file(s), then key.sub=value overrides for all of them, e.g. train.lr=0.01",
    ),
    folds: str | None = typer.Option(None, help="Only these folds, e.g. 0,2 (default: all)."),
    resume: bool = typer.Option(
        False, help="Continue unfinished folds from their last checkpoint (Ray jobs always do)."
    ),
    launcher: str = typer.Option(
        "local", help="local: one job after another here; ray: every (config, fold) as a Ray task."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster to join: auto, or ray://HOST:10001 (default: start a local one)."
    ),
    cpus_per_job: float = typer.Option(1.0, help="CPUs Ray reserves per job (its torch threads)."),
    gpus_per_job: float = typer.Option(0.0, help="GPUs Ray reserves per job (0.5 shares one)."),
    max_retries: int = typer.Option(2, help="Retries of a Ray job whose worker died or crashed."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train model configs on every fold; store checkpoints, history and OOF/test probabilities."""
    if launcher not in ("local", "ray"):
        raise ConfigError(f"--launcher must be 'local' or 'ray', not {launcher!r}.")
    from ..config import load_config

    paths, overrides = split_args(args)
    configs = [load_config(p, overrides) for p in paths]
    from ..training.distributed import is_rank_zero

    for cfg in configs if is_rank_zero() else []:
        console.print(f"Run [bold]{cfg.run_name}[/] in workspace [bold]{cfg.workspace}[/]")
    if launcher == "ray":
        from ..launch import LaunchError, launch_ray, plan_jobs

        jobs = plan_jobs(configs, _parse_folds(folds), progress=progress)
        try:
            results = launch_ray(
                jobs,
                address=address,
                cpus_per_job=cpus_per_job,
                gpus_per_job=gpus_per_job,
                max_retries=max_retries,
                progress=progress,
                console=console,
            )
        except LaunchError as exc:
            print_results(exc.results)
            raise
        print_results(results)
        return
    from ..launch import train_many

    try:
        results = train_many(configs, folds=_parse_folds(folds), resume=resume, progress=progress)
    except Exception as exc:
        from ..training import NonFiniteLossError

        if isinstance(exc, NonFiniteLossError) or isinstance(exc.__cause__, NonFiniteLossError):
            raise ConfigError(
                f"Training stopped: {exc}. The best checkpoint so far is kept."
            ) from None
        raise
    print_results(results)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
