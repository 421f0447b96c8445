"""Classification metrics from (N, C) probabilities, vectorised for many classes.

Everything derives from one confusion matrix built with ``np.bincount`` (no
Python loop over classes or samples), so C=500 classes and N=50k samples take
well under a second. Definitions follow scikit-learn with ``zero_division=0``
(a class that is never predicted has precision 0, one absent from ``y`` has
recall 0, and neither warns); the calibration error bins like torchmetrics'
``MulticlassCalibrationError(n_bins=15, norm="l1")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..ensemble.metrics import log_loss
from ..errors import EnsembleCVError

ECE_BINS = 15
#: Rows per block when ranking the true class: bounds the temporary (rows, C) mask.
_RANK_BLOCK_CELLS = 4_000_000


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    flat = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's ``zero_division=0``), no warning."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _true_class_rank(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """How many classes score strictly above the true class (0 = top-1), row by row.

    Counting beats sorting C scores per row; blocks keep the boolean mask small.
    """
    rank = np.empty(len(y), dtype=np.int64)
    step = max(1, _RANK_BLOCK_CELLS // max(proba.shape[1], 1))
    for start in range(0, len(y), step):
        block = proba[start : start + step]
        p_true = block[np.arange(len(block)), y[start : start + step]]
        rank[start : start + step] = (block > p_true[:, None]).sum(1)
    return rank


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-1 ECE: sum over equal-width confidence bins of |accuracy − confidence| × share.

    Bins are [b_i, b_i+1) as torchmetrics does; a confidence of exactly 1.0
    gets a bin of its own there, and here too, so the numbers agree.
    """
    conf = proba.max(1).astype(np.float64)
    correct = (proba.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, conf, side="right") - 1
    idx = np.clip(idx, 0, n_bins)
    count = np.bincount(idx, minlength=n_bins + 1)
    gap = np.abs(
        _ratio(np.bincount(idx, correct, n_bins + 1), count)
        - _ratio(np.bincount(idx, conf, n_bins + 1), count)
    )
    return float((gap * count).sum() / max(len(y), 1))


def _check(y: np.ndarray, proba: np.ndarray, classes: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape != (len(y), len(classes)):
        raise EnsembleCVError(
            f"Probabilities of shape {proba.shape} do not match {len(y)} labels and "
            f"{len(classes)} classes; expected ({len(y)}, {len(classes)})."
        )
    if len(y) == 0:
        raise EnsembleCVError("No labelled samples to evaluate.")
    if y.min() < 0 or y.max() >= len(classes):
        raise EnsembleCVError(
            f"Labels must be class indices in [0, {len(classes) - 1}]; got {y.min()}..{y.max()}."
        )
    return y, proba


def _averages(cm: np.ndarray) -> tuple[dict[str, float], pd.DataFrame]:
    """Per-class precision/recall/F1/support and their macro and weighted averages.

    Macro averages run over the classes that occur in ``y`` or in the
    predictions (scikit-learn's default label set): a class that is neither
    present nor predicted says nothing about the model and is not counted as 0.
    """
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    per = {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, support + predicted),
    }
    seen = (support > 0) | (predicted > 0)
    out = {}
    for name, values in per.items():
        out[f"{name}_macro"] = float(values[seen].mean()) if seen.any() else 0.0
        out[f"{name}_weighted"] = float((values * support).sum() / max(support.sum(), 1))
    frame = pd.DataFrame({**per, "support": support.astype(np.int64)})
    return out, frame


def classification_report(
    y: np.ndarray, proba: np.ndarray, classes: Sequence, k: Sequence[int] = (1, 5)
) -> dict:
    """Every metric of one set of predictions against labels ``y``.

    Keys: ``accuracy``, ``top_k`` ({k: accuracy} for each k < C),
    ``balanced_accuracy`` (mean recall over classes present in ``y``),
    ``precision_macro`` ``recall_macro`` ``f1_macro`` and their ``_weighted``
    twins, ``log_loss`` (rows renormalised), ``ece`` (15 bins, top-1),
    ``per_class`` (DataFrame: class, precision, recall, f1, support — every
    class, support 0 included), ``confusion`` ((C, C) counts, rows = true) and
    ``n`` (samples scored).
    """
    y, proba = _check(y, proba, classes)
    n_classes = len(classes)
    pred = proba.argmax(1)
    cm = confusion_matrix(y, pred, n_classes)
    support = cm.sum(1)
    averages, per_class = _averages(cm)
    per_class.insert(0, "class", [str(c) for c in classes])
    rank = _true_class_rank(y, proba)
    recall = _ratio(np.diag(cm).astype(np.float64), support)
    return {
        "n": int(len(y)),
        "accuracy": float(np.trace(cm) / len(y)),
        "top_k": {int(kk): float((rank < kk).mean()) for kk in k if kk < n_classes},
        "balanced_accuracy": float(recall[support > 0].mean()),
        **averages,
        "log_loss": log_loss(y, proba),
        "ece": expected_calibration_error(y, proba),
        "per_class": per_class,
        "confusion": cm,
    }


def most_confused(confusion: np.ndarray, classes: Sequence, n: int = 20) -> pd.DataFrame:
    """The ``n`` largest off-diagonal cells: (true, predicted, count, share of the true class).

    ``share`` is the fraction of the true class's samples sent to ``predicted``
    — what a human reads to find look-alike classes.
    """
    cm = np.asarray(confusion)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    cells = np.flatnonzero(off)
    # Largest counts first; ties by (true, predicted) so the table is deterministic.
    order = np.lexsort((cells, -off.ravel()[cells]))[:n]
    true, predicted = np.divmod(cells[order], cm.shape[1])
    names = np.asarray([str(c) for c in classes], dtype=object)
    count = off[true, predicted]
    return pd.DataFrame(
        {
            "true": names[true],
            "predicted": names[predicted],
            "count": count.astype(np.int64),
            "share": count / cm.sum(1)[true],
        }
    )


def most_confident_errors(probs: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Row indices of the ``n`` wrong predictions with the highest predicted probability."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    conf = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-conf, kind="stable")][:n]


__all__ = [
    "ECE_BINS",
    "classification_report",
    "confusion_matrix",
    "expected_calibration_error",
    "most_confident_errors",
    "most_confused",
]
