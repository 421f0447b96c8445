"""Segmentation behind the task seam (``task: segment``).

Workspace (the data half, :mod:`.workspace`): ``samples.parquet``
(sample_id, image_path, mask_path, width, height, group), ``classes.json``,
``folds.parquet`` (stratified on per-image class presence), ``stats.json``,
``workspace.json`` (``task: segment``, ``ignore_index``, optional ``palette``).

Per fold: OOF probability maps of exactly its validation images in bounded,
memory-mapped storage (:mod:`.store`); after the folds the pooled
dataset-level mIoU in ``oof_metrics.json`` and ``leaderboard.csv``
(:mod:`.outputs`). ``ensemble`` fits map ensembles on the stored maps and
scores them nested (:mod:`.ensemble`); ``predict`` writes palette PNGs
(:mod:`.predict`); ``report`` the per-class IoU page (:mod:`.report`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError
from .. import task_info


@dataclass
class SegmentInputs:
    workspace: object
    images: pd.DataFrame
    classes: list[str]
    folds: pd.DataFrame
    source: object
    train_tf: object
    workers: int
    ignore_index: int = 255
    palette: np.ndarray | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    train_mask: np.ndarray | None = None
    test_images: pd.DataFrame | None = None
    test_source: object | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _apply_recipe(config):
    """``segment.recipe: torchvision``: the reference recipe for every key the config leaves unset."""
    if config.segment.recipe != "torchvision":
        return config
    train, augment = config.train, config.augment
    preset = {
        "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4,
        "scheduler": "poly", "poly_power": 0.9,
    }  # fmt: skip
    updates = {k: v for k, v in preset.items() if k not in train.model_fields_set}
    config = config.model_copy(
        update={
            "train": train.model_copy(update=updates),
            "augment": augment
            if "preset" in augment.model_fields_set or augment.ops is not None
            else augment.model_copy(update={"preset": "reference"}),
        }
    )
    return config


class SegmentTask:
    info = task_info("segment")

    def resolve_config(self, config):
        from .augment import SEGMENT_PRESETS
        from .models import list_segmenters

        if config.data.image_size is None:
            raise ConfigError(
                "data.image_size is unset; a segmentation run needs it (the side, in px, images "
                "are resized to for the model; e.g. 512 for DeepLabV3, 64 for tiny_unet)."
            )
        if config.data.resize == "center_crop":
            raise ConfigError(
                "data.resize center_crop is not available for segmentation (it would crop pixels "
                "the masks and stored maps must cover); use letterbox or stretch."
            )
        if config.model.name not in list_segmenters():
            from ...errors import unknown_name_message

            raise ConfigError(unknown_name_message("segmentation model", config.model.name,
                                                   list_segmenters()))  # fmt: skip
        config = _apply_recipe(config)
        if config.augment.ops is None and config.augment.preset not in SEGMENT_PRESETS:
            if "preset" in config.augment.model_fields_set:
                raise ConfigError(
                    f"augment.preset {config.augment.preset!r} is not a segmentation preset; "
                    f"choose one of {', '.join(SEGMENT_PRESETS)}."
                )
            config = config.model_copy(
                update={"augment": config.augment.model_copy(update={"preset": "light"})}
            )
        return config

    def source_id(self, data) -> str:
        from .workspace import segment_source_id

        return segment_source_id(data)

    def create_workspace(self, config, root: Path, progress: bool):
        from .workspace import create_segment_workspace

        return create_segment_workspace(config, root, progress)

    # ------------------------------------------------------------- inputs

    def prepare_inputs(self, config, progress: bool):
        from ..._progress import maybe_progress
        from ...augment import resolve_normalization
        from ...data.samples import load_classes
        from ...training.data import default_workers
        from ...training.inputs import exclusion_mask, open_workspace
        from .augment import build_mask_transform
        from .data import SegmentSource
        from .workspace import workspace_meta

        ws = open_workspace(config, progress)
        images = pd.read_parquet(ws.samples_path)
        folds = ws.load_folds()
        classes = load_classes(ws.classes_path)
        if not (folds["sample_id"].to_numpy() == images["sample_id"].to_numpy()).all():
            raise DataError(
                f"{ws.folds_path} and {ws.samples_path} are out of step; re-create the workspace."
            )
        ignore, palette = workspace_meta(ws.root)
        data = config.data
        mean, std = resolve_normalization(data.normalize, 3, ws.normalization())
        train_tf = build_mask_transform(config.augment, data.image_size, ignore)
        with maybe_progress(progress, "decode", len(images)) as advance:
            source = SegmentSource(
                images, data.image_size, data.resize, data.cache_ram_mb, ignore, palette, advance
            )
        workers = (
            data.num_workers
            if data.num_workers is not None
            else default_workers(source.cache is not None)
        )
        inputs = SegmentInputs(
            ws, images, classes, folds, source, train_tf, workers, ignore, palette, mean, std
        )
        if data.exclude:
            inputs.train_mask = exclusion_mask(Path(data.exclude), images["sample_id"].to_numpy())
        if data.test:
            self._load_test(config, inputs, progress)
        return inputs

    def _load_test(self, config, inputs: SegmentInputs, progress: bool) -> None:
        from ..._progress import maybe_progress
        from .data import SegmentSource
        from .workspace import read_config_data

        test = read_config_data(config, config.data.test)
        images = test.images.sort_values("sample_id", kind="stable").reset_index(drop=True)
        if config.data.test_limit is not None:
            images = images.iloc[: config.data.test_limit].reset_index(drop=True)
        if list(test.classes) != list(inputs.classes):
            raise DataError(
                f"The test set's classes {list(test.classes)[:10]} differ from the workspace's "
                f"{list(inputs.classes)[:10]}."
            )
        inputs.test_images = images
        with maybe_progress(progress, "decode test", len(images)) as advance:
            inputs.test_source = SegmentSource(
                images, config.data.image_size, config.data.resize, config.data.cache_ram_mb,
                inputs.ignore_index, test.palette if test.palette is not None else inputs.palette,
                advance,
            )  # fmt: skip

    # ------------------------------------------------------------- training

    def build_module(self, config, inputs: SegmentInputs, steps_per_epoch: int):
        from .module import SegmenterModule

        return SegmenterModule(
            config.model_dump(mode="json"),
            inputs.num_classes,
            steps_per_epoch,
            list(inputs.mean),
            list(inputs.std),
            inputs.ignore_index,
        )

    def dataset(self, inputs: SegmentInputs, rows, train: bool):
        from .data import SegmentDataset

        return SegmentDataset(inputs.source, rows, inputs.train_tf if train else None)

    collate = None  # torch's default: images and masks stack (all image_size square)

    def history_columns(self) -> list[str]:
        return ["train_loss", "val_loss", "val_miou", "val_pixel_acc"]

    def write_predictions(self, module, inputs, config, fold, fold_dir: Path, rows, device):
        from .outputs import write_maps

        return write_maps(module, inputs, config, fold, fold_dir, rows, device)

    # ------------------------------------------------------------- scores

    def summarize_run(self, workspace, run_name: str) -> None:
        from .outputs import summarize_segment_run

        summarize_segment_run(workspace, run_name)

    def oof_score(self, run_dir: Path, n_folds: int, metric: str) -> float:
        from ...data.samples import load_classes
        from .outputs import pooled_oof_metrics

        classes = load_classes(run_dir.parent.parent / "classes.json")
        return float(pooled_oof_metrics(run_dir, n_folds, classes)["stored"][metric])

    def augment_preview(self, config, out: Path, n: int, n_aug: int, seed: int, note=None):
        from .preview import mask_preview

        return mask_preview(config, out, n, n_aug, seed, note)

    # ------------------------------------------------------- workspace verbs

    def build_ensembles(self, workspace, methods, metric, runs):
        from .ensemble import build_map_ensembles

        return build_map_ensembles(Path(workspace), methods, metric or "miou", runs)

    def leaderboard_view(self, board):
        from ..._tables import board_view

        return board_view(board, {"mIoU": "miou", "pixel_acc": "pixel_acc",
                                  "dice": "mean_dice", "test mIoU": "test_miou"})  # fmt: skip

    def predict(self, workspace, data, out, ensemble, options, progress):
        from .predict import predict_masks

        return predict_masks(Path(workspace), data, Path(out), ensemble, options, progress)

    def build_report(self, workspace, out, options):
        from .report import build_segment_report

        return build_segment_report(Path(workspace), out, options)


TASK = SegmentTask()
