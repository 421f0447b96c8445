"""The detection store: every finished run's out-of-fold and test detections, one table each.

A run whose folds all finished is a member ``NAME``; a run trained with
``train.tta: [hflip]`` also stored mirrored detections (boxes mapped back to
original pixels) and is a second member ``NAME+hflip``, so whether TTA pays is
decided on OOF like any other choice.

Test detections of a member (the *test-time protocol*): the run's refit on all
training images (``full/``, ``train.refit_full: true``) when it exists, else
the WBF of its K fold models (equal weights, IoU 0.55). The refit matches the
OOF protocol (each OOF image was predicted by one model); the fold bag is a
small ensemble already, so its test mAP is higher than the run's CV mAP
suggests, and CV understates what bagging gains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...ensemble.box_fusion import fuse
from ...ensemble.boxes import DetectionTruth, pack, unpack
from ...errors import EnsembleCVError

#: Member suffix → file stem variant (``oof_detections{variant}.parquet``).
VARIANTS = {"": "", "+hflip": "_hflip"}
#: The fold bag's fusion (when a run has no refit).
BAG = {"method": "wbf", "iou_thr": 0.55, "conf_type": "avg"}


@dataclass
class DetectRun:
    name: str
    path: Path
    folds: list[Path]
    has_full: bool
    variant: str = ""


class DetectionStore:
    """OOF and test detections of every complete detection run in a workspace."""

    def __init__(self, workspace: str | Path) -> None:
        from ...data.samples import load_classes

        self.root = Path(workspace)
        needed = ["samples.parquet", "boxes.parquet", "folds.parquet", "classes.json"]
        missing = [n for n in needed if not (self.root / n).is_file()]
        if missing:
            raise EnsembleCVError(
                f"{self.root} is not a prepared detection workspace (missing {', '.join(missing)}); "
                "run `ensemblecv train` with task: detect first."
            )
        self.images = pd.read_parquet(self.root / "samples.parquet")
        self.images["sample_id"] = self.images["sample_id"].astype(str)
        self.boxes = pd.read_parquet(self.root / "boxes.parquet")
        self.boxes["sample_id"] = self.boxes["sample_id"].astype(str)
        folds = pd.read_parquet(self.root / "folds.parquet")
        fold_of = folds.set_index(folds["sample_id"].astype(str))["fold"]
        self.fold_of = fold_of.reindex(self.images["sample_id"]).to_numpy(np.int64)
        self.n_folds = int(self.fold_of.max()) + 1
        self.classes = load_classes(self.root / "classes.json")
        self.runs, self.incomplete = self._discover()
        self._cache: dict[str, pd.DataFrame] = {}

    def _discover(self):
        runs, incomplete = {}, {}
        root = self.root / "runs"
        for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
            if not run_dir.is_dir():
                continue
            folds = [run_dir / f"fold_{k}" for k in range(self.n_folds)]
            done = [f for f in folds if (f / "done.json").is_file()]
            if len(done) < self.n_folds or not all(
                (f / "oof_detections.parquet").is_file() for f in folds
            ):
                incomplete[run_dir.name] = f"{self.n_folds - len(done)} fold(s) not finished"
                continue
            has_full = (run_dir / "full" / "done.json").is_file()
            for suffix, variant in VARIANTS.items():
                if all((f / f"oof_detections{variant}.parquet").is_file() for f in folds):
                    name = run_dir.name + suffix
                    runs[name] = DetectRun(name, run_dir, folds, has_full, variant)
        return runs, incomplete

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    def run(self, name: str) -> DetectRun:
        if name not in self.runs:
            hint = f" (incomplete: {self.incomplete[name]})" if name in self.incomplete else ""
            raise EnsembleCVError(
                f"No complete detection run {name!r} in {self.root}{hint}. "
                f"Runs: {', '.join(self.runs) or 'none'}."
            )
        return self.runs[name]

    def truth(self) -> DetectionTruth:
        """Ground truth of every workspace image (the OOF images)."""
        return DetectionTruth(
            self.images[["sample_id", "width", "height"]], self.boxes, len(self.classes)
        )

    def oof(self, name: str) -> pd.DataFrame:
        """All OOF detections of member ``name``; each fold holds exactly its images."""
        if name in self._cache:
            return self._cache[name]
        run = self.run(name)
        parts = []
        for k, fold in enumerate(run.folds):
            ids = pd.read_parquet(fold / "oof_samples.parquet")["sample_id"].astype(str)
            pos = pd.Series(np.arange(len(self.images)), index=self.images["sample_id"])
            rows = pos.reindex(ids.to_numpy()).to_numpy()
            if np.isnan(rows).any() or (self.fold_of[rows.astype(np.int64)] != k).any():
                raise EnsembleCVError(
                    f"{fold} holds detections of images outside fold {k} of this workspace's "
                    "fold table: it was trained on a different split."
                )
            dets = pd.read_parquet(fold / f"oof_detections{run.variant}.parquet")
            dets["sample_id"] = dets["sample_id"].astype(str)
            parts.append(dets)
        self._cache[name] = pd.concat(parts, ignore_index=True)
        return self._cache[name]

    def test_truth(self) -> DetectionTruth | None:
        """The labelled test split the runs predicted (stored beside their test detections)."""
        for run in self.runs.values():
            for part in [run.path / "full", *run.folds]:
                images, boxes = part / "test_samples.parquet", part / "test_boxes.parquet"
                if images.is_file() and boxes.is_file():
                    frame = pd.read_parquet(images)
                    if "width" not in frame:
                        return None
                    frame["sample_id"] = frame["sample_id"].astype(str)
                    b = pd.read_parquet(boxes)
                    b["sample_id"] = b["sample_id"].astype(str)
                    return DetectionTruth(frame, b, len(self.classes))
        return None

    def test(self, name: str, images: pd.DataFrame) -> pd.DataFrame | None:
        """Test detections of member ``name`` (module docstring: refit, else the fold bag)."""
        run = self.run(name)
        stem = f"test_detections{run.variant}.parquet"
        if run.has_full and (run.path / "full" / stem).is_file():
            return pd.read_parquet(run.path / "full" / stem)
        if not all((f / stem).is_file() for f in run.folds):
            return None
        return bag_folds([pd.read_parquet(f / stem) for f in run.folds], images)


def bag_folds(parts: list[pd.DataFrame], images: pd.DataFrame) -> pd.DataFrame:
    """The fold models' detections of the same images fused by WBF (the test-time bag)."""
    images = images.reset_index(drop=True)
    if len(parts) == 1:
        return parts[0]
    packed = [pack(p, images, f"fold {k}") for k, p in enumerate(parts)]
    fused = fuse(packed, BAG["method"], None, BAG["iou_thr"], 0.0, BAG["conf_type"])
    return unpack(fused, images, None)


__all__ = ["BAG", "DetectRun", "DetectionStore", "VARIANTS", "bag_folds"]
