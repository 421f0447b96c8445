"""Dataset-level segmentation scores from one confusion matrix (the VOC / mmseg convention).

Pixels whose truth is ``ignore_index`` (VOC's 255 void border) are left out.
IoU of class k = TP / (TP + FP + FN) over the whole dataset, not averaged
per image; a class absent from both truth and prediction has no IoU (NaN)
and is skipped by the mean, neither 0 nor 1. That is torchvision's reference
``ConfusionMatrix`` and mmseg's ``IoUMetric`` (tested for parity, with
torchmetrics' ``MulticlassJaccardIndex`` too).
"""

from __future__ import annotations

import numpy as np


def confusion(truth: np.ndarray, pred: np.ndarray, k: int, ignore_index: int = 255) -> np.ndarray:
    """(k, k) int64 counts, rows = truth, columns = prediction; ignored and out-of-range truth out."""
    t = np.asarray(truth).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = (t != ignore_index) & (t >= 0) & (t < k)
    return np.bincount(k * t[keep] + p[keep], minlength=k * k).reshape(k, k)


def scores_from_confusion(cm: np.ndarray) -> dict:
    """``miou``, ``pixel_acc``, ``mean_dice``, ``mean_acc`` and per-class ``iou``/``dice`` (NaN: absent)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    truth, pred = cm.sum(1), cm.sum(0)
    union = truth + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(truth + pred > 0, 2 * tp / (truth + pred), np.nan)
        acc = np.where(truth > 0, tp / truth, np.nan)
    total = cm.sum()
    present = ~np.isnan(iou)
    return {
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_dice": float(np.nanmean(dice)) if present.any() else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if (~np.isnan(acc)).any() else float("nan"),
        "iou": iou,
        "dice": dice,
    }


def segmentation_scores(truths, preds, k: int, ignore_index: int = 255) -> dict:
    """Scores of paired label maps (any shapes, pair by pair equal), pooled over the dataset."""
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(truths, preds):
        cm += confusion(t, p, k, ignore_index)
    out = scores_from_confusion(cm)
    out["confusion"] = cm
    return out


__all__ = ["confusion", "scores_from_confusion", "segmentation_scores"]
