"""Detection behind the task seam (``task: detect``).

Workspace: ``samples.parquet`` (sample_id, path, width, height, group),
``boxes.parquet`` (sample_id, label, class_name, x1..y2 in original pixels,
iscrowd, difficult), ``classes.json``, ``folds.parquet`` (stratified on
per-image class presence, duplicates kept on one side), ``stats.json``,
``workspace.json`` (``task: detect``), ``bad_files.csv`` / ``bad_labels.csv``.

Per fold: ``oof_detections.parquet`` (sample_id, label, class_name, score,
x1..y2 in original pixels; at most ``detect.max_detections`` per image,
scores >= ``detect.score_threshold``) for exactly the fold's validation images,
listed in ``oof_samples.parquet`` (images without detections included), and
``test_detections.parquet`` + ``test_samples.parquet`` when ``data.test`` is set.
After the folds: ``runs/<name>/oof_metrics.json`` (COCO metrics pooled over all
OOF detections and per fold) and the run's row in ``leaderboard.csv``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError
from .. import task_info
from .detections import DET_COLUMNS, predict_detections  # noqa: F401  (the task writes them)
from .read import read_configured


@dataclass
class DetectInputs:
    workspace: object
    images: pd.DataFrame
    boxes: pd.DataFrame
    classes: list[str]
    folds: pd.DataFrame
    source: object
    train_tf: object
    workers: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    train_mask: np.ndarray | None = None
    test_images: pd.DataFrame | None = None
    test_boxes: pd.DataFrame | None = None
    test_source: object | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _scan_images(images: pd.DataFrame, classes: list[str], config, report: Path | None, progress):
    """Decode every image once (shared scan): bad files out and listed, hashes for duplicates."""
    from ..._progress import maybe_progress
    from ...data.samples import SampleTable
    from ...data.scan import exclude_bad, scan_table

    frame = pd.DataFrame(
        {
            "sample_id": images["sample_id"].astype(str).to_numpy(),
            "path": images["path"].astype(str).to_numpy(),
            "label": -1,
            "class_name": "",
            "group": images["group"].to_numpy() if "group" in images else None,
        }
    )
    table = SampleTable(frame, list(classes), str(config.data.train))
    with maybe_progress(progress, "scan", len(table)) as advance:
        scan = scan_table(table, progress=advance)
    good = exclude_bad(scan, strict=config.data.strict, report_path=report)
    return scan, good


class DetectTask:
    info = task_info("detect")

    def resolve_config(self, config):
        if config.data.image_size is None:
            from ...errors import ConfigError

            raise ConfigError(
                "data.image_size is unset; a detection run needs it (the side, in px, images "
                "are resized to; e.g. 320 for SSDlite, 300 for SSD300, 128 for tiny_fcos)."
            )
        return config

    def source_id(self, data) -> str:
        return str(Path(data.train).expanduser().resolve())

    # ------------------------------------------------------------- workspace

    def create_workspace(self, config, root: Path, progress: bool):
        from ..._io import atomic_write
        from ...data.samples import save_classes
        from ...data.scan import duplicate_groups, normalization_stats
        from ...workspace import Workspace
        from .folds import detection_folds

        ws = Workspace(Path(root))
        ws.root.mkdir(parents=True, exist_ok=True)
        data = read_configured(config.data.train, config)
        images = data.images.sort_values("sample_id", kind="stable").reset_index(drop=True)
        if config.data.limit is not None:
            images = images.iloc[: config.data.limit].reset_index(drop=True)
        if not len(images):
            raise DataError(f"No images found in {config.data.train}.")
        if len(data.bad):
            data.bad.to_csv(ws.root / "bad_labels.csv", index=False)
        scan, good = _scan_images(images, data.classes, config, ws.bad_files_path, progress)
        hashes = scan.stats.loc[scan.ok, "hash"].reset_index(drop=True)
        grouped = duplicate_groups(good, hashes).frame
        images = images[scan.ok].reset_index(drop=True)
        images["group"] = grouped["group"].to_numpy()
        boxes = data.boxes[data.boxes["sample_id"].isin(set(images["sample_id"]))]
        boxes = boxes.reset_index(drop=True)
        folds = detection_folds(
            images, boxes, config.data.folds, config.data.fold_seed, images["group"].to_numpy()
        )
        folds = images[["sample_id", "group"]].merge(
            folds[["sample_id", "fold"]], on="sample_id", how="left", validate="one_to_one"
        )[["sample_id", "fold", "group"]]
        if folds["fold"].isna().any():
            raise DataError("The fold table misses images; this is a bug in detection_folds.")
        folds["fold"] = folds["fold"].astype(np.int64)
        info = {
            "task": "detect",
            "source": self.source_id(config.data),
            "format": data.format,
            "folds": config.data.folds,
            "fold_seed": config.data.fold_seed,
            "samples": len(images),
            "boxes": len(boxes),
            "excluded": int((~scan.ok).sum()),
            "bad_labels": len(data.bad),
        }
        stats = json.dumps(normalization_stats(scan.stats), indent=1)
        # Written atomically, folds.parquet last: is_prepared() turns true once all exist.
        atomic_write(ws.stats_path, lambda p: p.write_text(stats, encoding="utf-8"))
        text = json.dumps(info, indent=1, ensure_ascii=False)
        atomic_write(ws.info_path, lambda p: p.write_text(text, encoding="utf-8"))
        atomic_write(ws.root / "boxes.parquet", lambda p: boxes.to_parquet(p, index=False))
        atomic_write(ws.classes_path, lambda p: save_classes(list(data.classes), p))
        atomic_write(ws.samples_path, lambda p: images.to_parquet(p, index=False))
        atomic_write(ws.folds_path, lambda p: folds.to_parquet(p, index=False))
        return ws

    # ------------------------------------------------------------- inputs

    def prepare_inputs(self, config, progress: bool):
        from ..._progress import maybe_progress
        from ...augment import resolve_normalization
        from ...data.samples import load_classes
        from ...training.data import default_workers
        from ...training.inputs import exclusion_mask, open_workspace
        from .augment import build_box_transform
        from .data import DetectSource

        ws = open_workspace(config, progress)
        images = pd.read_parquet(ws.samples_path)
        boxes = pd.read_parquet(ws.root / "boxes.parquet")
        folds = ws.load_folds()
        classes = load_classes(ws.classes_path)
        if not (folds["sample_id"].to_numpy() == images["sample_id"].to_numpy()).all():
            raise DataError(
                f"{ws.folds_path} and {ws.samples_path} are out of step; re-create the workspace."
            )
        data = config.data
        mean, std = resolve_normalization(data.normalize, 3, ws.normalization())
        train_tf = build_box_transform(config.augment, config.detect, data.image_size)
        with maybe_progress(progress, "decode", len(images)) as advance:
            source = DetectSource(
                images, boxes, data.image_size, data.resize, data.cache_ram_mb, advance
            )
        workers = (
            data.num_workers
            if data.num_workers is not None
            else default_workers(source.cache is not None)
        )
        inputs = DetectInputs(
            ws, images, boxes, classes, folds, source, train_tf, workers, mean, std
        )
        if data.exclude:
            inputs.train_mask = exclusion_mask(Path(data.exclude), images["sample_id"].to_numpy())
        if data.test:
            self._load_test(config, inputs, progress)
        return inputs

    def _load_test(self, config, inputs: DetectInputs, progress: bool) -> None:
        from ..._progress import maybe_progress
        from ...training.distributed import is_rank_zero
        from .data import DetectSource

        test = read_configured(config.data.test, config)
        images = test.images.sort_values("sample_id", kind="stable").reset_index(drop=True)
        if config.data.test_limit is not None:
            images = images.iloc[: config.data.test_limit].reset_index(drop=True)
        report = Path(config.workspace) / "bad_test_files.csv" if is_rank_zero() else None
        scan, _ = _scan_images(images, test.classes, config, report, progress)
        images = images[scan.ok].reset_index(drop=True)
        boxes = test.boxes[test.boxes["sample_id"].isin(set(images["sample_id"]))].copy()
        index = {c: i for i, c in enumerate(inputs.classes)}
        unknown = sorted(set(boxes["class_name"]) - set(index))
        if unknown:
            raise DataError(
                f"The test set has classes the training set lacks: {', '.join(map(str, unknown[:10]))}."
            )
        boxes["label"] = boxes["class_name"].map(index).astype(np.int64)
        inputs.test_images, inputs.test_boxes = images, boxes.reset_index(drop=True)
        with maybe_progress(progress, "decode test", len(images)) as advance:
            inputs.test_source = DetectSource(
                images,
                None,
                config.data.image_size,
                config.data.resize,
                config.data.cache_ram_mb,
                advance,
            )

    # ------------------------------------------------------------- training

    def build_module(self, config, inputs: DetectInputs, steps_per_epoch: int):
        from .module import DetectorModule

        return DetectorModule(
            config.model_dump(mode="json"),
            inputs.num_classes,
            steps_per_epoch,
            list(inputs.mean),
            list(inputs.std),
        )

    def dataset(self, inputs: DetectInputs, rows, train: bool):
        from .data import DetectDataset

        return DetectDataset(inputs.source, rows, inputs.train_tf if train else None)

    @staticmethod
    def collate(items: list):
        from .data import collate_detections

        return collate_detections(items)

    def history_columns(self) -> list[str]:
        return ["train_loss", "val_map", "val_map50"]

    # ------------------------------------------------------------- predictions

    def write_predictions(
        self, module, inputs: DetectInputs, config, fold, fold_dir: Path, rows, device
    ):
        from ...training.distributed import is_rank_zero
        from .metrics import truth_to_dicts

        metrics: dict[str, float] = {}
        writer = is_rank_zero()
        # train.tta: [hflip] stores the mirrored view too: the member NAME+hflip.
        flips = [False, True] if "hflip" in config.train.tta else [False]
        if len(rows):
            for flip in flips[1:]:
                tta = predict_detections(
                    module, inputs.source, rows, inputs, config, device, hflip=flip
                )
                if writer:
                    tta.to_parquet(fold_dir / "oof_detections_hflip.parquet", index=False)
            dets = predict_detections(module, inputs.source, rows, inputs, config, device)
            if writer:
                ids = inputs.images["sample_id"].to_numpy()[rows]
                dets.to_parquet(fold_dir / "oof_detections.parquet", index=False)
                pd.DataFrame({"sample_id": ids, "fold": fold}).to_parquet(
                    fold_dir / "oof_samples.parquet", index=False
                )
                images = inputs.images.iloc[rows]
                truth = truth_to_dicts(
                    inputs.boxes[inputs.boxes["sample_id"].isin(set(ids))], images
                )
                metrics.update(_score(truth, dets, ids, inputs.num_classes))
        if inputs.test_source is not None:
            test_rows = np.arange(len(inputs.test_images))
            for flip in flips[1:]:
                tta = predict_detections(
                    module, inputs.test_source, test_rows, inputs, config, device, hflip=flip
                )
                if writer:
                    tta.to_parquet(fold_dir / "test_detections_hflip.parquet", index=False)
            dets = predict_detections(module, inputs.test_source, test_rows, inputs, config, device)
            if writer:
                dets.to_parquet(fold_dir / "test_detections.parquet", index=False)
                # Sizes and boxes of the test split: what box ensembles score their test mAP on.
                inputs.test_images[["sample_id", "width", "height"]].to_parquet(
                    fold_dir / "test_samples.parquet", index=False
                )
                inputs.test_boxes.to_parquet(fold_dir / "test_boxes.parquet", index=False)
                if len(inputs.test_boxes):
                    truth = truth_to_dicts(inputs.test_boxes, inputs.test_images)
                    ids = inputs.test_images["sample_id"].to_numpy()
                    test = _score(truth, dets, ids, inputs.num_classes)
                    metrics.update({f"test_{k}": v for k, v in test.items()})
        return metrics

    # ------------------------------------------------------------- scores

    def summarize_run(self, workspace, run_name: str) -> None:
        from .leaderboard import summarize_detection_run

        summarize_detection_run(workspace, run_name)

    def augment_preview(self, config, out: Path, n: int, n_aug: int, seed: int, note=None):
        from .preview import box_preview

        return box_preview(config, out, n, n_aug, seed, note)

    def oof_score(self, run_dir: Path, n_folds: int, metric: str) -> float:
        from .leaderboard import pooled_oof_metrics

        return float(pooled_oof_metrics(run_dir.parent.parent, run_dir, n_folds)["pooled"][metric])

    # ------------------------------------------------------- workspace verbs

    def build_ensembles(self, workspace, methods, metric, runs):
        from .ensembles import build_box_ensembles

        return build_box_ensembles(workspace, methods=methods, metric=metric, runs=runs)

    def leaderboard_view(self, board):
        from .ensembles import leaderboard_view

        return leaderboard_view(board)

    def predict(self, workspace, data, out, ensemble, options, progress):
        from .predict import write_detections

        return write_detections(workspace, data, out, ensemble, options, progress)

    def build_report(self, workspace, out, options):
        from .report import build_detection_report

        return build_detection_report(workspace, out=out, **options)


def _score(truth: list[dict], dets: pd.DataFrame, ids, num_classes: int) -> dict:
    from .metrics import coco_scores, detections_to_dicts

    scores = coco_scores(truth, detections_to_dicts(dets, ids), num_classes, per_class=False)
    return {k: scores[k] for k in ("map", "map50", "map75", "ar100")}


TASK = DetectTask()
