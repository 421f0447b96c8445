"""``ensemblecv sweep``: Optuna studies whose trials are ordinary workspace runs.

Each trial trains the config with the sampled values over every fold, so it
is tracked in MLflow and its OOF/test probabilities sit in the prediction
store: good *and different* trials feed the ensembles, instead of all but the
best being thrown away. The objective is the trial's OOF score over all folds.

Optuna provides the rest: TPE sampling (seeded by ``train.seed``), pruning
through its Lightning callback on fold 0's ``val_loss``, the storage
(``sqlite:///WORKSPACE/optuna.db`` by default, PostgreSQL for many machines),
``MaxTrialsCallback`` so parallel workers stop at ``--trials`` in total, and
heartbeats with ``RetryHeartbeatStaleTrialCallback`` so a trial whose process died is
retried under its original run name, resuming from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._io import atomic_write_text
from ..config import ExperimentConfig, validate_config
from ..errors import ConfigError

#: Spec keys a space entry may have, by type.
_SPEC_KEYS = {"type", "low", "high", "log", "step", "choices"}


def _import_optuna():
    try:
        import optuna
    except ModuleNotFoundError as exc:
        raise ConfigError("sweep needs Optuna: `pip install 'ensemblecv[sweep]'`.") from exc
    return optuna


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a search space: ``dotted.key: {low, high[, log, step, type]}`` or a list.

    A list is a categorical choice; ``low``/``high`` both integers make an int
    parameter unless ``type: float`` says otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Search space {path} does not exist.")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{path} must map config keys to ranges, e.g.\n"
            "  train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
            "  model.name: [cnn_small, resnet_mini]"
        )
    space = {}
    for key, spec in raw.items():
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: {key} must be a list of choices or a {{low, high}} range.")
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ConfigError(
                f"{path}: {key} has unknown fields {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}."
            )
        kind = spec.get("type")
        if kind is None:
            if "choices" in spec:
                kind = "categorical"
            elif isinstance(spec.get("low"), int) and isinstance(spec.get("high"), int):
                kind = "int"
            else:
                kind = "float"
        if kind == "categorical":
            if not spec.get("choices"):
                raise ConfigError(f"{path}: {key} needs a non-empty list of choices.")
        elif kind in ("int", "float"):
            try:
                low, high = float(spec["low"]), float(spec["high"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"{path}: {key} needs numeric low and high.") from None
            if not low < high:
                raise ConfigError(f"{path}: {key} needs low < high, got {low} and {high}.")
            if spec.get("log") and low <= 0:
                raise ConfigError(f"{path}: {key} has log: true, so low must be > 0.")
        else:
            raise ConfigError(f"{path}: {key} has type {kind!r}; use int, float or categorical.")
        space[str(key)] = {**spec, "type": kind}
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Values for one trial, drawn through Optuna's ``suggest_*`` so TPE models them."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(
                key,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step", 1)),
                log=bool(spec.get("log", False)),
            )
        else:
            values[key] = trial.suggest_float(
                key,
                float(spec["low"]),
                float(spec["high"]),
                step=spec.get("step"),
                log=bool(spec.get("log", False)),
            )
    return values


def trial_config(base: ExperimentConfig, values: dict[str, Any], run_name: str) -> ExperimentConfig:
    """``base`` with the sampled values set at their dotted keys, named ``run_name``."""
    # exclude_unset: keys the base leaves unset stay unset, so a trial resolves them
    # from its own model (data.image_size, normalize, ...) like a plain run does.
    raw = copy.deepcopy(base.model_dump(mode="json", exclude_unset=True))
    for key, value in values.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Search space key {key!r}: {part!r} is not a config section.")
        node[leaf] = value
    raw["name"] = run_name
    return validate_config(raw, f"sweep values {values}")


def oof_score(run_dir: Path, n_folds: int, metric: str, task: str = "classify") -> float:
    """The run's score over the OOF predictions of all its folds (the sweep objective)."""
    from ..tasks import get_task

    return get_task(task).oof_score(run_dir, n_folds, metric)


def _sweep_metrics() -> dict[str, str]:
    """Every task's sweepable OOF metrics and their direction."""
    from ..tasks import list_tasks, task_info

    return {m: d for name in list_tasks() for m, d in task_info(name).sweep_metrics}


