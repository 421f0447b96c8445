"""Box ensembles as estimators: WBF, NMS, soft-NMS and NMW tuned on out-of-fold detections.

The contract is the classification methods' (scikit-learn style): ``__init__``
stores the search space, ``fit(members, truth)`` validates and returns
``self``, learned state ends in ``_``, ``predict(members, images)`` fuses new
detections. ``members`` is a list of detection tables (``sample_id, label,
score, x1, y1, x2, y2`` in pixels of the original image), ``truth`` a
:class:`DetectionTruth`; coordinates are normalised per image before fusing,
fusion is class-wise (:mod:`.box_fusion`).

What is chosen on the OOF detections, by COCO mAP (``metric``):
1. the best single member (fused with itself: one model's duplicates merge too);
2. greedy forward selection *with replacement* (Caruana et al.): each round adds
   the member that raises the score most, so a member can gain weight 2, 3, ...;
   it stops when no addition gains ``tol``, after ``max_rounds``;
3. a small grid over the IoU threshold, the skip-score threshold and (WBF) the
   confidence rule, with the chosen weights.
Every evaluation scores all images at once, as the leaderboard does.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._registry import Registry
from ..errors import EnsembleCVError
from .box_fusion import Boxes, BoxFusionError, fuse

_box_methods: Registry = Registry("box ensemble method")

BOX_COLUMNS = ["sample_id", "label", "score", "x1", "y1", "x2", "y2"]


def list_box_methods() -> list[str]:
    return _box_methods.names()


def get_box_method(name: str) -> type:
    return _box_methods.get(name)


@dataclass
class DetectionTruth:
    """Ground truth of a set of images: ``images`` (sample_id, width, height) and ``boxes``
    (sample_id, label, x1..y2 in pixels, optional iscrowd); images without boxes count as
    background (their detections are false positives)."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    num_classes: int

    def subset(self, sample_ids) -> DetectionTruth:
        keep = set(sample_ids)
        return DetectionTruth(
            self.images[self.images["sample_id"].isin(keep)].reset_index(drop=True),
            self.boxes[self.boxes["sample_id"].isin(keep)].reset_index(drop=True),
            self.num_classes,
        )


