"""(config, fold) jobs: the unit that launchers schedule.

A job is one bag member of one config on one fold (or ``full``). Its result is
the fold folder the local runner writes, so a job run anywhere — this process,
a Ray worker, another machine on shared storage — leaves the same layout, and
``done.json`` tells every launcher that it can be skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import ExperimentConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Job:
    config: ExperimentConfig  # one bag member (train.repeats == 1)
    fold: int | str

    @property
    def name(self) -> str:
        return f"{self.config.run_name}/{self.fold_dirname}"

    @property
    def fold_dirname(self) -> str:
        return "full" if self.fold == "full" else f"fold_{self.fold}"

    def fold_dir(self, base_dir: Path | None = None) -> Path:
        ws = Path(self.config.workspace)
        if base_dir is not None and not ws.is_absolute():
            ws = base_dir / ws
        return ws / "runs" / self.config.run_name / self.fold_dirname

    def is_done(self, base_dir: Path | None = None) -> bool:
        return (self.fold_dir(base_dir) / "done.json").is_file()

    def done_record(self, base_dir: Path | None = None) -> dict:
        return json.loads((self.fold_dir(base_dir) / "done.json").read_text())


def plan_jobs(
    configs: list[ExperimentConfig], folds: list[int] | None = None, progress: bool = True
) -> list[Job]:
    """Every (bag member, fold) job of ``configs``; prepares each workspace once, here.

    Preparing in the launching process means parallel jobs only ever read the
    sample and fold tables, so they cannot race to write them.
    """
    from ..data.folds import load_folds
    from ..domains.protocol import expand_lodo
    from ..tasks import resolve_config
    from ..training.inputs import open_workspace
    from ..training.runner import bag_members, fold_plan

    jobs: list[Job] = []
    names: dict[tuple[str, str], int] = {}
    # Jobs carry resolved configs: every worker trains (and saves) the same image size.
    configs = [resolve_config(c) for c in expand_lodo(configs)]
    for i, config in enumerate(configs):
        ws = open_workspace(config, progress=progress)
        n_folds = int(load_folds(ws.folds_path)["fold"].max()) + 1
        todo = fold_plan(n_folds, folds, config.train.refit_full)
        prepare_tracking(config)
        for member in bag_members(config):
            key = (str(Path(member.workspace).resolve()), member.run_name)
            if key in names and names[key] != i:
                raise ConfigError(
                    f"Two configs use the run name {member.run_name!r} in workspace "
                    f"{member.workspace}; give one of them another name (name=...)."
                )
            names[key] = i
            jobs += [Job(member, fold) for fold in todo]
    return jobs


def prepare_tracking(config: ExperimentConfig) -> None:
    """Create the MLflow store and experiment before parallel jobs start.

    Jobs that start together would otherwise all try to create the SQLite schema
    and the experiment at once, and all but one fail on the race. Once both
    exist, concurrent runs only append rows, which SQLite serialises.
    """
    if config.tracking.backend != "mlflow":
        return
    from mlflow import MlflowClient

    from ..training.tracking import artifact_location, experiment_name, tracking_uri

    ws = Path(config.workspace)
    ws.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri(config, ws))
    name = experiment_name(config, ws)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=artifact_location(config, ws))


@contextmanager
def working_dir(path: str | Path | None) -> Iterator[None]:
    """Run relative paths (workspace, data) from the launching process's folder.

    A Ray worker starts elsewhere; with shared storage mounted at the same path
    on every machine, the launcher's folder resolves configs exactly as a local
    run would, and each config's saved text stays the same as a local run's.
    """
    if path is None or not Path(path).is_dir():
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads for the block, then restore the caller's count.

    A job given its CPU share must not leave that share behind: a later run in
    the same process (a test, a notebook, a retried Ray task with another share)
    would train with another thread count, and results can differ in the last
    digits between thread counts.
    """
    if not threads:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_job(
    config: dict | ExperimentConfig,
    fold: int | str,
    base_dir: str | None = None,
    resume: bool = True,
    threads: int | None = None,
    callbacks: list | None = None,
):
    """Train one job in this process and return its :class:`FoldResult`.

    ``resume`` is on by default: a job retried after its worker died continues
    from its ``last.ckpt``, which reproduces an uninterrupted run exactly.
    ``threads`` (the job's CPU share) holds for this call only.
    """
    from ..training.inputs import prepare_inputs
    from ..training.runner import _check_run_dir, _quiet_lightning, train_fold

    _quiet_lightning()
    from ..tasks import resolve_config

    if isinstance(config, dict):
        config = ExperimentConfig.model_validate(config)
    with torch_threads(threads), working_dir(base_dir):
        config = resolve_config(config)
        inputs = prepare_inputs(config, progress=False)
        run_dir = inputs.workspace.run_dir(config.run_name)
        _check_run_dir(run_dir, config)
        return train_fold(config, inputs, fold, run_dir, resume, False, callbacks=callbacks)


def train_many(
    configs: list[ExperimentConfig],
    folds: list[int] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list:
    """The local launcher: each config in turn, exactly as ``train`` does for one."""
    from ..training import train

    results = []
    for config in configs:
        results += train(config, folds=folds, resume=resume, progress=progress)
    return results
