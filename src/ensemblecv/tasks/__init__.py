"""Tasks: the seam between the shared pipeline and what each kind of problem needs.

``task: classify | detect | segment`` in the config names an entry here. Everything
that differs per task — reading annotations, the fold stratification key,
model factory, LightningModule, collate, augmentation targets, the prediction
format in the store, the score, report sections — is a hook of the task's
:class:`~ensemblecv.tasks.base.Task`; the workspace, fold table, runs folder,
launchers (local, Ray, DDP), sweeps, tracking and resume call those hooks and
never branch on the task. A new task is a folder under ``tasks/`` plus one
:func:`register_task` call.

Importing this package is cheap (no torch): config validation uses
:func:`task_info`; :func:`get_task` imports the implementation on first use.
"""

from __future__ import annotations

import importlib

from .._registry import Registry
from ..errors import ConfigError, EnsembleCVError
from .base import Task, TaskInfo

_TASKS: Registry[TaskInfo] = Registry("task")


def register_task(info: TaskInfo) -> TaskInfo:
    """Add a task; its ``info.module`` must define ``TASK`` (see :class:`Task`)."""
    return _TASKS.register(info.name)(info)


def list_tasks() -> list[str]:
    return _TASKS.names()


def task_info(name: str) -> TaskInfo:
    """The light registry entry of ``name``; unknown names fail listing the known ones."""
    try:
        return _TASKS.get(name)
    except EnsembleCVError as exc:
        raise ConfigError(str(exc)) from None


def get_task(name: str) -> Task:
    """The implementation of task ``name`` (its module is imported on first use)."""
    return importlib.import_module(task_info(name).module).TASK


def resolve_config(config):
    """``config`` settled by its task (:meth:`Task.resolve_config`): call before any data is read."""
    return get_task(config.task).resolve_config(config)


def workspace_task(workspace) -> Task:
    """The task a prepared workspace was made for (``workspace.json``; classify if absent)."""
    import json
    from pathlib import Path

    info = Path(workspace) / "workspace.json"
    name = "classify"
    if info.is_file():
        name = json.loads(info.read_text(encoding="utf-8")).get("task", "classify")
    return get_task(name)


register_task(
    TaskInfo(
        name="classify",
        module="ensemblecv.tasks.classify",
        description="one class per image; OOF class probabilities; accuracy / log loss",
        monitor="val_loss",
        mode="min",
        val_metrics=("val_loss", "val_acc"),
        sweep_metrics=(("accuracy", "maximize"), ("log_loss", "minimize")),
        refit_full=True,
    )
)
register_task(
    TaskInfo(
        name="detect",
        module="ensemblecv.tasks.detect.task",
        description="boxes per image; OOF detections; COCO mAP",
        monitor="val_map",
        mode="max",
        val_metrics=("val_map", "val_map50"),
        sweep_metrics=(("map", "maximize"), ("map50", "maximize")),
    )
)
register_task(
    TaskInfo(
        name="segment",
        module="ensemblecv.tasks.segment.task",
        description="a class per pixel; OOF probability maps (bounded); dataset-level mIoU",
        monitor="val_miou",
        mode="max",
        val_metrics=("val_miou", "val_pixel_acc"),
        sweep_metrics=(("miou", "maximize"), ("pixel_acc", "maximize")),
    )
)

__all__ = [
    "Task", "TaskInfo", "get_task", "list_tasks", "register_task", "resolve_config", "task_info",
    "workspace_task",
]  # fmt: skip
