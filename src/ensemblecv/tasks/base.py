"""What a task is: the few things that differ between classification, detection, ...

The shared road (workspace, fold table, runs folder, launchers, sweeps,
tracking, resume) calls these hooks and never asks which task it runs. A task
is registered with light metadata (:class:`TaskInfo`, importable without torch,
so config validation stays fast) and an implementation module, imported on
first use, whose ``TASK`` object follows :class:`Task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class TaskInfo:
    """Registry entry: enough for config validation and the CLI, no heavy imports."""

    name: str
    #: ``package.module`` whose ``TASK`` attribute implements :class:`Task`.
    module: str
    description: str
    #: The validation metric that checkpoints and early stopping follow by default.
    monitor: str
    #: ``min`` or ``max`` for :attr:`monitor`.
    mode: str
    #: Validation metrics this task logs (what ``train.early_stopping.monitor`` may name).
    val_metrics: tuple[str, ...]
    #: OOF metrics a sweep may optimise, with ``maximize``/``minimize``.
    sweep_metrics: tuple[tuple[str, str], ...]
    #: The default of ``train.refit_full``: whether a run's test predictions come from one
    #: model refitted on all training data, as CV scores one model per out-of-fold row
    #: (docs/cv-protocol.md). Off where the task cannot refit yet.
    refit_full: bool = False


@runtime_checkable
class Task(Protocol):
    """The per-task hooks. ``inputs`` is the task's own ``RunInputs``-like object; the shared
    code only reads its ``workspace``, ``folds``, ``train_mask`` and ``workers`` attributes."""

    info: TaskInfo

    def resolve_config(self, config: Any) -> Any:
        """The config with what it leaves to the model settled (e.g. the input size) and
        checked, before any data is read; what the run saves. Idempotent."""

    def source_id(self, data: Any) -> str:
        """How a workspace records ``data.train`` (``data``: the DataConfig), to refuse a
        different dataset later."""

    def create_workspace(self, config: Any, root: Path, progress: bool) -> Any:
        """Read the annotations, scan, make the fold table (stratified on the task's key)."""

    def prepare_inputs(self, config: Any, progress: bool) -> Any:
        """Everything a training call needs before its first fold (decoded images, targets)."""

    def build_module(self, config: Any, inputs: Any, steps_per_epoch: int) -> Any:
        """The LightningModule for one fold."""

    def dataset(self, inputs: Any, rows: Any, train: bool) -> Any:
        """Items ``(image, target, row)`` for the fold's training or validation rows."""

    def collate(self, items: list) -> Any:
        """A batch from dataset items (None: torch's default collate)."""

    def write_predictions(
        self, module: Any, inputs: Any, config: Any, fold: Any, fold_dir: Path, rows: Any, device
    ) -> dict[str, float]:
        """OOF predictions of ``rows`` (and test predictions) into ``fold_dir``; their scores."""

    def history_columns(self) -> list[str]:
        """Metric columns of ``history.csv`` besides epoch, lr and timings."""

    def summarize_run(self, workspace: Any, run_name: str) -> None:
        """After all folds of a run: pooled scores (e.g. into the leaderboard)."""

    def oof_score(self, run_dir: Path, n_folds: int, metric: str) -> float:
        """The run's score over all its OOF predictions (the sweep objective)."""

    def augment_preview(self, config: Any, out: Path, n: int, n_aug: int, seed: int, note=None):
        """``augment-preview``: a PNG of originals next to augmented versions (with targets)."""

    # The workspace-level verbs (``ensemble``, ``predict``, ``report``) read the task from
    # ``workspace.json`` (:func:`ensemblecv.tasks.workspace_task`) and call these.

    def build_ensembles(
        self, workspace: Path, methods: list[str] | None, metric: str | None, runs: list[str] | None
    ) -> Any:
        """``ensemble``: fit the task's ensembles on the stored OOF predictions, score them
        nested, write ``leaderboard.csv`` and ``ensembles/*.yaml``; the board, best first.
        ``metric=None``: the task's default ranking metric."""

    def leaderboard_view(self, board: Any) -> Any:
        """The board as the CLI shows it: a DataFrame of display strings, one column per
        shown header, rows in board order."""

    def predict(
        self, workspace: Path, data: str, out: Path, ensemble: str, options: dict, progress
    ) -> list[str]:
        """``predict``: write the predictions of ``data`` to ``out``; lines to tell the user.
        ``options``: the CLI's ``tta``, ``probs``, ``format`` (None when not given)."""

    def build_report(self, workspace: Path, out: Path | None, options: dict) -> Path:
        """``report``: the HTML page (default ``WORKSPACE/report/index.html``); its path.
        ``options``: the CLI's ``gradcam``, ``max_gallery``."""
