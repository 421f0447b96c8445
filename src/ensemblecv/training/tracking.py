"""Experiment tracking through Lightning's loggers: MLflow by default, W&B on request.

MLflow defaults to a SQLite file inside the workspace so an experiment and
its tracking records travel together; ``tracking.uri`` may name PostgreSQL
(``postgresql://...``) or a tracking server (``http://...``) instead.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ExperimentConfig
from ..errors import ConfigError
from .distributed import is_rank_zero


def tracking_uri(config: ExperimentConfig, workspace: Path) -> str:
    return config.tracking.uri or f"sqlite:///{(workspace / 'mlflow.db').absolute()}"


def experiment_name(config: ExperimentConfig, workspace: Path) -> str:
    return config.tracking.experiment or workspace.absolute().name


def artifact_location(config: ExperimentConfig, workspace: Path) -> str | None:
    """Artifacts of a database store (SQLite, PostgreSQL) go to the workspace.

    MLflow would otherwise write ./mlruns or ./mlartifacts in whatever folder the
    command runs from. A tracking server (http/https/databricks) manages its own.
    """
    uri = config.tracking.uri or ""
    if uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return None
    return (workspace / "mlartifacts").absolute().as_uri()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def build_logger(config: ExperimentConfig, workspace: Path, run_name: str, fold: str):
    """A Lightning logger for one fold run, or None when tracking is off.

    None too on DDP ranks other than 0: Lightning's loggers only record on rank 0
    anyway, and not creating the client there keeps N processes from opening
    (and, the first time, creating the schema of) the same MLflow store at once.
    """
    backend = config.tracking.backend
    experiment = experiment_name(config, workspace)
    if backend == "none" or not is_rank_zero():
        return None
    if backend == "wandb":
        try:
            from lightning.pytorch.loggers import WandbLogger

            logger = WandbLogger(
                project=experiment, name=f"{run_name}/{fold}", save_dir=str(workspace)
            )
        except ModuleNotFoundError as exc:
            raise ConfigError("tracking.backend 'wandb' needs `pip install wandb`.") from exc
    else:
        try:
            from lightning.pytorch.loggers import MLFlowLogger
        except ModuleNotFoundError as exc:  # pragma: no cover - mlflow is a dependency
            raise ConfigError(
                "MLflow is not installed: `pip install mlflow` or set tracking: none."
            ) from exc
        artifacts = artifact_location(config, workspace)
        logger = MLFlowLogger(
            experiment_name=experiment,
            run_name=f"{run_name}/{fold}",
            tracking_uri=tracking_uri(config, workspace),
            tags={"run": run_name, "fold": fold},
            artifact_location=artifacts,
        )
    logger.log_hyperparams(_flatten(config.model_dump(mode="json")))
    return logger


def log_artifacts(logger, paths: list[Path]) -> None:
    """Attach files (config, history) to the tracked run; a no-op for other loggers.

    Only global rank 0 uploads (elsewhere ``logger.experiment`` is a dummy and
    ``run_id`` None under DDP).
    """
    if logger is None or type(logger).__name__ != "MLFlowLogger" or not is_rank_zero():
        return
    for path in paths:
        if path.is_file():
            logger.experiment.log_artifact(logger.run_id, str(path))