def direction(metric: str) -> str:
    metrics = _sweep_metrics()
    if metric not in metrics:
        raise ConfigError(f"--metric must be one of {', '.join(metrics)}, not {metric!r}.")
    return metrics[metric]


def _fold_score(record: dict, metric: str) -> float:
    """One fold's validation score from its done.json (task metrics, or loss/accuracy)."""
    if metric in record.get("metrics", {}):
        return float(record["metrics"][metric])
    return float(record["val_acc" if metric == "accuracy" else "val_loss"])


def default_storage(config: ExperimentConfig) -> str:
    return f"sqlite:///{(Path(config.workspace) / 'optuna.db').absolute()}"


def open_study(
    storage: str,
    study_name: str,
    metric: str,
    seed: int,
    heartbeat_interval: int = 30,
    grace_period: int | None = None,
):
    """Create or load the study; RDB storage with heartbeats so dead trials are retried."""
    optuna = _import_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    quiet_experimental_warnings()
    try:
        rdb = RDBStorage(
            storage,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {},
        )
    except Exception as exc:  # bad URL, server down, missing driver
        raise ConfigError(f"Cannot open Optuna storage {storage!r}: {exc}") from None
    return optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction=direction(metric),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        load_if_exists=True,
    )


def quiet_experimental_warnings() -> None:
    """Heartbeats are marked experimental in Optuna; the user cannot act on that warning."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class Objective:
    """Train one trial over the folds; picklable, so Ray workers can run it too."""

    def __init__(
        self,
        base: ExperimentConfig,
        space: dict,
        study_name: str,
        metric: str,
        folds: list[int] | None,
        prune: bool,
    ) -> None:
        self.base, self.space, self.study_name = base, space, study_name
        self.metric, self.folds, self.prune = metric, folds, prune

    def run_name(self, trial) -> str:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        # A retried trial keeps the run (and checkpoints) of the trial that died.
        quiet_experimental_warnings()
        # (Optuna 5's helper reads system_attrs, which only the stored FrozenTrial has.)
        frozen = trial.study._storage.get_trial(trial._trial_id)
        number = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        return f"{self.study_name}_t{trial.number if number is None else number:03d}"

    def __call__(self, trial) -> float:
        import optuna

        from ..training.inputs import prepare_inputs
        from ..training.runner import _check_run_dir, _quiet_lightning, fold_plan, train_fold

        _quiet_lightning()
        name = self.run_name(trial)
        from ..tasks import resolve_config

        config = resolve_config(trial_config(self.base, suggest(trial, self.space), name))
        # Trials train their folds only (a refit per trial would cost a fold more each); the
        # saved config says so, and `ensemble` names the trials it ranks under that protocol.
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"refit_full": False})}
        )
        trial.set_user_attr("run", name)
        inputs = prepare_inputs(config, progress=False)
        n_folds = int(inputs.folds["fold"].max()) + 1
        run_dir = inputs.workspace.run_dir(name)
        _check_run_dir(run_dir, config)
        todo = fold_plan(n_folds, self.folds, refit_full=False)
        for i, fold in enumerate(todo):
            callbacks = []
            if self.prune and i == 0:
                from optuna_integration import PyTorchLightningPruningCallback

                from ..tasks import task_info

                monitor = task_info(config.task).monitor
                callbacks.append(PyTorchLightningPruningCallback(trial, monitor=monitor))
            try:
                train_fold(config, inputs, fold, run_dir, True, False, callbacks=callbacks)
            except optuna.TrialPruned:
                # Say why this run has unfinished folds, for the prediction store's warning.
                atomic_write_text(run_dir / "pruned.json", json.dumps({"trial": trial.number}))
                raise
        if self.folds is not None and len(self.folds) < n_folds:
            # Scoring on part of the folds: the mean validation score of those folds.
            return float(
                np.mean(
                    [
                        _fold_score(
                            json.loads((run_dir / f"fold_{f}" / "done.json").read_text()),
                            self.metric,
                        )
                        for f in todo
                    ]
                )
            )
        score = oof_score(run_dir, n_folds, self.metric, config.task)
        trial.set_user_attr(self.metric, score)
        return score


def optimize_worker(
    objective: Objective,
    storage: str,
    n_trials: int,
    seed: int,
    base_dir: str | None = None,
    threads: int | None = None,
    grace_period: int | None = None,
    share: int | None = None,
    progress: bool = False,
) -> int:
    """One worker's loop: take trials from the shared study until it holds ``n_trials``.

    ``share`` caps this worker's own trials: workers that start trials at the
    same moment would otherwise overshoot the total by up to one each.
    """
    optuna = _import_optuna()
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from .jobs import torch_threads, working_dir

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with torch_threads(threads), working_dir(base_dir):
        study = open_study(
            storage, objective.study_name, objective.metric, seed, grace_period=grace_period
        )
        remaining = n_trials - finished(study)
        if share is not None:
            remaining = min(remaining, share)
        if remaining <= 0:
            return 0
        from .ray_launcher import _job_bar

        with _job_bar(progress, remaining, label="trials") as advance:
            study.optimize(
                objective,
                n_trials=remaining,
                callbacks=[
                    MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                    lambda study, trial: advance(1),
                ],
                catch=(),
                gc_after_trial=True,
            )
    return remaining


def run_sweep(
    config: ExperimentConfig,
    space: dict,
    n_trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    metric: str = "accuracy",
    folds: list[int] | None = None,
    prune: bool = True,
    launcher: str = "local",
    parallel: int = 2,
    address: str | None = None,
    cpus_per_job: float = 1,
    gpus_per_job: float = 0,
    grace_period: int | None = None,
    progress: bool = True,
):
    """Run (or resume) the study until it holds ``n_trials`` finished trials; return it."""
    from ..training.inputs import open_workspace
    from .jobs import prepare_tracking

    direction(metric)
    from ..tasks import task_info

    allowed = dict(task_info(config.task).sweep_metrics)
    if metric not in allowed:
        raise ConfigError(
            f"--metric {metric!r} is not a score of task {config.task!r}; "
            f"choose one of {', '.join(allowed)}."
        )
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}.")
    study_name = study_name or config.run_name
    storage = storage or os.environ.get("ENSEMBLECV_OPTUNA_STORAGE") or default_storage(config)
    # Validate the space against the config before any training starts.
    optuna = _import_optuna()
    probe = optuna.trial.FixedTrial(
        {k: (s["choices"][0] if s["type"] == "categorical" else s["low"]) for k, s in space.items()}
    )
    trial_config(config, suggest(probe, space), f"{study_name}_t000")
    ws = open_workspace(config, progress=progress)
    from ..data.folds import load_folds
    from ..training.runner import fold_plan

    fold_plan(int(load_folds(ws.folds_path)["fold"].max()) + 1, folds, refit_full=False)
    prepare_tracking(config)
    seed = config.train.seed
    objective = Objective(config, space, study_name, metric, folds, prune)
    if launcher == "local":
        optimize_worker(
            objective, storage, n_trials, seed, grace_period=grace_period, progress=progress
        )
    elif launcher == "ray":
        from .ray_launcher import connect

        ray = connect(address)
        worker = ray.remote(optimize_worker).options(
            num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=2, name="ensemblecv-sweep"
        )
        base_dir = os.getcwd()
        threads = max(1, int(cpus_per_job))
        # Open once here so parallel workers find the schema and study already made.
        todo = n_trials - finished(
            open_study(storage, study_name, metric, seed, grace_period=grace_period)
        )
        workers = max(1, min(parallel, todo))
        shares = [todo // workers + (i < todo % workers) for i in range(workers)]
        refs = [
            worker.remote(
                objective, storage, n_trials, seed + i, base_dir, threads, grace_period, share
            )
            for i, share in enumerate(shares)
        ]
        ray.get(refs)
    else:
        raise ConfigError(f"--launcher must be 'local' or 'ray', not {launcher!r}.")
    study = open_study(storage, study_name, metric, seed, grace_period=grace_period)
    out = Path(config.workspace) / "sweeps"
    out.mkdir(parents=True, exist_ok=True)
    study.trials_dataframe().to_csv(out / f"{study_name}.csv", index=False)
    return study


__all__ = ["Objective", "load_space", "oof_score", "run_sweep", "trial_config"]
