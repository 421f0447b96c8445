"""Classification behind the task seam: today's pieces, wrapped, not rewritten.

Annotations are a class per image (folder, CSV index or built-in), folds are
stratified on the class, the model is any timm name or built-in CNN under
:class:`~ensemblecv.training.module.ClassifierModule`, augmentation touches
the image only, the store holds (N, C) probabilities, the score is accuracy /
log loss, and ensembles and reports are the classification ones.
"""

from __future__ import annotations

from pathlib import Path

from . import task_info


class ClassifyTask:
    info = task_info("classify")

    def resolve_config(self, config):
        from ..models import resolve_inputs

        return resolve_inputs(config)

    def source_id(self, data) -> str:
        from ..data.samples import load_samples
        from ..training.inputs import data_layout

        return load_samples(data.train, layout=data_layout(data)).source

    def create_workspace(self, config, root: Path, progress: bool):
        from ..training.inputs import create_classify_workspace

        return create_classify_workspace(config, root, progress)

    def prepare_inputs(self, config, progress: bool):
        from ..training.inputs import prepare_classify_inputs

        return prepare_classify_inputs(config, progress)

    def build_module(self, config, inputs, steps_per_epoch: int):
        from ..training.module import ClassifierModule

        return ClassifierModule(
            config.model_dump(mode="json"),
            inputs.num_classes,
            steps_per_epoch,
            list(inputs.mean),
            list(inputs.std),
        )

    def dataset(self, inputs, rows, train: bool):
        from ..training.data import RowsDataset

        tf = inputs.train_tf if train else inputs.eval_tf
        return RowsDataset(inputs.source, rows, inputs.targets, tf)

    collate = None  # torch's default: images stack, targets become a tensor

    def write_predictions(self, module, inputs, config, fold, fold_dir: Path, rows, device):
        from ..training.classify_outputs import write_classify_predictions

        return write_classify_predictions(module, inputs, config, fold, fold_dir, rows, device)

    def history_columns(self) -> list[str]:
        return ["train_loss", "train_acc", "val_loss", "val_acc"]

    def summarize_run(self, workspace, run_name: str) -> None:
        """Nothing to do: ``ensemblecv ensemble`` builds the classification leaderboard."""

    def augment_preview(self, config, out: Path, n: int, n_aug: int, seed: int, note=None):
        from ..augment.preview import preview_for_config

        return preview_for_config(config, out, n, n_aug, seed, note)

    def oof_score(self, run_dir: Path, n_folds: int, metric: str) -> float:
        from ..training.classify_outputs import oof_score

        return oof_score(run_dir, n_folds, metric)

    # ------------------------------------------------------- workspace verbs

    def build_ensembles(self, workspace: Path, methods, metric, runs):
        from ..ensemble import build_ensembles

        return build_ensembles(workspace, methods=methods, metric=metric or "accuracy", runs=runs)

    def leaderboard_view(self, board):
        from .._tables import board_view

        return board_view(board, {"accuracy": "accuracy", "balanced_acc": "balanced_accuracy",
                                  "log_loss": "log_loss", "test acc": "test_accuracy"})  # fmt: skip

    def predict(
        self, workspace: Path, data: str, out: Path, ensemble: str, options: dict, progress
    ):
        from ..inference import write_predictions

        return write_predictions(workspace, data, out, ensemble, options, progress)

    def build_report(self, workspace: Path, out, options: dict):
        from ..domains import is_lodo_workspace

        if is_lodo_workspace(workspace):  # the domain table + a report per held-out domain
            from ..domains.report import build_lodo_report

            return build_lodo_report(workspace, out, **options)
        from ..report import build_report

        return build_report(workspace, out=out, **options)


TASK = ClassifyTask()