def pack(frame: pd.DataFrame, images: pd.DataFrame, name: str = "member") -> Boxes:
    """A detection table → :class:`Boxes` normalised by each image's width and height.

    Detections on images outside ``images`` are left out (a member's table may
    cover more images than are being fused)."""
    missing = [c for c in BOX_COLUMNS if c not in frame.columns]
    if missing:
        raise EnsembleCVError(f"{name}: detection table lacks columns {missing}.")
    index = pd.Series(np.arange(len(images)), index=images["sample_id"].astype(str).to_numpy())
    pos = index.reindex(frame["sample_id"].astype(str).to_numpy()).to_numpy()
    keep = ~np.isnan(pos)
    pos = pos[keep].astype(np.int64)
    size = images[["width", "height"]].to_numpy(np.float64)[pos]
    xy = frame[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[keep]
    if (size <= 0).any():
        raise EnsembleCVError(f"{name}: image sizes must be positive to normalise boxes.")
    return Boxes(
        pos,
        frame["label"].to_numpy(np.int64)[keep],
        frame["score"].to_numpy(np.float64)[keep],
        xy / np.concatenate([size, size], axis=1),
    )


def unpack(b: Boxes, images: pd.DataFrame, max_detections: int | None = None) -> pd.DataFrame:
    """Fused :class:`Boxes` → a detection table in pixels (best ``max_detections`` per image)."""
    if max_detections is not None and len(b):
        starts = np.r_[0, np.flatnonzero(b.image[1:] != b.image[:-1]) + 1]
        rank = np.arange(len(b)) - np.repeat(starts, np.diff(np.r_[starts, len(b)]))
        b = b.take(rank < max_detections)  # fuse() sorts by image, then descending score
    size = images[["width", "height"]].to_numpy(np.float64)[b.image]
    xy = b.box * np.concatenate([size, size], axis=1)
    return pd.DataFrame(
        {
            "sample_id": images["sample_id"].astype(str).to_numpy()[b.image],
            "label": b.label,
            "score": b.score.astype(np.float32),
            "x1": xy[:, 0].astype(np.float32),
            "y1": xy[:, 1].astype(np.float32),
            "x2": xy[:, 2].astype(np.float32),
            "y2": xy[:, 3].astype(np.float32),
        },
        columns=BOX_COLUMNS,
    )


class MapScorer:
    """COCO metrics of packed detections on one image set; the ground truth is indexed once,
    so the thousands of evaluations a fit makes cost only the evaluation itself."""

    def __init__(self, truth: DetectionTruth) -> None:
        from ..tasks.detect.metrics import to_coco, truth_to_dicts

        self.truth = truth
        self.images = truth.images.reset_index(drop=True)
        gt, _ = to_coco(truth_to_dicts(truth.boxes, self.images), [], truth.num_classes)
        self.has_truth = bool(gt["annotations"])
        from faster_coco_eval import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(gt)
        self.size = self.images[["width", "height"]].to_numpy(np.float64)

    def scores(
        self, b: Boxes, max_detections: int = 100, per_class: bool = False, curves: bool = False
    ) -> dict:
        """The twelve COCO numbers; ``per_class``: AP per class; ``curves``: COCOeval's
        precision array (IoU, recall, class, area, max dets) under ``precision``."""
        from faster_coco_eval import COCOeval_faster

        from ..tasks.detect.metrics import STAT_NAMES, _ap_per_class

        if not self.has_truth:
            return {k: -1.0 for k in STAT_NAMES}
        if not len(b):
            return {k: 0.0 for k in STAT_NAMES}
        df = unpack(b, self.images, max_detections)
        img = pd.Series(np.arange(1, len(self.images) + 1), index=self.images["sample_id"])
        arr = np.column_stack(
            [
                img.reindex(df["sample_id"].to_numpy()).to_numpy(np.float64),
                df["x1"], df["y1"], df["x2"] - df["x1"], df["y2"] - df["y1"],
                df["score"], df["label"].to_numpy() + 1,
            ]
        ).astype(np.float64)  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            dt = self.coco.loadRes(arr)
            ev = COCOeval_faster(self.coco, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
        if per_class:
            out["ap_per_class"] = _ap_per_class(ev.eval["precision"], self.truth.num_classes)
        if curves:
            out["precision"] = np.asarray(ev.eval["precision"])
        return out


def _check_members(members, images: pd.DataFrame) -> list[Boxes]:
    if isinstance(members, pd.DataFrame) or not len(members):
        raise EnsembleCVError(
            "members must be a non-empty list of detection tables, one per model."
        )
    return [pack(m, images, f"member {i}") for i, m in enumerate(members)]


class _BoxEnsemble:
    """Shared search (module docstring); subclasses name the fusion and its grid."""

    fusion = "wbf"

    def __init__(
        self,
        iou_thrs: tuple[float, ...] = (0.4, 0.55, 0.7),
        skip_box_thrs: tuple[float, ...] = (0.0, 0.02),
        conf_types: tuple[str, ...] = ("avg",),
        metric: str = "map",
        max_rounds: int = 4,
        tol: float = 1e-4,
        max_detections: int = 100,
        weights: list[float] | None = None,
    ) -> None:
        self.iou_thrs = iou_thrs
        self.skip_box_thrs = skip_box_thrs
        self.conf_types = conf_types
        self.metric = metric
        self.max_rounds = max_rounds
        self.tol = tol
        self.max_detections = max_detections
        self.weights = weights

    def get_params(self, deep: bool = True) -> dict:
        import inspect

        return {p: getattr(self, p) for p in inspect.signature(type(self)).parameters}

    def _fuse(self, packed: list[Boxes], weights, iou, skip, conf) -> Boxes:
        return fuse(packed, self.fusion, weights, iou, skip, conf)

    def _check(self) -> None:
        from ..tasks.detect.metrics import STAT_NAMES

        if self.metric not in STAT_NAMES:
            raise EnsembleCVError(
                f"metric {self.metric!r} is not a COCO metric; choose one of {', '.join(STAT_NAMES)}."
            )
        if not self.iou_thrs or not all(0 <= t <= 1 for t in self.iou_thrs):
            raise EnsembleCVError(f"iou_thrs must be values in [0, 1], got {self.iou_thrs}.")
        if not self.skip_box_thrs or not all(0 <= t < 1 for t in self.skip_box_thrs):
            raise EnsembleCVError(
                f"skip_box_thrs must be values in [0, 1), got {self.skip_box_thrs}."
            )
        if not self.conf_types:
            raise EnsembleCVError("conf_types is empty.")

    def fit(self, members: list[pd.DataFrame], truth: DetectionTruth):
        """Choose weights, thresholds and confidence rule on ``members``' detections of
        ``truth.images``; learned: ``weights_``, ``iou_thr_``, ``skip_box_thr_``,
        ``conf_type_``, ``score_`` (in-sample ``metric``), ``history_``."""
        self._check()
        packed = _check_members(members, truth.images)
        scorer = MapScorer(truth)
        m = len(packed)

        def score(counts, iou, skip, conf) -> float:
            b = self._fuse(packed, counts, iou, skip, conf)
            return scorer.scores(b, self.max_detections)[self.metric]

        iou0 = self.iou_thrs[len(self.iou_thrs) // 2]
        skip0, conf0 = self.skip_box_thrs[0], self.conf_types[0]
        history = []
        if self.weights is not None:
            counts = np.asarray(self.weights, np.float64)
            if len(counts) != m:
                raise BoxFusionError(f"{len(counts)} weights for {m} members.")
            best = score(counts, iou0, skip0, conf0)
        else:
            singles = [score(np.eye(m)[i], iou0, skip0, conf0) for i in range(m)]
            counts = np.eye(m)[int(np.argmax(singles))]
            best = max(singles)
            history.append(("single", best))
            for _ in range(self.max_rounds if m > 1 else 0):
                trials = [score(counts + np.eye(m)[i], iou0, skip0, conf0) for i in range(m)]
                i = int(np.argmax(trials))
                if trials[i] <= best + self.tol:
                    break
                counts, best = counts + np.eye(m)[i], trials[i]
                history.append((f"add {i}", best))
        params = (iou0, skip0, conf0)
        for combo in itertools.product(self.iou_thrs, self.skip_box_thrs, self.conf_types):
            if combo == (iou0, skip0, conf0):
                continue
            s = score(counts, *combo)
            if s > best + self.tol:
                best, params = s, combo
                history.append((f"iou={combo[0]} skip={combo[1]} conf={combo[2]}", best))
        self.weights_ = counts / counts.sum()
        self.iou_thr_, self.skip_box_thr_, self.conf_type_ = params
        self.score_ = float(best)
        self.history_ = history
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise EnsembleCVError(f"{type(self).__name__} is not fitted; call fit first.")

    def fused(self, members: list[pd.DataFrame], images: pd.DataFrame) -> Boxes:
        self._fitted()
        packed = _check_members(members, images)
        if len(packed) != len(self.weights_):
            raise EnsembleCVError(
                f"{len(packed)} members given, the ensemble was fitted on {len(self.weights_)}."
            )
        return self._fuse(packed, self.weights_, self.iou_thr_, self.skip_box_thr_, self.conf_type_)

    def predict(self, members: list[pd.DataFrame], images: pd.DataFrame) -> pd.DataFrame:
        """The fused detections of ``images`` (sample_id, width, height), in pixels."""
        return unpack(self.fused(members, images), images.reset_index(drop=True),
                      self.max_detections)  # fmt: skip

    def fitted_params(self) -> dict:
        """What :meth:`from_fitted` needs to rebuild this fit without the OOF detections."""
        self._fitted()
        return {
            "weights": [float(w) for w in self.weights_],
            "iou_thr": float(self.iou_thr_),
            "skip_box_thr": float(self.skip_box_thr_),
            "conf_type": str(self.conf_type_),
        }

    @classmethod
    def from_fitted(cls, fitted: dict, **params):
        est = cls(**params)
        est.weights_ = np.asarray(fitted["weights"], np.float64)
        est.iou_thr_, est.skip_box_thr_ = float(fitted["iou_thr"]), float(fitted["skip_box_thr"])
        est.conf_type_ = fitted.get("conf_type", "avg")
        return est


@_box_methods.register("wbf")
class WeightedBoxesFusion(_BoxEnsemble):
    """Weighted boxes fusion (Solovyev et al. 2021): a cluster's box is the score-weighted
    mean of its members' boxes; its score with ``conf_type`` ``avg`` is the summed weighted
    score over the summed member weights (one of three equal members: a third of its score),
    ``max`` the best weighted score over the largest weight."""

    fusion = "wbf"

    def __init__(self, iou_thrs=(0.4, 0.55, 0.7), skip_box_thrs=(0.0, 0.02),
                 conf_types=("avg", "max"), metric="map", max_rounds=4, tol=1e-4,
                 max_detections=100, weights=None):  # fmt: skip
        super().__init__(iou_thrs, skip_box_thrs, conf_types, metric, max_rounds, tol,
                         max_detections, weights)  # fmt: skip


@_box_methods.register("nms")
class NMS(_BoxEnsemble):
    """Concatenate the members' boxes (scores times weight / summed weights) and keep, per
    class, each box no kept box overlaps by more than the IoU threshold."""

    fusion = "nms"

    def _fuse(self, packed, weights, iou, skip, conf):
        # w / max(w): the heaviest member keeps its scores, so the K nested fits (with
        # different weights) put their boxes on one score scale before they are pooled.
        return fuse(packed, "nms", weights, iou, skip, weight_norm="max")

    def __init__(self, iou_thrs=(0.4, 0.5, 0.6), skip_box_thrs=(0.0, 0.02), conf_types=("avg",),
                 metric="map", max_rounds=4, tol=1e-4, max_detections=100, weights=None):  # fmt: skip
        super().__init__(iou_thrs, skip_box_thrs, conf_types, metric, max_rounds, tol,
                         max_detections, weights)  # fmt: skip


@_box_methods.register("soft_nms")
class SoftNMS(_BoxEnsemble):
    """Soft-NMS (Bodla et al. 2017), gaussian: overlapping boxes are not removed but their
    scores decay by ``exp(-IoU² / sigma)``; the grid's IoU values act as ``sigma``."""

    fusion = "soft_nms"

    def __init__(self, iou_thrs=(0.3, 0.5, 0.7), skip_box_thrs=(0.0, 0.02), conf_types=("avg",),
                 metric="map", max_rounds=4, tol=1e-4, max_detections=100, weights=None,
                 thresh=0.001):  # fmt: skip
        super().__init__(iou_thrs, skip_box_thrs, conf_types, metric, max_rounds, tol,
                         max_detections, weights)  # fmt: skip
        self.thresh = thresh

    def _fuse(self, packed, weights, iou, skip, conf):
        return fuse(packed, "soft_nms", weights, 0.5, skip, sigma=max(iou, 1e-3),
                    thresh=self.thresh, weight_norm="max")  # fmt: skip


@_box_methods.register("nmw")
class NonMaximumWeighted(_BoxEnsemble):
    """Non-maximum weighted (Zhou et al. 2017): a cluster keeps its best box's score; its box
    is the mean of the members' boxes weighted by score × IoU with the best box."""

    fusion = "nmw"

    def __init__(self, iou_thrs=(0.4, 0.55, 0.7), skip_box_thrs=(0.0, 0.02), conf_types=("avg",),
                 metric="map", max_rounds=4, tol=1e-4, max_detections=100, weights=None):  # fmt: skip
        super().__init__(iou_thrs, skip_box_thrs, conf_types, metric, max_rounds, tol,
                         max_detections, weights)  # fmt: skip


__all__ = [
    "NMS", "DetectionTruth", "MapScorer", "NonMaximumWeighted", "SoftNMS", "WeightedBoxesFusion",
    "get_box_method", "list_box_methods", "pack", "unpack",
]  # fmt: skip
